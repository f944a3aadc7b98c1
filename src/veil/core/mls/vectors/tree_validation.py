"""``tree-validation.json``: resolutions, tree hashes and validity of ratchet trees (RFC 9420
§4.1.1, §7.3, §7.8, §7.9.2, §12.4.3.1).

Each case: ``cipher_suite``, ``tree`` (the ``ratchet_tree`` extension body, trailing blanks
omitted), ``group_id``, ``resolutions`` (for each node index of the full tree, the node
indices of its resolution) and ``tree_hashes`` (the tree hash of each node). Check every
resolution and tree hash, that every non-blank parent is parent-hash valid, and every leaf
(signature over LeafNodeTBS with ``group_id`` and the leaf index, capabilities); the trees also
pass Veil's other join-time checks (unmerged leaves, unique keys).
"""

from __future__ import annotations

from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_hash import tree_hashes
from veil.core.mls.tree_validate import validate_tree
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import suite_of

load_suite = suite_of
"""The case's cipher suite, or Skip when Veil does not implement it (``_util.suite_of``)."""


def check(case: Case) -> None:
    cs = suite_of(case)
    tree = RatchetTree.from_bytes(bytes.fromhex(case["tree"]))
    assert tree.width == len(case["tree_hashes"]), "node count"
    assert tree.to_bytes().hex() == case["tree"], "re-serialization"
    for x, expected in enumerate(case["resolutions"]):
        assert tree.resolution(x) == expected, f"resolution of node {x}"
    hashes = tree_hashes(tree, cs)
    assert [h.hex() for h in hashes] == case["tree_hashes"], "tree hashes"
    validate_tree(tree, cs, bytes.fromhex(case["group_id"]), hashes[tree.root])
