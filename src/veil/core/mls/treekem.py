"""TreeKEM: creating and applying UpdatePaths (RFC 9420 §7.4-§7.6, §12.4.1-2, §12.4.3.1).

Path secrets follow the committer's filtered direct path from the leaf up::

    path_secret[0]   random (here: DeriveSecret(leaf_secret, "path"))
    path_secret[n] = DeriveSecret(path_secret[n-1], "path")
    node_priv[n], node_pub[n] = DeriveKeyPair(DeriveSecret(path_secret[n], "node"))
    commit_secret  = DeriveSecret(path_secret[last], "path")

Each path secret is encrypted, with ``EncryptWithLabel(pk, "UpdatePathNode", group_context,
path_secret)``, to every node of the resolution of the copath child, leaving out the members
added by the same Commit. The group context is the provisional one, whose tree hash is that of
the tree with the path merged, so both directions take ``context_for(tree_hash)``.

:func:`create_update_path` is the committer's side; :func:`apply_update_path` validates a
received path (length, leaf source and signature, fresh keys, parent hash), merges it and, for
a member, decrypts its path secret and checks every derived public key;
:func:`apply_external_update_path` does the same for an external committer (§12.4.3.2), whose
leaf the path itself brings. :class:`TreeKeys` holds
a member's private keys; its ``repr`` shows node indices only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from veil.core.errors import LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.errors import ValidationError
from veil.core.mls.structs.common import HPKECiphertext, LeafNodeSource
from veil.core.mls.structs.tree import LeafNode, ParentNode, UpdatePath, UpdatePathNode
from veil.core.mls.suite import CipherSuite
from veil.core.mls.tree import RatchetTree, TreeNode
from veil.core.mls.tree_hash import path_parent_hashes, tree_hash
from veil.core.mls.tree_validate import validate_leaf_node
from veil.core.rng import Rng

ContextFor = Callable[[bytes], bytes]
"""Maps the tree hash of the merged tree to the encoded provisional GroupContext."""

LABEL = b"UpdatePathNode"


@dataclass(frozen=True, slots=True)
class TreeKeys:
    """A member's private HPKE keys: ``private_keys[node]`` for its leaf and for the parent
    nodes it knows. Treated as immutable: methods return new values."""

    leaf_index: int
    private_keys: Mapping[int, bytes] = field(repr=False)

    def __repr__(self) -> str:
        return f"TreeKeys(leaf_index={self.leaf_index}, nodes={sorted(self.private_keys)})"

    @classmethod
    def for_leaf(cls, leaf_index: int, leaf_private: bytes) -> TreeKeys:
        return cls(leaf_index, {tm.leaf_node(leaf_index): leaf_private})

    def get(self, node: int) -> bytes | None:
        return self.private_keys.get(node)

    def forget(self, nodes: Collection[int]) -> TreeKeys:
        """Without the keys of ``nodes`` (blanked or replaced nodes, §7.5 deletion)."""
        gone = set(nodes)
        return TreeKeys(
            self.leaf_index, {x: k for x, k in self.private_keys.items() if x not in gone}
        )

    def with_keys(self, keys: Mapping[int, bytes]) -> TreeKeys:
        return TreeKeys(self.leaf_index, {**self.private_keys, **keys})


@dataclass(frozen=True, slots=True)
class PathKeys:
    """Keys derived along a filtered direct path from one path secret (§7.4)."""

    private_keys: dict[int, bytes] = field(repr=False)
    path_secrets: dict[int, bytes] = field(repr=False)
    commit_secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class CreatedPath:
    """What the committer gets: the UpdatePath to send, the merged tree, its own new keys,
    the path secret of each filtered-direct-path node (for Welcome, §12.4.3.1) and the
    commit secret."""

    update_path: UpdatePath
    tree: RatchetTree
    keys: TreeKeys
    path_secrets: dict[int, bytes] = field(repr=False)
    commit_secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AppliedPath:
    """What a receiver gets: the merged tree and, when it had keys, its updated keys, the
    path secret it decrypted (at ``path_secret_node``) and the commit secret."""

    tree: RatchetTree
    keys: TreeKeys | None = None
    path_secret_node: int | None = None
    path_secret: bytes | None = field(default=None, repr=False)
    commit_secret: bytes | None = field(default=None, repr=False)


def derive_path(
    suite: CipherSuite,
    path: Sequence[int],
    path_secret: bytes,
    expected: Sequence[bytes] | None = None,
) -> PathKeys:
    """Derive node keys for ``path`` (filtered-direct-path nodes, bottom up) starting from the
    first node's path secret. With ``expected`` (the public keys of those nodes), every
    derived public key must match (§7.5 step 6, §12.4.3.1)."""
    privs: dict[int, bytes] = {}
    secrets: dict[int, bytes] = {}
    for i, x in enumerate(path):
        secrets[x] = path_secret
        priv, pub = suite.derive_key_pair(suite.derive_secret(path_secret, b"node"))
        if expected is not None and pub != expected[i]:
            raise ValidationError("RFC9420-7.6-path-public-key", f"node {x}")
        privs[x] = priv
        path_secret = suite.derive_secret(path_secret, b"path")
    return PathKeys(privs, secrets, path_secret)


def keys_from_path_secret(
    tree: RatchetTree, suite: CipherSuite, sender: int, node: int, path_secret: bytes
) -> PathKeys:
    """A joiner's keys from the path secret of ``node`` in a Welcome (§12.4.3.1): derive up
    the committer's filtered direct path from ``node``, checking each public key in ``tree``."""
    path = tree.filtered_direct_path(sender)
    if node not in path:
        raise ValidationError("RFC9420-12.4.3.1-path-secret-node", f"node {node}")
    above = path[path.index(node) :]
    return derive_path(suite, above, path_secret, [tree.encryption_key(x) for x in above])


