"""Receiving proposals and Commits as a member (RFC 9420 §12.1, §12.2, §12.4.2, §12.4.3.2).

:func:`process_proposal` verifies a proposal (framing, §12.1 rules) and returns the state
with it cached under its ProposalRef (§5.2). :func:`process_commit` runs every step of
§12.4.2 and returns a :class:`~veil.core.mls.group_epoch.StagedCommit`; the state passed in
is never changed, so a Commit that fails any check leaves the member exactly as it was.
Commits by members and external Commits (``new_member_commit``, §12.4.3.2) are both handled.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace

from veil.core.errors import LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.errors import ValidationError
from veil.core.mls.group_epoch import (
    StagedCommit,
    external_init_receive,
    next_epoch,
    provisional_context,
    psk_secret_for,
)
from veil.core.mls.group_frame import Received, unframe
from veil.core.mls.group_state import (
    CachedProposal,
    GroupState,
    next_state,
    prune_keys,
    with_proposal,
)
from veil.core.mls.proposals_validate import (
    Applied,
    ProposalItem,
    apply_proposals,
    check_proposal,
    validate_group_leaf,
)
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.framing import (
    AuthenticatedContent,
    MLSMessage,
    Sender,
    SenderType,
)
from veil.core.mls.structs.proposals import Proposal
from veil.core.mls.tree import RatchetTree
from veil.core.mls.treekem import (
    AppliedPath,
    TreeKeys,
    apply_external_update_path,
    apply_update_path,
)


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    """A verified proposal now cached in the returned state."""

    ref: bytes
    proposal: Proposal
    sender: Sender


def _proposal_ref(state: GroupState, ac: AuthenticatedContent) -> bytes:
    return state.suite.proposal_ref(ac.to_bytes())


def process_proposal(
    state: GroupState, message: MLSMessage, now: int | None = None
) -> tuple[ProposalReceived, GroupState]:
    """Verify a proposal message and cache it (§12.1)."""
    received = unframe(state, message)
    return accept_proposal(state, received, now)


def accept_proposal(
    state: GroupState, received: Received, now: int | None = None
) -> tuple[ProposalReceived, GroupState]:
    ac = received.content
    proposal = ac.content.content
    if not isinstance(proposal, Proposal):
        raise ValidationError("RFC9420-12.1-proposal-content", "not a proposal")
    sender = ac.content.sender
    if sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
        raise ValidationError("RFC9420-6-sender-type", "new_member_commit sent a proposal")
    s = state.suite
    item = ProposalItem(proposal, sender)
    check_proposal(s, state.tree, state.group_id, state.context.extensions, item, now)
    ref = _proposal_ref(state, ac)
    new_state = with_proposal(state, CachedProposal(ref, proposal, sender))
    if received.secret_tree is not None:
        new_state = _with_tree(new_state, received)
    return ProposalReceived(ref, proposal, sender), new_state


def _with_tree(state: GroupState, received: Received) -> GroupState:
    assert received.secret_tree is not None
    return replace(state, secret_tree=received.secret_tree)


def _resolve(
    state: GroupState, commit: Commit, sender: Sender, external: bool
) -> tuple[ProposalItem, ...]:
    items = []
    for entry in commit.proposals:
        if entry.proposal is not None:
            items.append(ProposalItem(entry.proposal, sender))
            continue
        if external:
            raise ValidationError("RFC9420-12.4.3.2-no-reference")
        ref = entry.reference or b""
        cached = state.find_proposal(ref)
        if cached is None:
            raise ValidationError("RFC9420-12.4.2-unknown-proposal-ref")
        items.append(ProposalItem(cached.proposal, cached.sender, ref))
    return tuple(items)


def _own_keys(state: GroupState, items: tuple[ProposalItem, ...], applied: Applied) -> TreeKeys:
    """Our keys for the proposal-applied tree (our own Update swaps our leaf key)."""
    keys = state.keys
    if state.own_leaf in applied.updated:
        refs = {i.ref for i in items if i.ref is not None}
        priv = next((k for r, k in state.pending_updates if r in refs), None)
        if priv is None:
            raise LocalError("a Commit applied our Update but its private key is unknown")
        keys = keys.with_keys({tm.leaf_node(state.own_leaf): priv})
    return prune_keys(keys, applied.tree)


def process_commit(
    state: GroupState,
    message: MLSMessage,
    psks: Mapping[bytes, bytes] | None = None,
    now: int | None = None,
) -> StagedCommit:
    """Verify a Commit and stage the next epoch (§12.4.2); ``psks`` maps external psk_id
    to PSK. Raises ValidationError / MlsDecryptError / DecodeError and changes nothing."""
    return stage_commit(state, unframe(state, message), psks, now)


def stage_commit(
    state: GroupState,
    received: Received,
    psks: Mapping[bytes, bytes] | None = None,
    now: int | None = None,
) -> StagedCommit:
    ac = received.content
    commit = ac.content.content
    if not isinstance(commit, Commit):
        raise ValidationError("RFC9420-12.4-commit-content", "not a commit")
    sender = ac.content.sender
    if sender == Sender.member(state.own_leaf):
        raise LocalError("our own Commit: merge the StagedCommit that commit() returned")
    if sender.sender_type not in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT):
        raise ValidationError("RFC9420-12.4-commit-sender", f"{int(sender.sender_type)}")
    external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    if external and received.secret_tree is not None:
        raise ValidationError("RFC9420-12.4.3.2-public-message")
    s = state.suite
    items = _resolve(state, commit, sender, external)
    committer = None if external else sender.index
    applied = apply_proposals(
        s, state.tree, state.group_id, state.context.extensions, items, committer, now
    )
    if (applied.path_required or external) and commit.path is None:
        raise ValidationError("RFC9420-12.4.2-path-required")
    if commit.path is not None:
        replacing = None if external else sender.index
        leaf = commit.path.leaf_node
        validate_group_leaf(applied.tree, applied.extensions, leaf, replacing, now)
    if state.own_leaf in applied.removed:
        return StagedCommit(sender, items, applied, None, removed=True)
    tree = applied.tree
    keys = _own_keys(state, items, applied)
    commit_secret = None
    if commit.path is not None:

        def context_for(th: bytes) -> bytes:
            return provisional_context(state, applied.extensions, th).to_bytes()

        path: AppliedPath
        if external:  # the committer's leaf comes with its path (§12.4.3.2)
            _, path = apply_external_update_path(
                tree, s, commit.path, state.group_id, context_for, keys
            )
        else:
            added = [index for index, _ in applied.added]
            path = apply_update_path(
                tree, s, sender.index, commit.path, state.group_id, context_for, keys, added
            )
        assert path.keys is not None
        tree, keys, commit_secret = path.tree, path.keys, path.commit_secret
    return _finish(state, received, items, applied, tree, keys, commit_secret, psks)


def _finish(
    state: GroupState,
    received: Received,
    items: tuple[ProposalItem, ...],
    applied: Applied,
    tree: RatchetTree,
    keys: TreeKeys,
    commit_secret: bytes | None,
    psks: Mapping[bytes, bytes] | None,
) -> StagedCommit:
    s, ac = state.suite, received.content
    init_secret = state.epoch_secrets.init_secret
    if applied.external_init is not None:
        init_secret = external_init_receive(state, applied.external_init.kem_output)
    psk = psk_secret_for(state, applied.psk_ids, psks)
    context, secrets = next_epoch(
        s,
        state.context,
        state.interim_transcript_hash,
        init_secret,
        tree,
        applied.extensions,
        ac,
        commit_secret,
        psk,
    )
    tag = ac.auth.confirmation_tag or b""
    if not hmac.compare_digest(secrets.confirmation_tag(context.confirmed_transcript_hash), tag):
        raise ValidationError("RFC9420-12.4.2-confirmation-tag")
    new_state = next_state(state, context, tree, keys, secrets, tag, applied.reinit)
    return StagedCommit(ac.content.sender, items, applied, new_state)
