"""The secret tree (RFC 9420 §9): vectors, out-of-order delivery, deletion and bounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import LocalError
from veil.core.mls.errors import ValidationError
from veil.core.mls.secret_tree import (
    HashRatchet,
    RatchetType,
    SecretTree,
    sender_data_key_nonce,
)
from veil.core.mls.suite import suite
from veil.core.mls.vectors import secret_tree as runner

S1 = suite(1)
ROOT = bytes(range(32))
APP = RatchetType.APPLICATION
HS = RatchetType.HANDSHAKE


@pytest.fixture(scope="module")
def cases(vectors_dir: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((vectors_dir / "mls" / "secret-tree.json").read_text())
    return data


def test_vectors_all_suites(cases: list[dict[str, Any]]) -> None:
    assert len(cases) == 21
    for case in cases:
        runner.check(case)


def test_vector_with_a_wrong_key_fails(cases: list[dict[str, Any]]) -> None:
    case = json.loads(json.dumps(cases[1]))
    entry = case["leaves"][3][1]
    entry["application_nonce"] = "00" * 12
    with pytest.raises(AssertionError, match="leaf 3 application 15"):
        runner.check(case)


def test_sender_data_uses_only_the_first_nh_bytes() -> None:
    secret = bytes(32)
    long_ct = bytes(range(100))
    assert sender_data_key_nonce(S1, secret, long_ct) == sender_data_key_nonce(
        S1, secret, long_ct[:32]
    )
    key, nonce = sender_data_key_nonce(S1, secret, b"short")
    assert (len(key), len(nonce)) == (16, 12)
    assert (key, nonce) != sender_data_key_nonce(S1, secret, b"shorT")


def _pair() -> tuple[SecretTree, SecretTree]:
    return SecretTree(S1, ROOT, 4), SecretTree(S1, ROOT, 4)


def test_sender_and_receiver_agree_out_of_order() -> None:
    sender, receiver = _pair()
    sent = [sender.next_key(2, APP) for _ in range(6)]
    assert [k.generation for k in sent] == list(range(6))
    for gen in (3, 0, 5, 1, 4, 2):
        got = receiver.key_for(2, APP, gen)
        assert (got.key, got.nonce) == (sent[gen].key, sent[gen].nonce)


def test_handshake_and_application_ratchets_differ() -> None:
    tree = SecretTree(S1, ROOT, 4)
    app1 = tree.key_for(1, APP, 0).key
    assert tree.key_for(1, HS, 0).key != app1
    assert tree.key_for(0, APP, 0).key != app1


def test_RFC9420_9_2_a_consumed_key_cannot_be_asked_again() -> None:
    tree = SecretTree(S1, ROOT, 2)
    tree.key_for(0, APP, 3)
    tree.key_for(0, APP, 1)
    for gen in (3, 1):
        with pytest.raises(ValidationError) as info:
            tree.key_for(0, APP, gen)
        assert info.value.requirement == "RFC9420-9.2-key-consumed"
    assert tree.key_for(0, APP, 2).generation == 2


def test_RFC9420_9_2_secrets_are_deleted_as_consumed() -> None:
    tree = SecretTree(S1, ROOT, 4)
    assert len(tree._nodes) == 1
    tree.key_for(0, APP, 0)
    # root and node 1 consumed; their right children (5, 2) kept; leaf 0's secret deleted.
    assert sorted(tree._nodes) == [2, 5]
    ratchet = tree.ratchet(0, APP)
    assert ratchet.generation == 1 and not ratchet.skipped
    tree.key_for(0, APP, 4)
    assert sorted(ratchet.skipped) == [1, 2, 3]
    assert ROOT not in tree._nodes.values()


def test_RFC9420_9_1_generation_too_far_ahead_is_refused() -> None:
    tree = SecretTree(S1, ROOT, 2, max_forward=10)
    tree.key_for(1, APP, 10)
    with pytest.raises(ValidationError) as info:
        tree.key_for(1, APP, 22)
    assert info.value.requirement == "RFC9420-9.1-generation-too-far"
    assert tree.ratchet(1, APP).generation == 11


def test_skipped_keys_are_bounded_oldest_first() -> None:
    tree = SecretTree(S1, ROOT, 2, max_skipped=3)
    tree.key_for(0, APP, 6)
    assert sorted(tree.ratchet(0, APP).skipped) == [3, 4, 5]
    with pytest.raises(ValidationError):
        tree.key_for(0, APP, 0)


def test_copy_isolates_state_so_failure_changes_nothing() -> None:
    tree = SecretTree(S1, ROOT, 4)
    before = tree.key_for(3, APP, 2)
    work = tree.copy()
    work.key_for(3, APP, 5)
    work.key_for(2, HS, 0)
    # the original did not move: generation 3 and leaf 2 are still available there
    assert tree.ratchet(3, APP).generation == 3
    assert tree.key_for(3, APP, 5).key == SecretTree(S1, ROOT, 4).key_for(3, APP, 5).key
    assert before.generation == 2


def test_leaf_index_out_of_range_is_a_validation_error() -> None:
    tree = SecretTree(S1, ROOT, 4)
    for leaf in (4, -1):
        with pytest.raises(ValidationError) as info:
            tree.key_for(leaf, APP, 0)
        assert info.value.requirement == "RFC9420-6.3.2-leaf-index"


def test_bad_construction_is_a_local_error() -> None:
    with pytest.raises(LocalError):
        SecretTree(S1, ROOT, 3)
    with pytest.raises(LocalError):
        SecretTree(S1, ROOT[:16], 4)
    with pytest.raises(LocalError):
        HashRatchet(S1, ROOT, generation=(1 << 32) - 1).next_key()


def test_repr_hides_secrets() -> None:
    tree = SecretTree(S1, ROOT, 2)
    kn = tree.key_for(0, APP, 0)
    ratchet = tree.ratchet(0, APP)
    for text in (repr(tree), repr(kn), repr(ratchet)):
        for secret in (ROOT, kn.key, kn.nonce, ratchet.secret):
            assert secret.hex() not in text and repr(secret) not in text


@settings(max_examples=40, deadline=None)
@given(
    order=st.permutations(list(range(12))),
    duplicates=st.lists(st.integers(min_value=0, max_value=11), max_size=4),
    leaf=st.integers(min_value=0, max_value=7),
)
def test_property_any_delivery_order(order: list[int], duplicates: list[int], leaf: int) -> None:
    sender = SecretTree(S1, ROOT, 8)
    receiver = SecretTree(S1, ROOT, 8)
    sent = [sender.next_key(leaf, APP) for _ in range(12)]
    seen: set[int] = set()
    for gen in order + duplicates:
        if gen in seen:
            with pytest.raises(ValidationError):
                receiver.key_for(leaf, APP, gen)
            continue
        got = receiver.key_for(leaf, APP, gen)
        assert (got.key, got.nonce) == (sent[gen].key, sent[gen].nonce)
        seen.add(gen)
    assert not receiver.ratchet(leaf, APP).skipped


def test_copies_share_ratchets_until_written_both_ways() -> None:
    """Copy on write: after a copy, a ratchet used by either side is copied first, so
    neither the original nor the copy sees the other's progress or consumed keys."""
    tree = SecretTree(S1, ROOT, 8)
    tree.key_for(5, APP, 4)  # generations 0-3 skipped and kept
    work = tree.copy()
    assert tree.key_for(5, APP, 1).generation == 1  # the original moves first
    assert work.key_for(5, APP, 1).generation == 1  # the copy still has generation 1
    assert sorted(work.ratchet(5, APP).skipped) == [0, 2, 3]
    assert sorted(tree.ratchet(5, APP).skipped) == [0, 2, 3]
    third = work.copy()
    work.key_for(5, APP, 9)
    assert third.ratchet(5, APP).generation == 5 and work.ratchet(5, APP).generation == 10
    with pytest.raises(ValidationError):
        work.key_for(5, APP, 1)  # consumed in the copy...
    assert third.key_for(5, APP, 2).generation == 2  # ...and still in its own copy