def _merge(
    tree: RatchetTree,
    suite: CipherSuite,
    sender: int,
    path: Sequence[tuple[int, int]],
    public_keys: Sequence[bytes],
) -> tuple[RatchetTree, bytes]:
    """§7.5: blank the direct path, set the filtered path's keys, compute parent hashes."""
    changes: dict[int, TreeNode | None] = dict.fromkeys(tree.direct_path(sender))
    for (p, _), key in zip(path, public_keys, strict=True):
        changes[p] = ParentNode(key)
    return path_parent_hashes(tree.replace(changes), suite, path)


def _encrypt_path(
    tree: RatchetTree,
    suite: CipherSuite,
    path: Sequence[tuple[int, int]],
    keys: PathKeys,
    context: bytes,
    exclude: Collection[int],
    rng: Rng,
) -> tuple[UpdatePathNode, ...]:
    nodes = []
    for p, s in path:
        secret = keys.path_secrets[p]
        cts = []
        for r in tree.resolution(s, exclude):
            kem_output, ct = suite.encrypt_with_label(
                tree.encryption_key(r), LABEL, context, secret, rng
            )
            cts.append(HPKECiphertext(kem_output, ct))
        nodes.append(UpdatePathNode(suite.hpke_public(keys.private_keys[p]), tuple(cts)))
    return tuple(nodes)


