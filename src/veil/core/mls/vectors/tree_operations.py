"""``tree-operations.json``: applying Add, Update and Remove proposals to a ratchet tree
(RFC 9420 §7.7, §7.8, §12.1.1-3).

Each case (suite 1 only): ``tree_before`` (``ratchet_tree`` extension body), ``proposal`` (a
serialized Proposal), ``proposal_sender`` (leaf index of the sender, used by Update),
``tree_hash_before``, ``tree_after`` and ``tree_hash_after``. Check the tree hash before,
apply the proposal, then the result must serialize to ``tree_after`` and hash to
``tree_hash_after``.
"""

from __future__ import annotations

from veil.core.mls.structs.proposals import Add, Proposal, Remove, Update
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_hash import tree_hash
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import suite_of


def apply(tree: RatchetTree, proposal: Proposal, sender: int) -> RatchetTree:
    """Apply one membership proposal to the tree."""
    body = proposal.body
    if isinstance(body, Add):
        return tree.add_leaf(body.key_package.leaf_node)[0]
    if isinstance(body, Update):
        return tree.update_leaf(sender, body.leaf_node)
    if isinstance(body, Remove):
        return tree.remove_leaf(body.removed)
    raise AssertionError(f"unexpected proposal type {proposal.proposal_type!r}")


def check(case: Case) -> None:
    cs = suite_of(case)
    before = RatchetTree.from_bytes(bytes.fromhex(case["tree_before"]))
    assert tree_hash(before, cs).hex() == case["tree_hash_before"], "tree hash before"
    proposal = Proposal.from_bytes(bytes.fromhex(case["proposal"]))
    after = apply(before, proposal, int(case["proposal_sender"]))
    assert after.to_bytes().hex() == case["tree_after"], "tree after"
    assert tree_hash(after, cs).hex() == case["tree_hash_after"], "tree hash after"
