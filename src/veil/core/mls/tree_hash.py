"""Tree hashes and parent hashes of a ratchet tree (RFC 9420 §7.8, §7.9).

* §7.8: the tree hash of a node is ``Hash(TreeHashInput)``, a LeafNodeHashInput (leaf index,
  optional LeafNode) or a ParentNodeHashInput (optional ParentNode, the children's hashes).
  :func:`node_hash` computes a node's hash from its children's, memoised on the tree (a tree
  derived from another keeps the hashes of the nodes that did not change, so rehashing after
  a Commit costs O(log n)); :func:`tree_hashes` gives every node's.
* §7.9: the parent hash of P with copath child S is ``Hash(ParentHashInput)`` over P's
  encryption key, P's own ``parent_hash`` field and S's *original* sibling tree hash: the tree
  hash of S with P's unmerged leaves blanked and dropped from every ``unmerged_leaves`` list.
* §7.9.2: :func:`verify_parent_hashes` checks, top down, that every non-blank parent node has
  exactly one descendant whose ``parent_hash`` is valid with respect to it, so each one is
  chained to a leaf. :func:`path_parent_hashes` fills in the parent hashes along a filtered
  direct path when an UpdatePath is created or merged (§7.5).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from veil.core.mls import tree_math as tm
from veil.core.mls.codec import Writer
from veil.core.mls.errors import ValidationError
from veil.core.mls.structs.common import LeafNodeSource
from veil.core.mls.structs.tree import LeafNode, NodeType, ParentNode
from veil.core.mls.suite import CipherSuite
from veil.core.mls.tree import RatchetTree, TreeNode

REQ_PARENT_HASH = "RFC9420-7.9.2-parent-hash"


def _leaf_hash(suite: CipherSuite, leaf_index: int, leaf: LeafNode | None) -> bytes:
    w = Writer()
    w.u8(NodeType.LEAF)
    w.u32(leaf_index)
    w.optional(leaf, lambda s, v: v.encode(s))
    return suite.hash(w.getvalue())


def _parent_hash_input(
    suite: CipherSuite, parent: ParentNode | None, left_hash: bytes, right_hash: bytes
) -> bytes:
    w = Writer()
    w.u8(NodeType.PARENT)
    w.optional(parent, lambda s, v: v.encode(s))
    w.opaque(left_hash)
    w.opaque(right_hash)
    return suite.hash(w.getvalue())


def node_hash(tree: RatchetTree, suite: CipherSuite, x: int) -> bytes:
    """The tree hash of node ``x`` (§7.8), from the tree's memo when it is there."""
    memo = tree.memo.setdefault(suite.id, {})
    cached = memo.get(x)
    if cached is not None:
        return cached
    value = tree.node(x)
    if tm.level(x) == 0:
        h = _leaf_hash(suite, x // 2, value if isinstance(value, LeafNode) else None)
    else:
        left = node_hash(tree, suite, tm.left(x))
        right = node_hash(tree, suite, tm.right(x))
        h = _parent_hash_input(suite, value if isinstance(value, ParentNode) else None, left, right)
    memo[x] = h
    return h


def tree_hashes(tree: RatchetTree, suite: CipherSuite) -> list[bytes]:
    """The tree hash of every node (§7.8), indexed by node."""
    node_hash(tree, suite, tree.root)
    return [node_hash(tree, suite, x) for x in range(tree.width)]


def tree_hash(tree: RatchetTree, suite: CipherSuite) -> bytes:
    """The tree hash of the root: the ``tree_hash`` of the GroupContext."""
    return node_hash(tree, suite, tree.root)


def _hash_without(tree: RatchetTree, suite: CipherSuite, x: int, drop: frozenset[int]) -> bytes:
    """The tree hash of node ``x`` with the leaves in ``drop`` blanked and removed from every
    ``unmerged_leaves`` list; reuses the plain hash for subtrees that contain none of them."""
    k = tm.level(x)
    first, last = (x - ((1 << k) - 1)) // 2, (x + ((1 << k) - 1)) // 2
    if not any(first <= i <= last for i in drop):
        return node_hash(tree, suite, x)
    if k == 0:
        return _leaf_hash(suite, x // 2, None)
    value = tree.parent_node(x)
    if value is not None:
        unmerged = tuple(i for i in value.unmerged_leaves if i not in drop)
        value = ParentNode(value.encryption_key, value.parent_hash, unmerged)
    left = _hash_without(tree, suite, tm.left(x), drop)
    right = _hash_without(tree, suite, tm.right(x), drop)
    return _parent_hash_input(suite, value, left, right)


def parent_hash(
    suite: CipherSuite, encryption_key: bytes, parent_hash_field: bytes, sibling_hash: bytes
) -> bytes:
    """``Hash(ParentHashInput)`` (§7.9)."""
    w = Writer()
    w.opaque(encryption_key)
    w.opaque(parent_hash_field)
    w.opaque(sibling_hash)
    return suite.hash(w.getvalue())


def parent_hash_of(tree: RatchetTree, suite: CipherSuite, p: int, s: int) -> bytes:
    """The parent hash of non-blank parent ``p`` with copath child ``s`` in this tree."""
    node = tree.parent_node(p)
    if node is None:
        raise ValidationError(REQ_PARENT_HASH, f"node {p} is blank")
    sibling = _hash_without(tree, suite, s, frozenset(node.unmerged_leaves))
    return parent_hash(suite, node.encryption_key, node.parent_hash, sibling)


def _subtree_leaves(tree: RatchetTree, c: int, leaves: Collection[int]) -> set[int]:
    return {tm.leaf_node(i) for i in leaves if tm.is_in_subtree(tm.leaf_node(i), c)}


def _valid_links(tree: RatchetTree, suite: CipherSuite, p: int) -> int:
    """How many descendants D of parent ``p`` have a parent hash valid w.r.t. ``p`` (§7.9.2)."""
    node = tree.parent_node(p)
    assert node is not None
    count = 0
    for c, s in ((tm.left(p), tm.right(p)), (tm.right(p), tm.left(p))):
        expected = parent_hash_of(tree, suite, p, s)
        resolution = tree.resolution(c)
        unmerged = _subtree_leaves(tree, c, node.unmerged_leaves)
        for d in resolution:
            value = tree.node(d)
            stored = value.parent_hash if value is not None else b""
            if isinstance(value, LeafNode) and value.leaf_node_source != LeafNodeSource.COMMIT:
                continue
            if stored == expected and set(resolution) - {d} == unmerged:
                count += 1
    return count


def verify_parent_hashes(tree: RatchetTree, suite: CipherSuite) -> None:
    """§7.9.2: every non-blank parent node must be parent-hash valid, i.e. have exactly one
    descendant whose parent hash links to it. Raises ValidationError otherwise."""
    for p, _ in tree.parents():
        links = _valid_links(tree, suite, p)
        if links != 1:
            raise ValidationError(REQ_PARENT_HASH, f"node {p} has {links} parent-hash links")


def path_parent_hashes(
    tree: RatchetTree, suite: CipherSuite, path: Sequence[tuple[int, int]]
) -> tuple[RatchetTree, bytes]:
    """Fill in ``parent_hash`` along a freshly set filtered direct path (§7.5, §7.9).

    ``path`` is the filtered direct path as ``(node, copath child)`` from the leaf upwards; its
    nodes must already hold their new keys and no unmerged leaves. Hashes are computed from
    the root down (the root's ``parent_hash`` is empty). Returns the tree with the fields set
    and the parent hash the leaf must carry.
    """
    above = b""
    changes: dict[int, TreeNode | None] = {}
    for p, s in reversed(path):
        key = tree.encryption_key(p)
        changes[p] = ParentNode(key, above, ())
        above = parent_hash(suite, key, above, node_hash(tree, suite, s))
    return tree.replace(changes), above
