"""Ratchet-tree wire structs (RFC 9420 §7.2, §7.6, §12.4.3.3).

LeafNode (and its to-be-signed form LeafNodeTBS, §7.2), ParentNode, Node (a leaf or a parent),
UpdatePathNode and UpdatePath (§7.6), and the ``ratchet_tree`` extension body: a vector of
``optional<Node>`` in array-tree order, blanks as ``None`` (§12.4.3.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from veil.core.errors import LocalError
from veil.core.mls.codec import Reader, Writer, decode_all
from veil.core.mls.structs._base import WireStruct, closed_enum, read_structs
from veil.core.mls.structs.common import (
    Capabilities,
    Credential,
    Extension,
    HPKECiphertext,
    LeafNodeSource,
    Lifetime,
    read_extensions,
    write_extensions,
)


class NodeType(IntEnum):
    """§7.8: ``enum { reserved(0), leaf(1), parent(2), (255) } NodeType``."""

    LEAF = 1
    PARENT = 2


@dataclass(frozen=True, slots=True)
class LeafNode(WireStruct):
    """§7.2 LeafNode. ``lifetime`` is set iff the source is key_package, ``parent_hash`` is
    used only when the source is commit (empty otherwise)."""

    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: LeafNodeSource
    lifetime: Lifetime | None = None
    parent_hash: bytes = b""
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""

    def __post_init__(self) -> None:
        has_lifetime = self.leaf_node_source == LeafNodeSource.KEY_PACKAGE
        if has_lifetime != (self.lifetime is not None):
            raise LocalError("a LeafNode has a lifetime iff its source is key_package")

    def _encode_content(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.opaque(self.signature_key)
        self.credential.encode(w)
        self.capabilities.encode(w)
        w.u8(self.leaf_node_source)
        if self.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
            assert self.lifetime is not None
            self.lifetime.encode(w)
        elif self.leaf_node_source == LeafNodeSource.COMMIT:
            w.opaque(self.parent_hash)
        write_extensions(w, self.extensions)

    def encode(self, w: Writer) -> None:
        self._encode_content(w)
        w.opaque(self.signature)

    def tbs(self, group_id: bytes = b"", leaf_index: int = 0) -> bytes:
        """The LeafNodeTBS encoding (§7.2) that ``signature`` signs with label "LeafNodeTBS".

        ``group_id`` and ``leaf_index`` are appended for the update and commit sources and
        ignored for key_package.
        """
        w = Writer()
        self._encode_content(w)
        if self.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
            w.opaque(group_id)
            w.u32(leaf_index)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> Self:
        encryption_key = r.opaque("leaf encryption_key")
        signature_key = r.opaque("leaf signature_key")
        credential = Credential.decode(r)
        capabilities = Capabilities.decode(r)
        source = closed_enum(r, 1, LeafNodeSource, "leaf_node_source")
        lifetime = Lifetime.decode(r) if source == LeafNodeSource.KEY_PACKAGE else None
        parent_hash = r.opaque("leaf parent_hash") if source == LeafNodeSource.COMMIT else b""
        return cls(
            encryption_key=encryption_key,
            signature_key=signature_key,
            credential=credential,
            capabilities=capabilities,
            leaf_node_source=source,
            lifetime=lifetime,
            parent_hash=parent_hash,
            extensions=read_extensions(r),
            signature=r.opaque("leaf signature"),
        )


@dataclass(frozen=True, slots=True)
class ParentNode(WireStruct):
    """§7.1: ``encryption_key``, ``parent_hash`` and ``uint32 unmerged_leaves<V>``."""

    encryption_key: bytes
    parent_hash: bytes = b""
    unmerged_leaves: tuple[int, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.opaque(self.parent_hash)
        w.vector(self.unmerged_leaves, lambda s, v: s.u32(v))

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            encryption_key=r.opaque("parent encryption_key"),
            parent_hash=r.opaque("parent parent_hash"),
            unmerged_leaves=tuple(r.vector(lambda s: s.u32("unmerged leaf"), "unmerged_leaves")),
        )


@dataclass(frozen=True, slots=True)
class Node(WireStruct):
    """§7.8: ``struct { NodeType node_type; select { leaf: LeafNode; parent: ParentNode } }``."""

    value: LeafNode | ParentNode

    @property
    def node_type(self) -> NodeType:
        return NodeType.LEAF if isinstance(self.value, LeafNode) else NodeType.PARENT

    @property
    def leaf(self) -> LeafNode | None:
        return self.value if isinstance(self.value, LeafNode) else None

    @property
    def parent(self) -> ParentNode | None:
        return self.value if isinstance(self.value, ParentNode) else None

    def encode(self, w: Writer) -> None:
        w.u8(self.node_type)
        self.value.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        node_type = closed_enum(r, 1, NodeType, "node_type")
        if node_type == NodeType.LEAF:
            return cls(LeafNode.decode(r))
        return cls(ParentNode.decode(r))


NodeLike = Node | LeafNode | ParentNode


def _as_node(value: NodeLike) -> Node:
    return value if isinstance(value, Node) else Node(value)


def _write_node(w: Writer, value: NodeLike) -> None:
    _as_node(value).encode(w)


def _write_optional_node(w: Writer, value: NodeLike | None) -> None:
    if value is None:
        w.u8(0)
    else:
        w.u8(1)
        _write_node(w, value)


def write_ratchet_tree(w: Writer, nodes: Sequence[NodeLike | None]) -> None:
    """``optional<Node> nodes<V>`` (§12.4.3.3); bare LeafNode/ParentNode are accepted too."""
    w.vector(nodes, _write_optional_node)


def read_ratchet_tree(r: Reader) -> list[Node | None]:
    return r.vector(lambda s: s.optional(Node.decode, "optional<Node>"), "ratchet_tree")


def encode_ratchet_tree(nodes: Sequence[NodeLike | None]) -> bytes:
    """The ``ratchet_tree`` extension body for an array of nodes (``None`` = blank)."""
    w = Writer()
    write_ratchet_tree(w, nodes)
    return w.getvalue()


def decode_ratchet_tree(data: bytes) -> list[Node | None]:
    """Parse a ``ratchet_tree`` extension body; syntax only (no tree validation here)."""
    return decode_all(data, read_ratchet_tree, "ratchet_tree")


@dataclass(frozen=True, slots=True)
class UpdatePathNode(WireStruct):
    """§7.6: a new public key and the path secret encrypted to each resolution member."""

    encryption_key: bytes
    encrypted_path_secret: tuple[HPKECiphertext, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.structs(self.encrypted_path_secret)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        key = r.opaque("update path encryption_key")
        return cls(key, read_structs(r, HPKECiphertext.decode, "encrypted_path_secret"))


@dataclass(frozen=True, slots=True)
class UpdatePath(WireStruct):
    """§7.6: ``struct { LeafNode leaf_node; UpdatePathNode nodes<V>; }``."""

    leaf_node: LeafNode
    nodes: tuple[UpdatePathNode, ...] = ()

    def encode(self, w: Writer) -> None:
        self.leaf_node.encode(w)
        w.structs(self.nodes)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        leaf = LeafNode.decode(r)
        return cls(leaf, read_structs(r, UpdatePathNode.decode, "update path nodes"))
