"""TreeKEM (RFC 9420 §7.4-§7.6, §12.4.2): creating, validating and applying UpdatePaths.

Negative tests are named after the requirement id the code raises.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.errors import MlsDecryptError, ValidationError
from veil.core.mls.structs.common import (
    HPKECiphertext,
    LeafNodeSource,
)
from veil.core.mls.structs.tree import LeafNode, UpdatePath, UpdatePathNode
from veil.core.mls.suite import suite
from veil.core.mls.tree import RatchetTree, TreeIndex
from veil.core.mls.tree_hash import path_parent_hashes, tree_hash
from veil.core.mls.tree_validate import validate_tree
from veil.core.mls.treekem import (
    CreatedPath,
    TreeKeys,
    apply_external_update_path,
    apply_update_path,
    create_update_path,
    keys_from_path_secret,
)
from veil.core.rng import Rng, seeded_rng

from .helpers import signed_leaf

CS = suite(1)
GROUP = b"treekem group"


def context_for(th: bytes) -> bytes:
    return b"ctx" + th


@dataclass
class Member:
    keys: TreeKeys
    sig: bytes


class Group:
    """A toy group: one shared public tree and every member's private keys."""

    def __init__(self, rng: Rng) -> None:
        self.rng = rng
        self.count = 0
        leaf, enc, sig = signed_leaf(rng, b"m0", CS)
        self.tree = RatchetTree.single(leaf)
        self.members = {0: Member(TreeKeys.for_leaf(0, enc), sig)}

    def add(self) -> int:
        self.count += 1
        leaf, enc, sig = signed_leaf(self.rng, b"m%d" % self.count, CS)
        self.tree, index = self.tree.add_leaf(leaf)
        self.members[index] = Member(TreeKeys.for_leaf(index, enc), sig)
        return index

    def remove(self, index: int) -> None:
        gone = set(self.tree.direct_path(index))
        old_width = self.tree.width
        self.tree = self.tree.remove_leaf(index)
        gone.update(range(self.tree.width, old_width))  # truncated away
        del self.members[index]
        for m in self.members.values():
            m.keys = m.keys.forget(gone)

    def commit(self, sender: int) -> bytes:
        """``sender`` commits with a path; everyone applies it; returns the commit secret."""
        m = self.members[sender]
        created = create_update_path(self.tree, CS, sender, m.sig, GROUP, context_for, self.rng)
        for j, other in self.members.items():
            if j == sender:
                continue
            got = apply_update_path(
                self.tree, CS, sender, created.update_path, GROUP, context_for, other.keys
            )
            assert got.tree == created.tree
            assert got.commit_secret == created.commit_secret
            assert got.keys is not None
            other.keys = got.keys
        m.keys = created.keys
        self.tree = created.tree
        return created.commit_secret


@pytest.fixture
def group() -> Group:
    """Six members; 0 committed with 0-4 in the group, then 5 was added (unmerged at 7)."""
    g = Group(seeded_rng(b"treekem fixture"))
    for _ in range(4):
        g.add()
    g.commit(0)
    g.add()
    return g


def created_by(g: Group, sender: int) -> CreatedPath:
    return create_update_path(g.tree, CS, sender, g.members[sender].sig, GROUP, context_for, g.rng)


def apply_as(g: Group, receiver: int, sender: int, path: UpdatePath) -> bytes | None:
    keys = g.members[receiver].keys
    return apply_update_path(g.tree, CS, sender, path, GROUP, context_for, keys).commit_secret


def resign(g: Group, sender: int, path: UpdatePath, leaf: LeafNode) -> UpdatePath:
    """The path with ``leaf`` re-signed by the sender (a malicious but authentic committer)."""
    leaf = replace(leaf, signature=b"")
    sig = CS.sign_with_label(g.members[sender].sig, b"LeafNodeTBS", leaf.tbs(GROUP, sender), g.rng)
    return replace(path, leaf_node=replace(leaf, signature=sig))


# --- the happy path ------------------------------------------------------------------------


def test_every_member_derives_the_committers_secret(group: Group) -> None:
    secrets = {group.commit(s) for s in (2, 5, 1, 3)}
    assert len(secrets) == 4
    validate_tree(group.tree, CS, GROUP, tree_hash(group.tree, CS))


def test_update_path_shape_follows_filtered_direct_path(group: Group) -> None:
    created = created_by(group, 1)
    path = group.tree.filtered_path(1)
    assert [n for n, _ in path] == [1, 3, 7]
    assert len(created.update_path.nodes) == 3
    sizes = [len(n.encrypted_path_secret) for n in created.update_path.nodes]
    assert sizes == [len(group.tree.resolution(s)) for _, s in path] == [1, 2, 2]
    assert group.tree.resolution(11) == [8, 10]
    leaf = created.update_path.leaf_node
    assert leaf.leaf_node_source == LeafNodeSource.COMMIT and leaf.lifetime is None
    assert created.commit_secret == CS.derive_secret(created.path_secrets[7], b"path")
    assert set(created.keys.private_keys) == {2, 1, 3, 7}


