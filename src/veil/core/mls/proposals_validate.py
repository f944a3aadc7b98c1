"""Validating and applying proposals (RFC 9420 §7.3, §10.1, §12.1, §12.2, §12.3).

* :func:`validate_key_package`, :func:`validate_group_leaf`, :func:`check_context_extensions`
  -- §10.1 and §7.3, from :mod:`veil.core.mls.leaf_validate` (re-exported here);
* :func:`check_proposal` -- the per-proposal rules of §12.1 (and §12.1.8 for external
  senders); a PreSharedKey of a reinit or branch resumption PSK is invalid
  (``RFC9420-12.1.4-psk-usage``) except in the first Commit of a group created by a
  reinitialization or a branch (:mod:`veil.core.mls.group_resume`), which passes that usage
  as ``resumption_usage``;
* :func:`apply_proposals` -- §12.2 list validation (regular or external Commit) and the
  application order of §12.3: GroupContextExtensions, Updates, Removes, Adds, then PSKs,
  ExternalInit and ReInit are noted. Returns a new tree; nothing is modified.

Every failure is a :class:`~veil.core.mls.errors.ValidationError` named after its rule,
e.g. ``RFC9420-12.2-no-update-by-committer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from veil.core.mls.errors import ValidationError
from veil.core.mls.leaf_validate import (
    MAX_LIFETIME_S,
    check_context_extensions,
    external_senders,
    required_capabilities,
    validate_group_leaf,
    validate_key_package,
)
from veil.core.mls.structs.common import Extension, LeafNodeSource, ProtocolVersion
from veil.core.mls.structs.framing import Sender, SenderType
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalType,
    PSKType,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Update,
)
from veil.core.mls.suite import CipherSuite
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_validate import check_unique_keys, validate_leaf_node

__all__ = [
    "MAX_LIFETIME_S",
    "Applied",
    "ProposalItem",
    "apply_proposals",
    "check_context_extensions",
    "check_proposal",
    "external_senders",
    "required_capabilities",
    "validate_group_leaf",
    "validate_key_package",
]

EXTERNAL_SENDER_TYPES = frozenset(
    {
        ProposalType.ADD,
        ProposalType.REMOVE,
        ProposalType.PSK,
        ProposalType.REINIT,
        ProposalType.GROUP_CONTEXT_EXTENSIONS,
    }
)
"""§12.1.8: the proposal types an ``external`` sender may send."""

PATH_REQUIRED = frozenset(
    {
        ProposalType.UPDATE,
        ProposalType.REMOVE,
        ProposalType.EXTERNAL_INIT,
        ProposalType.GROUP_CONTEXT_EXTENSIONS,
    }
)
"""§12.4: proposal types that need the Commit to carry an UpdatePath."""


@dataclass(frozen=True, slots=True)
class ProposalItem:
    """A proposal covered by a Commit, with its sender and (if by reference) its ref."""

    proposal: Proposal
    sender: Sender
    ref: bytes | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of applying a proposal list (§12.3) to the tree and GroupContext."""

    tree: RatchetTree
    extensions: tuple[Extension, ...]
    added: tuple[tuple[int, KeyPackage], ...]
    removed: tuple[int, ...]
    updated: tuple[int, ...]
    psk_ids: tuple[PreSharedKeyID, ...]
    external_init: ExternalInit | None
    reinit: ReInit | None
    path_required: bool


def _fail(requirement: str, detail: str = "") -> ValidationError:
    return ValidationError(requirement, detail)


# --- single proposals (§12.1) ---------------------------------------------------------------


