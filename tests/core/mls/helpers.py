"""Helpers shared by the MLS test modules."""

from __future__ import annotations

from dataclasses import replace

from veil.core.mls.structs.common import Capabilities, Credential, LeafNodeSource, Lifetime
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import CipherSuite, suite
from veil.core.rng import Rng


def signed_leaf(
    rng: Rng, name: bytes, cs: CipherSuite | None = None
) -> tuple[LeafNode, bytes, bytes]:
    """A KeyPackage-source leaf with a real signature (suite 1 unless ``cs`` is given).

    Returns the leaf, its HPKE private key and its signing key.
    """
    cs = cs or suite(1)
    enc_priv, enc_pub = cs.derive_key_pair(rng(32))
    sig_priv, sig_pub = cs.generate_signature_key(rng)
    leaf = LeafNode(
        encryption_key=enc_pub,
        signature_key=sig_pub,
        credential=Credential.basic(name),
        capabilities=Capabilities(cipher_suites=(cs.id,), credentials=(1,)),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(0, 2**64 - 1),
    )
    signature = cs.sign_with_label(sig_priv, b"LeafNodeTBS", leaf.tbs(), rng)
    return replace(leaf, signature=signature), enc_priv, sig_priv