def create_update_path(
    tree: RatchetTree,
    suite: CipherSuite,
    sender: int,
    signature_private: bytes,
    group_id: bytes,
    context_for: ContextFor,
    rng: Rng,
    exclude: Collection[int] = (),
    leaf_template: LeafNode | None = None,
) -> CreatedPath:
    """The committer's UpdatePath (§7.4-§7.6, §12.4.1) over ``tree`` (proposals applied).

    The new leaf copies ``leaf_template`` (default: the current leaf) with a fresh encryption
    key, source commit and the leaf's parent hash, signed with ``signature_private``.
    ``exclude`` lists the leaves added by this Commit (they get no ciphertexts).
    """
    old_leaf = tree.leaf_node(sender)
    if old_leaf is None:
        raise LocalError(f"leaf {sender} is blank")
    path = tree.filtered_path(sender)
    leaf_secret = rng(suite.nh)
    leaf_private, leaf_public = suite.derive_key_pair(suite.derive_secret(leaf_secret, b"node"))
    nodes = [p for p, _ in path]
    keys = derive_path(suite, nodes, suite.derive_secret(leaf_secret, b"path"))
    publics = [suite.hpke_public(keys.private_keys[p]) for p in nodes]
    merged, leaf_parent_hash = _merge(tree, suite, sender, path, publics)
    leaf = replace(
        leaf_template or old_leaf,
        encryption_key=leaf_public,
        leaf_node_source=LeafNodeSource.COMMIT,
        lifetime=None,
        parent_hash=leaf_parent_hash,
        signature=b"",
    )
    signature = suite.sign_with_label(
        signature_private, b"LeafNodeTBS", leaf.tbs(group_id, sender), rng
    )
    leaf = replace(leaf, signature=signature)
    merged = merged.set_leaf(sender, leaf)
    context = context_for(tree_hash(merged, suite))
    update_path = UpdatePath(leaf, _encrypt_path(tree, suite, path, keys, context, exclude, rng))
    own = TreeKeys(sender, {tm.leaf_node(sender): leaf_private, **keys.private_keys})
    return CreatedPath(update_path, merged, own, keys.path_secrets, keys.commit_secret)


def _validate_received(
    tree: RatchetTree,
    suite: CipherSuite,
    sender: int,
    update_path: UpdatePath,
    group_id: bytes,
    path: Sequence[tuple[int, int]],
    exclude: Collection[int],
    new_leaf: bool,
) -> None:
    """The checks of §7.6 and §12.4.2 that need no private key. With ``new_leaf`` the path's
    leaf node is already in ``tree`` at ``sender`` (an external committer, §12.4.3.2)."""
    leaf = update_path.leaf_node
    old_leaf = tree.leaf_node(sender)
    if old_leaf is None:
        raise ValidationError("RFC9420-12.4.2-committer-leaf", f"leaf {sender} is blank")
    if not new_leaf and leaf.encryption_key == old_leaf.encryption_key:
        raise ValidationError("RFC9420-12.4.2-new-encryption-key")
    validate_leaf_node(suite, leaf, group_id, sender, LeafNodeSource.COMMIT)
    if len(update_path.nodes) != len(path):
        raise ValidationError(
            "RFC9420-7.6-path-length",
            f"{len(update_path.nodes)} nodes for a filtered direct path of {len(path)}",
        )
    for node, (_, s) in zip(update_path.nodes, path, strict=True):
        if len(node.encrypted_path_secret) != len(tree.resolution(s, exclude)):
            raise ValidationError("RFC9420-7.6-ciphertext-count", f"copath node {s}")
    new_keys = [leaf.encryption_key, *(n.encryption_key for n in update_path.nodes)]
    # §12.4.2: none of the path's keys is in any node of the tree (a new leaf is there itself).
    held = tree.index.encryption_keys
    own = {leaf.encryption_key: 1} if new_leaf else {}
    if len(set(new_keys)) != len(new_keys) or any(held.get(k, 0) > own.get(k, 0) for k in new_keys):
        raise ValidationError("RFC9420-12.4.2-unique-keys")


