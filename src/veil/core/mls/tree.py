"""The public ratchet tree of an MLS group (RFC 9420 §4, §7.7, §12.1, §12.4.3.3).

:class:`RatchetTree` is an immutable value: an array of optional nodes in the array-tree order
of Appendix C (leaf ``i`` at node ``2i``, parents at odd indices; ``None`` is a blank node),
always a full tree of 2^d leaves. Every operation returns a new tree, so a caller can stage the
changes of a Commit and keep them only if everything validates (ARCHITECTURE.md §6.2).

* §4.1.1 resolution (:meth:`RatchetTree.resolution`) and §4.1.2 filtered direct path;
* §7.7 / §12.1.1-3 adding (leftmost blank leaf, else extend: the tree doubles; the new leaf
  joins the ``unmerged_leaves`` of its non-blank ancestors), updating and removing leaves
  (blank the leaf and its direct path, then truncate the empty right half);
* §12.4.3.3 the ``ratchet_tree`` extension: trailing blanks are omitted on the wire; a
  received tree must end in a non-blank node and is padded to a full tree.

Hashes live in :mod:`veil.core.mls.tree_hash`, validation in :mod:`veil.core.mls.tree_validate`.
A tree carries a memo of the node tree hashes computed on it; a tree derived by an operation
inherits every entry the operation cannot have changed (not the changed nodes, not their
ancestors), so a Commit that changes one path rehashes O(log n) nodes, not the whole tree.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from veil.core.errors import DecodeError, LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.structs.tree import (
    LeafNode,
    Node,
    ParentNode,
    decode_ratchet_tree,
    encode_ratchet_tree,
)
from veil.core.mls.tree_index import TreeIndex, TreeNode

__all__ = ["RatchetTree", "TreeIndex", "TreeNode"]


def _check_kind(x: int, value: TreeNode | None) -> None:
    if value is not None and isinstance(value, LeafNode) != (x % 2 == 0):
        raise LocalError(f"node {x} holds the wrong kind of node")


def _is_full_width(width: int) -> bool:
    """Whether ``width`` = 2^(d+1) - 1 for some d ≥ 0 (a full tree)."""
    return width >= 1 and (width + 1) & width == 0


@dataclass(frozen=True, slots=True)
class RatchetTree:
    """A full ratchet tree: ``nodes[x]`` is node ``x`` (``None`` when blank)."""

    nodes: tuple[TreeNode | None, ...]
    memo: dict[int, dict[int, bytes]] = field(default_factory=dict, compare=False, repr=False)
    """Tree hashes already computed: ``memo[suite id][node] = hash`` (see tree_hash)."""
    _index: TreeIndex | None = field(default=None, init=False, compare=False, repr=False)
    """Key and credential counts (see tree_index), built on first use, then carried along."""

    def __post_init__(self) -> None:
        if not _is_full_width(len(self.nodes)):
            raise LocalError(f"a ratchet tree has 2^(d+1)-1 nodes, not {len(self.nodes)}")
        for x, value in enumerate(self.nodes):
            _check_kind(x, value)

    @classmethod
    def _derived(
        cls,
        nodes: tuple[TreeNode | None, ...],
        memo: dict[int, dict[int, bytes]],
        index: TreeIndex | None,
    ) -> RatchetTree:
        """A tree made by an operation on a valid tree (which checked what it changed)."""
        tree = object.__new__(cls)
        object.__setattr__(tree, "nodes", nodes)
        object.__setattr__(tree, "memo", memo)
        object.__setattr__(tree, "_index", index)
        return tree

    @property
    def index(self) -> TreeIndex:
        """Counts of keys and credential types over the nodes (built once, O(n))."""
        if self._index is None:
            object.__setattr__(self, "_index", TreeIndex.build(self.nodes))
        assert self._index is not None
        return self._index

    # --- construction and the wire form (§12.4.3.3) ----------------------------------------

    @classmethod
    def from_nodes(cls, nodes: Sequence[Node | TreeNode | None]) -> RatchetTree:
        """A tree from a received node array: the last node must be non-blank; blanks are
        appended up to the next full width. Leaves must sit at even, parents at odd indices.

        Raises DecodeError for an array that is not a well-formed tree.
        """
        values = [n.value if isinstance(n, Node) else n for n in nodes]
        if not values or values[-1] is None:
            raise DecodeError("ratchet_tree: empty, or its last node is blank")
        for x, value in enumerate(values):
            if value is not None and isinstance(value, LeafNode) != (x % 2 == 0):
                kind = "parent" if x % 2 else "leaf"
                raise DecodeError(f"ratchet_tree: node {x} should be a {kind} node")
        width = len(values)
        while not _is_full_width(width):
            width += 1
        values.extend([None] * (width - len(values)))
        return cls(tuple(values))

    @classmethod
    def from_bytes(cls, data: bytes) -> RatchetTree:
        """Parse the ``ratchet_tree`` extension body (§12.4.3.3)."""
        return cls.from_nodes(decode_ratchet_tree(data))

    @classmethod
    def single(cls, leaf: LeafNode) -> RatchetTree:
        """The one-member tree of a new group (§11)."""
        return cls((leaf,))

    def to_nodes(self) -> list[Node | None]:
        """The node array without trailing blanks, as sent in the extension."""
        end = len(self.nodes)
        while end > 1 and self.nodes[end - 1] is None:
            end -= 1
        return [None if v is None else Node(v) for v in self.nodes[:end]]

    def to_bytes(self) -> bytes:
        return encode_ratchet_tree(self.to_nodes())

    # --- accessors ----------------------------------------------------------------------

    @property
    def n_leaves(self) -> int:
        return tm.leaf_count(len(self.nodes))

    @property
    def width(self) -> int:
        return len(self.nodes)

    @property
    def root(self) -> int:
        return tm.root(self.n_leaves)

    def node(self, x: int) -> TreeNode | None:
        if not 0 <= x < len(self.nodes):
            raise LocalError(f"node {x} is outside a tree of {len(self.nodes)} nodes")
        return self.nodes[x]

    def leaf_node(self, leaf_index: int) -> LeafNode | None:
        """The LeafNode at leaf ``leaf_index``, or ``None`` if that leaf is blank."""
        value = self.node(tm.leaf_node(leaf_index))
        return value if isinstance(value, LeafNode) else None

    def parent_node(self, x: int) -> ParentNode | None:
        value = self.node(x)
        return value if isinstance(value, ParentNode) else None

    def encryption_key(self, x: int) -> bytes:
        """The HPKE public key of non-blank node ``x``."""
        value = self.node(x)
        if value is None:
            raise LocalError(f"node {x} is blank")
        return value.encryption_key

    def leaves(self) -> Iterator[tuple[int, LeafNode]]:
        """``(leaf_index, LeafNode)`` of every non-blank leaf, left to right."""
        for x in range(0, len(self.nodes), 2):
            value = self.nodes[x]
            if isinstance(value, LeafNode):
                yield x // 2, value

    def parents(self) -> Iterator[tuple[int, ParentNode]]:
        """``(node_index, ParentNode)`` of every non-blank parent, left to right."""
        for x in range(1, len(self.nodes), 2):
            value = self.nodes[x]
            if isinstance(value, ParentNode):
                yield x, value

    def member_count(self) -> int:
        return self.index.members

    # --- §4.1 resolution and filtered direct path ---------------------------------------

    def resolution(self, x: int, exclude: Collection[int] = ()) -> list[int]:
        """The resolution of node ``x`` (§4.1.1) as node indices, left to right.

        ``exclude`` lists leaf indices left out (the members added by the current Commit,
        §7.6), both as leaves and as unmerged-leaf entries.
        """
        value = self.node(x)
        if value is None:
            level = tm.level(x)
            if level == 0:
                return []
            half = (1 << level) - 1
            if not any(self.nodes[x - half + 1 : x + half : 2]):
                # No parent below x is set: the resolution is the subtree's non-blank leaves.
                first = x - half
                span = self.nodes[first : x + half + 1 : 2]
                return [
                    first + 2 * i
                    for i, v in enumerate(span)
                    if v is not None and (first // 2 + i) not in exclude
                ]
            return self.resolution(tm.left(x), exclude) + self.resolution(tm.right(x), exclude)
        if isinstance(value, LeafNode):
            return [] if x // 2 in exclude else [x]
        return [x] + [tm.leaf_node(i) for i in value.unmerged_leaves if i not in exclude]

    def subtree_is_blank(self, x: int) -> bool:
        """Whether every node under ``x`` (``x`` included) is blank, i.e. its resolution is
        empty (one C-level ``any`` over the subtree's slice of the array: nodes are truthy,
        blanks are None)."""
        half = (1 << tm.level(x)) - 1
        return not any(self.nodes[x - half : x + half + 1])

    def filtered_path(self, leaf_index: int) -> list[tuple[int, int]]:
        """``(node, copath child)`` for each node of the leaf's filtered direct path (§4.1.2),
        from the leaf upwards: a direct-path node is dropped when its copath child has an
        empty resolution."""
        self._check_leaf_index(leaf_index)
        x = tm.leaf_node(leaf_index)
        n = self.n_leaves
        out: list[tuple[int, int]] = []
        for child in [x, *tm.direct_path(x, n)][:-1]:
            sibling = tm.sibling(child, n)
            if not self.subtree_is_blank(sibling):
                out.append((tm.parent(child, n), sibling))
        return out

    def filtered_direct_path(self, leaf_index: int) -> list[int]:
        return [p for p, _ in self.filtered_path(leaf_index)]

    def direct_path(self, leaf_index: int) -> list[int]:
        self._check_leaf_index(leaf_index)
        return tm.direct_path(tm.leaf_node(leaf_index), self.n_leaves)

    def _check_leaf_index(self, leaf_index: int) -> None:
        if not 0 <= leaf_index < self.n_leaves:
            raise LocalError(f"leaf {leaf_index} is outside a tree of {self.n_leaves} leaves")

    # --- evolution (§7.7, §12.1) --------------------------------------------------------

    def replace(self, changes: Mapping[int, TreeNode | None]) -> RatchetTree:
        """A copy with the given nodes set (``None`` blanks a node)."""
        values = list(self.nodes)
        for x, value in changes.items():
            self.node(x)
            _check_kind(x, value)
            values[x] = value
        index = None if self._index is None else self._index.changed(self.nodes, changes)
        return RatchetTree._derived(tuple(values), self._memo_without(changes), index)

    def _memo_without(self, changed: Collection[int]) -> dict[int, dict[int, bytes]]:
        """The hash memo minus the changed nodes and their ancestors."""
        if not self.memo:
            return {}
        n, r = self.n_leaves, self.root
        stale: set[int] = set()
        for x in changed:
            y = x
            while y not in stale:  # x and its ancestors, up to one already seen
                stale.add(y)
                if y == r:
                    break
                y = tm.parent(y, n)
        memo = {sid: hashes.copy() for sid, hashes in self.memo.items()}
        for hashes in memo.values():
            for x in stale:
                hashes.pop(x, None)
        return memo

    def blank_direct_path(self, leaf_index: int) -> RatchetTree:
        """Blank every parent on the leaf's direct path (the leaf itself is kept)."""
        return self.replace(dict.fromkeys(self.direct_path(leaf_index)))

    def extend(self) -> RatchetTree:
        """Double the leaf count: a new blank root over this tree and a blank right half."""
        # Every old node keeps its children, so every memoised hash stays valid.
        memo = {sid: hashes.copy() for sid, hashes in self.memo.items()}
        return RatchetTree._derived(self.nodes + (None,) * (len(self.nodes) + 1), memo, self._index)

    def truncate(self) -> RatchetTree:
        """Drop the right half while it holds no non-blank leaf (§7.7)."""
        nodes = self.nodes
        while len(nodes) > 1:
            half = (len(nodes) - 1) // 2
            if any(nodes[x] is not None for x in range(half + 1, len(nodes), 2)):
                break
            nodes = nodes[:half]
        if len(nodes) == len(self.nodes):
            return self
        width = len(nodes)
        memo = {
            sid: {x: h for x, h in hashes.items() if x < width} for sid, hashes in self.memo.items()
        }
        return RatchetTree._derived(nodes, memo, self._index)

    def leftmost_blank_leaf(self) -> int | None:
        for x in range(0, len(self.nodes), 2):
            if self.nodes[x] is None:
                return x // 2
        return None

    def add_leaf(self, leaf: LeafNode) -> tuple[RatchetTree, int]:
        """§12.1.1: put ``leaf`` in the leftmost blank leaf (extending the tree if there is
        none) and add its index to the unmerged leaves of its non-blank ancestors.
        Returns the new tree and the new leaf's index."""
        tree = self
        index = tree.leftmost_blank_leaf()
        if index is None:
            index = tree.n_leaves
            tree = tree.extend()
        changes: dict[int, TreeNode | None] = {tm.leaf_node(index): leaf}
        for x in tree.direct_path(index):
            parent = tree.parent_node(x)
            if parent is not None:
                unmerged = tuple(sorted({*parent.unmerged_leaves, index}))
                changes[x] = ParentNode(parent.encryption_key, parent.parent_hash, unmerged)
        return tree.replace(changes), index

    def update_leaf(self, leaf_index: int, leaf: LeafNode) -> RatchetTree:
        """§12.1.2: replace the leaf and blank its direct path."""
        if self.leaf_node(leaf_index) is None:
            raise LocalError(f"leaf {leaf_index} is blank")
        return self.blank_direct_path(leaf_index).replace({tm.leaf_node(leaf_index): leaf})

    def remove_leaf(self, leaf_index: int) -> RatchetTree:
        """§12.1.3: blank the leaf and its direct path, then truncate."""
        if self.leaf_node(leaf_index) is None:
            raise LocalError(f"leaf {leaf_index} is blank")
        tree = self.blank_direct_path(leaf_index).replace({tm.leaf_node(leaf_index): None})
        return tree.truncate()

    def set_leaf(self, leaf_index: int, leaf: LeafNode) -> RatchetTree:
        """Replace one leaf, nothing else (e.g. the committer's new leaf after a path)."""
        return self.replace({tm.leaf_node(leaf_index): leaf})
