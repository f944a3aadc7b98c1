"""Creating a Commit and its Welcome (RFC 9420 §12.2, §12.3, §12.4, §12.4.1, §12.4.3).

:func:`commit` follows §12.4.1: pick the cached proposals (minus our own Updates and the
Updates of leaves also removed, preferring Removes, §12.2 SHOULDs) plus the new ones given
by value, validate and apply the list, decide the path (required by the proposal types, or
asked for), build the UpdatePath over the provisional GroupContext, sign the Commit with the
old context, advance the transcript hashes and the key schedule, set the confirmation tag,
protect the message with the old epoch's keys, sign a GroupInfo of the new epoch and encrypt
a Welcome to every added member with the path secret of our lowest common ancestor.

Nothing changes until the caller merges the returned :class:`CommitResult` ``staged``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from veil.core.errors import LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.framing import sign_content
from veil.core.mls.group_epoch import (
    ResumptionPsk,
    StagedCommit,
    next_epoch,
    provisional_context,
    psk_secret_for,
    signed_group_info,
)
from veil.core.mls.group_frame import own_content, protect
from veil.core.mls.group_state import GroupState, next_state, prune_keys
from veil.core.mls.proposals_validate import Applied, ProposalItem, apply_proposals
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.framing import (
    FramedContentAuthData,
    MLSMessage,
    Sender,
    WireFormat,
)
from veil.core.mls.structs.group import GroupInfo, GroupSecrets, PathSecret
from veil.core.mls.structs.proposals import Proposal, ProposalOrRef, Remove, Update
from veil.core.mls.treekem import CreatedPath, create_update_path
from veil.core.mls.welcome import seal_welcome
from veil.core.rng import Rng


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What a committer sends (the Commit, a Welcome if members were added, a GroupInfo of
    the new epoch) and the staged next state to merge once the Commit is accepted."""

    message: MLSMessage
    welcome: MLSMessage | None
    group_info: GroupInfo
    staged: StagedCommit
    current: GroupState
    """The current epoch's state to keep if the Commit is not accepted (for a PrivateMessage
    its handshake ratchet has moved on, so no key is ever used twice)."""


def _cached_items(state: GroupState) -> list[ProposalItem]:
    """The cached proposals a committer includes (§12.2 SHOULDs): no own Update, a Remove
    wins over Updates of the same leaf, the latest Update of a leaf wins."""
    removed = {
        c.proposal.body.removed for c in state.proposals if isinstance(c.proposal.body, Remove)
    }
    latest_update: dict[int, bytes] = {}
    for c in state.proposals:
        if isinstance(c.proposal.body, Update):
            latest_update[c.sender.index] = c.ref
    items, seen_removes = [], set()
    for c in state.proposals:
        body = c.proposal.body
        if isinstance(body, Update):
            leaf = c.sender.index
            if leaf == state.own_leaf or leaf in removed or latest_update[leaf] != c.ref:
                continue
        if isinstance(body, Remove):
            if body.removed in seen_removes or body.removed == state.own_leaf:
                continue
            seen_removes.add(body.removed)
        items.append(ProposalItem(c.proposal, c.sender, c.ref))
    return items


def _path(state: GroupState, applied: Applied, rng: Rng) -> CreatedPath:
    def context_for(th: bytes) -> bytes:
        return provisional_context(state, applied.extensions, th).to_bytes()

    return create_update_path(
        applied.tree,
        state.suite,
        state.own_leaf,
        state.signature_priv,
        state.group_id,
        context_for,
        rng,
        exclude=[index for index, _ in applied.added],
        leaf_template=applied.tree.leaf_node(state.own_leaf),
    )


def commit(
    state: GroupState,
    rng: Rng,
    proposals: Sequence[Proposal] = (),
    *,
    include_cached: bool = True,
    path: bool | None = None,
    psks: Mapping[bytes, bytes] | None = None,
    private: bool = False,
    ratchet_tree_in_welcome: bool = True,
    external_pub: bool = True,
    authenticated_data: bytes = b"",
    now: int | None = None,
) -> CommitResult:
    """Commit the cached proposals (if ``include_cached``) and ``proposals`` (by value).

    ``path``: None = only when required (§12.4), True = always, False = never (a LocalError
    if required). ``psks`` maps external psk_id to PSK for PreSharedKey proposals.
    """
    me = Sender.member(state.own_leaf)
    items = _cached_items(state) if include_cached else []
    items += [ProposalItem(p, me) for p in proposals]
    return commit_items(
        state,
        rng,
        items,
        path=path,
        psks=psks,
        private=private,
        ratchet_tree_in_welcome=ratchet_tree_in_welcome,
        external_pub=external_pub,
        authenticated_data=authenticated_data,
        now=now,
    )


