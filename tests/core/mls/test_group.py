"""The MLS group API end to end, in memory (RFC 9420 §10-§12).

Members are created, added by Welcome (with and without the ratchet_tree extension), updated
and removed; PSKs (external, resumption), GroupContextExtensions with required_capabilities,
external commits (join and resync), external and new-member proposals and private handshake
messages are exercised; then one negative test per validation rule, named after its
requirement id, each checking that the failed step left the member's state unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from veil.core.errors import LocalError, RemoteError
from veil.core.mls import group as g
from veil.core.mls.errors import ValidationError
from veil.core.mls.group_frame import frame
from veil.core.mls.group_state import GroupState
from veil.core.mls.proposals_validate import ProposalItem, apply_proposals
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.common import (
    Capabilities,
    Credential,
    Extension,
    ExtensionType,
    ExternalSender,
    LeafNodeSource,
    Lifetime,
    RequiredCapabilities,
    encode_external_senders,
)
from veil.core.mls.structs.framing import MLSMessage, PrivateMessage, PublicMessage, Sender
from veil.core.mls.structs.group import Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Update,
)
from veil.core.mls.suite import suite
from veil.core.mls.tree_hash import tree_hash
from veil.core.rng import Rng

SUITE = 1
S = suite(SUITE)
NOW = 1_700_000_000
LIFETIME = Lifetime(NOW - 3600, NOW + 86400)
EXPORT_LABEL = b"SFrame 1.0 Secret"
GREASE_EXT = 0xFF00


@dataclass
class Device:
    """A would-be member: its signature key and a KeyPackage bundle."""

    name: bytes
    signature_priv: bytes
    bundle: g.KeyPackageBundle


def device(name: str, rng: Rng, capabilities: Capabilities | None = None) -> Device:
    sig, _ = S.generate_signature_key(rng)
    bundle = g.create_key_package(
        SUITE, Credential.basic(name.encode()), sig, LIFETIME, rng, capabilities
    )
    return Device(name.encode(), sig, bundle)


def founder(
    rng: Rng, extensions: tuple[Extension, ...] = (), caps: Capabilities | None = None
) -> GroupState:
    d = device("alice", rng, caps)
    leaf = d.bundle.key_package.leaf_node
    return g.create_group(
        SUITE, b"group-1", leaf, d.bundle.encryption_priv, d.signature_priv, rng, extensions
    )


def welcome_of(result: g.CommitResult) -> Welcome:
    assert result.welcome is not None
    body = result.welcome.body
    assert isinstance(body, Welcome)
    return body


def grow(rng: Rng, n: int, caps: Capabilities | None = None) -> list[GroupState]:
    """A group of ``n`` members: alice adds the others in one Commit."""
    alice = founder(rng, caps=caps)
    devices = [device(f"m{i}", rng, caps) for i in range(1, n)]
    result = g.commit(alice, rng, [Proposal(Add(d.bundle.key_package)) for d in devices])
    states = [g.merge(result.staged)]
    states += [g.join_welcome(welcome_of(result), d.bundle, now=NOW) for d in devices]
    assert_agree(states)
    return states


def assert_agree(states: list[GroupState]) -> None:
    first = states[0]
    for other in states[1:]:
        assert other.epoch == first.epoch
        assert other.epoch_authenticator == first.epoch_authenticator
        assert other.context == first.context
        assert tree_hash(other.tree, S) == first.context.tree_hash
        assert other.export_secret(EXPORT_LABEL, b"ctx", 32) == first.export_secret(
            EXPORT_LABEL, b"ctx", 32
        )


def deliver(
    result: g.CommitResult, committer: int, states: list[GroupState], **kw: Any
) -> list[GroupState]:
    """The committer merges; every other member processes and merges."""
    out = []
    for i, state in enumerate(states):
        if i == committer:
            out.append(g.merge(result.staged))
        else:
            out.append(g.merge(g.process_commit(state, result.message, **kw)))
    return out


def snapshot(state: GroupState) -> tuple[object, ...]:
    return (
        state.context,
        state.tree,
        dict(state.keys.private_keys),
        state.proposals,
        state.interim_transcript_hash,
        state.epoch_secrets,
        repr(state.secret_tree),
    )


def expect_rejected(
    requirement: str, state: GroupState, action: Callable[[], object]
) -> ValidationError:
    before = snapshot(state)
    with pytest.raises(ValidationError) as info:
        action()
    assert info.value.requirement == requirement
    assert snapshot(state) == before
    return info.value


def send(states: list[GroupState], sender: int, rng: Rng, data: bytes) -> list[GroupState]:
    """``sender`` encrypts; every other member decrypts the same bytes."""
    message, new_sender = g.encrypt_application(states[sender], data, b"ad", rng)
    out = []
    for i, state in enumerate(states):
        if i == sender:
            out.append(new_sender)
            continue
        got, new_state = g.decrypt(state, message)
        assert (got.sender, got.data, got.authenticated_data) == (
            states[sender].own_leaf,
            data,
            b"ad",
        )
        out.append(new_state)
    return out


# --- life of a group --------------------------------------------------------------------------


def test_create_group_epoch_zero(rng: Rng) -> None:
    alice = founder(rng)
    assert alice.epoch == 0 and alice.own_leaf == 0
    assert [i for i, _ in alice.members()] == [0]
    assert alice.context.confirmed_transcript_hash == b""
    assert "secret" not in repr(alice).lower()
    assert alice.signature_priv.hex() not in repr(alice)


def test_add_via_welcome_with_tree_extension(rng: Rng) -> None:
    states = grow(rng, 4)
    assert [s.own_leaf for s in states] == [0, 1, 2, 3]
    states = send(states, 2, rng, b"hello")
    states = send(states, 0, rng, b"again")


def test_add_via_welcome_without_tree_extension(rng: Rng) -> None:
    alice = founder(rng)
    bob = device("bob", rng)
    result = g.commit(
        alice, rng, [Proposal(Add(bob.bundle.key_package))], ratchet_tree_in_welcome=False
    )
    alice2 = g.merge(result.staged)
    with pytest.raises(ValidationError) as info:
        g.join_welcome(welcome_of(result), bob.bundle)
    assert info.value.requirement == "RFC9420-12.4.3.1-ratchet-tree"
    bob_state = g.join_welcome(welcome_of(result), bob.bundle, ratchet_tree=alice2.tree)
    assert_agree([alice2, bob_state])


def test_welcome_with_wrong_tree_is_refused(rng: Rng) -> None:
    alice = founder(rng)
    bob = device("bob", rng)
    result = g.commit(
        alice, rng, [Proposal(Add(bob.bundle.key_package))], ratchet_tree_in_welcome=False
    )
    with pytest.raises(ValidationError):
        g.join_welcome(welcome_of(result), bob.bundle, ratchet_tree=alice.tree)


def test_application_messages_and_tampering(rng: Rng) -> None:
    states = grow(rng, 3)
    message, _ = g.encrypt_application(states[0], b"secret text", b"", rng)
    body = message.body
    assert isinstance(body, PrivateMessage)
    bad = MLSMessage(
        replace(body, ciphertext=body.ciphertext[:-1] + bytes([body.ciphertext[-1] ^ 1]))
    )
    before = snapshot(states[1])
    with pytest.raises(RemoteError):
        g.decrypt(states[1], bad)
    assert snapshot(states[1]) == before
    got, _ = g.decrypt(states[1], message)
    assert got.data == b"secret text"
    assert b"secret text" not in repr(got).encode()


def test_replayed_application_message_is_refused(rng: Rng) -> None:
    states = grow(rng, 2)
    message, _ = g.encrypt_application(states[0], b"once", b"", rng)
    _, bob = g.decrypt(states[1], message)
    with pytest.raises(ValidationError) as info:
        g.decrypt(bob, message)
    assert info.value.requirement == "RFC9420-9.2-key-consumed"


def test_update_proposal_committed_by_another(rng: Rng) -> None:
    states = grow(rng, 3)
    old_key = states[1].own_leaf_node.encryption_key
    message, bob = g.propose_update(states[1], rng)
    _, alice = g.process_proposal(states[0], message)
    _, carol = g.process_proposal(states[2], message)
    result = g.commit(carol, rng)
    assert result.message.body.content.content.path is not None  # type: ignore[union-attr]
    states = deliver(result, 2, [alice, bob, carol])
    assert_agree(states)
    assert states[1].own_leaf_node.encryption_key != old_key
    send(states, 1, rng, b"after update")


def test_empty_commit_refreshes_path(rng: Rng) -> None:
    states = grow(rng, 4)
    result = g.commit(states[3], rng)
    states = deliver(result, 3, states)
    assert_agree(states)
    send(states, 3, rng, b"x")


def test_remove_member_learns_it_and_cannot_decrypt(rng: Rng) -> None:
    states = grow(rng, 4)
    result = g.commit(states[0], rng, [Proposal(Remove(2))])
    staged = g.process_commit(states[2], result.message)
    assert staged.removed and staged.removed_leaves == (2,)
    with pytest.raises(LocalError):
        g.merge(staged)
    rest = deliver(result, 0, [states[0], states[1], states[3]])
    assert_agree(rest)
    assert [i for i, _ in rest[0].members()] == [0, 1, 3]
    message, _ = g.encrypt_application(rest[1], b"without carol", b"", rng)
    with pytest.raises(ValidationError) as info:
        g.decrypt(states[2], message)
    assert info.value.requirement == "RFC9420-6-epoch"
    send(rest, 2, rng, b"still works")


def test_remove_by_proposal_then_add_reuses_leaf(rng: Rng) -> None:
    states = grow(rng, 3)
    message, bob = g.propose(states[1], Proposal(Remove(2)), rng)
    _, alice = g.process_proposal(states[0], message)
    dave = device("dave", rng)
    result = g.commit(alice, rng, [Proposal(Add(dave.bundle.key_package))])
    states = deliver(result, 0, [alice, bob])
    dave_state = g.join_welcome(welcome_of(result), dave.bundle)
    assert dave_state.own_leaf == 2
    assert_agree([*states, dave_state])


def test_external_psk(rng: Rng) -> None:
    states = grow(rng, 3)
    psk_id = PreSharedKeyID.external(b"psk-1", rng(S.nh))
    psks = {b"psk-1": b"shared secret"}
    result = g.commit(states[0], rng, [Proposal(PreSharedKey(psk_id))], psks=psks)
    expect_rejected(
        "RFC9420-12.4.2-psk-available",
        states[1],
        lambda: g.process_commit(states[1], result.message),
    )
    wrong = {b"psk-1": b"other secret"}
    expect_rejected(
        "RFC9420-12.4.2-confirmation-tag",
        states[1],
        lambda: g.process_commit(states[1], result.message, psks=wrong),
    )
    states = deliver(result, 0, states, psks=psks)
    assert_agree(states)


def test_external_psk_with_welcome(rng: Rng) -> None:
    alice = founder(rng)
    bob = device("bob", rng)
    psk_id = PreSharedKeyID.external(b"psk-w", rng(S.nh))
    psks = {b"psk-w": b"k"}
    proposals = [Proposal(Add(bob.bundle.key_package)), Proposal(PreSharedKey(psk_id))]
    result = g.commit(alice, rng, proposals, psks=psks)
    with pytest.raises(ValidationError):
        g.join_welcome(welcome_of(result), bob.bundle)
    assert_agree(
        [g.merge(result.staged), g.join_welcome(welcome_of(result), bob.bundle, psks=psks)]
    )


def test_resumption_psk(rng: Rng) -> None:
    states = grow(rng, 3)
    states = deliver(g.commit(states[1], rng), 1, states)
    psk_id = PreSharedKeyID.resumption(
        ResumptionPSKUsage.APPLICATION, states[0].group_id, states[0].epoch - 1, rng(S.nh)
    )
    result = g.commit(states[2], rng, [Proposal(PreSharedKey(psk_id))])
    states = deliver(result, 2, states)
    assert_agree(states)
    old = PreSharedKeyID.resumption(
        ResumptionPSKUsage.APPLICATION, states[0].group_id, 99, rng(S.nh)
    )
    with pytest.raises(ValidationError) as info:
        g.commit(states[0], rng, [Proposal(PreSharedKey(old))])
    assert info.value.requirement == "RFC9420-12.4.2-psk-available"


def _required(ext_type: int) -> Extension:
    body = RequiredCapabilities(extension_types=(ext_type,))
    return Extension(ExtensionType.REQUIRED_CAPABILITIES, body.to_bytes())


def test_group_context_extensions_required_capabilities(rng: Rng) -> None:
    caps = Capabilities(cipher_suites=(SUITE,), extensions=(GREASE_EXT,), credentials=(1,))
    states = grow(rng, 3, caps)
    gce = Proposal(GroupContextExtensions((_required(GREASE_EXT), Extension(GREASE_EXT, b"v"))))
    result = g.commit(states[0], rng, [gce])
    states = deliver(result, 0, states)
    assert_agree(states)
    assert states[2].context.extensions == gce.body.extensions  # type: ignore[union-attr]
    plain = device("plain", rng)
    with pytest.raises(ValidationError) as info:
        g.commit(states[1], rng, [Proposal(Add(plain.bundle.key_package))])
    assert info.value.requirement == "RFC9420-7.3-required-capabilities"
    fine = device("fine", rng, caps)
    result = g.commit(states[1], rng, [Proposal(Add(fine.bundle.key_package))])
    assert_agree([*deliver(result, 1, states), g.join_welcome(welcome_of(result), fine.bundle)])


def test_RFC9420_12_1_7_required_capabilities(rng: Rng) -> None:
    states = grow(rng, 2)
    gce = Proposal(GroupContextExtensions((_required(GREASE_EXT),)))
    refused_both_ways("RFC9420-12.1.7-required-capabilities", states, gce, rng)


def test_external_commit_join(rng: Rng) -> None:
    states = grow(rng, 3)
    info = g.signed_group_info(states[1], rng)
    dave = device("dave", rng)
    message, dave_state = g.join_external(
        info, dave.bundle.key_package.leaf_node, dave.signature_priv, rng
    )
    states = [g.merge(g.process_commit(s, message)) for s in states] + [dave_state]
    assert_agree(states)
    assert dave_state.own_leaf == 3
    send(states, 3, rng, b"dave here")


def test_external_commit_resync(rng: Rng) -> None:
    states = grow(rng, 3)
    info = g.signed_group_info(states[0], rng, with_tree=False)
    bob_leaf = states[1].own_leaf_node
    message, new_bob = g.join_external(
        info, bob_leaf, states[1].signature_priv, rng, ratchet_tree=states[0].tree, resync_leaf=1
    )
    rest = [g.merge(g.process_commit(s, message)) for s in (states[0], states[2])]
    assert new_bob.own_leaf == 1
    assert_agree([*rest, new_bob])


def test_external_commit_with_psk(rng: Rng) -> None:
    states = grow(rng, 2)
    info = g.signed_group_info(states[0], rng)
    dave = device("dave", rng)
    psks = {b"ext": b"value"}
    message, dave_state = g.join_external(
        info, dave.bundle.key_package.leaf_node, dave.signature_priv, rng, psks=psks
    )
    assert_agree([g.merge(g.process_commit(states[0], message, psks=psks)), dave_state])


def test_RFC9420_12_4_3_2_external_pub(rng: Rng) -> None:
    states = grow(rng, 2)
    info = g.signed_group_info(states[0], rng, with_external_pub=False)
    dave = device("dave", rng)
    with pytest.raises(ValidationError) as err:
        g.join_external(info, dave.bundle.key_package.leaf_node, dave.signature_priv, rng)
    assert err.value.requirement == "RFC9420-12.4.3.2-external-pub"


def test_private_handshake_messages(rng: Rng) -> None:
    states = grow(rng, 3)
    message, carol = g.propose(states[2], Proposal(Remove(1)), rng, private=True)
    assert isinstance(message.body, PrivateMessage)
    _, alice = g.process_proposal(states[0], message)
    result = g.commit(alice, rng, private=True)
    assert isinstance(result.message.body, PrivateMessage)
    states = deliver(result, 0, [alice, carol])
    assert_agree(states)


def test_process_message_dispatches(rng: Rng) -> None:
    states = grow(rng, 2)
    message, alice = g.propose(states[0], Proposal(Remove(1)), rng)
    result, bob = g.process_message(states[1], message)
    assert isinstance(result, g.ProposalReceived) and len(bob.proposals) == 1
    with pytest.raises(LocalError):
        g.encrypt_application(alice, b"x", b"", rng)
    staged, same = g.process_message(bob, g.commit(alice, rng).message)
    assert isinstance(staged, g.StagedCommit) and staged.removed and same is bob


def with_external_sender(rng: Rng) -> tuple[list[GroupState], bytes]:
    """Alice and Bob in a group whose external_senders lists one sender; its private key."""
    ext_priv, ext_pub = S.generate_signature_key(rng)
    senders = encode_external_senders([ExternalSender(ext_pub, Credential.basic(b"server"))])
    alice = founder(rng, (Extension(ExtensionType.EXTERNAL_SENDERS, senders),))
    bob = device("bob", rng)
    result = g.commit(alice, rng, [Proposal(Add(bob.bundle.key_package))])
    return [g.merge(result.staged), g.join_welcome(welcome_of(result), bob.bundle)], ext_priv


def test_external_sender_proposal(rng: Rng) -> None:
    states, ext_priv = with_external_sender(rng)
    message = g.external_proposal(states[0].context, 0, ext_priv, Proposal(Remove(1)), rng)
    _, alice2 = g.process_proposal(states[0], message)
    _, bob2 = g.process_proposal(states[1], message)
    staged = g.process_commit(bob2, g.commit(alice2, rng).message)
    assert staged.removed
    bad = g.external_proposal(
        states[0].context, 0, ext_priv, Proposal(Update(states[1].own_leaf_node)), rng
    )
    expect_rejected(
        "RFC9420-12.1.8-external-proposal-type",
        states[0],
        lambda: g.process_proposal(states[0], bad),
    )
    other_priv, _ = S.generate_signature_key(rng)
    forged = g.external_proposal(states[0].context, 0, other_priv, Proposal(Remove(1)), rng)
    expect_rejected(
        "RFC9420-6.1-signature", states[0], lambda: g.process_proposal(states[0], forged)
    )


def test_new_member_proposal(rng: Rng) -> None:
    states = grow(rng, 2)
    dave = device("dave", rng)
    message = g.new_member_proposal(
        states[0].context, dave.bundle.key_package, dave.signature_priv, rng
    )
    _, alice = g.process_proposal(states[0], message)
    _, bob = g.process_proposal(states[1], message)
    result = g.commit(bob, rng)
    states = deliver(result, 1, [alice, bob])
    assert_agree([*states, g.join_welcome(welcome_of(result), dave.bundle)])


def test_key_package_validation(rng: Rng) -> None:
    d = device("kp", rng)
    kp = d.bundle.key_package
    g.validate_key_package(S, kp, NOW)
    for now, req in (
        (NOW + 10**7, "RFC9420-10.1-lifetime"),
        (NOW - 10**7, "RFC9420-10.1-lifetime"),
    ):
        with pytest.raises(ValidationError) as info:
            g.validate_key_package(S, kp, now)
        assert info.value.requirement == req
    cases = {
        "RFC9420-10.1-signature": replace(kp, signature=bytes(len(kp.signature))),
        "RFC9420-10.1-cipher-suite": replace(kp, cipher_suite=2),
        "RFC9420-10.1-version": replace(kp, version=2),
        "RFC9420-7.3-leaf-signature": resign(
            replace(kp, leaf_node=replace(kp.leaf_node, signature=b"x" * 64)), d, rng
        ),
    }
    for req, bad in cases.items():
        with pytest.raises(ValidationError) as info:
            g.validate_key_package(S, bad)
        assert info.value.requirement == req


def resign(kp: KeyPackage, d: Device, rng: Rng) -> KeyPackage:
    signature = S.sign_with_label(d.signature_priv, b"KeyPackageTBS", kp.tbs(), rng)
    return replace(kp, signature=signature)


def test_RFC9420_10_1_init_key_distinct(rng: Rng) -> None:
    d = device("kp", rng)
    kp = d.bundle.key_package
    same = resign(replace(kp, init_key=kp.leaf_node.encryption_key), d, rng)
    with pytest.raises(ValidationError) as info:
        g.validate_key_package(S, same)
    assert info.value.requirement == "RFC9420-10.1-init-key-distinct"


# --- negative tests: a forged Commit per rule (receiver side) --------------------------------


def forge(state: GroupState, body: Commit, rng: Rng) -> MLSMessage:
    """A correctly signed and MACed Commit carrying whatever ``body`` holds."""
    _, message, _ = frame(state, body, rng, False, b"", confirmation_tag=bytes(S.nh))
    return message


def by_value(*proposals: Proposal) -> tuple[ProposalOrRef, ...]:
    return tuple(ProposalOrRef(p) for p in proposals)


def refused_both_ways(
    requirement: str, states: list[GroupState], proposal: Proposal, rng: Rng
) -> None:
    """Member 0 refuses to commit ``proposal``; member 1 refuses it in a forged Commit."""
    with pytest.raises(ValidationError) as info:
        g.commit(states[0], rng, [proposal])
    assert info.value.requirement == requirement
    forged = forge(states[0], Commit(by_value(proposal)), rng)
    expect_rejected(requirement, states[1], lambda: g.process_commit(states[1], forged))


def _update_leaf(state: GroupState, rng: Rng) -> Proposal:
    _, st = g.propose_update(state, rng)
    return st.proposals[-1].proposal


RULES: list[tuple[str, Callable[[list[GroupState], Rng], Commit]]] = [
    (
        "RFC9420-12.2-no-update-by-committer",
        lambda s, rng: Commit(by_value(_update_leaf(s[0], rng))),
    ),
    ("RFC9420-12.2-no-remove-committer", lambda s, rng: Commit(by_value(Proposal(Remove(0))))),
    (
        "RFC9420-12.2-one-change-per-leaf",
        lambda s, rng: Commit(by_value(Proposal(Remove(2)), Proposal(Remove(2)))),
    ),
    ("RFC9420-12.1.3-remove-blank", lambda s, rng: Commit(by_value(Proposal(Remove(7))))),
    (
        "RFC9420-12.2-unique-psk-id",
        lambda s, rng: Commit(
            by_value(*[Proposal(PreSharedKey(PreSharedKeyID.external(b"i", bytes(S.nh))))] * 2)
        ),
    ),
    (
        "RFC9420-12.1.4-psk-nonce-length",
        lambda s, rng: Commit(
            by_value(Proposal(PreSharedKey(PreSharedKeyID.external(b"i", b"n"))))
        ),
    ),
    (
        "RFC9420-12.1.4-psk-usage",
        lambda s, rng: Commit(
            by_value(
                Proposal(
                    PreSharedKey(
                        PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"g", 0, bytes(S.nh))
                    )
                )
            )
        ),
    ),
    (
        "RFC9420-12.2-single-gce",
        lambda s, rng: Commit(by_value(*[Proposal(GroupContextExtensions(()))] * 2)),
    ),
    (
        "RFC9420-12.2-reinit-alone",
        lambda s, rng: Commit(
            by_value(Proposal(ReInit(b"new", 1, SUITE, ())), Proposal(Remove(2)))
        ),
    ),
    (
        "RFC9420-12.2-no-external-init",
        lambda s, rng: Commit(by_value(Proposal(ExternalInit(b"kem")))),
    ),
    (
        "RFC9420-12.2-add-existing-member",
        lambda s, rng: Commit(by_value(Proposal(Add(_existing_kp(s, rng))))),
    ),
    (
        "RFC9420-12.2-duplicate-add",
        lambda s, rng: Commit(by_value(*[Proposal(Add(device("x", rng).bundle.key_package))] * 2)),
    ),
    ("RFC9420-12.4.2-path-required", lambda s, rng: Commit(by_value(Proposal(Remove(2))))),
    ("RFC9420-12.4.2-path-required", lambda s, rng: Commit(())),
    ("RFC9420-12.4.2-unknown-proposal-ref", lambda s, rng: Commit((ProposalOrRef(b"\x01" * 32),))),
    (
        "RFC9420-12.4.2-confirmation-tag",
        lambda s, rng: Commit(by_value(Proposal(Add(device("y", rng).bundle.key_package)))),
    ),
]


def _existing_kp(states: list[GroupState], rng: Rng) -> KeyPackage:
    """A KeyPackage with the signature key of member 1 (the same client again)."""
    sig = states[1].signature_priv
    return g.create_key_package(SUITE, Credential.basic(b"m1"), sig, LIFETIME, rng).key_package


@pytest.mark.parametrize(("requirement", "build"), RULES, ids=[r for r, _ in RULES])
def test_forged_commit_is_rejected(
    requirement: str, build: Callable[[list[GroupState], Rng], Commit], rng: Rng
) -> None:
    states = grow(rng, 3)
    forged = forge(states[0], build(states, rng), rng)
    expect_rejected(requirement, states[1], lambda: g.process_commit(states[1], forged))
    # the untouched state still follows the group
    states = deliver(g.commit(states[0], rng), 0, states)
    assert_agree(states)


def test_committer_side_runs_the_same_rules(rng: Rng) -> None:
    states = grow(rng, 3)
    for requirement, build in RULES[:12]:
        body = build(states, rng)
        proposals = [e.proposal for e in body.proposals if e.proposal is not None]
        with pytest.raises(ValidationError) as info:
            g.commit(states[0], rng, proposals, include_cached=False)
        assert info.value.requirement == requirement


def test_RFC9420_6_2_membership_tag(rng: Rng) -> None:
    states = grow(rng, 2)
    message = g.commit(states[0], rng).message
    body = message.body
    assert isinstance(body, PublicMessage) and body.membership_tag is not None
    bad = MLSMessage(replace(body, membership_tag=bytes(len(body.membership_tag))))
    expect_rejected(
        "RFC9420-6.2-membership-tag", states[1], lambda: g.process_commit(states[1], bad)
    )


def test_RFC9420_6_1_signature(rng: Rng) -> None:
    """An external Commit carries no membership tag: only the signature protects it."""
    states = grow(rng, 2)
    info = g.signed_group_info(states[0], rng)
    dave = device("dave", rng)
    ext, _ = g.join_external(info, dave.bundle.key_package.leaf_node, dave.signature_priv, rng)
    body = ext.body
    assert isinstance(body, PublicMessage)
    bad_auth = replace(body.auth, signature=bytes(len(body.auth.signature)))
    tampered = MLSMessage(replace(body, auth=bad_auth))
    expect_rejected(
        "RFC9420-6.1-signature", states[1], lambda: g.process_commit(states[1], tampered)
    )


def test_RFC9420_6_epoch(rng: Rng) -> None:
    states = grow(rng, 2)
    old = g.commit(states[0], rng).message
    states = deliver(g.commit(states[0], rng), 0, states)
    expect_rejected("RFC9420-6-epoch", states[1], lambda: g.process_commit(states[1], old))


def test_RFC9420_12_2_external_one_external_init(rng: Rng) -> None:
    states = grow(rng, 2)
    items = [ProposalItem(Proposal(Remove(1)), Sender.member(0))]
    with pytest.raises(ValidationError) as info:
        apply_proposals(S, states[0].tree, b"group-1", (), items, None)
    assert info.value.requirement == "RFC9420-12.2-external-one-external-init"


def test_RFC9420_12_2_external_allowed_proposals(rng: Rng) -> None:
    states = grow(rng, 2)
    items = [
        ProposalItem(Proposal(ExternalInit(b"k")), Sender.member(0)),
        ProposalItem(Proposal(GroupContextExtensions(())), Sender.member(0)),
    ]
    with pytest.raises(ValidationError) as info:
        apply_proposals(S, states[0].tree, b"group-1", (), items, None)
    assert info.value.requirement == "RFC9420-12.2-external-allowed-proposals"


def test_RFC9420_7_3_update_new_encryption_key(rng: Rng) -> None:
    states = grow(rng, 3)
    leaf = states[1].own_leaf_node
    same = g.make_leaf_node(
        S,
        leaf.encryption_key,
        states[1].signature_priv,
        leaf.credential,
        LeafNodeSource.UPDATE,
        rng,
        leaf.capabilities,
        None,
        (),
        states[1].group_id,
        1,
    )
    message, _ = g.propose(states[1], Proposal(Update(same)), rng)
    expect_rejected(
        "RFC9420-7.3-update-new-encryption-key",
        states[0],
        lambda: g.process_proposal(states[0], message),
    )


def test_failed_commit_leaves_state_usable(rng: Rng) -> None:
    states = grow(rng, 3)
    result = g.commit(states[0], rng, [Proposal(Remove(2))])
    body = result.message.body
    assert isinstance(body, PublicMessage)
    content = body.content.content
    assert isinstance(content, Commit) and content.path is not None
    broken_path = replace(content.path, nodes=content.path.nodes[:-1])
    forged = forge(states[0], replace(content, path=broken_path), rng)
    before = snapshot(states[1])
    with pytest.raises(RemoteError):
        g.process_commit(states[1], forged)
    assert snapshot(states[1]) == before
    assert_agree(deliver(result, 0, states[:2]))


def test_own_commit_is_merged_not_processed(rng: Rng) -> None:
    states = grow(rng, 2)
    result = g.commit(states[0], rng)
    with pytest.raises(LocalError):
        g.process_commit(states[0], result.message)


def test_path_is_required_for_remove(rng: Rng) -> None:
    states = grow(rng, 3)
    with pytest.raises(LocalError):
        g.commit(states[0], rng, [Proposal(Remove(2))], path=False)
    dave = device("dave", rng)
    result = g.commit(states[0], rng, [Proposal(Add(dave.bundle.key_package))])
    assert result.message.body.content.content.path is None  # type: ignore[union-attr]
    forced = g.commit(states[0], rng, [Proposal(Add(dave.bundle.key_package))], path=True)
    assert forced.message.body.content.content.path is not None  # type: ignore[union-attr]
    joined = g.join_welcome(welcome_of(forced), dave.bundle)
    assert_agree([*deliver(forced, 0, states), joined])


def test_resumption_psks_are_bounded(rng: Rng) -> None:
    states = grow(rng, 2)
    for _ in range(7):
        states = deliver(g.commit(states[0], rng), 0, states)
    kept = [epoch for epoch, _ in states[1].resumption_psks]
    assert kept == list(range(states[1].epoch - 4, states[1].epoch + 1))
    assert states[1].resumption_psk(0) is None
    assert states[1].resumption_psk(states[1].epoch) == states[0].resumption_psk(states[0].epoch)


def test_reinit_commit_alone(rng: Rng) -> None:
    states = grow(rng, 2)
    reinit = Proposal(ReInit(b"group-2", 1, SUITE, ()))
    result = g.commit(states[0], rng, [reinit])
    staged = g.process_commit(states[1], result.message)
    assert staged.applied.reinit == reinit.body
    closed = [g.merge(result.staged), g.merge(staged)]
    assert_agree(closed)
    for state in closed:
        assert state.reinit == reinit.body
        with pytest.raises(LocalError):
            g.encrypt_application(state, b"x", b"", rng)
        with pytest.raises(LocalError):
            g.commit(state, rng)


def test_secrets_hidden_from_repr(rng: Rng) -> None:
    d = device("r", rng)
    text = repr(d.bundle)
    for secret in (d.bundle.init_priv, d.bundle.encryption_priv, d.bundle.signature_priv):
        assert secret.hex() not in text and repr(secret) not in text
    states = grow(rng, 2)
    result = g.commit(states[0], rng)
    assert "joiner" not in repr(result.staged)
    assert repr(states[0].epoch_secrets.init_secret) not in repr(states[0])


def test_private_commit_keeps_current_state_ratchet(rng: Rng) -> None:
    states = grow(rng, 2)
    result = g.commit(states[0], rng, private=True)
    again = g.commit(result.current, rng, private=True)
    body1, body2 = result.message.body, again.message.body
    assert isinstance(body1, PrivateMessage) and isinstance(body2, PrivateMessage)
    staged = g.process_commit(states[1], again.message)
    assert g.merge(staged).epoch_authenticator == g.merge(again.staged).epoch_authenticator


def test_resumption_psk_with_welcome(rng: Rng) -> None:
    states = grow(rng, 2)
    epoch = states[0].epoch
    psk_id = PreSharedKeyID.resumption(
        ResumptionPSKUsage.APPLICATION, states[0].group_id, epoch, rng(S.nh)
    )
    dave = device("dave", rng)
    proposals = [Proposal(PreSharedKey(psk_id)), Proposal(Add(dave.bundle.key_package))]
    result = g.commit(states[1], rng, proposals)
    with pytest.raises(ValidationError) as info:
        g.join_welcome(welcome_of(result), dave.bundle)
    assert info.value.requirement == "RFC9420-12.4.3.1-psk-known"
    secret = states[0].resumption_psk(epoch)
    assert secret is not None
    joined = g.join_welcome(
        welcome_of(result), dave.bundle, resumption_psks={(states[0].group_id, epoch): secret}
    )
    assert_agree([*deliver(result, 1, states), joined])


@pytest.mark.parametrize("suite_id", range(1, 8))
def test_every_suite_end_to_end(suite_id: int, rng: Rng) -> None:
    """Create, add two by Welcome, update, remove, private commit and messages in each suite."""
    s = suite(suite_id)

    def bundle(name: bytes) -> g.KeyPackageBundle:
        sig, _ = s.generate_signature_key(rng)
        return g.create_key_package(suite_id, Credential.basic(name), sig, LIFETIME, rng)

    a, b, c = bundle(b"a"), bundle(b"b"), bundle(b"c")
    alice = g.create_group(
        suite_id, b"g", a.key_package.leaf_node, a.encryption_priv, a.signature_priv, rng
    )
    result = g.commit(alice, rng, [Proposal(Add(b.key_package)), Proposal(Add(c.key_package))])
    states = [g.merge(result.staged)]
    states += [g.join_welcome(welcome_of(result), x) for x in (b, c)]
    message, bob = g.propose_update(states[1], rng, private=True)
    _, carol = g.process_proposal(states[2], message)
    _, alice = g.process_proposal(states[0], message)
    result = g.commit(carol, rng, [Proposal(Remove(0))], private=True)
    staged = g.process_commit(alice, result.message)
    assert staged.removed
    states = [g.merge(g.process_commit(bob, result.message)), g.merge(result.staged)]
    first, second = states
    assert first.epoch_authenticator == second.epoch_authenticator
    assert tree_hash(first.tree, s) == second.context.tree_hash
    out, second = g.encrypt_application(second, b"hi", b"", rng)
    got, first = g.decrypt(first, out)
    assert got.data == b"hi" and got.sender == second.own_leaf
