"""The MLS group API (RFC 9420 §10-§12), staged: parse -> verify -> stage -> merge.

Every function takes a :class:`GroupState` and returns a new one (or a staged result); the
state passed in never changes, so a message that fails any check leaves the member exactly
as it was (ARCHITECTURE.md §6.2).

* group life: :func:`create_group` (§11), :func:`create_key_package` /
  :func:`validate_key_package` (§10), :func:`join_welcome` (§12.4.3.1),
  :func:`join_external` (§12.4.3.2), :func:`signed_group_info` (§12.4.3);
* reinitialization and branching (§11.2, §11.3): :func:`reinit_group` / :func:`join_reinit`,
  :func:`branch_group` / :func:`join_branch` (:mod:`veil.core.mls.group_resume`);
* proposals (§12.1): :func:`propose` (any proposal, as PublicMessage or PrivateMessage),
  :func:`propose_update` (a fresh leaf key, kept until a Commit applies it),
  :func:`external_proposal` (an ``external_senders`` entry, §12.1.8) and
  :func:`new_member_proposal`;
* Commits (§12.4): :func:`commit` -> :class:`CommitResult`; :func:`process_commit` ->
  :class:`StagedCommit`; :func:`merge`;
* messages (§6): :func:`encrypt_application`, :func:`process_message` (application data,
  proposals, commits, public or private) and :func:`decrypt` (application data only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from veil.core.errors import LocalError
from veil.core.mls.errors import ValidationError
from veil.core.mls.framing import protect_public, sign_content
from veil.core.mls.group_commit import CommitResult, commit
from veil.core.mls.group_epoch import StagedCommit, merge, signed_group_info
from veil.core.mls.group_external import join_external
from veil.core.mls.group_frame import frame, unframe
from veil.core.mls.group_join import (
    KeyPackageBundle,
    create_key_package,
    join_welcome,
    make_leaf_node,
)
from veil.core.mls.group_process import (
    ProposalReceived,
    accept_proposal,
    process_commit,
    process_proposal,
    stage_commit,
)
from veil.core.mls.group_resume import (
    ResumedGroup,
    branch_group,
    join_branch,
    join_reinit,
    reinit_group,
)
from veil.core.mls.group_state import CachedProposal, GroupState, create_group, with_proposal
from veil.core.mls.proposals_validate import validate_key_package
from veil.core.mls.secret_tree import SecretTree
from veil.core.mls.structs.common import LeafNodeSource
from veil.core.mls.structs.framing import (
    ContentType,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    Sender,
    SenderType,
    WireFormat,
)
from veil.core.mls.structs.group import GroupContext
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import Add, Proposal, Update
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import suite
from veil.core.rng import Rng

__all__ = [
    "ApplicationMessage",
    "CommitResult",
    "GroupState",
    "KeyPackageBundle",
    "ProposalReceived",
    "ResumedGroup",
    "StagedCommit",
    "branch_group",
    "commit",
    "create_group",
    "create_key_package",
    "decrypt",
    "encrypt_application",
    "external_proposal",
    "join_branch",
    "join_external",
    "join_reinit",
    "join_welcome",
    "make_leaf_node",
    "merge",
    "new_member_proposal",
    "process_commit",
    "process_message",
    "process_proposal",
    "propose",
    "propose_update",
    "reinit_group",
    "signed_group_info",
    "validate_key_package",
]


@dataclass(frozen=True, slots=True)
class ApplicationMessage:
    """Decrypted application data, its sender's leaf index and the authenticated data."""

    sender: int
    data: bytes
    authenticated_data: bytes

    def __repr__(self) -> str:
        return f"ApplicationMessage(sender={self.sender}, size={len(self.data)})"


Result = ApplicationMessage | ProposalReceived | StagedCommit


def propose(
    state: GroupState,
    proposal: Proposal,
    rng: Rng,
    private: bool = False,
    authenticated_data: bytes = b"",
) -> tuple[MLSMessage, GroupState]:
    """Send a proposal as a member (§12.1); it is cached in our own state as well."""
    ac, message, new_state = frame(state, proposal, rng, private, authenticated_data)
    ref = state.suite.proposal_ref(ac.to_bytes())
    cached = CachedProposal(ref, proposal, Sender.member(state.own_leaf))
    return message, with_proposal(new_state, cached)