def test_excluded_new_members_get_no_ciphertext_and_join_by_path_secret(group: Group) -> None:
    # Leaf 5 was just added: exclude it as a member added by the same Commit (§12.4.2).
    created = create_update_path(
        group.tree, CS, 0, group.members[0].sig, GROUP, context_for, group.rng, exclude={5}
    )
    sizes = [len(n.encrypted_path_secret) for n in created.update_path.nodes]
    assert sizes == [1, 2, 1]
    for j in (1, 2, 3, 4):
        got = apply_update_path(
            group.tree, CS, 0, created.update_path, GROUP, context_for,
            group.members[j].keys, exclude={5},
        )  # fmt: skip
        assert got.commit_secret == created.commit_secret
    lca = tm.common_ancestor(tm.leaf_node(5), tm.leaf_node(0))
    assert lca == 7
    joined = keys_from_path_secret(created.tree, CS, 0, lca, created.path_secrets[lca])
    assert joined.commit_secret == created.commit_secret
    with pytest.raises(ValidationError):
        keys_from_path_secret(created.tree, CS, 0, lca, b"\x00" * 32)


def test_single_member_path_is_empty() -> None:
    g = Group(seeded_rng(b"alone"))
    created = created_by(g, 0)
    assert created.update_path.nodes == ()
    assert created.tree.leaf_node(0) == created.update_path.leaf_node
    assert created.update_path.leaf_node.parent_hash == b""
    merged = apply_update_path(g.tree, CS, 0, created.update_path, GROUP, context_for)
    assert merged.tree == created.tree and merged.commit_secret is None


def test_tree_keys_repr_hides_secrets(group: Group) -> None:
    keys = group.members[0].keys
    text = repr(keys) + repr(created_by(group, 0))
    for secret in keys.private_keys.values():
        assert secret.hex() not in text and repr(secret) not in text


def test_apply_with_own_keys_is_refused(group: Group) -> None:
    created = created_by(group, 2)
    with pytest.raises(LocalError):
        apply_as(group, 2, 2, created.update_path)


# --- negative tests ------------------------------------------------------------------------


def _expect(req: str, g: Group, receiver: int, sender: int, path: UpdatePath) -> None:
    before = g.tree
    with pytest.raises(ValidationError) as err:
        apply_as(g, receiver, sender, path)
    assert err.value.requirement == req
    assert g.tree == before


def test_RFC9420_7_6_path_length(group: Group) -> None:
    path = created_by(group, 1).update_path
    _expect("RFC9420-7.6-path-length", group, 0, 1, replace(path, nodes=path.nodes[:-1]))
    extra = replace(path, nodes=(*path.nodes, path.nodes[-1]))
    _expect("RFC9420-7.6-path-length", group, 0, 1, extra)


def test_RFC9420_7_6_ciphertext_count(group: Group) -> None:
    path = created_by(group, 1).update_path
    node = path.nodes[1]
    short = replace(node, encrypted_path_secret=node.encrypted_path_secret[:1])
    bad = replace(path, nodes=(path.nodes[0], short, path.nodes[2]))
    _expect("RFC9420-7.6-ciphertext-count", group, 0, 1, bad)


def test_RFC9420_7_6_path_public_key(group: Group) -> None:
    # An authentic but malicious committer announces a key it did not derive: parent hashes,
    # signature and encryption are all consistent, only the derivation check catches it.
    created = created_by(group, 1)
    wrong_key = CS.derive_key_pair(b"w" * 32)[1]
    root = created.tree.parent_node(7)
    assert root is not None
    fdp = group.tree.filtered_path(1)
    staged, leaf_ph = path_parent_hashes(
        created.tree.replace({7: replace(root, encryption_key=wrong_key)}), CS, fdp
    )
    bad = resign(
        group, 1, created.update_path, replace(created.update_path.leaf_node, parent_hash=leaf_ph)
    )
    context = context_for(tree_hash(staged.set_leaf(1, bad.leaf_node), CS))
    nodes = []
    for (p, s), node in zip(fdp, created.update_path.nodes, strict=True):
        cts = []
        for r in group.tree.resolution(s):
            out = CS.encrypt_with_label(
                group.tree.encryption_key(r), b"UpdatePathNode", context,
                created.path_secrets[p], group.rng,
            )  # fmt: skip
            cts.append(HPKECiphertext(*out))
        key = wrong_key if p == 7 else node.encryption_key
        nodes.append(UpdatePathNode(key, tuple(cts)))
    bad = replace(bad, nodes=tuple(nodes))
    _expect("RFC9420-7.6-path-public-key", group, 0, 1, bad)
    # the members below node 7 only (leaves 4, 5) hit the mismatch at once
    _expect("RFC9420-7.6-path-public-key", group, 5, 1, bad)


