"""Proposals (RFC 9420 §12.1) and ProposalOrRef (§12.4).

Add, Update, Remove, PreSharedKey (with PreSharedKeyID, §8.4), ReInit, ExternalInit and
GroupContextExtensions. A :class:`Proposal` wraps one of them; its type is derived from the
body. Proposal types are IANA-extensible, but a proposal of an unknown type cannot be parsed
(its body has no length), so decoding one is a DecodeError. A ProposalRef (§5.2) is
RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent) and travels as opaque bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from veil.core.mls.codec import Reader, Writer
from veil.core.mls.structs._base import WireStruct, closed_enum, open_enum
from veil.core.mls.structs.common import (
    Extension,
    ProtocolVersion,
    read_extensions,
    write_extensions,
)
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.tree import LeafNode

ProposalRef = bytes
"""§5.2: ``opaque HashReference<V>`` of an AuthenticatedContent carrying the proposal."""

PROPOSAL_REF_LABEL = b"MLS 1.0 Proposal Reference"


class ProposalType(IntEnum):
    """§17.4 (extensible: lists of proposal types keep unknown values as ints)."""

    ADD = 1
    UPDATE = 2
    REMOVE = 3
    PSK = 4
    REINIT = 5
    EXTERNAL_INIT = 6
    GROUP_CONTEXT_EXTENSIONS = 7


class PSKType(IntEnum):
    """§8.4: ``enum { reserved(0), external(1), resumption(2), (255) } PSKType``."""

    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(IntEnum):
    """§8.4: ``enum { reserved(0), application(1), reinit(2), branch(3), (255) }``."""

    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


@dataclass(frozen=True, slots=True)
class Add(WireStruct):
    """§12.1.1: ``struct { KeyPackage key_package; }``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.ADD
    key_package: KeyPackage

    def encode(self, w: Writer) -> None:
        self.key_package.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(KeyPackage.decode(r))


@dataclass(frozen=True, slots=True)
class Update(WireStruct):
    """§12.1.2: ``struct { LeafNode leaf_node; }``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.UPDATE
    leaf_node: LeafNode

    def encode(self, w: Writer) -> None:
        self.leaf_node.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(LeafNode.decode(r))


@dataclass(frozen=True, slots=True)
class Remove(WireStruct):
    """§12.1.3: ``struct { uint32 removed; }`` (a leaf index)."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.REMOVE
    removed: int

    def encode(self, w: Writer) -> None:
        w.u32(self.removed)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u32("removed"))


@dataclass(frozen=True, slots=True)
class PreSharedKeyID(WireStruct):
    """§8.4: an external PSK (``psk_id``) or a resumption PSK (usage, group id, epoch)."""

    psktype: PSKType
    psk_nonce: bytes
    psk_id: bytes = b""
    usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION
    psk_group_id: bytes = b""
    psk_epoch: int = 0

    @classmethod
    def external(cls, psk_id: bytes, psk_nonce: bytes) -> PreSharedKeyID:
        return cls(PSKType.EXTERNAL, psk_nonce, psk_id=psk_id)

    @classmethod
    def resumption(
        cls, usage: ResumptionPSKUsage, group_id: bytes, epoch: int, psk_nonce: bytes
    ) -> PreSharedKeyID:
        return cls(
            PSKType.RESUMPTION, psk_nonce, usage=usage, psk_group_id=group_id, psk_epoch=epoch
        )

    def encode(self, w: Writer) -> None:
        w.u8(self.psktype)
        if self.psktype == PSKType.EXTERNAL:
            w.opaque(self.psk_id)
        else:
            w.u8(self.usage)
            w.opaque(self.psk_group_id)
            w.u64(self.psk_epoch)
        w.opaque(self.psk_nonce)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        psktype = closed_enum(r, 1, PSKType, "psktype")
        if psktype == PSKType.EXTERNAL:
            psk_id = r.opaque("psk_id")
            return cls(psktype, r.opaque("psk_nonce"), psk_id=psk_id)
        usage = closed_enum(r, 1, ResumptionPSKUsage, "resumption psk usage")
        group_id = r.opaque("psk_group_id")
        epoch = r.u64("psk_epoch")
        nonce = r.opaque("psk_nonce")
        return cls(psktype, nonce, usage=usage, psk_group_id=group_id, psk_epoch=epoch)