def _decrypt(
    tree: RatchetTree,
    suite: CipherSuite,
    update_path: UpdatePath,
    path: Sequence[tuple[int, int]],
    keys: TreeKeys,
    context: bytes,
    exclude: Collection[int],
) -> tuple[int, PathKeys]:
    """§7.5 "decrypt the path secrets": find our copath node, decrypt, derive upwards."""
    own = tm.leaf_node(keys.leaf_index)
    for i, (p, s) in enumerate(path):
        if not tm.is_in_subtree(own, s):
            continue
        resolution = tree.resolution(s, exclude)
        for r, ct in zip(resolution, update_path.nodes[i].encrypted_path_secret, strict=True):
            private = keys.get(r)
            if private is not None:
                secret = suite.decrypt_with_label(
                    private, LABEL, context, ct.kem_output, ct.ciphertext
                )
                above = [x for x, _ in path[i:]]
                expected = [n.encryption_key for n in update_path.nodes[i:]]
                return p, derive_path(suite, above, secret, expected)
        raise LocalError(f"leaf {keys.leaf_index} holds no key of the resolution of node {s}")
    raise LocalError(f"leaf {keys.leaf_index} is not below the filtered direct path")


def apply_update_path(
    tree: RatchetTree,
    suite: CipherSuite,
    sender: int,
    update_path: UpdatePath,
    group_id: bytes,
    context_for: ContextFor,
    keys: TreeKeys | None = None,
    exclude: Collection[int] = (),
) -> AppliedPath:
    """Validate and merge a received UpdatePath (§7.5, §12.4.2) into ``tree`` (proposals
    applied). With ``keys`` (a member other than the sender, not added by this Commit), also
    decrypt the path secret meant for it and derive the new keys and the commit secret.

    Raises ValidationError (see the requirement ids) or MlsDecryptError; ``tree`` and
    ``keys`` are values, so nothing changes on failure.
    """
    return _apply(tree, suite, sender, update_path, group_id, context_for, keys, exclude, False)


def apply_external_update_path(
    tree: RatchetTree,
    suite: CipherSuite,
    update_path: UpdatePath,
    group_id: bytes,
    context_for: ContextFor,
    keys: TreeKeys | None = None,
) -> tuple[int, AppliedPath]:
    """The UpdatePath of an external Commit (§12.4.3.2), whose committer has no leaf yet.

    Its leaf node takes the leaf an Add would give it (§12.1.1: the leftmost blank leaf of
    ``tree``, the tree with the Commit's proposals applied), then the path is validated and
    merged as a member's is (§7.5, §12.4.2), except that there is no old leaf to differ from;
    the new member's signature key must not be a member's (§7.3). Returns the committer's
    leaf index and the applied path.
    """
    if tree.index.has_signature_key(update_path.leaf_node.signature_key):
        raise ValidationError("RFC9420-7.3-unique-keys", "the joiner's signature key is in use")
    with_leaf, sender = tree.add_leaf(update_path.leaf_node)
    applied = _apply(with_leaf, suite, sender, update_path, group_id, context_for, keys, (), True)
    return sender, applied


def _apply(
    tree: RatchetTree,
    suite: CipherSuite,
    sender: int,
    update_path: UpdatePath,
    group_id: bytes,
    context_for: ContextFor,
    keys: TreeKeys | None,
    exclude: Collection[int],
    new_leaf: bool,
) -> AppliedPath:
    path = tree.filtered_path(sender)
    _validate_received(tree, suite, sender, update_path, group_id, path, exclude, new_leaf)
    publics = [n.encryption_key for n in update_path.nodes]
    merged, leaf_parent_hash = _merge(tree, suite, sender, path, publics)
    if update_path.leaf_node.parent_hash != leaf_parent_hash:
        raise ValidationError("RFC9420-7.9.2-leaf-parent-hash", f"leaf {sender}")
    merged = merged.set_leaf(sender, update_path.leaf_node)
    if keys is None:
        return AppliedPath(merged)
    if keys.leaf_index == sender:
        raise LocalError("the committer does not apply its own UpdatePath")
    context = context_for(tree_hash(merged, suite))
    node, derived = _decrypt(tree, suite, update_path, path, keys, context, exclude)
    new_keys = keys.forget(tree.direct_path(sender)).with_keys(derived.private_keys)
    secret = derived.path_secrets[node]
    return AppliedPath(merged, new_keys, node, secret, derived.commit_secret)