def check_proposal(
    s: CipherSuite,
    tree: RatchetTree,
    group_id: bytes,
    extensions: Sequence[Extension],
    item: ProposalItem,
    now: int | None = None,
    resumption_usage: ResumptionPSKUsage | None = None,
) -> None:
    """The rules of §12.1 for one proposal as received (before any Commit applies it).
    ``resumption_usage`` (reinit or branch) is allowed only for the first Commit of a
    reinitialized or branched group."""
    body, sender = item.proposal.body, item.sender
    external = sender.sender_type == SenderType.EXTERNAL
    if external and item.proposal.proposal_type not in EXTERNAL_SENDER_TYPES:
        raise _fail("RFC9420-12.1.8-external-proposal-type")
    if sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL and not isinstance(body, Add):
        raise _fail("RFC9420-12.1.8-new-member-add-only")
    if isinstance(body, Add):
        validate_key_package(s, body.key_package, now)
        validate_group_leaf(tree, extensions, body.key_package.leaf_node, None, now)
    elif isinstance(body, Update):
        _check_update(s, tree, group_id, extensions, sender, body, now)
    elif isinstance(body, Remove):
        if body.removed >= tree.n_leaves or tree.leaf_node(body.removed) is None:
            raise _fail("RFC9420-12.1.3-remove-blank", f"leaf {body.removed}")
    elif isinstance(body, PreSharedKey):
        _check_psk(s, body.psk, resumption_usage)
    elif isinstance(body, ReInit) and body.version < ProtocolVersion.MLS10:
        raise _fail("RFC9420-12.1.5-reinit-version")


def _check_update(
    s: CipherSuite,
    tree: RatchetTree,
    group_id: bytes,
    extensions: Sequence[Extension],
    sender: Sender,
    body: Update,
    now: int | None,
) -> None:
    if sender.sender_type != SenderType.MEMBER:
        raise _fail("RFC9420-12.1.2-update-by-member")
    old = tree.leaf_node(sender.index) if sender.index < tree.n_leaves else None
    if old is None:
        raise _fail("RFC9420-12.1.2-update-by-member", f"leaf {sender.index} is blank")
    validate_leaf_node(s, body.leaf_node, group_id, sender.index, LeafNodeSource.UPDATE)
    if body.leaf_node.encryption_key == old.encryption_key:
        raise _fail("RFC9420-7.3-update-new-encryption-key")
    validate_group_leaf(tree, extensions, body.leaf_node, sender.index, now)


def _check_psk(s: CipherSuite, psk: PreSharedKeyID, allowed: ResumptionPSKUsage | None) -> None:
    if psk.psktype == PSKType.RESUMPTION and psk.usage not in (
        ResumptionPSKUsage.APPLICATION,
        allowed,
    ):
        raise _fail("RFC9420-12.1.4-psk-usage")
    if len(psk.psk_nonce) != s.nh:
        raise _fail("RFC9420-12.1.4-psk-nonce-length")


# --- lists (§12.2) and their application (§12.3) --------------------------------------------


def _of_type(items: Sequence[ProposalItem], kind: type) -> list[ProposalItem]:
    return [i for i in items if isinstance(i.proposal.body, kind)]


def _check_regular_list(items: Sequence[ProposalItem], committer: int) -> None:
    touched: set[int] = set()
    for item in items:
        body = item.proposal.body
        if isinstance(body, Update):
            if item.sender == Sender.member(committer):
                raise _fail("RFC9420-12.2-no-update-by-committer")
            leaf = item.sender.index
        elif isinstance(body, Remove):
            if body.removed == committer:
                raise _fail("RFC9420-12.2-no-remove-committer")
            leaf = body.removed
        else:
            continue
        if leaf in touched:
            raise _fail("RFC9420-12.2-one-change-per-leaf", f"leaf {leaf}")
        touched.add(leaf)
    if _of_type(items, ExternalInit):
        raise _fail("RFC9420-12.2-no-external-init")
    if len(_of_type(items, GroupContextExtensions)) > 1:
        raise _fail("RFC9420-12.2-single-gce")
    if _of_type(items, ReInit) and len(items) > 1:
        raise _fail("RFC9420-12.2-reinit-alone")


