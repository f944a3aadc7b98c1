"""Validating KeyPackages and leaves against a group (RFC 9420 §7.3, §10.1, §11.1, §12.1.7).

* :func:`validate_key_package` -- §10.1 (suite, version, signature, leaf node, lifetime
  against a caller-supplied ``now``, distinct init key);
* :func:`validate_group_leaf` -- §7.3 checks of a LeafNode that depend on the group
  (required capabilities, credential types in use, lifetime);
* :func:`check_context_extensions` -- every member supports the group's extensions;
* :func:`required_capabilities`, :func:`external_senders` -- the extensions Veil reads.

Split out of :mod:`veil.core.mls.proposals_validate`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import CipherSuite
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_validate import DEFAULT_EXTENSIONS, validate_leaf_node


def _fail(requirement: str, detail: str = "") -> ValidationError:
    return ValidationError(requirement, detail)


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
