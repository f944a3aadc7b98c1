"""One test per RFC 9420 requirement id that tests/core/mls/test_group.py does not name.

Each builds the bad input the rule is about -- as a correctly signed and MACed message where a
member could send it, else at the function that enforces the rule -- and checks the exact
``requirement`` raised (and, for received messages, that the member's state is unchanged).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from veil.core.errors import LocalError
from veil.core.mls import group as g
from veil.core.mls.errors import ValidationError
from veil.core.mls.framing import protect_public, sign_content
from veil.core.mls.group_epoch import external_init_receive
from veil.core.mls.group_state import GroupState
from veil.core.mls.proposals_validate import (
    MAX_LIFETIME_S,
    ProposalItem,
    apply_proposals,
    check_proposal,
    validate_group_leaf,
)
from veil.core.mls.psk import Psk, psk_secret
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.common import (
    Capabilities,
    Credential,
    Extension,
    ExtensionType,
    Lifetime,
)
from veil.core.mls.structs.framing import (
    FramedContent,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
)
from veil.core.mls.structs.group import GroupSecrets
from veil.core.mls.structs.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKeyID,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Update,
)
from veil.core.mls.welcome import seal_welcome
from veil.core.rng import Rng

from .test_group import (
    LIFETIME,
    NOW,
    SUITE,
    S,
    device,
    expect_rejected,
    forge,
    founder,
    grow,
    refused_both_ways,
    welcome_of,
    with_external_sender,
)

EXT_TYPE = 0xFF01  # a non-default extension type no member lists in its capabilities


def _external(
    state: GroupState, sender: Sender, priv: bytes, content: Proposal | Commit, rng: Rng
) -> MLSMessage:
    """A PublicMessage from a non-member sender, signed with ``priv`` (no membership tag)."""
    ctx = state.context
    framed = FramedContent(ctx.group_id, ctx.epoch, sender, b"", content)
    tag = bytes(S.nh) if isinstance(content, Commit) else None
    ac = sign_content(S, priv, WireFormat.MLS_PUBLIC_MESSAGE, framed, ctx, rng, tag)
    return MLSMessage(protect_public(S, ac, ctx, b""))


# --- §6 framing --------------------------------------------------------------------------------


def test_RFC9420_6_1_sender_leaf_out_of_range(rng: Rng) -> None:
    states = grow(rng, 2)
    ghost = replace(states[0], own_leaf=5)  # signs and MACs as a leaf the tree does not have
    message = forge(ghost, Commit(()), rng)
    expect_rejected(
        "RFC9420-6.1-sender-leaf", states[1], lambda: g.process_commit(states[1], message)
    )


def test_RFC9420_6_1_sender_leaf_blank(rng: Rng) -> None:
    states = grow(rng, 4)
    result = g.commit(states[0], rng, [Proposal(Remove(1))])
    after = [
        g.merge(result.staged),
        *(g.merge(g.process_commit(s, result.message)) for s in states[2:]),
    ]
    ghost = replace(after[0], own_leaf=1)  # leaf 1 is blank now
    message = forge(ghost, Commit(()), rng)
    expect_rejected(
        "RFC9420-6.1-sender-leaf", after[1], lambda: g.process_commit(after[1], message)
    )


def test_RFC9420_6_sender_type_new_member_commit_proposal(rng: Rng) -> None:
    states = grow(rng, 2)
    dave = device("dave", rng)
    add = Proposal(Add(dave.bundle.key_package))
    message = _external(
        states[0], Sender(SenderType.NEW_MEMBER_COMMIT), dave.signature_priv, add, rng
    )
    expect_rejected(
        "RFC9420-6-sender-type", states[1], lambda: g.process_proposal(states[1], message)
    )


# --- §7 leaves ---------------------------------------------------------------------------------


def test_RFC9420_7_2_extension_in_capabilities(rng: Rng) -> None:
    sig, _ = S.generate_signature_key(rng)
    bundle = g.create_key_package(
        SUITE,
        Credential.basic(b"ext"),
        sig,
        LIFETIME,
        rng,
        leaf_extensions=(Extension(EXT_TYPE, b""),),
    )
    with pytest.raises(ValidationError) as info:
        g.validate_key_package(S, bundle.key_package, NOW)
    assert info.value.requirement == "RFC9420-7.2-extension-in-capabilities"


def test_RFC9420_7_3_credential_supported(rng: Rng) -> None:
    states = grow(rng, 2)  # members support basic credentials only
    sig, _ = S.generate_signature_key(rng)
    caps = Capabilities(versions=(1,), cipher_suites=(SUITE,), credentials=(1, 2))
    x509 = g.create_key_package(
        SUITE, Credential.x509([b"certificate"]), sig, LIFETIME, rng, capabilities=caps
    )
    add = Proposal(Add(x509.key_package))
    refused_both_ways("RFC9420-7.3-credential-supported", states, add, rng)


def test_RFC9420_7_3_lifetime(rng: Rng) -> None:
    """A leaf sent in a proposal or Commit must be within its lifetime when ``now`` is given,
    and its total lifetime at most MAX_LIFETIME_S (§7.2)."""
    states = grow(rng, 2)
    leaf = device("carol", rng).bundle.key_package.leaf_node
    validate_group_leaf(states[0].tree, (), leaf, None, NOW)
    for now in (NOW + 10**7, NOW - 10**7):
        with pytest.raises(ValidationError) as info:
            validate_group_leaf(states[0].tree, (), leaf, None, now)
        assert info.value.requirement == "RFC9420-7.3-lifetime"
    forever = replace(leaf, lifetime=Lifetime(0, 2**64 - 1))
    with pytest.raises(ValidationError) as info:
        validate_group_leaf(states[0].tree, (), forever, None, NOW)
    assert info.value.requirement == "RFC9420-7.3-lifetime"
    validate_group_leaf(states[0].tree, (), forever, None, None)  # no time: no time policy


def test_RFC9420_10_1_lifetime_maximum(rng: Rng) -> None:
    sig, _ = S.generate_signature_key(rng)
    too_long = Lifetime(NOW - 60, NOW - 60 + MAX_LIFETIME_S + 1)
    kp = g.create_key_package(SUITE, Credential.basic(b"k"), sig, too_long, rng).key_package
    with pytest.raises(ValidationError) as info:
        g.validate_key_package(S, kp, NOW)
    assert info.value.requirement == "RFC9420-10.1-lifetime"


def test_expired_member_leaf_does_not_block_a_join(rng: Rng) -> None:
    """§7.3 only RECOMMENDS lifetime checks on received trees: a leaf that expired since it
    was added must not lock new members out of a long-lived group, so joins do not check it."""
    alice, carol = founder(rng), device("carol", rng)
    sig, _ = S.generate_signature_key(rng)
    later = NOW + 10**6
    bob = g.create_key_package(
        SUITE, Credential.basic(b"bob"), sig, Lifetime(later - 60, later + 60), rng
    )
    adds = [Proposal(Add(carol.bundle.key_package)), Proposal(Add(bob.key_package))]
    result = g.commit(alice, rng, adds)
    assert g.join_welcome(welcome_of(result), bob, now=later).epoch == 1


# --- §8.3, §11.1 -------------------------------------------------------------------------------


def test_RFC9420_8_3_external_init(rng: Rng) -> None:
    states = grow(rng, 2)
    for kem_output in (b"\x01" * 31, bytes(32)):  # wrong length; a low-order point
        with pytest.raises(ValidationError) as info:
            external_init_receive(states[0], kem_output)
        assert info.value.requirement == "RFC9420-8.3-external-init"


def test_RFC9420_11_1_required_capabilities_malformed(rng: Rng) -> None:
    with pytest.raises(ValidationError) as info:
        founder(rng, (Extension(ExtensionType.REQUIRED_CAPABILITIES, b"\xff\xff"),))
    assert info.value.requirement == "RFC9420-11.1-required-capabilities"


# --- §12.1 proposals ---------------------------------------------------------------------------


def test_RFC9420_12_1_proposal_content(rng: Rng) -> None:
    states = grow(rng, 2)
    commit = g.commit(states[0], rng).message
    expect_rejected(
        "RFC9420-12.1-proposal-content", states[1], lambda: g.process_proposal(states[1], commit)
    )


def test_RFC9420_12_1_2_update_by_member(rng: Rng) -> None:
    states = grow(rng, 2)
    leaf = g.propose_update(states[1], rng)[1].proposals[-1].proposal
    assert isinstance(leaf.body, Update)
    for sender in (Sender(SenderType.EXTERNAL, 0), Sender.member(3)):
        with pytest.raises(ValidationError) as info:
            apply_proposals(S, states[0].tree, b"group-1", (), [ProposalItem(leaf, sender)], 0)
        assert info.value.requirement in (
            "RFC9420-12.1.2-update-by-member",
            "RFC9420-12.1.8-external-proposal-type",
        )
    with pytest.raises(ValidationError) as info:
        check_proposal(S, states[0].tree, b"group-1", (), ProposalItem(leaf, Sender.member(3)))
    assert info.value.requirement == "RFC9420-12.1.2-update-by-member"


def test_RFC9420_12_1_5_reinit_version(rng: Rng) -> None:
    states = grow(rng, 2)
    old = Proposal(ReInit(b"group-2", 0, SUITE, ()))
    with pytest.raises(ValidationError) as info:
        check_proposal(S, states[0].tree, b"group-1", (), ProposalItem(old, Sender.member(0)))
    assert info.value.requirement == "RFC9420-12.1.5-reinit-version"


def test_RFC9420_12_1_7_extension_supported(rng: Rng) -> None:
    states = grow(rng, 3)
    gce = Proposal(GroupContextExtensions((Extension(EXT_TYPE, b"x"),)))
    refused_both_ways("RFC9420-12.1.7-extension-supported", states, gce, rng)


def test_RFC9420_12_1_8_external_sender_index(rng: Rng) -> None:
    states, ext_priv = with_external_sender(rng)
    message = g.external_proposal(states[0].context, 1, ext_priv, Proposal(Remove(1)), rng)
    expect_rejected(
        "RFC9420-12.1.8-external-sender-index",
        states[0],
        lambda: g.process_proposal(states[0], message),
    )


def test_RFC9420_12_1_8_new_member_content(rng: Rng) -> None:
    states = grow(rng, 2)
    dave = device("dave", rng)
    message = _external(
        states[0],
        Sender(SenderType.NEW_MEMBER_PROPOSAL),
        dave.signature_priv,
        Proposal(Remove(1)),
        rng,
    )
    expect_rejected(
        "RFC9420-12.1.8-new-member-content",
        states[1],
        lambda: g.process_proposal(states[1], message),
    )


def test_RFC9420_12_1_8_new_member_add_only(rng: Rng) -> None:
    states = grow(rng, 2)
    item = ProposalItem(Proposal(Remove(1)), Sender(SenderType.NEW_MEMBER_PROPOSAL))
    with pytest.raises(ValidationError) as info:
        check_proposal(S, states[0].tree, b"group-1", (), item)
    assert info.value.requirement == "RFC9420-12.1.8-new-member-add-only"


def test_RFC9420_12_1_8_1_external_senders_malformed(rng: Rng) -> None:
    bad = (Extension(ExtensionType.EXTERNAL_SENDERS, b"\x05\x00"),)
    with pytest.raises(ValidationError) as info:
        founder(rng, bad)
    assert info.value.requirement == "RFC9420-12.1.8.1-external-senders"


# --- §12.2 - §12.4 commits ---------------------------------------------------------------------


def test_RFC9420_12_2_external_at_most_one_remove(rng: Rng) -> None:
    states = grow(rng, 3)
    me = Sender(SenderType.NEW_MEMBER_COMMIT)
    items = [
        ProposalItem(Proposal(ExternalInit(b"k")), me),
        ProposalItem(Proposal(Remove(1)), me),
        ProposalItem(Proposal(Remove(2)), me),
    ]
    with pytest.raises(ValidationError) as info:
        apply_proposals(S, states[0].tree, b"group-1", (), items, None)
    assert info.value.requirement == "RFC9420-12.2-external-at-most-one-remove"


def test_RFC9420_12_4_commit_before_data(rng: Rng) -> None:
    states = grow(rng, 2)
    _, alice = g.propose(states[0], Proposal(Remove(1)), rng)
    with pytest.raises(LocalError, match=r"RFC9420-12\.4-commit-before-data"):
        g.encrypt_application(alice, b"data", b"", rng)


def test_RFC9420_12_4_commit_content(rng: Rng) -> None:
    states = grow(rng, 2)
    proposal, _ = g.propose(states[0], Proposal(Remove(1)), rng)
    expect_rejected(
        "RFC9420-12.4-commit-content", states[1], lambda: g.process_commit(states[1], proposal)
    )


def test_RFC9420_12_4_commit_sender(rng: Rng) -> None:
    states, ext_priv = with_external_sender(rng)
    message = _external(states[0], Sender(SenderType.EXTERNAL, 0), ext_priv, Commit(()), rng)
    expect_rejected(
        "RFC9420-12.4-commit-sender", states[1], lambda: g.process_commit(states[1], message)
    )


def test_RFC9420_12_4_2_reinit_closes_the_group(rng: Rng) -> None:
    states = grow(rng, 2)
    result = g.commit(states[0], rng, [Proposal(ReInit(b"group-2", 1, SUITE, ()))])
    closed = g.merge(g.process_commit(states[1], result.message))
    with pytest.raises(LocalError, match=r"RFC9420-12\.4\.2-reinit"):
        g.encrypt_application(closed, b"data", b"", rng)


def test_RFC9420_12_4_3_2_no_reference(rng: Rng) -> None:
    """An external Commit that names a proposal by reference is refused, even when the
    reference is to a proposal the member has cached."""
    states = grow(rng, 2)
    proposal_msg, _ = g.propose(states[1], Proposal(Remove(0)), rng)
    _, alice = g.process_proposal(states[0], proposal_msg)
    ref = alice.proposals[-1].ref
    info = g.signed_group_info(alice, rng)
    dave = device("dave", rng)
    genuine, _ = g.join_external(info, dave.bundle.key_package.leaf_node, dave.signature_priv, rng)
    body = genuine.body
    assert isinstance(body, PublicMessage)
    commit = body.content.content
    assert isinstance(commit, Commit)
    with_ref = replace(commit, proposals=(*commit.proposals, ProposalOrRef(ref)))
    sender = Sender(SenderType.NEW_MEMBER_COMMIT)
    message = _external(alice, sender, dave.signature_priv, with_ref, rng)
    expect_rejected(
        "RFC9420-12.4.3.2-no-reference", alice, lambda: g.process_commit(alice, message)
    )
    assert g.process_commit(alice, genuine).applied is not None  # the genuine one is fine


def test_RFC9420_12_4_3_1_own_leaf(rng: Rng) -> None:
    """A malicious committer seals a genuine, signed GroupInfo to a KeyPackage of bob's that
    it never added: bob finds no leaf of his in the tree and refuses to join."""
    alice = founder(rng)
    sig, _ = S.generate_signature_key(rng)
    added = g.create_key_package(SUITE, Credential.basic(b"bob"), sig, LIFETIME, rng)
    other = g.create_key_package(SUITE, Credential.basic(b"bob"), sig, LIFETIME, rng)
    result = g.commit(alice, rng, [Proposal(Add(added.key_package))])
    state = g.merge(result.staged)
    secrets = GroupSecrets(state.epoch_secrets.joiner_secret, None, ())
    welcome = seal_welcome(
        S,
        result.group_info,
        state.epoch_secrets.joiner_secret,
        bytes(S.nh),
        [(other.key_package, secrets)],
        rng,
    )
    with pytest.raises(ValidationError) as info:
        g.join_welcome(welcome, other)
    assert info.value.requirement == "RFC9420-12.4.3.1-own-leaf"
    assert g.join_welcome(welcome_of(result), added).epoch_authenticator == (
        state.epoch_authenticator
    )


def test_RFC9420_12_4_3_1_resumption_epoch_on_join(rng: Rng) -> None:
    """A Welcome naming a branch (or reinit) resumption PSK must start its group at epoch 1;
    join_welcome refuses one at epoch 2, even when the joiner holds the PSK."""
    alice = founder(rng)
    bob, carol = device("bob", rng), device("carol", rng)
    first = g.commit(alice, rng, [Proposal(Add(bob.bundle.key_package))])
    second = g.commit(g.merge(first.staged), rng, [Proposal(Add(carol.bundle.key_package))])
    state = g.merge(second.staged)
    assert state.epoch == 2
    branch = PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"old", 7, bytes(S.nh))
    value = b"\x42" * S.nh
    secrets = GroupSecrets(state.epoch_secrets.joiner_secret, None, (branch,))
    psk = psk_secret(S, [Psk.of(branch, value)])
    welcome = seal_welcome(
        S,
        second.group_info,
        state.epoch_secrets.joiner_secret,
        psk,
        [(carol.bundle.key_package, secrets)],
        rng,
    )
    with pytest.raises(ValidationError) as info:
        g.join_welcome(welcome, carol.bundle, resumption_psks={(b"old", 7): value})
    assert info.value.requirement == "RFC9420-12.4.3.1-resumption-epoch"