def _check_external_list(items: Sequence[ProposalItem]) -> None:
    allowed = (ExternalInit, Remove, PreSharedKey)
    if any(not isinstance(i.proposal.body, allowed) for i in items):
        raise _fail("RFC9420-12.2-external-allowed-proposals")
    if len(_of_type(items, ExternalInit)) != 1:
        raise _fail("RFC9420-12.2-external-one-external-init")
    if len(_of_type(items, Remove)) > 1:
        raise _fail("RFC9420-12.2-external-at-most-one-remove")


def _check_psk_ids(items: Sequence[ProposalItem]) -> tuple[PreSharedKeyID, ...]:
    ids = [i.proposal.body.psk for i in items if isinstance(i.proposal.body, PreSharedKey)]
    encoded = [p.to_bytes() for p in ids]
    if len(set(encoded)) != len(encoded):
        raise _fail("RFC9420-12.2-unique-psk-id")
    return tuple(ids)


def _check_adds(tree: RatchetTree, items: Sequence[ProposalItem]) -> None:
    adds = _of_type(items, Add)
    if not adds:
        return
    removed = set()
    for item in items:
        if isinstance(item.proposal.body, Remove):
            leaf = tree.leaf_node(item.proposal.body.removed)
            if leaf is not None:
                removed.add(leaf.signature_key)
    seen: set[bytes] = set()
    for item in adds:
        assert isinstance(item.proposal.body, Add)
        key = item.proposal.body.key_package.leaf_node.signature_key
        if key in seen:
            raise _fail("RFC9420-12.2-duplicate-add")
        if tree.index.has_signature_key(key) and key not in removed:
            raise _fail("RFC9420-12.2-add-existing-member")
        seen.add(key)


def apply_proposals(
    s: CipherSuite,
    tree: RatchetTree,
    group_id: bytes,
    extensions: tuple[Extension, ...],
    items: Sequence[ProposalItem],
    committer: int | None,
    now: int | None = None,
    resumption_usage: ResumptionPSKUsage | None = None,
) -> Applied:
    """Validate the list (§12.2; ``committer`` is None for an external Commit) and apply it
    in the order of §12.3. The inputs are values; the result is a new tree.
    ``resumption_usage``: see :func:`check_proposal`."""
    for item in items:
        check_proposal(s, tree, group_id, extensions, item, now, resumption_usage)
    if committer is None:
        _check_external_list(items)
    else:
        _check_regular_list(items, committer)
    psk_ids = _check_psk_ids(items)
    _check_adds(tree, items)
    gce = _of_type(items, GroupContextExtensions)
    if gce:
        assert isinstance(gce[0].proposal.body, GroupContextExtensions)
        extensions = gce[0].proposal.body.extensions
    new_tree, updated, removed = tree, [], []
    for item in _of_type(items, Update):
        assert isinstance(item.proposal.body, Update)
        new_tree = new_tree.update_leaf(item.sender.index, item.proposal.body.leaf_node)
        updated.append(item.sender.index)
    for item in _of_type(items, Remove):
        assert isinstance(item.proposal.body, Remove)
        new_tree = new_tree.remove_leaf(item.proposal.body.removed)
        removed.append(item.proposal.body.removed)
    added = []
    for item in _of_type(items, Add):
        assert isinstance(item.proposal.body, Add)
        kp = item.proposal.body.key_package
        validate_group_leaf(new_tree, extensions, kp.leaf_node, None, now)
        new_tree, index = new_tree.add_leaf(kp.leaf_node)
        added.append((index, kp))
    if gce:
        check_context_extensions(new_tree, extensions)
    check_unique_keys(new_tree)
    init = _of_type(items, ExternalInit)
    reinit = _of_type(items, ReInit)
    return Applied(
        tree=new_tree,
        extensions=extensions,
        added=tuple(added),
        removed=tuple(removed),
        updated=tuple(updated),
        psk_ids=psk_ids,
        external_init=init[0].proposal.body if init else None,  # type: ignore[arg-type]
        reinit=reinit[0].proposal.body if reinit else None,  # type: ignore[arg-type]
        path_required=not items or any(i.proposal.proposal_type in PATH_REQUIRED for i in items),
    )
