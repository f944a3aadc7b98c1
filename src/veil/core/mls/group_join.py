"""Leaf nodes, KeyPackages and joining a group from a Welcome (RFC 9420 §7.2, §10,
§12.4.3.1).

* :func:`make_leaf_node` -- a signed LeafNode (§7.2);
* :func:`create_key_package` -- a device's KeyPackage with its private keys (§10), as a
  :class:`KeyPackageBundle` whose ``repr`` hides the keys;
* :func:`join_welcome` -- every step of §12.4.3.1 (:func:`join_checked`, shared with the
  reinit/branch joins of :mod:`veil.core.mls.group_resume`): the Welcome's cryptographic
  checks (:func:`veil.core.mls.welcome.open_welcome`, the one implementation), the ratchet
  tree (given, else the ``ratchet_tree`` extension, ``RFC9420-12.4.3.1-ratchet-tree``) and
  its integrity (tree hash, parent hashes, leaves, unmerged leaves, unique keys), our leaf
  (``RFC9420-12.4.3.1-own-leaf``), the private keys derived from the path secret (each must
  match the tree), then the state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from veil.core.errors import DecodeError, LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.errors import ValidationError
from veil.core.mls.group_epoch import psk_value
from veil.core.mls.group_state import GroupState, new_epoch_state
from veil.core.mls.proposals_validate import check_context_extensions, validate_key_package
from veil.core.mls.structs.common import (
    Capabilities,
    Credential,
    Extension,
    ExtensionType,
    LeafNodeSource,
    Lifetime,
    ProtocolVersion,
    find_extension,
)
from veil.core.mls.structs.group import GroupInfo, Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import PreSharedKeyID, PSKType
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import CipherSuite, suite
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_validate import validate_tree
from veil.core.mls.treekem import TreeKeys, keys_from_path_secret
from veil.core.mls.welcome import JoinedEpoch, PskLookup, open_welcome, special_resumption
from veil.core.rng import Rng


@dataclass(frozen=True, slots=True)
class KeyPackageBundle:
    """A KeyPackage and the private keys that go with it (never in ``repr``)."""

    key_package: KeyPackage
    init_priv: bytes = field(repr=False)
    encryption_priv: bytes = field(repr=False)
    signature_priv: bytes = field(repr=False)


def default_capabilities(s: CipherSuite) -> Capabilities:
    return Capabilities(versions=(ProtocolVersion.MLS10,), cipher_suites=(s.id,), credentials=(1,))


def make_leaf_node(
    s: CipherSuite,
    encryption_pub: bytes,
    signature_priv: bytes,
    credential: Credential,
    source: LeafNodeSource,
    rng: Rng,
    capabilities: Capabilities | None = None,
    lifetime: Lifetime | None = None,
    extensions: tuple[Extension, ...] = (),
    group_id: bytes = b"",
    leaf_index: int = 0,
) -> LeafNode:
    """A LeafNode signed with label "LeafNodeTBS" (§7.2); ``group_id``/``leaf_index`` are
    bound for the update and commit sources."""
    leaf = LeafNode(
        encryption_key=encryption_pub,
        signature_key=s.signature_public(signature_priv),
        credential=credential,
        capabilities=capabilities or default_capabilities(s),
        leaf_node_source=source,
        lifetime=lifetime,
        extensions=extensions,
    )
    tbs = leaf.tbs(group_id, leaf_index)
    return replace(leaf, signature=s.sign_with_label(signature_priv, b"LeafNodeTBS", tbs, rng))


def create_key_package(
    cipher_suite: int,
    credential: Credential,
    signature_priv: bytes,
    lifetime: Lifetime,
    rng: Rng,
    capabilities: Capabilities | None = None,
    leaf_extensions: tuple[Extension, ...] = (),
    extensions: tuple[Extension, ...] = (),
) -> KeyPackageBundle:
    """A fresh KeyPackage (§10) with new init and leaf HPKE keys."""
    s = suite(cipher_suite)
    init_priv, init_pub = s.derive_key_pair(rng(s.nh))
    enc_priv, enc_pub = s.derive_key_pair(rng(s.nh))
    leaf = make_leaf_node(
        s,
        enc_pub,
        signature_priv,
        credential,
        LeafNodeSource.KEY_PACKAGE,
        rng,
        capabilities,
        lifetime,
        leaf_extensions,
    )
    kp = KeyPackage(ProtocolVersion.MLS10, s.id, init_pub, leaf, extensions)
    kp = replace(kp, signature=s.sign_with_label(signature_priv, b"KeyPackageTBS", kp.tbs(), rng))
    return KeyPackageBundle(kp, init_priv, enc_priv, signature_priv)


def tree_from_info(info: GroupInfo, tree: RatchetTree | None) -> RatchetTree:
    if tree is not None:
        return tree
    data = find_extension(info.extensions, ExtensionType.RATCHET_TREE)
    if data is None:
        raise ValidationError("RFC9420-12.4.3.1-ratchet-tree", "no tree given or in GroupInfo")
    try:
        return RatchetTree.from_bytes(data)
    except DecodeError:
        raise ValidationError("RFC9420-12.4.3.1-ratchet-tree", "malformed tree") from None


def _own_leaf(tree: RatchetTree, leaf: LeafNode) -> int:
    for index, candidate in tree.leaves():
        if candidate == leaf:
            return index
    raise ValidationError("RFC9420-12.4.3.1-own-leaf", "our LeafNode is not in the tree")


def signer_key_of(tree: RatchetTree, index: int) -> bytes | None:
    if index >= tree.n_leaves:
        return None
    leaf = tree.leaf_node(index)
    return None if leaf is None else leaf.signature_key


PskPair = tuple[bytes, int]


def welcome_psk_lookup(
    psks: Mapping[bytes, bytes] | None,
    resumption: Callable[[bytes, int], bytes | None],
) -> PskLookup:
    """The PSKs a joiner holds: external ones by psk_id, resumption ones by (group, epoch)."""

    def lookup(psk_id: PreSharedKeyID) -> bytes | None:
        if psk_id.psktype == PSKType.RESUMPTION:
            return resumption(psk_id.psk_group_id, psk_id.psk_epoch)
        return psk_value(b"", psk_id, psks)

    return lookup


def join_checked(
    welcome: Welcome,
    bundle: KeyPackageBundle,
    ratchet_tree: RatchetTree | None,
    lookup: PskLookup,
    now: int | None,
) -> tuple[GroupState, JoinedEpoch]:
    """Every step of §12.4.3.1 but the reinit/branch ones: the Welcome's checks
    (:func:`~veil.core.mls.welcome.open_welcome`, with the signer's key taken from the tree
    given or carried by the GroupInfo), the tree, our leaf and path keys, the state."""
    kp = bundle.key_package
    s = suite(kp.cipher_suite)
    trees: list[RatchetTree] = []

    def signer_key(info: GroupInfo) -> bytes | None:
        tree = tree_from_info(info, ratchet_tree)
        trees.append(tree)
        return signer_key_of(tree, info.signer)

    joined = open_welcome(welcome, kp, bundle.init_priv, signer_key, lookup)
    info, secrets, tree = joined.group_info, joined.group_secrets, trees[-1]
    ctx = info.group_context
    validate_tree(tree, s, ctx.group_id, ctx.tree_hash)
    check_context_extensions(tree, ctx.extensions)
    own = _own_leaf(tree, kp.leaf_node)
    if s.hpke_public(bundle.encryption_priv) != kp.leaf_node.encryption_key:
        raise LocalError("encryption_priv does not match the KeyPackage")
    keys = TreeKeys.for_leaf(own, bundle.encryption_priv)
    if secrets.path_secret is not None:
        node = tm.common_ancestor(tm.leaf_node(own), tm.leaf_node(info.signer))
        derived = keys_from_path_secret(tree, s, info.signer, node, secrets.path_secret.path_secret)
        keys = keys.with_keys(derived.private_keys)
    if now is not None:
        validate_key_package(s, kp, now)
    state = new_epoch_state(
        s, ctx, tree, own, keys, bundle.signature_priv, joined.epoch_secrets, info.confirmation_tag
    )
    return state, joined


def join_welcome(
    welcome: Welcome,
    bundle: KeyPackageBundle,
    ratchet_tree: RatchetTree | None = None,
    psks: Mapping[bytes, bytes] | None = None,
    now: int | None = None,
    resumption_psks: Mapping[PskPair, bytes] | None = None,
) -> GroupState:
    """Join from a Welcome (§12.4.3.1); ``psks`` maps external psk_id to PSK and
    ``resumption_psks`` maps (group id, epoch) to a resumption PSK we hold.

    A Welcome with a reinit or branch resumption PSK needs the checks against the old group
    (``RFC9420-12.4.3.1-resumption-checks``): join it with ``group_resume.join_reinit`` or
    ``group_resume.join_branch``."""
    kept = resumption_psks or {}
    lookup = welcome_psk_lookup(psks, lambda group, epoch: kept.get((group, epoch)))
    state, joined = join_checked(welcome, bundle, ratchet_tree, lookup, now)
    if any(special_resumption(p) for p in joined.group_secrets.psks):
        raise ValidationError(
            "RFC9420-12.4.3.1-resumption-checks", "reinit/branch Welcome: join with the old group"
        )
    return state
