"""Basic MLS wire structs shared by the rest (RFC 9420 §5.3, §7.2, §13, §17).

Protocol versions, cipher-suite ids, extensions (§13) and the bodies of the extensions the RFC
defines (§12.1.8.1 external senders, §11.1 required capabilities, §12.4.3.2 external pub),
capabilities, lifetimes, credentials (§5.3; basic and X.509, the certificates kept opaque),
the leaf-node source (§7.2) and HPKECiphertext (§7.6).

Extension types, proposal types and credential types are IANA-extensible: unknown values are
kept as plain ints (known ones become enum members) so that re-encoding is byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from veil.core.mls.codec import Reader, Writer, decode_all
from veil.core.mls.structs._base import (
    WireStruct,
    closed_enum,
    open_enum,
    read_structs,
    read_u16_list,
    write_u16_list,
)


class ProtocolVersion(IntEnum):
    """§6: ``enum { reserved(0), mls10(1), (65535) } ProtocolVersion``."""

    MLS10 = 1


class CipherSuiteId(IntEnum):
    """§17.1: the cipher suites RFC 9420 registers (ids are kept as ints in the structs)."""

    MLS_128_DHKEMX25519_AES128GCM_SHA256_ED25519 = 1
    MLS_128_DHKEMP256_AES128GCM_SHA256_P256 = 2
    MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_ED25519 = 3
    MLS_256_DHKEMX448_AES256GCM_SHA512_ED448 = 4
    MLS_256_DHKEMP521_AES256GCM_SHA512_P521 = 5
    MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_ED448 = 6
    MLS_256_DHKEMP384_AES256GCM_SHA384_P384 = 7


class ExtensionType(IntEnum):
    """§17.3 (extensible: unknown values stay ints)."""

    APPLICATION_ID = 1
    RATCHET_TREE = 2
    REQUIRED_CAPABILITIES = 3
    EXTERNAL_PUB = 4
    EXTERNAL_SENDERS = 5


class CredentialType(IntEnum):
    """§5.3, §17.5 (extensible in capabilities; a Credential of unknown type cannot be read)."""

    BASIC = 1
    X509 = 2


class LeafNodeSource(IntEnum):
    """§7.2: ``enum { reserved(0), key_package(1), update(2), commit(3), (255) }``."""

    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


@dataclass(frozen=True, slots=True)
class Extension(WireStruct):
    """§13: ``struct { ExtensionType extension_type; opaque extension_data<V>; }``."""

    extension_type: int
    extension_data: bytes

    def encode(self, w: Writer) -> None:
        w.u16(self.extension_type)
        w.opaque(self.extension_data)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        ext_type = open_enum(ExtensionType, r.u16("extension type"))
        return cls(ext_type, r.opaque("extension_data"))


def write_extensions(w: Writer, extensions: Iterable[Extension]) -> None:
    """``Extension extensions<V>``."""
    w.structs(extensions)


def read_extensions(r: Reader) -> tuple[Extension, ...]:
    return read_structs(r, Extension.decode, "extensions")


def find_extension(extensions: Iterable[Extension], ext_type: int) -> bytes | None:
    """The data of the first extension of ``ext_type``, or None."""
    for ext in extensions:
        if ext.extension_type == ext_type:
            return ext.extension_data
    return None


@dataclass(frozen=True, slots=True)
class Capabilities(WireStruct):
    """§7.2: versions, cipher suites, extension/proposal/credential types (all uint16 lists)."""

    versions: tuple[int, ...] = (ProtocolVersion.MLS10,)
    cipher_suites: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()
    proposals: tuple[int, ...] = ()
    credentials: tuple[int, ...] = ()

    def encode(self, w: Writer) -> None:
        for items in (
            self.versions,
            self.cipher_suites,
            self.extensions,
            self.proposals,
            self.credentials,
        ):
            write_u16_list(w, items)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            versions=read_u16_list(r, "capabilities.versions"),
            cipher_suites=read_u16_list(r, "capabilities.cipher_suites"),
            extensions=read_u16_list(r, "capabilities.extensions"),
            proposals=read_u16_list(r, "capabilities.proposals"),
            credentials=read_u16_list(r, "capabilities.credentials"),
        )


@dataclass(frozen=True, slots=True)
class Lifetime(WireStruct):
    """§7.2: ``struct { uint64 not_before; uint64 not_after; }`` (seconds since the epoch)."""

    not_before: int
    not_after: int

    def encode(self, w: Writer) -> None:
        w.u64(self.not_before)
        w.u64(self.not_after)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u64("lifetime.not_before"), r.u64("lifetime.not_after"))


@dataclass(frozen=True, slots=True)
class Credential(WireStruct):
    """§5.3: a basic credential (``identity``) or an X.509 chain (``certificates``, opaque DER).

    A Credential of a type Veil does not know cannot be parsed (its body has no length
    prefix), so it is a DecodeError.
    """

    credential_type: CredentialType
    identity: bytes = b""
    certificates: tuple[bytes, ...] = ()

    @classmethod
    def basic(cls, identity: bytes) -> Credential:
        return cls(CredentialType.BASIC, identity=identity)

    @classmethod
    def x509(cls, certificates: Iterable[bytes]) -> Credential:
        return cls(CredentialType.X509, certificates=tuple(certificates))

    def encode(self, w: Writer) -> None:
        w.u16(self.credential_type)
        if self.credential_type == CredentialType.BASIC:
            w.opaque(self.identity)
        else:
            w.vector(self.certificates, lambda s, cert: s.opaque(cert))

    @classmethod
    def decode(cls, r: Reader) -> Self:
        ctype = closed_enum(r, 2, CredentialType, "credential type")
        if ctype == CredentialType.BASIC:
            return cls(ctype, identity=r.opaque("credential identity"))
        certs = r.vector(lambda s: s.opaque("certificate"), "credential certificates")
        return cls(ctype, certificates=tuple(certs))


@dataclass(frozen=True, slots=True)
class HPKECiphertext(WireStruct):
    """§7.6: ``struct { opaque kem_output<V>; opaque ciphertext<V>; }``."""

    kem_output: bytes
    ciphertext: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.kem_output)
        w.opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque("kem_output"), r.opaque("hpke ciphertext"))


@dataclass(frozen=True, slots=True)
class RequiredCapabilities(WireStruct):
    """§11.1: the ``required_capabilities`` extension body."""

    extension_types: tuple[int, ...] = ()
    proposal_types: tuple[int, ...] = ()
    credential_types: tuple[int, ...] = ()

    def encode(self, w: Writer) -> None:
        write_u16_list(w, self.extension_types)
        write_u16_list(w, self.proposal_types)
        write_u16_list(w, self.credential_types)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            read_u16_list(r, "required extension types"),
            read_u16_list(r, "required proposal types"),
            read_u16_list(r, "required credential types"),
        )


@dataclass(frozen=True, slots=True)
class ExternalPub(WireStruct):
    """§12.4.3.2: the ``external_pub`` extension body (an HPKE public key)."""

    external_pub: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.external_pub)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque("external_pub"))


@dataclass(frozen=True, slots=True)
class ExternalSender(WireStruct):
    """§12.1.8.1: one entry of the ``external_senders`` extension."""

    signature_key: bytes
    credential: Credential

    def encode(self, w: Writer) -> None:
        w.opaque(self.signature_key)
        self.credential.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque("external sender signature key"), Credential.decode(r))


def encode_external_senders(senders: Iterable[ExternalSender]) -> bytes:
    """The ``external_senders`` extension body: ``ExternalSender external_senders<V>``."""
    w = Writer()
    w.structs(senders)
    return w.getvalue()


def decode_external_senders(data: bytes) -> tuple[ExternalSender, ...]:
    return decode_all(
        data,
        lambda r: read_structs(r, ExternalSender.decode, "external_senders"),
        "external_senders",
    )