def propose_update(
    state: GroupState,
    rng: Rng,
    leaf_template: LeafNode | None = None,
    private: bool = False,
) -> tuple[MLSMessage, GroupState]:
    """An Update proposal with a fresh leaf HPKE key (§12.1.2); the private key is kept
    until a Commit applies the proposal."""
    s = state.suite
    template = leaf_template or state.own_leaf_node
    priv, pub = s.derive_key_pair(rng(s.nh))
    leaf = make_leaf_node(
        s,
        pub,
        state.signature_priv,
        template.credential,
        LeafNodeSource.UPDATE,
        rng,
        template.capabilities,
        None,
        template.extensions,
        state.group_id,
        state.own_leaf,
    )
    message, new_state = propose(state, Proposal(Update(leaf)), rng, private)
    ref = new_state.proposals[-1].ref
    return message, replace(new_state, pending_updates=(*state.pending_updates, (ref, priv)))


def _external_message(
    context: GroupContext,
    sender: Sender,
    signature_priv: bytes,
    proposal: Proposal,
    rng: Rng,
) -> MLSMessage:
    s = suite(context.cipher_suite)
    framed = FramedContent(context.group_id, context.epoch, sender, b"", proposal)
    ac = sign_content(s, signature_priv, WireFormat.MLS_PUBLIC_MESSAGE, framed, context, rng)
    return MLSMessage(protect_public(s, ac, context, b""))


def external_proposal(
    context: GroupContext, sender_index: int, signature_priv: bytes, proposal: Proposal, rng: Rng
) -> MLSMessage:
    """A proposal from entry ``sender_index`` of the ``external_senders`` extension
    (§12.1.8); always a PublicMessage, with no membership tag."""
    return _external_message(
        context, Sender(SenderType.EXTERNAL, sender_index), signature_priv, proposal, rng
    )


def new_member_proposal(
    context: GroupContext, key_package: KeyPackage, signature_priv: bytes, rng: Rng
) -> MLSMessage:
    """A ``new_member_proposal``: a would-be member proposes adding itself (§12.1.8)."""
    sender = Sender(SenderType.NEW_MEMBER_PROPOSAL)
    return _external_message(context, sender, signature_priv, Proposal(Add(key_package)), rng)


def encrypt_application(
    state: GroupState, data: bytes, authenticated_data: bytes, rng: Rng, padding: int = 0
) -> tuple[MLSMessage, GroupState]:
    """Application data as a PrivateMessage (§6.3). Refused while proposals of this epoch
    are pending: a Commit must come first (§12.4, ``RFC9420-12.4-commit-before-data``)."""
    if state.proposals:
        raise LocalError("RFC9420-12.4-commit-before-data: commit the pending proposals first")
    _, message, new_state = frame(state, data, rng, True, authenticated_data)
    return message, new_state


def process_message(
    state: GroupState,
    message: MLSMessage,
    psks: Mapping[bytes, bytes] | None = None,
    now: int | None = None,
) -> tuple[Result, GroupState]:
    """Verify any message of this epoch. Application data and proposals return the state to
    keep; a Commit returns a StagedCommit (merge it) and the state unchanged."""
    received = unframe(state, message)
    content_type = received.content.content.content_type
    if content_type == ContentType.APPLICATION:
        return _application(state, received.content.content, received.secret_tree)
    if content_type == ContentType.PROPOSAL:
        return accept_proposal(state, received, now)
    return stage_commit(state, received, psks, now), state


def _application(
    state: GroupState, content: FramedContent, tree: SecretTree | None
) -> tuple[ApplicationMessage, GroupState]:
    if tree is None or not isinstance(content.content, bytes):
        raise ValidationError("RFC9420-6.2-application-not-public")
    result = ApplicationMessage(content.sender.index, content.content, content.authenticated_data)
    return result, replace(state, secret_tree=tree)


def decrypt(state: GroupState, message: MLSMessage) -> tuple[ApplicationMessage, GroupState]:
    """Decrypt application data (§6.3); anything else is a LocalError (use
    :func:`process_message`)."""
    if not isinstance(message.body, PrivateMessage):
        raise ValidationError("RFC9420-6.2-application-not-public", "not a PrivateMessage")
    if message.body.content_type != ContentType.APPLICATION:
        raise LocalError("not application data: use process_message")
    result, new_state = process_message(state, message)
    assert isinstance(result, ApplicationMessage)
    return result, new_state


def leaf_index_of(state: GroupState, signature_key: bytes) -> int | None:
    """The leaf index of the member with this signature key, if any."""
    for index, leaf in state.members():
        if leaf.signature_key == signature_key:
            return index
    return None