def test_RFC9420_7_9_2_leaf_parent_hash(group: Group) -> None:
    created = created_by(group, 1)
    wrong_key = CS.derive_key_pair(b"v" * 32)[1]
    nodes = list(created.update_path.nodes)
    nodes[0] = UpdatePathNode(wrong_key, nodes[0].encrypted_path_secret)
    _expect(
        "RFC9420-7.9.2-leaf-parent-hash",
        group, 3, 1, replace(created.update_path, nodes=tuple(nodes)),
    )  # fmt: skip


def test_ciphertext_for_the_wrong_node_does_not_decrypt(group: Group) -> None:
    created = created_by(group, 1)
    nodes = list(created.update_path.nodes)
    # Node 3's copath child 5 has resolution [4, 6] (leaves 2, 3): swap the two ciphertexts.
    first, second = nodes[1].encrypted_path_secret
    nodes[1] = replace(nodes[1], encrypted_path_secret=(second, first))
    with pytest.raises(MlsDecryptError):
        apply_as(group, 2, 1, replace(created.update_path, nodes=tuple(nodes)))
    # A ciphertext moved between path nodes is also refused.
    nodes = list(created.update_path.nodes)
    nodes[2] = replace(nodes[2], encrypted_path_secret=nodes[1].encrypted_path_secret)
    with pytest.raises(MlsDecryptError):
        apply_as(group, 4, 1, replace(created.update_path, nodes=tuple(nodes)))


def test_wrong_group_context_does_not_decrypt(group: Group) -> None:
    created = created_by(group, 1)
    with pytest.raises(MlsDecryptError):
        apply_update_path(
            group.tree, CS, 1, created.update_path, GROUP, lambda th: b"other" + th,
            group.members[0].keys,
        )  # fmt: skip


def test_RFC9420_7_3_leaf_signature_in_update_path(group: Group) -> None:
    path = created_by(group, 1).update_path
    sig = path.leaf_node.signature
    tampered = replace(path.leaf_node, signature=bytes([sig[0] ^ 0x80]) + sig[1:])
    _expect("RFC9420-7.3-leaf-signature", group, 0, 1, replace(path, leaf_node=tampered))
    # signed for another group or another leaf index
    _expect("RFC9420-7.3-leaf-signature", group, 0, 3, path)


def test_RFC9420_7_3_leaf_node_source_in_update_path(group: Group) -> None:
    path = created_by(group, 1).update_path
    leaf = replace(path.leaf_node, leaf_node_source=LeafNodeSource.UPDATE, parent_hash=b"")
    _expect("RFC9420-7.3-leaf-node-source", group, 0, 1, resign(group, 1, path, leaf))


def test_RFC9420_12_4_2_new_encryption_key(group: Group) -> None:
    path = created_by(group, 1).update_path
    old = group.tree.leaf_node(1)
    assert old is not None
    leaf = replace(path.leaf_node, encryption_key=old.encryption_key)
    _expect("RFC9420-12.4.2-new-encryption-key", group, 0, 1, resign(group, 1, path, leaf))


def test_RFC9420_12_4_2_unique_keys(group: Group) -> None:
    path = created_by(group, 1).update_path
    taken = group.tree.encryption_key(tm.leaf_node(3))
    nodes = (UpdatePathNode(taken, path.nodes[0].encrypted_path_secret), *path.nodes[1:])
    _expect("RFC9420-12.4.2-unique-keys", group, 0, 1, replace(path, nodes=nodes))
    twice = (
        path.nodes[0],
        path.nodes[1],
        replace(path.nodes[2], encryption_key=path.nodes[1].encryption_key),
    )
    _expect("RFC9420-12.4.2-unique-keys", group, 0, 1, replace(path, nodes=twice))


def test_RFC9420_12_4_2_committer_leaf_blank(group: Group) -> None:
    path = created_by(group, 1).update_path
    group.remove(1)
    with pytest.raises(ValidationError) as err:
        apply_as(group, 0, 1, path)
    assert err.value.requirement == "RFC9420-12.4.2-committer-leaf"


# --- property: a random group history stays consistent --------------------------------------

_STEPS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "commit"]), st.integers(0, 99)), max_size=10
)


def _resolution(tree: RatchetTree, x: int) -> list[int]:
    """§4.1.1, literally (the reference for RatchetTree.resolution's fast path)."""
    value = tree.nodes[x]
    if value is None:
        if tm.level(x) == 0:
            return []
        return _resolution(tree, tm.left(x)) + _resolution(tree, tm.right(x))
    if isinstance(value, LeafNode):
        return [x]
    return [x] + [tm.leaf_node(i) for i in value.unmerged_leaves]