def commit_items(
    state: GroupState,
    rng: Rng,
    items: list[ProposalItem],
    *,
    path: bool | None = None,
    psks: Mapping[bytes, bytes] | None = None,
    private: bool = False,
    ratchet_tree_in_welcome: bool = True,
    external_pub: bool = True,
    authenticated_data: bytes = b"",
    now: int | None = None,
    resumed: ResumptionPsk | None = None,
) -> CommitResult:
    """:func:`commit` of a chosen proposal list. ``resumed`` is only for the first Commit of
    a reinitialized or branched group (:mod:`veil.core.mls.group_resume`): its PreSharedKey
    proposal, of usage reinit or branch, is valid there and nowhere else (§12.1.4)."""
    state.check_usable()
    s = state.suite
    me = Sender.member(state.own_leaf)
    usage = None
    if resumed is not None:
        if state.epoch != 0 or state.tree.member_count() != 1:
            raise LocalError("a reinit/branch PSK only starts a new group (§11.2, §11.3)")
        usage = resumed.psk_id.usage
    applied = apply_proposals(
        s, state.tree, state.group_id, state.context.extensions, items, state.own_leaf, now, usage
    )
    use_path = applied.path_required if path is None else path
    if applied.path_required and not use_path:
        raise LocalError("these proposals require an UpdatePath (§12.4)")
    created = _path(state, applied, rng) if use_path else None
    tree = created.tree if created else applied.tree
    keys = created.keys if created else prune_keys(state.keys, tree)
    entries = tuple(ProposalOrRef(i.ref if i.ref is not None else i.proposal) for i in items)
    body = Commit(entries, created.update_path if created else None)
    wire_format = WireFormat.MLS_PRIVATE_MESSAGE if private else WireFormat.MLS_PUBLIC_MESSAGE
    framed = own_content(state, body, authenticated_data)
    ac = sign_content(
        s, state.signature_priv, wire_format, framed, state.context, rng, confirmation_tag=b""
    )
    psk = psk_secret_for(state, applied.psk_ids, psks, resumed)
    context, secrets = next_epoch(
        s,
        state.context,
        state.interim_transcript_hash,
        state.epoch_secrets.init_secret,
        tree,
        applied.extensions,
        ac,
        created.commit_secret if created else None,
        psk,
    )
    tag = secrets.confirmation_tag(context.confirmed_transcript_hash)
    ac = replace(ac, auth=FramedContentAuthData(ac.auth.signature, tag))
    message, current = protect(state, ac, rng)
    new_state = next_state(state, context, tree, keys, secrets, tag, applied.reinit)
    info = signed_group_info(new_state, rng, with_tree=True, with_external_pub=external_pub)
    welcome = _welcome(new_state, applied, created, info, psk, ratchet_tree_in_welcome, rng)
    staged = StagedCommit(me, tuple(items), applied, new_state)
    return CommitResult(message, welcome, info, staged, current)


def _welcome(
    state: GroupState,
    applied: Applied,
    created: CreatedPath | None,
    info: GroupInfo,
    psk: bytes | None,
    with_tree: bool,
    rng: Rng,
) -> MLSMessage | None:
    """§12.4.3.1: one Welcome for every member added by the Commit."""
    if not applied.added:
        return None
    if not with_tree:
        info = signed_group_info(state, rng, with_tree=False, with_external_pub=False)
    recipients = []
    for index, kp in applied.added:
        path_secret = None
        if created is not None:
            node = tm.common_ancestor(tm.leaf_node(index), tm.leaf_node(state.own_leaf))
            path_secret = PathSecret(created.path_secrets[node])
        secrets = GroupSecrets(state.epoch_secrets.joiner_secret, path_secret, applied.psk_ids)
        recipients.append((kp, secrets))
    welcome = seal_welcome(
        state.suite,
        info,
        state.epoch_secrets.joiner_secret,
        psk or bytes(state.suite.nh),
        recipients,
        rng,
    )
    return MLSMessage(welcome)
