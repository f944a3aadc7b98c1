"""Group state on the wire: GroupContext (RFC 9420 §8.1) and the Welcome machinery (§12.4.3).

GroupInfo (+ its to-be-signed form, signed with label "GroupInfoTBS"), GroupSecrets,
PathSecret, EncryptedGroupSecrets and Welcome. Secrets (``joiner_secret``, ``path_secret``)
are hidden from ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from veil.core.mls.codec import Reader, Writer
from veil.core.mls.structs._base import SignedWireStruct, WireStruct, open_enum, read_structs
from veil.core.mls.structs.common import (
    Extension,
    HPKECiphertext,
    ProtocolVersion,
    read_extensions,
    write_extensions,
)
from veil.core.mls.structs.proposals import PreSharedKeyID


@dataclass(frozen=True, slots=True)
class GroupContext(WireStruct):
    """§8.1: the state every member agrees on for an epoch."""

    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: tuple[Extension, ...] = ()
    version: int = ProtocolVersion.MLS10
    _encoding: bytes | None = field(default=None, init=False, compare=False, repr=False)
    """Computed on first use (every signature of the epoch covers the context)."""

    def encode(self, w: Writer) -> None:
        if self._encoding is None:
            inner = Writer()
            inner.u16(self.version)
            inner.u16(self.cipher_suite)
            inner.opaque(self.group_id)
            inner.u64(self.epoch)
            inner.opaque(self.tree_hash)
            inner.opaque(self.confirmed_transcript_hash)
            write_extensions(inner, self.extensions)
            object.__setattr__(self, "_encoding", inner.getvalue())
        assert self._encoding is not None
        w.raw(self._encoding)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        version = open_enum(ProtocolVersion, r.u16("group context version"))
        return cls(
            cipher_suite=r.u16("group context cipher_suite"),
            group_id=r.opaque("group_id"),
            epoch=r.u64("epoch"),
            tree_hash=r.opaque("tree_hash"),
            confirmed_transcript_hash=r.opaque("confirmed_transcript_hash"),
            extensions=read_extensions(r),
            version=version,
        )


@dataclass(frozen=True, slots=True)
class GroupInfo(SignedWireStruct):
    """§12.4.3: GroupContext, extensions, confirmation tag, signer leaf and signature."""

    group_context: GroupContext
    extensions: tuple[Extension, ...]
    confirmation_tag: bytes
    signer: int
    signature: bytes = b""

    def _encode_tbs(self, w: Writer) -> None:
        """GroupInfoTBS (signed with label "GroupInfoTBS")."""
        self.group_context.encode(w)
        write_extensions(w, self.extensions)
        w.opaque(self.confirmation_tag)
        w.u32(self.signer)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            group_context=GroupContext.decode(r),
            extensions=read_extensions(r),
            confirmation_tag=r.opaque("confirmation_tag"),
            signer=r.u32("signer"),
            signature=r.opaque("group info signature"),
        )


@dataclass(frozen=True, slots=True)
class PathSecret(WireStruct):
    """§12.4.3.1: ``struct { opaque path_secret<V>; }`` (hidden in repr)."""

    path_secret: bytes = field(repr=False)

    def encode(self, w: Writer) -> None:
        w.opaque(self.path_secret)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque("path_secret"))


@dataclass(frozen=True, slots=True)
class GroupSecrets(WireStruct):
    """§12.4.3.1: joiner secret, optional path secret, PSKs to inject (secrets not in repr)."""

    joiner_secret: bytes = field(repr=False)
    path_secret: PathSecret | None = None
    psks: tuple[PreSharedKeyID, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.joiner_secret)
        w.optional(self.path_secret, lambda s, p: p.encode(s))
        w.structs(self.psks)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        joiner = r.opaque("joiner_secret")
        path_secret = r.optional(PathSecret.decode, "group secrets path_secret")
        return cls(joiner, path_secret, read_structs(r, PreSharedKeyID.decode, "psks"))


@dataclass(frozen=True, slots=True)
class EncryptedGroupSecrets(WireStruct):
    """§12.4.3.1: the KeyPackageRef of a new member and its HPKE-encrypted GroupSecrets."""

    new_member: bytes
    encrypted_group_secrets: HPKECiphertext

    def encode(self, w: Writer) -> None:
        w.opaque(self.new_member)
        self.encrypted_group_secrets.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque("new_member"), HPKECiphertext.decode(r))


@dataclass(frozen=True, slots=True)
class Welcome(WireStruct):
    """§12.4.3.1: cipher suite, per-member secrets, AEAD-encrypted GroupInfo."""

    cipher_suite: int
    secrets: tuple[EncryptedGroupSecrets, ...]
    encrypted_group_info: bytes

    def encode(self, w: Writer) -> None:
        w.u16(self.cipher_suite)
        w.structs(self.secrets)
        w.opaque(self.encrypted_group_info)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        suite = r.u16("welcome cipher_suite")
        secrets = read_structs(r, EncryptedGroupSecrets.decode, "welcome secrets")
        return cls(suite, secrets, r.opaque("encrypted_group_info"))

    def find_secrets(self, key_package_ref: bytes) -> EncryptedGroupSecrets | None:
        """The entry for a KeyPackageRef, or None."""
        for entry in self.secrets:
            if entry.new_member == key_package_ref:
                return entry
        return None
