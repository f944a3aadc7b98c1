"""Joining a group with an external Commit (RFC 9420 §8.3, §12.4.3.2).

:func:`join_external` takes a GroupInfo that carries ``external_pub`` (and the ratchet tree,
in its extension or given separately), checks it like a Welcome's GroupInfo (signature, tree
integrity), derives the new ``init_secret`` with HPKE export (§8.3), builds a Commit with an
ExternalInit proposal -- plus a Remove of our old leaf for a "resync" and PreSharedKey
proposals for external PSKs -- and an UpdatePath from the leftmost blank leaf, signs it as
``new_member_commit`` and returns the PublicMessage to send and our state in the new epoch.
Members process it with :func:`veil.core.mls.group_process.process_commit`.
"""

from __future__ import annotations

from collections.abc import Mapping

from veil.core.errors import DecodeError
from veil.core.mls.errors import ValidationError
from veil.core.mls.framing import sign_content
from veil.core.mls.group_epoch import external_init_secret, next_epoch
from veil.core.mls.group_join import signer_key_of, tree_from_info
from veil.core.mls.group_state import GroupState, new_epoch_state
from veil.core.mls.proposals_validate import ProposalItem, apply_proposals, check_context_extensions
from veil.core.mls.psk import Psk, psk_secret
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.common import ExtensionType, ExternalPub, find_extension
from veil.core.mls.structs.framing import (
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
)
from veil.core.mls.structs.group import GroupContext, GroupInfo
from veil.core.mls.structs.proposals import (
    ExternalInit,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalOrRef,
    Remove,
)
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import CipherSuite, suite
from veil.core.mls.transcript import interim_transcript_hash
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_validate import validate_tree
from veil.core.mls.treekem import create_update_path
from veil.core.rng import Rng


def _external_pub(info: GroupInfo) -> bytes:
    data = find_extension(info.extensions, ExtensionType.EXTERNAL_PUB)
    if data is None:
        raise ValidationError("RFC9420-12.4.3.2-external-pub", "GroupInfo has no external_pub")
    try:
        return ExternalPub.from_bytes(data).external_pub
    except DecodeError:
        raise ValidationError("RFC9420-12.4.3.2-external-pub", "malformed") from None


def _checked_tree(s: CipherSuite, info: GroupInfo, given: RatchetTree | None) -> RatchetTree:
    tree = tree_from_info(info, given)
    key = signer_key_of(tree, info.signer)
    if key is None:
        raise ValidationError("RFC9420-12.4.3-signer-leaf", f"leaf {info.signer} is blank")
    if not s.verify_with_label(key, b"GroupInfoTBS", info.tbs(), info.signature):
        raise ValidationError("RFC9420-12.4.3-group-info-signature")
    ctx = info.group_context
    validate_tree(tree, s, ctx.group_id, ctx.tree_hash)
    check_context_extensions(tree, ctx.extensions)
    return tree


def _proposals(
    s: CipherSuite, kem_output: bytes, resync_leaf: int | None, psk_ids: list[PreSharedKeyID]
) -> list[Proposal]:
    out = [Proposal(ExternalInit(kem_output))]
    if resync_leaf is not None:
        out.append(Proposal(Remove(resync_leaf)))
    out += [Proposal(PreSharedKey(p)) for p in psk_ids]
    return out


def join_external(
    info: GroupInfo,
    leaf_template: LeafNode,
    signature_priv: bytes,
    rng: Rng,
    ratchet_tree: RatchetTree | None = None,
    resync_leaf: int | None = None,
    psks: Mapping[bytes, bytes] | None = None,
    authenticated_data: bytes = b"",
) -> tuple[MLSMessage, GroupState]:
    """Join via an external Commit (§12.4.3.2). ``leaf_template`` gives our credential,
    capabilities and extensions; ``resync_leaf`` removes our old appearance; ``psks``
    (psk_id -> PSK) are injected as external PreSharedKey proposals."""
    s = suite(info.group_context.cipher_suite)
    tree = _checked_tree(s, info, ratchet_tree)
    kem_output, init_secret = external_init_secret(s, _external_pub(info), rng)
    ext_psks = [(PreSharedKeyID.external(k, rng(s.nh)), v) for k, v in (psks or {}).items()]
    proposals = _proposals(s, kem_output, resync_leaf, [p for p, _ in ext_psks])
    sender = Sender(SenderType.NEW_MEMBER_COMMIT)
    ctx = info.group_context
    items = [ProposalItem(p, sender) for p in proposals]
    applied = apply_proposals(s, tree, ctx.group_id, ctx.extensions, items, None)
    with_leaf, own = applied.tree.add_leaf(leaf_template)

    def context_for(th: bytes) -> bytes:
        return GroupContext(
            s.id,
            ctx.group_id,
            ctx.epoch + 1,
            th,
            ctx.confirmed_transcript_hash,
            applied.extensions,
            ctx.version,
        ).to_bytes()

    created = create_update_path(
        with_leaf,
        s,
        own,
        signature_priv,
        ctx.group_id,
        context_for,
        rng,
        leaf_template=leaf_template,
    )
    body = Commit(tuple(ProposalOrRef(p) for p in proposals), created.update_path)
    framed = FramedContent(ctx.group_id, ctx.epoch, sender, authenticated_data, body)
    ac = sign_content(s, signature_priv, WireFormat.MLS_PUBLIC_MESSAGE, framed, ctx, rng, b"")
    interim = interim_transcript_hash(s, ctx.confirmed_transcript_hash, info.confirmation_tag)
    psk = psk_secret(s, [Psk.of(p, v) for p, v in ext_psks]) if ext_psks else None
    context, secrets = next_epoch(
        s,
        ctx,
        interim,
        init_secret,
        created.tree,
        applied.extensions,
        ac,
        created.commit_secret,
        psk,
    )
    tag = secrets.confirmation_tag(context.confirmed_transcript_hash)
    auth = FramedContentAuthData(ac.auth.signature, tag)
    message = MLSMessage(PublicMessage(ac.content, auth, None))
    state = new_epoch_state(
        s, context, created.tree, own, created.keys, signature_priv, secrets, tag
    )
    return message, state
