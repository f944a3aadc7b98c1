"""KeyPackage (RFC 9420 §10) and its reference (§5.2).

``KeyPackageTBS`` is every field but the signature; ``signature`` is
SignWithLabel(leaf_node.signature_key, "KeyPackageTBS", KeyPackageTBS). The
``KeyPackageRef`` is RefHash("MLS 1.0 KeyPackage Reference", KeyPackage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from veil.core.mls.codec import Reader, Writer
from veil.core.mls.structs._base import RefHasher, SignedWireStruct, open_enum
from veil.core.mls.structs.common import (
    Extension,
    ProtocolVersion,
    read_extensions,
    write_extensions,
)
from veil.core.mls.structs.tree import LeafNode

KEY_PACKAGE_REF_LABEL = b"MLS 1.0 KeyPackage Reference"


@dataclass(frozen=True, slots=True)
class KeyPackage(SignedWireStruct):
    """§10: version, cipher suite, HPKE init key, leaf node, extensions, signature."""

    version: int
    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""

    def _encode_tbs(self, w: Writer) -> None:
        """KeyPackageTBS, which ``signature`` covers (label "KeyPackageTBS")."""
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.opaque(self.init_key)
        self.leaf_node.encode(w)
        write_extensions(w, self.extensions)

    def ref(self, suite: RefHasher) -> bytes:
        """KeyPackageRef (§5.2): RefHash("MLS 1.0 KeyPackage Reference", KeyPackage)."""
        return suite.ref_hash(KEY_PACKAGE_REF_LABEL, self.to_bytes())

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            version=open_enum(ProtocolVersion, r.u16("key package version")),
            cipher_suite=r.u16("key package cipher_suite"),
            init_key=r.opaque("init_key"),
            leaf_node=LeafNode.decode(r),
            extensions=read_extensions(r),
            signature=r.opaque("key package signature"),
        )
