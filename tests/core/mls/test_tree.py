"""The public ratchet tree (RFC 9420 §4, §7.7-§7.9, §12.4.3): structure, hashes, validation.

Negative tests are named after the requirement id the code raises.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import DecodeError, LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.errors import ValidationError
from veil.core.mls.structs.common import Capabilities, Credential, LeafNodeSource
from veil.core.mls.structs.tree import LeafNode, Node, ParentNode, encode_ratchet_tree
from veil.core.mls.suite import suite
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_hash import tree_hash, tree_hashes, verify_parent_hashes
from veil.core.mls.tree_validate import (
    check_unique_keys,
    check_unmerged_leaves,
    validate_leaf_node,
    validate_tree,
    verify_leaf_signature,
)
from veil.core.mls.treekem import create_update_path
from veil.core.rng import Rng, seeded_rng

from .helpers import signed_leaf

CS = suite(1)
GROUP = b"group-id"


def make_leaf(rng: Rng, name: bytes) -> tuple[LeafNode, bytes]:
    """A KeyPackage-source leaf with a real signature; returns it and its signing key."""
    leaf, _, sig_priv = signed_leaf(rng, name, CS)
    return leaf, sig_priv


def parent(key: bytes, unmerged: tuple[int, ...] = ()) -> ParentNode:
    return ParentNode(key, b"", unmerged)


def tree_of(n_leaves: int, values: dict[int, LeafNode | ParentNode]) -> RatchetTree:
    nodes: list[LeafNode | ParentNode | None] = [None] * tm.node_width(n_leaves)
    for x, v in values.items():
        nodes[x] = v
    return RatchetTree(tuple(nodes))


@pytest.fixture(scope="module")
def leaves() -> list[LeafNode]:
    rng = seeded_rng(b"tree leaves")
    return [make_leaf(rng, bytes([65 + i]))[0] for i in range(8)]


def committed_tree(n: int, committer: int, seed: bytes) -> tuple[RatchetTree, list[bytes]]:
    """A tree of ``n`` members after ``committer`` sent an UpdatePath (parents non-blank)."""
    rng = seeded_rng(seed)
    made = [make_leaf(rng, bytes([65 + i])) for i in range(n)]
    tree = RatchetTree.single(made[0][0])
    for leaf, _ in made[1:]:
        tree = tree.add_leaf(leaf)[0]
    created = create_update_path(tree, CS, committer, made[committer][1], GROUP, lambda th: th, rng)
    return created.tree, [s for _, s in made]


# --- §4.1 resolution and filtered direct path -------------------------------------------


def test_resolution_matches_rfc_figure(leaves: list[LeafNode]) -> None:
    # §4.1.1 figure: leaves A B _ D E F _ H, X (node 3) with unmerged B, Y (node 9).
    values: dict[int, LeafNode | ParentNode] = {0: leaves[0], 2: leaves[1], 6: leaves[3]}
    values |= {8: leaves[4], 10: leaves[5], 14: leaves[7]}
    values |= {3: parent(b"X", (1,)), 9: parent(b"Y")}
    tree = tree_of(8, values)
    assert tree.resolution(3) == [3, 2]
    assert tree.resolution(4) == []
    assert tree.resolution(12) == []
    assert tree.resolution(7) == [3, 2, 9, 14]
    assert tree.resolution(7, exclude={1, 7}) == [3, 9]


def test_filtered_direct_path_matches_rfc_table(leaves: list[LeafNode]) -> None:
    # §4.1.2 figure: A B _ _ E F G _, T = 1, W = 7, X = 9, Y = 11; U, V, Z blank.
    values: dict[int, LeafNode | ParentNode] = {0: leaves[0], 2: leaves[1]}
    values |= {8: leaves[4], 10: leaves[5], 12: leaves[6]}
    values |= {1: parent(b"T"), 7: parent(b"W"), 9: parent(b"X"), 11: parent(b"Y")}
    tree = tree_of(8, values)
    assert tree.filtered_direct_path(0) == [1, 7]
    assert tree.filtered_direct_path(1) == [1, 7]
    assert tree.filtered_direct_path(4) == [9, 11, 7]
    assert tree.filtered_direct_path(5) == [9, 11, 7]
    assert tree.filtered_direct_path(6) == [11, 7]
    assert tree.filtered_path(6) == [(11, 9), (7, 3)]
    with pytest.raises(LocalError):
        tree.filtered_direct_path(8)


# --- §7.7 / §12.1 adding and removing leaves --------------------------------------------


def test_add_leaf_fills_leftmost_blank_then_extends(leaves: list[LeafNode]) -> None:
    tree = RatchetTree.single(leaves[0])
    tree, i = tree.add_leaf(leaves[1])
    assert (i, tree.n_leaves, tree.width) == (1, 2, 3)
    tree, i = tree.add_leaf(leaves[2])
    assert (i, tree.n_leaves) == (2, 4)
    tree = tree.remove_leaf(1)
    assert tree.n_leaves == 4 and tree.leaf_node(1) is None
    tree, i = tree.add_leaf(leaves[3])
    assert i == 1 and tree.leaf_node(1) == leaves[3]


def test_add_leaf_joins_unmerged_leaves_of_non_blank_ancestors(leaves: list[LeafNode]) -> None:
    tree = tree_of(4, {0: leaves[0], 2: leaves[1], 1: parent(b"P", (1,)), 3: parent(b"R", (1,))})
    tree, i = tree.add_leaf(leaves[2])
    assert i == 2
    root = tree.parent_node(3)
    assert root is not None and root.unmerged_leaves == (1, 2)
    assert tree.node(5) is None  # blank ancestors stay blank
    left = tree.parent_node(1)
    assert left is not None and left.unmerged_leaves == (1,)  # leaf 2 is not below it
    check_unmerged_leaves(tree)


def test_update_leaf_blanks_direct_path(leaves: list[LeafNode]) -> None:
    tree = tree_of(4, {0: leaves[0], 2: leaves[1], 4: leaves[2], 1: parent(b"P"), 3: parent(b"R")})
    updated = tree.update_leaf(2, leaves[3])
    assert updated.leaf_node(2) == leaves[3]
    assert updated.node(3) is None and updated.node(5) is None
    assert updated.node(1) == parent(b"P")
    assert tree.node(3) == parent(b"R")  # the original is untouched
    with pytest.raises(LocalError):
        tree.update_leaf(3, leaves[3])


def test_remove_leaf_blanks_path_and_truncates(leaves: list[LeafNode]) -> None:
    tree = tree_of(8, {0: leaves[0], 2: leaves[1], 8: leaves[4], 7: parent(b"R"), 1: parent(b"P")})
    removed = tree.remove_leaf(4)
    assert removed.n_leaves == 2
    assert removed.nodes == (leaves[0], parent(b"P"), leaves[1])
    assert tree.remove_leaf(1).n_leaves == 8  # a non-blank leaf remains on the right
    with pytest.raises(LocalError):
        tree.remove_leaf(2)


def test_truncation_keeps_at_least_one_leaf(leaves: list[LeafNode]) -> None:
    tree = tree_of(2, {0: leaves[0], 2: leaves[1]})
    assert tree.remove_leaf(1).nodes == (leaves[0],)
    assert tree.remove_leaf(0).n_leaves == 2
    assert tree.remove_leaf(0).remove_leaf(1).nodes == (None,)


# --- §12.4.3.3 the wire form -------------------------------------------------------------


def test_serialization_omits_trailing_blanks_and_round_trips(leaves: list[LeafNode]) -> None:
    tree = tree_of(4, {0: leaves[0], 4: leaves[2]})
    assert len(tree.to_nodes()) == 5
    again = RatchetTree.from_bytes(tree.to_bytes())
    assert again == tree and again.width == 7


def test_received_tree_with_trailing_blank_is_refused(leaves: list[LeafNode]) -> None:
    data = encode_ratchet_tree([Node(leaves[0]), None, None])
    with pytest.raises(DecodeError):
        RatchetTree.from_bytes(data)
    with pytest.raises(DecodeError):
        RatchetTree.from_bytes(encode_ratchet_tree([]))


def test_received_tree_with_node_of_wrong_kind_is_refused(leaves: list[LeafNode]) -> None:
    with pytest.raises(DecodeError):
        RatchetTree.from_nodes([leaves[0], leaves[1], leaves[2]])
    with pytest.raises(DecodeError):
        RatchetTree.from_nodes([parent(b"P")])


def test_truncated_tree_bytes_are_refused(leaves: list[LeafNode]) -> None:
    data = tree_of(2, {0: leaves[0], 2: leaves[1]}).to_bytes()
    for n in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            RatchetTree.from_bytes(data[:n])


# --- §7.8 tree hashes --------------------------------------------------------------------


def test_tree_hash_of_single_leaf_is_leaf_hash_input(leaves: list[LeafNode]) -> None:
    tree = RatchetTree.single(leaves[0])
    expected = CS.hash(b"\x01" + b"\x00\x00\x00\x00" + b"\x01" + leaves[0].to_bytes())
    assert tree_hash(tree, CS) == expected


def test_tree_hash_changes_with_any_node(leaves: list[LeafNode]) -> None:
    tree = tree_of(4, {0: leaves[0], 2: leaves[1], 4: leaves[2], 1: parent(b"P")})
    base = tree_hashes(tree, CS)
    assert len(base) == 7 and len(set(base)) == 7
    changed = tree.replace({1: parent(b"P", (1,))})
    hashes = tree_hashes(changed, CS)
    assert hashes[1] != base[1] and hashes[3] != base[3] and hashes[5] == base[5]


# --- §7.3 leaf validation and §12.4.3.1 tree integrity ------------------------------------


def test_valid_committed_tree_passes_every_check() -> None:
    tree, _ = committed_tree(5, 3, b"valid")
    assert sum(1 for _ in tree.parents()) == 3
    validate_tree(tree, CS, GROUP, tree_hash(tree, CS))


def test_RFC9420_7_3_leaf_signature_tampered() -> None:
    tree, _ = committed_tree(3, 0, b"sig")
    leaf = tree.leaf_node(0)
    assert leaf is not None
    verify_leaf_signature(CS, leaf, GROUP, 0)
    bad = replace(leaf, signature=bytes([leaf.signature[0] ^ 1]) + leaf.signature[1:])
    with pytest.raises(ValidationError) as err:
        verify_leaf_signature(CS, bad, GROUP, 0)
    assert err.value.requirement == "RFC9420-7.3-leaf-signature"
    for group_id, index in ((b"other", 0), (GROUP, 1)):  # the TBS binds group and index
        with pytest.raises(ValidationError):
            verify_leaf_signature(CS, leaf, group_id, index)
    with pytest.raises(ValidationError):
        validate_tree(tree.set_leaf(0, bad), CS, GROUP)


def test_RFC9420_7_3_leaf_node_source(leaves: list[LeafNode]) -> None:
    with pytest.raises(ValidationError) as err:
        validate_leaf_node(CS, leaves[0], GROUP, 0, LeafNodeSource.COMMIT)
    assert err.value.requirement == "RFC9420-7.3-leaf-node-source"
    validate_leaf_node(CS, leaves[0], GROUP, 0, LeafNodeSource.KEY_PACKAGE)


def test_RFC9420_7_2_credential_in_capabilities(leaves: list[LeafNode]) -> None:
    leaf = replace(leaves[0], capabilities=Capabilities(credentials=(2,)))
    with pytest.raises(ValidationError) as err:
        validate_leaf_node(CS, leaf, GROUP, 0)
    assert err.value.requirement == "RFC9420-7.2-credential-in-capabilities"


def test_RFC9420_7_9_2_parent_hash_broken() -> None:
    tree, _ = committed_tree(4, 1, b"ph")
    verify_parent_hashes(tree, CS)
    root = tree.parent_node(3)
    assert root is not None
    for broken in (
        replace(root, parent_hash=b"\x00" * 32),
        replace(root, encryption_key=CS.derive_key_pair(b"k" * 32)[1]),
    ):
        with pytest.raises(ValidationError) as err:
            verify_parent_hashes(tree.replace({3: broken}), CS)
        assert err.value.requirement == "RFC9420-7.9.2-parent-hash"


def test_RFC9420_7_9_2_parent_hash_unchained_parent(leaves: list[LeafNode]) -> None:
    # A parent node nobody's parent hash points to (injected by an attacker).
    tree, _ = committed_tree(4, 0, b"inject")
    injected = tree.replace({5: ParentNode(CS.derive_key_pair(b"x" * 32)[1])})
    with pytest.raises(ValidationError) as err:
        verify_parent_hashes(injected, CS)
    assert err.value.requirement == "RFC9420-7.9.2-parent-hash"


def test_RFC9420_12_4_3_1_tree_hash_mismatch() -> None:
    tree, _ = committed_tree(2, 0, b"th")
    with pytest.raises(ValidationError) as err:
        validate_tree(tree, CS, GROUP, b"\x00" * 32)
    assert err.value.requirement == "RFC9420-12.4.3.1-tree-hash"


def test_RFC9420_12_4_3_1_unmerged_leaves(leaves: list[LeafNode]) -> None:
    base: dict[int, LeafNode | ParentNode] = {0: leaves[0], 2: leaves[1], 4: leaves[2]}
    cases: dict[str, dict[int, LeafNode | ParentNode]] = {
        "RFC9420-7.1-unmerged-sorted": {**base, 3: parent(b"R", (2, 1))},
        "RFC9420-12.4.3.1-unmerged-leaves": {**base, 1: parent(b"P", (2,))},
    }
    for req, values in cases.items():
        with pytest.raises(ValidationError) as err:
            check_unmerged_leaves(tree_of(4, values))
        assert err.value.requirement == req
    blank = tree_of(4, {**base, 3: parent(b"R", (3,))})
    with pytest.raises(ValidationError):
        check_unmerged_leaves(blank)
    # leaf 0 is unmerged at the root but not at the non-blank node 1 between them
    missing = tree_of(4, {**base, 1: parent(b"P"), 3: parent(b"R", (0,))})
    with pytest.raises(ValidationError):
        check_unmerged_leaves(missing)
    check_unmerged_leaves(tree_of(4, {**base, 1: parent(b"P", (0,)), 3: parent(b"R", (0,))}))


def test_RFC9420_7_3_unique_keys(leaves: list[LeafNode]) -> None:
    tree = tree_of(2, {0: leaves[0], 2: leaves[1]})
    check_unique_keys(tree)
    for dup in (
        tree.replace({1: parent(leaves[0].encryption_key)}),
        tree.set_leaf(1, replace(leaves[1], signature_key=leaves[0].signature_key)),
    ):
        with pytest.raises(ValidationError) as err:
            check_unique_keys(dup)
        assert err.value.requirement == "RFC9420-7.3-unique-keys"


def test_vector_tree_fails_when_one_leaf_is_corrupted(vectors_dir: Path) -> None:
    case = json.loads((vectors_dir / "mls" / "tree-validation.json").read_text())[0]
    tree = RatchetTree.from_bytes(bytes.fromhex(case["tree"]))
    group_id = bytes.fromhex(case["group_id"])
    validate_tree(tree, CS, group_id)
    index, leaf = next(tree.leaves())
    tampered = tree.set_leaf(index, replace(leaf, credential=Credential.basic(b"mallory")))
    with pytest.raises(ValidationError):
        validate_tree(tampered, CS, group_id)


# --- properties ----------------------------------------------------------------------------

_POOL = [make_leaf(seeded_rng(b"pool"), b"p")[0]]
_OPS = st.lists(st.tuples(st.booleans(), st.integers(0, 15)), max_size=30)


def _apply_op(tree: RatchetTree, add: bool, k: int, pool: list[LeafNode]) -> RatchetTree:
    """Add a pool leaf, or remove the k-th member (never the last one)."""
    members = [i for i, _ in tree.leaves()]
    if add or len(members) == 1:
        return tree.add_leaf(pool[k % len(pool)])[0]
    return tree.remove_leaf(members[k % len(members)])


def _run_ops(ops: list[tuple[bool, int]], pool: list[LeafNode]) -> list[RatchetTree]:
    trees = [RatchetTree.single(pool[0])]
    for add, k in ops:
        trees.append(_apply_op(trees[-1], add, k, pool))
    return trees


@settings(max_examples=60, deadline=None)
@given(_OPS)
def test_property_tree_survives_its_own_serialization(ops: list[tuple[bool, int]]) -> None:
    for tree in _run_ops(ops, _POOL):
        again = RatchetTree.from_bytes(tree.to_bytes())
        assert again == tree
        assert tree_hash(again, CS) == tree_hash(tree, CS)


@settings(max_examples=60, deadline=None)
@given(_OPS)
def test_property_truncation_and_leftmost_add(ops: list[tuple[bool, int]]) -> None:
    for tree in _run_ops(ops, _POOL):
        n = tree.n_leaves
        assert n & (n - 1) == 0 and tree.width == tm.node_width(n)
        if n > 1:  # §7.7: the right half holds a member, or the tree would be truncated
            assert any(i >= n // 2 for i, _ in tree.leaves())
        blank = tree.leftmost_blank_leaf()
        added, index = tree.add_leaf(_POOL[0])
        assert index == (n if blank is None else blank)
        assert added.n_leaves == (2 * n if blank is None else n)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 3),
    st.lists(st.booleans(), min_size=15, max_size=15),
    st.lists(st.sets(st.integers(0, 7)), min_size=7, max_size=7),
)
def test_property_resolution_covers_every_member(
    depth: int, present: list[bool], unmerged: list[set[int]]
) -> None:
    n = 1 << depth
    values: dict[int, LeafNode | ParentNode] = {}
    for x in range(tm.node_width(n)):
        if not present[x]:
            continue
        if x % 2 == 0:
            values[x] = _POOL[0]
            continue
        below = [i for i in sorted(unmerged[x // 2]) if tm.is_in_subtree(2 * i, x) and i < n]
        values[x] = parent(bytes([x]), tuple(i for i in below if present[2 * i]))
    tree = tree_of(n, values)
    for x in range(tree.width):
        res = tree.resolution(x)
        assert len(res) == len(set(res))
        assert all(tree.node(r) is not None and tm.is_in_subtree(r, x) for r in res)
        k = tm.level(x)
        for leaf in range(x - (1 << k) + 1, x + (1 << k), 2):
            if tree.node(leaf) is not None:  # every member below x is reached
                assert any(tm.is_in_subtree(leaf, r) for r in res)


@settings(max_examples=60, deadline=None)
@given(_OPS, st.lists(st.integers(0, 62), max_size=6))
def test_property_memoised_hashes_match_a_fresh_tree(
    ops: list[tuple[bool, int]], parents: list[int]
) -> None:
    """Each tree is hashed before the next is derived from it, so derived trees start from an
    inherited memo; their hashes must equal those of the same nodes in a tree with no memo."""
    tree = RatchetTree.single(_POOL[0])
    tree_hash(tree, CS)
    for add, k in ops:
        tree = _apply_op(tree, add, k, _POOL)
        for x in parents:
            if x < tree.width and x % 2 == 1:
                tree = tree.replace({x: ParentNode(bytes([x]) * 32, b"", ())})
        assert tree_hashes(tree, CS) == tree_hashes(RatchetTree(tree.nodes), CS)


@settings(max_examples=60, deadline=None)
@given(_OPS)
def test_property_blank_subtree_means_empty_resolution(ops: list[tuple[bool, int]]) -> None:
    tree = RatchetTree.single(_POOL[0])
    for add, k in ops:
        tree = _apply_op(tree, add, k, _POOL)
        for x in range(tree.width):
            assert tree.subtree_is_blank(x) == (tree.resolution(x) == [])
