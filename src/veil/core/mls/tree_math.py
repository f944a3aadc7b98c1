"""Array-based binary trees (RFC 9420 §4.1 and Appendix C).

Nodes are numbered left to right; leaves sit at even indices (leaf ``i`` is node ``2i``),
parents at odd ones. A tree with ``n`` leaves (``n`` a power of two, §7.8) has ``2n - 1`` nodes.
All functions are pure integer arithmetic on node indices.
"""

from __future__ import annotations

from veil.core.errors import LocalError


def level(x: int) -> int:
    """The level of node ``x``: 0 for leaves, k for a node whose subtree has 2^k leaves."""
    if x & 1 == 0:
        return 0
    k = 0
    while (x >> k) & 1 == 1:
        k += 1
    return k


def node_width(n_leaves: int) -> int:
    """Number of nodes in a tree of ``n_leaves`` leaves."""
    return 0 if n_leaves == 0 else 2 * (n_leaves - 1) + 1


def leaf_count(n_nodes: int) -> int:
    """Number of leaves of a tree of ``n_nodes`` nodes."""
    return 0 if n_nodes == 0 else (n_nodes + 1) // 2


def root(n_leaves: int) -> int:
    """The root's node index (§C: the largest power of two below the width, minus one)."""
    if n_leaves <= 0:
        raise LocalError("a tree has at least one leaf")
    w = node_width(n_leaves)
    return (1 << (w.bit_length() - 1)) - 1


def left(x: int) -> int:
    """Left child of intermediate node ``x``."""
    k = level(x)
    if k == 0:
        raise LocalError("a leaf has no children")
    return x ^ (0x01 << (k - 1))


def right(x: int) -> int:
    """Right child of intermediate node ``x``."""
    k = level(x)
    if k == 0:
        raise LocalError("a leaf has no children")
    return x ^ (0x03 << (k - 1))


def parent(x: int, n_leaves: int) -> int:
    """Parent of node ``x`` in a tree of ``n_leaves`` leaves."""
    if x == root(n_leaves):
        raise LocalError("the root has no parent")
    k = level(x)
    b = (x >> (k + 1)) & 0x01
    return (x | (1 << k)) ^ (b << (k + 1))


def sibling(x: int, n_leaves: int) -> int:
    """The other child of ``x``'s parent."""
    p = parent(x, n_leaves)
    return right(p) if x < p else left(p)


def direct_path(x: int, n_leaves: int) -> list[int]:
    """Parents from ``x`` (exclusive) up to the root (inclusive) (§4.1)."""
    r = root(n_leaves)
    path: list[int] = []
    while x != r:
        x = parent(x, n_leaves)
        path.append(x)
    return path


def copath(x: int, n_leaves: int) -> list[int]:
    """Siblings of ``x`` and of each node of its direct path except the root (§4.1)."""
    r = root(n_leaves)
    if x == r:
        return []
    nodes = [x, *direct_path(x, n_leaves)]
    nodes.pop()
    return [sibling(y, n_leaves) for y in nodes]


def is_in_subtree(x: int, top: int) -> bool:
    """Whether node ``x`` lies in the subtree rooted at ``top`` (``top`` included)."""
    k = level(top)
    return (x >> (k + 1)) == (top >> (k + 1))


def common_ancestor(x: int, y: int) -> int:
    """The lowest common ancestor of nodes ``x`` and ``y``."""
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return y
    if ly <= lx and x >> lx == y >> lx:
        return x
    xn, yn, k = x, y, 0
    while xn != yn:
        xn, yn, k = xn >> 1, yn >> 1, k + 1
    return (xn << k) + (1 << (k - 1)) - 1


def leaf_node(leaf_index: int) -> int:
    """Node index of leaf ``leaf_index``."""
    return 2 * leaf_index


def node_leaf(x: int) -> int:
    """Leaf index of node ``x`` (which must be a leaf)."""
    if x & 1:
        raise LocalError(f"node {x} is not a leaf")
    return x // 2