@dataclass(frozen=True, slots=True)
class PreSharedKey(WireStruct):
    """§12.1.4: ``struct { PreSharedKeyID psk; }``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.PSK
    psk: PreSharedKeyID

    def encode(self, w: Writer) -> None:
        self.psk.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(PreSharedKeyID.decode(r))


@dataclass(frozen=True, slots=True)
class ReInit(WireStruct):
    """§12.1.5: new group id, version, cipher suite and extensions."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.REINIT
    group_id: bytes
    version: int
    cipher_suite: int
    extensions: tuple[Extension, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u16(self.version)
        w.u16(self.cipher_suite)
        write_extensions(w, self.extensions)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        group_id = r.opaque("reinit group_id")
        version = open_enum(ProtocolVersion, r.u16("reinit version"))
        return cls(group_id, version, r.u16("reinit cipher_suite"), read_extensions(r))


@dataclass(frozen=True, slots=True)
class ExternalInit(WireStruct):
    """§12.1.6: ``struct { opaque kem_output<V>; }``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.EXTERNAL_INIT
    kem_output: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.kem_output)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque("external init kem_output"))


@dataclass(frozen=True, slots=True)
class GroupContextExtensions(WireStruct):
    """§12.1.7: ``struct { Extension extensions<V>; }``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.GROUP_CONTEXT_EXTENSIONS
    extensions: tuple[Extension, ...] = ()

    def encode(self, w: Writer) -> None:
        write_extensions(w, self.extensions)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(read_extensions(r))


ProposalBody = Add | Update | Remove | PreSharedKey | ReInit | ExternalInit | GroupContextExtensions

_BODIES: dict[int, type[ProposalBody]] = {
    body.PROPOSAL_TYPE: body
    for body in (Add, Update, Remove, PreSharedKey, ReInit, ExternalInit, GroupContextExtensions)
}


@dataclass(frozen=True, slots=True)
class Proposal(WireStruct):
    """§12.1: ``struct { ProposalType msg_type; select (msg_type) { ... }; }``."""

    body: ProposalBody

    @property
    def proposal_type(self) -> ProposalType:
        return self.body.PROPOSAL_TYPE

    def encode(self, w: Writer) -> None:
        w.u16(self.proposal_type)
        self.body.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        msg_type = closed_enum(r, 2, ProposalType, "proposal type")
        return cls(_BODIES[msg_type].decode(r))


class ProposalOrRefType(IntEnum):
    """§12.4: ``enum { reserved(0), proposal(1), reference(2), (255) }``."""

    PROPOSAL = 1
    REFERENCE = 2


@dataclass(frozen=True, slots=True)
class ProposalOrRef(WireStruct):
    """§12.4: a proposal by value, or a ProposalRef (bytes) to one sent before."""

    value: Proposal | ProposalRef

    @property
    def type(self) -> ProposalOrRefType:
        if isinstance(self.value, Proposal):
            return ProposalOrRefType.PROPOSAL
        return ProposalOrRefType.REFERENCE

    @property
    def proposal(self) -> Proposal | None:
        return self.value if isinstance(self.value, Proposal) else None

    @property
    def reference(self) -> ProposalRef | None:
        return None if isinstance(self.value, Proposal) else self.value

    def encode(self, w: Writer) -> None:
        w.u8(self.type)
        if isinstance(self.value, Proposal):
            self.value.encode(w)
        else:
            w.opaque(self.value)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        kind = closed_enum(r, 1, ProposalOrRefType, "ProposalOrRef type")
        if kind == ProposalOrRefType.PROPOSAL:
            return cls(Proposal.decode(r))
        return cls(r.opaque("proposal reference"))


def proposal_type_name(value: int) -> str:
    """Readable name of a (possibly unknown) proposal type, for error messages."""
    try:
        return ProposalType(value).name.lower()
    except ValueError:
        return f"unknown({value})"


__all__ = [
    "PROPOSAL_REF_LABEL",
    "Add",
    "ExternalInit",
    "GroupContextExtensions",
    "PSKType",
    "PreSharedKey",
    "PreSharedKeyID",
    "Proposal",
    "ProposalBody",
    "ProposalOrRef",
    "ProposalOrRefType",
    "ProposalRef",
    "ProposalType",
    "ReInit",
    "Remove",
    "ResumptionPSKUsage",
    "Update",
    "proposal_type_name",
]
