"""Reinitialization (RFC 9420 §11.2) and subgroup branching (§11.3), end to end.

The happy paths (a ReInit that moves a group from cipher suite 1 to 3, a branch of two of
four members) and one test per requirement id of the joiner's checks (§12.4.3.1); the bad
Welcomes are made with ``found_group`` (the creation step without the creator's checks), as
a malicious or buggy member could make them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from veil.core.errors import LocalError
from veil.core.mls import group as g
from veil.core.mls import group_join
from veil.core.mls.errors import ValidationError
from veil.core.mls.group_commit import commit_items
from veil.core.mls.group_epoch import ResumptionPsk
from veil.core.mls.group_resume import found_group
from veil.core.mls.group_state import GroupState
from veil.core.mls.proposals_validate import ProposalItem
from veil.core.mls.structs.common import Credential, Extension, ExtensionType, RequiredCapabilities
from veil.core.mls.structs.framing import MLSMessage, Sender
from veil.core.mls.structs.group import Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import (
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ReInit,
    ResumptionPSKUsage,
)
from veil.core.mls.suite import suite
from veil.core.mls.welcome import JoinedEpoch, decrypt_group_secrets, find_entry, open_welcome
from veil.core.rng import Rng

from .test_group import LIFETIME, NOW, grow

NAMES = (b"alice", b"m1", b"m2")  # the identities of grow(rng, 3)
NEW_SUITE = 3
EXTENSIONS = (
    Extension(
        ExtensionType.REQUIRED_CAPABILITIES, RequiredCapabilities(credential_types=(1,)).to_bytes()
    ),
)
REINIT = ReInit(b"group-2", 1, NEW_SUITE, EXTENSIONS)


def bundle(name: bytes, cipher_suite: int, rng: Rng) -> g.KeyPackageBundle:
    sig, _ = suite(cipher_suite).generate_signature_key(rng)
    return g.create_key_package(cipher_suite, Credential.basic(name), sig, LIFETIME, rng)


def closed_group(rng: Rng, reinit: ReInit = REINIT) -> list[GroupState]:
    """Three members after a Commit (by alice) that holds ``reinit``."""
    states = grow(rng, 3)
    result = g.commit(states[0], rng, [Proposal(reinit)])
    closed = [g.merge(result.staged)]
    closed += [g.merge(g.process_commit(s, result.message)) for s in states[1:]]
    assert all(s.reinit == reinit for s in closed)
    return closed


def welcome_body(message: MLSMessage | None) -> Welcome:
    assert message is not None and isinstance(message.body, Welcome)
    return message.body


def reinit_psk(old: GroupState, rng: Rng, epoch: int | None = None) -> ResumptionPsk:
    epoch = old.epoch if epoch is None else epoch
    value = old.resumption_psk(epoch)
    assert value is not None
    psk_id = PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, old.group_id, epoch, rng(32))
    return ResumptionPsk(psk_id, value)


def assert_same_epoch(states: list[GroupState]) -> None:
    for other in states[1:]:
        assert other.context == states[0].context
        assert other.epoch_authenticator == states[0].epoch_authenticator
        assert other.export_secret(b"x", b"", 16) == states[0].export_secret(b"x", b"", 16)


# --- ReInit (§11.2) ----------------------------------------------------------------------------


def test_reinit_to_another_cipher_suite(rng: Rng) -> None:
    closed = closed_group(rng)
    bundles = [bundle(name, NEW_SUITE, rng) for name in NAMES]
    # m1 (not the one who committed the ReInit) creates the new group
    created = g.reinit_group(
        closed[1], bundles[1], [bundles[0].key_package, bundles[2].key_package], rng
    )
    welcome = welcome_body(created.welcome)
    assert welcome.cipher_suite == NEW_SUITE
    joined = [g.join_reinit(welcome, bundles[i], closed[i], now=NOW) for i in (0, 2)]
    states = [created.state, *joined]
    assert_same_epoch(states)
    ctx = created.state.context
    assert (ctx.group_id, ctx.epoch, ctx.cipher_suite, ctx.extensions) == (
        b"group-2",
        1,
        NEW_SUITE,
        EXTENSIONS,
    )
    assert created.state.suite.id == NEW_SUITE and created.state.tree.member_count() == 3
    # the Welcome names the reinit PSK: the old group and the epoch after the ReInit Commit
    s = suite(NEW_SUITE)
    entry = find_entry(s, welcome, bundles[0].key_package)
    secrets = decrypt_group_secrets(s, bundles[0].init_priv, welcome, entry)
    (psk_id,) = secrets.psks
    assert (psk_id.usage, psk_id.psk_group_id, psk_id.psk_epoch) == (
        ResumptionPSKUsage.REINIT,
        closed[0].group_id,
        closed[0].epoch,
    )
    assert len(psk_id.psk_nonce) == s.nh
    # the new group works
    message, _ = g.encrypt_application(created.state, b"hello", b"", rng)
    received, _ = g.decrypt(joined[0], message)
    assert received.data == b"hello"


def test_reinit_welcome_refused_by_plain_join(rng: Rng) -> None:
    closed = closed_group(rng)
    bundles = [bundle(name, NEW_SUITE, rng) for name in NAMES]
    created = g.reinit_group(closed[0], bundles[0], [b.key_package for b in bundles[1:]], rng)
    value = closed[1].resumption_psk(closed[1].epoch)
    assert value is not None
    kept = {(closed[1].group_id, closed[1].epoch): value}
    with pytest.raises(ValidationError) as info:
        g.join_welcome(welcome_body(created.welcome), bundles[1], resumption_psks=kept)
    assert info.value.requirement == "RFC9420-12.4.3.1-resumption-checks"


def test_reinit_creator_refuses_misuse(rng: Rng) -> None:
    open_group = grow(rng, 2)
    own = bundle(b"alice", NEW_SUITE, rng)
    with pytest.raises(LocalError, match="ReInit"):
        g.reinit_group(open_group[0], own, [bundle(b"m1", NEW_SUITE, rng).key_package], rng)
    closed = closed_group(rng)
    with pytest.raises(LocalError, match="members"):  # m2 left out
        g.reinit_group(closed[0], own, [bundle(b"m1", NEW_SUITE, rng).key_package], rng)
    with pytest.raises(LocalError, match="cipher suite"):
        others = [bundle(n, NEW_SUITE, rng).key_package for n in NAMES[1:]]
        g.reinit_group(closed[0], bundle(b"alice", 1, rng), others, rng)


def test_reinit_members_rule_is_a_parameter(rng: Rng) -> None:
    closed = closed_group(rng)
    bundles = [bundle(name, NEW_SUITE, rng) for name in NAMES[:2]]
    anyone = lambda _old, _new: True  # noqa: E731
    created = g.reinit_group(
        closed[0], bundles[0], [bundles[1].key_package], rng, members_match=anyone
    )
    welcome = welcome_body(created.welcome)
    with pytest.raises(ValidationError) as info:
        g.join_reinit(welcome, bundles[1], closed[1])
    assert info.value.requirement == "RFC9420-12.4.3.1-reinit-members"
    joined = g.join_reinit(welcome, bundles[1], closed[1], members_match=anyone)
    assert_same_epoch([created.state, joined])


def _bad_reinit(
    rng: Rng,
    closed: list[GroupState],
    *,
    cipher_suite: int = NEW_SUITE,
    group_id: bytes = REINIT.group_id,
    extensions: tuple[Extension, ...] = EXTENSIONS,
    names: tuple[bytes, ...] = NAMES,
    resumed: ResumptionPsk | None = None,
) -> tuple[Welcome, g.KeyPackageBundle]:
    """alice founds a group for m1 (and the others in ``names``) with these parameters."""
    bundles = [bundle(name, cipher_suite, rng) for name in names]
    created = found_group(
        cipher_suite,
        group_id,
        bundles[0],
        [b.key_package for b in bundles[1:]],
        resumed or reinit_psk(closed[0], rng),
        rng,
        extensions=extensions,
    )
    return welcome_body(created.welcome), bundles[1]


@pytest.mark.parametrize(
    ("requirement", "change"),
    [
        ("RFC9420-12.4.3.1-reinit-group-id", {"group_id": b"group-3"}),
        ("RFC9420-12.4.3.1-reinit-cipher-suite", {"cipher_suite": 1}),
        ("RFC9420-12.4.3.1-reinit-extensions", {"extensions": ()}),
        ("RFC9420-12.4.3.1-reinit-members", {"names": NAMES[:2]}),
        ("RFC9420-12.4.3.1-reinit-members", {"names": (*NAMES, b"mallory")}),
    ],
)
def test_RFC9420_12_4_3_1_reinit_parameters(
    rng: Rng, requirement: str, change: dict[str, object]
) -> None:
    closed = closed_group(rng)
    welcome, m1 = _bad_reinit(rng, closed, **change)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        g.join_reinit(welcome, m1, closed[1])
    assert info.value.requirement == requirement
    good, m1 = _bad_reinit(rng, closed)
    assert g.join_reinit(good, m1, closed[1]).epoch == 1


def test_RFC9420_12_4_3_1_reinit_version(rng: Rng) -> None:
    """A ReInit to a (future) version 2: a Welcome for a version-1 group does not match."""
    future = replace(REINIT, version=2)
    closed = closed_group(rng, future)
    with pytest.raises(LocalError, match="version"):
        g.reinit_group(closed[0], bundle(b"alice", NEW_SUITE, rng), [], rng)
    welcome, m1 = _bad_reinit(rng, closed)
    with pytest.raises(ValidationError) as info:
        g.join_reinit(welcome, m1, closed[1])
    assert info.value.requirement == "RFC9420-12.4.3.1-reinit-version"


def test_RFC9420_12_4_3_1_reinit_psk(rng: Rng) -> None:
    closed = closed_group(rng)
    earlier = reinit_psk(closed[0], rng, closed[0].epoch - 1)  # not the ReInit Commit's epoch
    welcome, m1 = _bad_reinit(rng, closed, resumed=earlier)
    with pytest.raises(ValidationError) as info:
        g.join_reinit(welcome, m1, closed[1])
    assert info.value.requirement == "RFC9420-12.4.3.1-reinit-psk"
    value = closed[0].resumption_psk(closed[0].epoch)
    assert value is not None
    branch = PreSharedKeyID.resumption(
        ResumptionPSKUsage.BRANCH, closed[0].group_id, closed[0].epoch, rng(32)
    )
    welcome, m1 = _bad_reinit(rng, closed, resumed=ResumptionPsk(branch, value))
    with pytest.raises(ValidationError) as info:
        g.join_reinit(welcome, m1, closed[1])
    assert info.value.requirement == "RFC9420-12.4.3.1-reinit-psk"


def test_RFC9420_12_4_3_1_reinit_commit(rng: Rng) -> None:
    """A reinit Welcome naming a group whose last Commit held no ReInit is refused."""
    states = grow(rng, 3)
    welcome, m1 = _bad_reinit(rng, states, resumed=reinit_psk(states[0], rng))
    with pytest.raises(ValidationError) as info:
        g.join_reinit(welcome, m1, states[1])
    assert info.value.requirement == "RFC9420-12.4.3.1-reinit-commit"


def test_RFC9420_12_1_4_psk_usage_reinit_only_when_founding(rng: Rng) -> None:
    closed = closed_group(rng)
    states = grow(rng, 2)
    psk = reinit_psk(states[0], rng)
    with pytest.raises(ValidationError) as info:
        g.commit(states[0], rng, [Proposal(PreSharedKey(psk.psk_id))])
    assert info.value.requirement == "RFC9420-12.1.4-psk-usage"
    item = ProposalItem(Proposal(PreSharedKey(psk.psk_id)), Sender.member(0))
    with pytest.raises(LocalError, match="new group"):
        commit_items(states[0], rng, [item], resumed=psk)
    assert closed[0].reinit is not None


# --- branching (§11.3) -------------------------------------------------------------------------


def four(rng: Rng) -> list[GroupState]:
    return grow(rng, 4)  # alice, m1, m2, m3


def test_branch_two_of_four(rng: Rng) -> None:
    states = four(rng)
    m2, alice = bundle(b"m2", 1, rng), bundle(b"alice", 1, rng)
    created = g.branch_group(states[2], m2, [alice.key_package], b"sub", rng)
    welcome = welcome_body(created.welcome)
    joined = g.join_branch(welcome, alice, states[0], now=NOW)
    assert_same_epoch([created.state, joined])
    assert joined.context.group_id == b"sub" and joined.epoch == 1
    s = suite(1)
    secrets = decrypt_group_secrets(
        s, alice.init_priv, welcome, find_entry(s, welcome, alice.key_package)
    )
    (psk_id,) = secrets.psks
    assert psk_id.usage == ResumptionPSKUsage.BRANCH and psk_id.psk_group_id == states[0].group_id
    assert psk_id.psk_epoch == states[0].epoch and len(psk_id.psk_nonce) == s.nh
    with pytest.raises(ValidationError) as info:  # a plain join cannot run the branch checks
        g.join_welcome(welcome, alice)
    assert info.value.requirement == "RFC9420-12.4.3.1-psk-known"


def test_branch_creator_refuses_a_stranger(rng: Rng) -> None:
    states = four(rng)
    stranger = bundle(b"mallory", 1, rng)
    with pytest.raises(LocalError, match="not a member"):
        g.branch_group(states[0], bundle(b"alice", 1, rng), [stranger.key_package], b"sub", rng)
    anyone = lambda _new, _old: True  # noqa: E731
    created = g.branch_group(
        states[0],
        bundle(b"alice", 1, rng),
        [stranger.key_package],
        b"sub",
        rng,
        leaf_matches=anyone,
    )
    assert created.state.tree.member_count() == 2


def _bad_branch(
    rng: Rng,
    old: GroupState,
    names: tuple[bytes, ...],
    cipher_suite: int = 1,
    usage: ResumptionPSKUsage = ResumptionPSKUsage.BRANCH,
) -> tuple[Welcome, g.KeyPackageBundle]:
    value = old.resumption_psk(old.epoch)
    assert value is not None
    psk_id = PreSharedKeyID.resumption(usage, old.group_id, old.epoch, rng(32))
    bundles = [bundle(name, cipher_suite, rng) for name in names]
    kps: list[KeyPackage] = [b.key_package for b in bundles[1:]]
    created = found_group(cipher_suite, b"sub", bundles[0], kps, ResumptionPsk(psk_id, value), rng)
    return welcome_body(created.welcome), bundles[1]


def test_RFC9420_12_4_3_1_branch_members(rng: Rng) -> None:
    states = four(rng)
    welcome, alice = _bad_branch(rng, states[2], (b"m2", b"alice", b"mallory"))
    with pytest.raises(ValidationError) as info:
        g.join_branch(welcome, alice, states[0])
    assert info.value.requirement == "RFC9420-12.4.3.1-branch-members"
    anyone = lambda _new, _old: True  # noqa: E731
    assert g.join_branch(welcome, alice, states[0], leaf_matches=anyone).epoch == 1


def test_RFC9420_12_4_3_1_branch_cipher_suite(rng: Rng) -> None:
    states = four(rng)
    welcome, alice = _bad_branch(rng, states[2], (b"m2", b"alice"), cipher_suite=NEW_SUITE)
    with pytest.raises(ValidationError) as info:
        g.join_branch(welcome, alice, states[0])
    assert info.value.requirement == "RFC9420-12.4.3.1-branch-cipher-suite"


def test_RFC9420_12_4_3_1_branch_version(rng: Rng) -> None:
    states = four(rng)
    welcome, alice = _bad_branch(rng, states[2], (b"m2", b"alice"))
    as_if_v2 = replace(states[0], context=replace(states[0].context, version=2))
    with pytest.raises(ValidationError) as info:
        g.join_branch(welcome, alice, as_if_v2)
    assert info.value.requirement == "RFC9420-12.4.3.1-branch-version"
    assert g.join_branch(welcome, alice, states[0]).epoch == 1


def test_RFC9420_12_4_3_1_branch_psk(rng: Rng) -> None:
    states = four(rng)
    welcome, alice = _bad_branch(
        rng, states[2], (b"m2", b"alice"), usage=ResumptionPSKUsage.APPLICATION
    )
    with pytest.raises(ValidationError) as info:
        g.join_branch(welcome, alice, states[0])
    assert info.value.requirement == "RFC9420-12.4.3.1-branch-psk"
    # the joiner's old group is another one: the branch PSK is unknown
    elsewhere = replace(states[0], context=replace(states[0].context, group_id=b"elsewhere"))
    welcome, alice = _bad_branch(rng, states[2], (b"m2", b"alice"))
    with pytest.raises(ValidationError) as info:
        g.join_branch(welcome, alice, elsewhere)
    assert info.value.requirement == "RFC9420-12.4.3.1-psk-known"


# --- one join path (§12.4.3.1) -----------------------------------------------------------------


def test_every_join_goes_through_open_welcome(rng: Rng, monkeypatch: pytest.MonkeyPatch) -> None:
    """join_welcome, join_reinit and join_branch run the Welcome's checks in one place."""
    calls: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> JoinedEpoch:
        calls.append(1)
        return open_welcome(*args, **kwargs)

    monkeypatch.setattr(group_join, "open_welcome", spy)
    closed = closed_group(rng)  # two plain joins
    assert len(calls) == 2
    bundles = [bundle(name, NEW_SUITE, rng) for name in NAMES]
    created = g.reinit_group(closed[0], bundles[0], [b.key_package for b in bundles[1:]], rng)
    g.join_reinit(welcome_body(created.welcome), bundles[1], closed[1])
    assert len(calls) == 3
    states = four(rng)
    assert len(calls) == 6
    m2, alice = bundle(b"m2", 1, rng), bundle(b"alice", 1, rng)
    branched = g.branch_group(states[2], m2, [alice.key_package], b"sub", rng)
    g.join_branch(welcome_body(branched.welcome), alice, states[0])
    assert len(calls) == 7
