"""Mutated handshake and application messages, fed to a real group member, raise only
``DecodeError`` or a typed validation/decryption error (ARCHITECTURE.md §6.7), and leave the
member's state usable: the genuine message still processes afterwards."""

from __future__ import annotations

import os
import random

import pytest

from veil.core.errors import RemoteError
from veil.core.mls import group as g
from veil.core.mls.structs.common import Credential, Lifetime
from veil.core.mls.structs.framing import MLSMessage
from veil.core.mls.structs.group import Welcome
from veil.core.mls.structs.proposals import Add, Proposal, Remove
from veil.core.mls.suite import suite
from veil.core.rng import seeded_rng

RNG = seeded_rng(b"mls group fuzz")


def _device(name: bytes) -> g.KeyPackageBundle:
    sig_priv, _ = suite(1).generate_signature_key(RNG)
    return g.create_key_package(1, Credential.basic(name), sig_priv, Lifetime(0, 2**63), RNG)


@pytest.fixture(scope="module")
def three() -> tuple[g.GroupState, g.GroupState, g.GroupState]:
    a, b, c = _device(b"a"), _device(b"b"), _device(b"c")
    state = g.create_group(
        1, b"fuzz group", a.key_package.leaf_node, a.encryption_priv, a.signature_priv, RNG
    )
    res = g.commit(state, RNG, [Proposal(Add(b.key_package)), Proposal(Add(c.key_package))])
    assert res.welcome is not None and isinstance(res.welcome.body, Welcome)
    return (
        g.merge(res.staged),
        g.join_welcome(res.welcome.body, b),
        g.join_welcome(res.welcome.body, c),
    )


def _mutations(data: bytes, seed: int, count: int) -> list[bytes]:
    r = random.Random(seed)
    out = []
    for _ in range(count):
        buf = bytearray(data)
        kind = r.randrange(4)
        if kind == 0:  # flip bits
            for _ in range(r.randint(1, 4)):
                buf[r.randrange(len(buf))] ^= 1 << r.randrange(8)
        elif kind == 1:  # truncate
            del buf[r.randrange(len(buf)) :]
        elif kind == 2:  # overwrite a byte
            buf[r.randrange(len(buf))] = r.randrange(256)
        else:  # splice in random bytes
            i = r.randrange(len(buf))
            buf[i:i] = os.urandom(r.randint(1, 8))
        out.append(bytes(buf))
    return out


def _feed(state: g.GroupState, data: bytes) -> None:
    try:
        message = MLSMessage.from_bytes(data)
        g.process_message(state, message)
    except RemoteError:
        pass  # DecodeError, ValidationError, MlsDecryptError: all RemoteErrors


@pytest.mark.parametrize("private", [False, True])
def test_mutated_commits_raise_only_typed_errors(
    three: tuple[g.GroupState, g.GroupState, g.GroupState], private: bool
) -> None:
    a, b, c = three
    res = g.commit(a, RNG, [Proposal(Remove(c.own_leaf))], path=True, private=private)
    data = res.message.to_bytes()
    for mutated in _mutations(data, seed=int(private), count=300):
        if mutated != data:
            _feed(b, mutated)
    staged = g.process_commit(b, res.message)  # the genuine Commit still works
    assert g.merge(staged).epoch_authenticator == g.merge(res.staged).epoch_authenticator


def test_mutated_application_messages_raise_only_typed_errors(
    three: tuple[g.GroupState, g.GroupState, g.GroupState],
) -> None:
    a, b, _ = three
    message, _ = g.encrypt_application(a, b"hello", b"ad", RNG)
    data = message.to_bytes()
    for mutated in _mutations(data, seed=7, count=300):
        if mutated != data:
            _feed(b, mutated)
    received, _ = g.decrypt(b, message)
    assert received.data == b"hello"


def test_mutated_welcomes_raise_only_typed_errors() -> None:
    a, b = _device(b"a"), _device(b"b")
    state = g.create_group(
        1, b"welcome fuzz", a.key_package.leaf_node, a.encryption_priv, a.signature_priv, RNG
    )
    res = g.commit(state, RNG, [Proposal(Add(b.key_package))])
    assert res.welcome is not None
    data = res.welcome.to_bytes()
    for mutated in _mutations(data, seed=11, count=150):
        if mutated == data:
            continue
        try:
            welcome = MLSMessage.from_bytes(mutated).body
            if isinstance(welcome, Welcome):
                g.join_welcome(welcome, b)
        except RemoteError:
            pass
    assert isinstance(res.welcome.body, Welcome)
    joined = g.join_welcome(res.welcome.body, b)
    assert joined.epoch_authenticator == g.merge(res.staged).epoch_authenticator
