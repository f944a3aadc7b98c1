"""Validation of leaf nodes and of a whole ratchet tree (RFC 9420 §7.3, §7.9.2, §12.4.3.1).

Each check raises :class:`~veil.core.mls.errors.ValidationError` whose ``requirement`` names
the MUST that failed:

* ``RFC9420-7.3-leaf-signature`` -- the LeafNode signature (over LeafNodeTBS, which binds the
  group id and leaf index for the update and commit sources) does not verify;
* ``RFC9420-7.3-leaf-node-source`` -- the source does not fit where the leaf appears;
* ``RFC9420-7.2-extension-in-capabilities`` / ``RFC9420-7.2-credential-in-capabilities`` --
  a non-default extension, or the credential type, is missing from the leaf's capabilities;
* ``RFC9420-7.3-unique-keys`` -- an encryption or signature key appears twice in the tree;
* ``RFC9420-7.1-unmerged-sorted`` and ``RFC9420-12.4.3.1-unmerged-leaves`` -- an
  ``unmerged_leaves`` list is unsorted, names a blank or foreign leaf, or is not repeated at
  every non-blank node between the leaf and the parent;
* ``RFC9420-12.4.3.1-tree-hash`` -- the tree does not hash to the GroupContext's tree hash;
* ``RFC9420-7.9.2-parent-hash`` -- a non-blank parent is not parent-hash valid.

Credential validation against an authentication service, lifetimes (they need a clock) and the
group-wide capability checks are the caller's (they depend on application policy).
"""

from __future__ import annotations

from veil.core.mls import tree_math as tm
from veil.core.mls.errors import ValidationError
from veil.core.mls.structs.common import LeafNodeSource
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import CipherSuite
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_hash import tree_hash, verify_parent_hashes

DEFAULT_EXTENSIONS = frozenset({1, 2, 3, 4, 5})
"""§7.2: extension types every client supports; they are never listed in capabilities."""


def verify_leaf_signature(
    suite: CipherSuite, leaf: LeafNode, group_id: bytes, leaf_index: int
) -> None:
    """§7.3: the LeafNode's signature verifies under its own ``signature_key``."""
    tbs = leaf.tbs(group_id, leaf_index)
    if not suite.verify_with_label(leaf.signature_key, b"LeafNodeTBS", tbs, leaf.signature):
        raise ValidationError("RFC9420-7.3-leaf-signature", f"leaf {leaf_index}")


def check_leaf_capabilities(leaf: LeafNode) -> None:
    """§7.2: non-default extensions and the credential type are listed in capabilities."""
    for ext in leaf.extensions:
        if ext.extension_type not in DEFAULT_EXTENSIONS and (
            ext.extension_type not in leaf.capabilities.extensions
        ):
            raise ValidationError(
                "RFC9420-7.2-extension-in-capabilities", f"extension {ext.extension_type}"
            )
    if leaf.credential.credential_type not in leaf.capabilities.credentials:
        raise ValidationError(
            "RFC9420-7.2-credential-in-capabilities",
            f"credential type {int(leaf.credential.credential_type)}",
        )


def validate_leaf_node(
    suite: CipherSuite,
    leaf: LeafNode,
    group_id: bytes,
    leaf_index: int,
    source: LeafNodeSource | None = None,
) -> None:
    """The §7.3 checks that need no clock, policy or other members: the source (when
    ``source`` says where the leaf appeared), capabilities and the signature."""
    if source is not None and leaf.leaf_node_source != source:
        raise ValidationError(
            "RFC9420-7.3-leaf-node-source",
            f"expected {source.name}, got {int(leaf.leaf_node_source)}",
        )
    check_leaf_capabilities(leaf)
    verify_leaf_signature(suite, leaf, group_id, leaf_index)


def verify_leaf_signatures(tree: RatchetTree, suite: CipherSuite, group_id: bytes) -> None:
    """Every non-blank leaf's signature verifies (§7.3, §12.4.3.1)."""
    for index, leaf in tree.leaves():
        verify_leaf_signature(suite, leaf, group_id, index)


def check_unique_keys(tree: RatchetTree) -> None:
    """§7.3, §12.4.3.1: no HPKE key appears in two nodes, no signature key in two leaves.

    Uses the tree's index (kept up to date as the tree evolves), so it costs O(1) once the
    index exists."""
    index = tree.index
    if index.repeated == 0:
        return
    if any(count > 1 for count in index.encryption_keys.values()):
        raise ValidationError("RFC9420-7.3-unique-keys", "repeated encryption key")
    raise ValidationError("RFC9420-7.3-unique-keys", "repeated signature key")


def check_unmerged_leaves(tree: RatchetTree) -> None:
    """§7.1 and §12.4.3.1: unmerged leaves are sorted, non-blank descendants, and every
    non-blank node between such a leaf and the parent lists it too."""
    req = "RFC9420-12.4.3.1-unmerged-leaves"
    for p, node in tree.parents():
        leaves = node.unmerged_leaves
        if list(leaves) != sorted(set(leaves)):
            raise ValidationError("RFC9420-7.1-unmerged-sorted", f"node {p}")
        for i in leaves:
            if i >= tree.n_leaves or tree.leaf_node(i) is None:
                raise ValidationError(req, f"node {p} lists blank leaf {i}")
            x = tm.leaf_node(i)
            if not tm.is_in_subtree(x, p):
                raise ValidationError(req, f"node {p} lists leaf {i} outside its subtree")
            for y in tm.direct_path(x, tree.n_leaves):
                if y == p:
                    break
                between = tree.parent_node(y)
                if between is not None and i not in between.unmerged_leaves:
                    raise ValidationError(req, f"node {y} does not list leaf {i}")


def validate_tree(
    tree: RatchetTree, suite: CipherSuite, group_id: bytes, expected_hash: bytes | None = None
) -> None:
    """The §12.4.3.1 integrity checks of a tree received on joining (see the module doc)."""
    if expected_hash is not None and tree_hash(tree, suite) != expected_hash:
        raise ValidationError("RFC9420-12.4.3.1-tree-hash")
    verify_parent_hashes(tree, suite)
    for index, leaf in tree.leaves():
        check_leaf_capabilities(leaf)
        verify_leaf_signature(suite, leaf, group_id, index)
    check_unmerged_leaves(tree)
    check_unique_keys(tree)
