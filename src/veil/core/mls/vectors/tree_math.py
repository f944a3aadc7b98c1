"""``tree-math.json``: array-based tree arithmetic (RFC 9420 Appendix C).

Each case: ``n_leaves``, ``n_nodes``, ``root`` and arrays ``left``, ``right``, ``parent``,
``sibling`` indexed by node index, ``null`` where undefined (leaves have no children, the root
has no parent or sibling). Check all of them for every node.
"""

from __future__ import annotations

from collections.abc import Callable

from veil.core.errors import LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.vectors import Case


def _maybe(f: Callable[[int], int], x: int) -> int | None:
    try:
        return f(x)
    except LocalError:
        return None


def check(case: Case) -> None:
    n = int(case["n_leaves"])
    width = tm.node_width(n)
    assert width == case["n_nodes"], f"n_nodes {width} != {case['n_nodes']}"
    assert tm.root(n) == case["root"], "root"
    for name, f in (
        ("left", tm.left),
        ("right", tm.right),
        ("parent", lambda x: tm.parent(x, n)),
        ("sibling", lambda x: tm.sibling(x, n)),
    ):
        expected = case[name]
        assert len(expected) == width, f"{name}: {len(expected)} entries for {width} nodes"
        got = [_maybe(f, x) for x in range(width)]
        assert got == expected, f"{name} differs"
