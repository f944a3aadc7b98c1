"""Validating and applying proposals (RFC 9420 §7.3, §10.1, §12.1, §12.2, §12.3).

* :func:`validate_key_package` -- §10.1 (suite, version, signature, leaf node, lifetime
  against a caller-supplied ``now``, distinct init key);
* :func:`validate_group_leaf` -- §7.3 checks of a LeafNode that depend on the group
  (required capabilities, credential types in use, lifetime);
* :func:`check_proposal` -- the per-proposal rules of §12.1 (and §12.1.8 for external
  senders);
* :func:`apply_proposals` -- §12.2 list validation (regular or external Commit) and the
  application order of §12.3: GroupContextExtensions, Updates, Removes, Adds, then PSKs,
  ExternalInit and ReInit are noted. Returns a new tree; nothing is modified.

Every failure is a :class:`~veil.core.mls.errors.ValidationError` named after its rule,
e.g. ``RFC9420-12.2-no-update-by-committer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from veil.core.errors import DecodeError
from veil.core.mls.errors import ValidationError
from veil.core.mls.structs.common import (
    Extension,
    ExtensionType,
    ExternalSender,
    LeafNodeSource,
    Lifetime,
    ProtocolVersion,
    RequiredCapabilities,
    decode_external_senders,
    find_extension,
)
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
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import CipherSuite
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_validate import DEFAULT_EXTENSIONS, check_unique_keys, validate_leaf_node

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


# --- group-dependent leaf validation (§7.3, §10.1) ----------------------------------------


def required_capabilities(extensions: Sequence[Extension]) -> RequiredCapabilities | None:
    data = find_extension(extensions, ExtensionType.REQUIRED_CAPABILITIES)
    if data is None:
        return None
    try:
        return RequiredCapabilities.from_bytes(data)
    except DecodeError:
        raise _fail("RFC9420-11.1-required-capabilities", "malformed extension") from None


def external_senders(extensions: Sequence[Extension]) -> tuple[ExternalSender, ...]:
    data = find_extension(extensions, ExtensionType.EXTERNAL_SENDERS)
    if data is None:
        return ()
    try:
        return decode_external_senders(data)
    except DecodeError:
        raise _fail("RFC9420-12.1.8.1-external-senders", "malformed extension") from None


def _supports(leaf: LeafNode, required: RequiredCapabilities | None) -> bool:
    if required is None:
        return True
    caps = leaf.capabilities
    return (
        all(t in caps.extensions or t in DEFAULT_EXTENSIONS for t in required.extension_types)
        and all(t in caps.proposals or t <= 7 for t in required.proposal_types)
        and all(t in caps.credentials for t in required.credential_types)
    )


def _supports_extensions(leaf: LeafNode, extensions: Sequence[Extension]) -> bool:
    return all(
        e.extension_type in DEFAULT_EXTENSIONS or e.extension_type in leaf.capabilities.extensions
        for e in extensions
    )


MAX_LIFETIME_S = 90 * 86400
"""Veil's maximum total lifetime of a LeafNode (§7.2: "Applications MUST define a maximum
total lifetime ... and reject any LeafNode where the total lifetime is longer"). It is part of
the time policy, so, like the lifetime itself, it is checked when the caller passes ``now``
(other implementations publish KeyPackages valid for 0 .. 2^64-1, as the official vectors
do; a caller that must accept those passes no time)."""


def _alive(lifetime: Lifetime | None, now: int) -> bool:
    return lifetime is None or (
        lifetime.not_before <= now <= lifetime.not_after
        and lifetime.not_after - lifetime.not_before <= MAX_LIFETIME_S
    )


def validate_group_leaf(
    tree: RatchetTree,
    extensions: Sequence[Extension],
    leaf: LeafNode,
    replacing: int | None = None,
    now: int | None = None,
) -> None:
    """§7.3 checks of ``leaf`` against the group: required capabilities, credential types
    supported both ways (ignoring the leaf it replaces), lifetime when ``now`` is given."""
    if not _supports(leaf, required_capabilities(extensions)):
        raise _fail("RFC9420-7.3-required-capabilities")
    if not _credentials_compatible(tree, leaf, replacing):
        ctype = leaf.credential.credential_type
        for index, member in tree.leaves():  # only to name the leaf in the error
            if index != replacing and (
                ctype not in member.capabilities.credentials
                or member.credential.credential_type not in leaf.capabilities.credentials
            ):
                raise _fail("RFC9420-7.3-credential-supported", f"leaf {index}")
    if now is not None and not _alive(leaf.lifetime, now):
        raise _fail("RFC9420-7.3-lifetime")


def _credentials_compatible(tree: RatchetTree, leaf: LeafNode, replacing: int | None) -> bool:
    """§7.3: every member but ``replacing`` supports the leaf's credential type, and the leaf
    supports every credential type those members use (counted by the tree's index)."""
    index = tree.index
    members, supported = index.members, index.supported.get(leaf.credential.credential_type, 0)
    in_use = dict(index.credential_types)
    old = None if replacing is None or replacing >= tree.n_leaves else tree.leaf_node(replacing)
    if old is not None:
        members -= 1
        supported -= leaf.credential.credential_type in old.capabilities.credentials
        in_use[old.credential.credential_type] -= 1
    if supported != members:
        return False
    return all(t in leaf.capabilities.credentials for t, count in in_use.items() if count)


def validate_key_package(
    s: CipherSuite, kp: KeyPackage, now: int | None = None, version: int = ProtocolVersion.MLS10
) -> None:
    """§10.1: suite and version, signature, leaf node (source key_package), lifetime if
    ``now`` is given, and an init key distinct from the leaf's encryption key."""
    if kp.cipher_suite != s.id:
        raise _fail("RFC9420-10.1-cipher-suite")
    if kp.version != version:
        raise _fail("RFC9420-10.1-version")
    if not s.verify_with_label(
        kp.leaf_node.signature_key, b"KeyPackageTBS", kp.tbs(), kp.signature
    ):
        raise _fail("RFC9420-10.1-signature")
    validate_leaf_node(s, kp.leaf_node, b"", 0, LeafNodeSource.KEY_PACKAGE)
    if now is not None and not _alive(kp.leaf_node.lifetime, now):
        raise _fail("RFC9420-10.1-lifetime")
    if kp.init_key == kp.leaf_node.encryption_key:
        raise _fail("RFC9420-10.1-init-key-distinct")


def check_context_extensions(tree: RatchetTree, extensions: Sequence[Extension]) -> None:
    """§12.1.7, §11.1: every member supports the group's extensions and required
    capabilities; the extensions Veil interprets (required_capabilities, external_senders,
    §12.1.8.1) must parse, so a malformed one is refused when it is set, not when used."""
    required = required_capabilities(extensions)
    external_senders(extensions)
    for index, leaf in tree.leaves():
        if not _supports(leaf, required):
            raise _fail("RFC9420-12.1.7-required-capabilities", f"leaf {index}")
        if not _supports_extensions(leaf, extensions):
            raise _fail("RFC9420-12.1.7-extension-supported", f"leaf {index}")


# --- single proposals (§12.1) ---------------------------------------------------------------


def check_proposal(
    s: CipherSuite,
    tree: RatchetTree,
    group_id: bytes,
    extensions: Sequence[Extension],
    item: ProposalItem,
    now: int | None = None,
) -> None:
    """The rules of §12.1 for one proposal as received (before any Commit applies it)."""
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
        _check_psk(s, body.psk)
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


def _check_psk(s: CipherSuite, psk: PreSharedKeyID) -> None:
    if psk.psktype == PSKType.RESUMPTION and psk.usage != ResumptionPSKUsage.APPLICATION:
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
) -> Applied:
    """Validate the list (§12.2; ``committer`` is None for an external Commit) and apply it
    in the order of §12.3. The inputs are values; the result is a new tree."""
    for item in items:
        check_proposal(s, tree, group_id, extensions, item, now)
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