@settings(max_examples=25, deadline=None)
@given(_STEPS)
def test_property_random_history_keeps_members_in_agreement(
    steps: list[tuple[str, int]],
) -> None:
    g = Group(seeded_rng(repr(steps).encode()))
    for op, k in steps:
        members = sorted(g.members)
        if op == "add" or len(members) == 1:
            g.add()
        elif op == "remove":
            g.remove(members[k % len(members)])
        else:
            g.commit(members[k % len(members)])
        assert RatchetTree.from_bytes(g.tree.to_bytes()) == g.tree
        validate_tree(g.tree, CS, GROUP)
        # the index carried along the history equals one built from scratch
        assert g.tree.index == TreeIndex.build(g.tree.nodes)
        for x in range(g.tree.width):
            assert g.tree.resolution(x) == _resolution(g.tree, x)
    for index, m in g.members.items():  # every private key matches the public tree
        for x, priv in m.keys.private_keys.items():
            assert CS.hpke_public(priv) == g.tree.encryption_key(x), (index, x)


# --- external committers (§12.4.3.2): the path brings the committer's leaf ----------------


def _external_path(g: Group) -> tuple[int, CreatedPath, bytes]:
    """A joiner's path over ``g.tree``: its leaf added as by an Add, then a full path."""
    leaf, _, sig = signed_leaf(g.rng, b"joiner", CS)
    with_leaf, index = g.tree.add_leaf(leaf)
    created = create_update_path(with_leaf, CS, index, sig, GROUP, context_for, g.rng)
    return index, created, sig


def test_external_path_adds_the_committers_leaf_and_shares_its_secret(group: Group) -> None:
    group.remove(3)  # a blank leaf in the middle: the joiner must take it
    index, created, _ = _external_path(group)
    assert index == 3
    for j, member in group.members.items():
        got_index, got = apply_external_update_path(
            group.tree, CS, created.update_path, GROUP, context_for, member.keys
        )
        assert got_index == index
        assert got.tree == created.tree
        assert got.commit_secret == created.commit_secret
        assert got.keys is not None and got.keys.leaf_index == j
    public = apply_external_update_path(group.tree, CS, created.update_path, GROUP, context_for)
    assert public[1].tree == created.tree and public[1].keys is None
    validate_tree(created.tree, CS, GROUP, tree_hash(created.tree, CS))


def test_external_path_extends_a_full_tree(group: Group) -> None:
    group.add()
    group.add()  # 8 leaves, none blank
    index, created, _ = _external_path(group)
    assert index == 8 and group.tree.n_leaves == 8
    got_index, got = apply_external_update_path(
        group.tree, CS, created.update_path, GROUP, context_for, group.members[0].keys
    )
    assert got_index == 8 and got.tree == created.tree and got.tree.n_leaves == 16
    assert got.commit_secret == created.commit_secret


def test_RFC9420_12_4_2_unique_keys_external(group: Group) -> None:
    _, created, _ = _external_path(group)
    taken = group.tree.encryption_key(tm.leaf_node(2))
    nodes = list(created.update_path.nodes)
    nodes[0] = replace(nodes[0], encryption_key=taken)
    bad = replace(created.update_path, nodes=tuple(nodes))
    with pytest.raises(ValidationError) as err:
        apply_external_update_path(group.tree, CS, bad, GROUP, context_for)
    assert err.value.requirement == "RFC9420-12.4.2-unique-keys"


def test_RFC9420_7_3_unique_keys_external_signature_key(group: Group) -> None:
    _, created, _ = _external_path(group)
    member = group.tree.leaf_node(1)
    assert member is not None
    bad_leaf = replace(created.update_path.leaf_node, signature_key=member.signature_key)
    bad = replace(created.update_path, leaf_node=bad_leaf)
    with pytest.raises(ValidationError) as err:
        apply_external_update_path(group.tree, CS, bad, GROUP, context_for)
    assert err.value.requirement == "RFC9420-7.3-unique-keys"


def test_external_path_leaf_signed_for_another_index_is_refused(group: Group) -> None:
    group.remove(3)
    leaf, _, sig = signed_leaf(group.rng, b"joiner", CS)
    wide = group.tree.extend()
    with_leaf = wide.replace({tm.leaf_node(group.tree.n_leaves): leaf})  # not leftmost blank
    created = create_update_path(
        with_leaf, CS, group.tree.n_leaves, sig, GROUP, context_for, group.rng
    )
    with pytest.raises(ValidationError):
        apply_external_update_path(group.tree, CS, created.update_path, GROUP, context_for)
