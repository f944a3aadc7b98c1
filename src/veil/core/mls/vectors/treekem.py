"""``treekem.json``: UpdatePath encryption and merging (RFC 9420 §7.4-§7.6, §7.9).

Each case: ``cipher_suite``; the GroupContext inputs ``group_id``, ``epoch`` and
``confirmed_transcript_hash``; ``ratchet_tree`` (``ratchet_tree`` extension body);
``leaves_private``: ``[{index, encryption_priv, signature_priv, path_secrets: [{node,
path_secret}]}]`` (the private state of some leaves); ``update_paths``: ``[{sender,
update_path (serialized UpdatePath), path_secrets, commit_secret, tree_hash_after}]``, where
``path_secrets[j]`` is the path secret leaf ``j`` decrypts (``null`` for the sender and for
leaves without private state). The context of an UpdatePath is the GroupContext with the tree
hash after merging it and no extensions.

Check: each leaf's private keys match the public tree; for each update path (applied to the
original tree), it validates and merges to ``tree_hash_after``, and every other leaf with
private state decrypts its ``path_secrets[j]`` and derives ``commit_secret``; then create a
fresh UpdatePath from the same sender and check every other such leaf gets its commit secret.
"""

from __future__ import annotations

from typing import Any

from veil.core.mls import tree_math as tm
from veil.core.mls.structs.group import GroupContext
from veil.core.mls.structs.tree import UpdatePath
from veil.core.mls.suite import CipherSuite
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_hash import tree_hash
from veil.core.mls.treekem import ContextFor, TreeKeys, apply_update_path, create_update_path
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import suite_of
from veil.core.rng import seeded_rng


def _context_for(case: Case, cs: CipherSuite) -> ContextFor:
    def context_for(th: bytes) -> bytes:
        return GroupContext(
            cipher_suite=cs.id,
            group_id=bytes.fromhex(case["group_id"]),
            epoch=int(case["epoch"]),
            tree_hash=th,
            confirmed_transcript_hash=bytes.fromhex(case["confirmed_transcript_hash"]),
        ).to_bytes()

    return context_for


def _load_keys(tree: RatchetTree, cs: CipherSuite, leaf: dict[str, Any]) -> TreeKeys:
    index = int(leaf["index"])
    leaf_priv = bytes.fromhex(leaf["encryption_priv"])
    assert cs.hpke_public(leaf_priv) == tree.encryption_key(tm.leaf_node(index)), "leaf key"
    privs = {tm.leaf_node(index): leaf_priv}
    for entry in leaf["path_secrets"]:
        node = int(entry["node"])
        secret = bytes.fromhex(entry["path_secret"])
        priv, pub = cs.derive_key_pair(cs.derive_secret(secret, b"node"))
        assert pub == tree.encryption_key(node), f"leaf {index}: key of node {node}"
        privs[node] = priv
    return TreeKeys(index, privs)


def _check_path(
    case: Case, cs: CipherSuite, tree: RatchetTree, keys: dict[int, TreeKeys], up: Any
) -> None:
    sender = int(up["sender"])
    path = UpdatePath.from_bytes(bytes.fromhex(up["update_path"]))
    group_id, ctx = bytes.fromhex(case["group_id"]), _context_for(case, cs)
    merged = apply_update_path(tree, cs, sender, path, group_id, ctx).tree
    assert tree_hash(merged, cs).hex() == up["tree_hash_after"], "tree hash after"
    for j, member in keys.items():
        expected = up["path_secrets"][j]
        if j == sender:
            assert expected is None
            continue
        got = apply_update_path(tree, cs, sender, path, group_id, ctx, member)
        assert got.path_secret is not None and got.commit_secret is not None
        assert got.path_secret.hex() == expected, f"path secret of leaf {j}"
        assert got.commit_secret.hex() == up["commit_secret"], f"commit secret of leaf {j}"
        assert got.tree == merged


def _check_own_path(
    case: Case, cs: CipherSuite, tree: RatchetTree, keys: dict[int, TreeKeys], sender: int
) -> None:
    leaf = next(p for p in case["leaves_private"] if int(p["index"]) == sender)
    group_id, ctx = bytes.fromhex(case["group_id"]), _context_for(case, cs)
    rng = seeded_rng(bytes.fromhex(case["group_id"]) + sender.to_bytes(4, "big"))
    sig = bytes.fromhex(leaf["signature_priv"])
    created = create_update_path(tree, cs, sender, sig, group_id, ctx, rng)
    for j, member in keys.items():
        if j == sender:
            continue
        got = apply_update_path(tree, cs, sender, created.update_path, group_id, ctx, member)
        assert got.commit_secret == created.commit_secret, f"own path: leaf {j}"
        assert got.tree == created.tree, f"own path: tree of leaf {j}"


def check(case: Case) -> None:
    cs = suite_of(case)
    tree = RatchetTree.from_bytes(bytes.fromhex(case["ratchet_tree"]))
    keys = {int(p["index"]): _load_keys(tree, cs, p) for p in case["leaves_private"]}
    for up in case["update_paths"]:
        _check_path(case, cs, tree, keys, up)
        _check_own_path(case, cs, tree, keys, int(up["sender"]))
