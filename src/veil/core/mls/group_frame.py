"""Framing of a group's messages with its current state (RFC 9420 §6, §6.1-§6.3, §12.1.8).

:func:`frame` signs content with the GroupContext of the current epoch and protects it as a
PublicMessage (membership tag for member senders) or a PrivateMessage (next key of our
ratchet); it returns the message and the state to keep (the secret tree advanced).
:func:`unframe` is the reverse: it checks group and epoch, resolves the sender's signature
key (member leaf, ``external_senders`` entry, or the new member's own key) and verifies;
for a PrivateMessage it returns the advanced secret-tree copy for the caller to keep.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from veil.core.errors import LocalError
from veil.core.mls.errors import ValidationError
from veil.core.mls.framing import (
    protect_private,
    protect_public,
    sign_content,
    unprotect_private,
    unprotect_public,
)
from veil.core.mls.group_state import GroupState
from veil.core.mls.secret_tree import SecretTree
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.framing import (
    AuthenticatedContent,
    Content,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
)
from veil.core.mls.structs.proposals import Add, Proposal
from veil.core.rng import Rng


@dataclass(frozen=True, slots=True)
class Received:
    """A verified message of the current epoch and the secret tree to keep with it."""

    content: AuthenticatedContent
    secret_tree: SecretTree | None


def own_content(state: GroupState, content: Content, authenticated_data: bytes) -> FramedContent:
    return FramedContent(
        state.group_id,
        state.epoch,
        Sender.member(state.own_leaf),
        authenticated_data,
        content,
    )


def protect(
    state: GroupState, ac: AuthenticatedContent, rng: Rng, padding: int = 0
) -> tuple[MLSMessage, GroupState]:
    """Protect signed content with this epoch's keys (§6.2, §6.3)."""
    s, secrets = state.suite, state.epoch_secrets
    if ac.wire_format == WireFormat.MLS_PUBLIC_MESSAGE:
        public = protect_public(s, ac, state.context, secrets.membership_key)
        return MLSMessage(public), state
    tree = state.secret_tree_copy()
    private = protect_private(s, ac, tree, secrets.sender_data_secret, rng, padding)
    return MLSMessage(private), replace(state, secret_tree=tree)


def frame(
    state: GroupState,
    content: Content,
    rng: Rng,
    private: bool,
    authenticated_data: bytes = b"",
    confirmation_tag: bytes | None = None,
) -> tuple[AuthenticatedContent, MLSMessage, GroupState]:
    """Sign and protect our own content; returns the signed content, the message and the
    state to keep."""
    state.check_usable()
    wire_format = WireFormat.MLS_PRIVATE_MESSAGE if private else WireFormat.MLS_PUBLIC_MESSAGE
    framed = own_content(state, content, authenticated_data)
    ac = sign_content(
        state.suite, state.signature_priv, wire_format, framed, state.context, rng, confirmation_tag
    )
    message, new_state = protect(state, ac, rng)
    return ac, message, new_state


def _new_member_key(content: Content) -> bytes:
    """The signature key of a new member: in its Add (proposal) or its path leaf (commit)."""
    if isinstance(content, Proposal) and isinstance(content.body, Add):
        return content.body.key_package.leaf_node.signature_key
    if isinstance(content, Commit) and content.path is not None:
        return content.path.leaf_node.signature_key
    raise ValidationError("RFC9420-12.1.8-new-member-content", "no signature key to verify with")


def unframe(state: GroupState, message: MLSMessage) -> Received:
    """Verify a PublicMessage or decrypt and verify a PrivateMessage of this epoch."""
    s, secrets = state.suite, state.epoch_secrets
    body = message.body
    if isinstance(body, PublicMessage):
        content = body.content.content

        def lookup(sender: Sender) -> bytes:
            if sender.sender_type in (SenderType.NEW_MEMBER_COMMIT, SenderType.NEW_MEMBER_PROPOSAL):
                return _new_member_key(content)
            return state.signer_key(sender)

        out = unprotect_public(s, body, state.context, secrets.membership_key, lookup)
        return Received(out.content, None)
    if isinstance(body, PrivateMessage):
        out = unprotect_private(
            s,
            body,
            state.secret_tree,
            secrets.sender_data_secret,
            state.context,
            state.signer_key,
        )
        return Received(out.content, out.secret_tree)
    raise LocalError(f"not a group message: {type(body).__name__}")
