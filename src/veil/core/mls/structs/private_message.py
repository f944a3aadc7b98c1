"""Encrypted framing (RFC 9420 §6.3): PrivateMessage, its content, SenderData and the AADs.

PrivateMessage with its SenderDataAAD (§6.3.2) and PrivateContentAAD (§6.3.1),
PrivateMessageContent (§6.3.1; read with ``from_bytes(data, content_type)``, since its layout
depends on the content type of the enclosing PrivateMessage) and SenderData (§6.3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from veil.core.errors import DecodeError
from veil.core.mls.codec import Reader, Writer, decode_all
from veil.core.mls.structs._base import WireStruct, closed_enum
from veil.core.mls.structs.framed_content import (
    Content,
    ContentType,
    FramedContentAuthData,
    read_content,
    write_content,
)


@dataclass(frozen=True, slots=True)
class PrivateMessage(WireStruct):
    """§6.3: the encrypted form; sender data and content are ciphertexts."""

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u64(self.epoch)
        w.u8(self.content_type)
        w.opaque(self.authenticated_data)
        w.opaque(self.encrypted_sender_data)
        w.opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            group_id=r.opaque("group_id"),
            epoch=r.u64("epoch"),
            content_type=closed_enum(r, 1, ContentType, "content_type"),
            authenticated_data=r.opaque("authenticated_data"),
            encrypted_sender_data=r.opaque("encrypted_sender_data"),
            ciphertext=r.opaque("ciphertext"),
        )

    def sender_data_aad(self) -> bytes:
        """§6.3.2 SenderDataAAD: group id, epoch, content type."""
        w = Writer()
        w.opaque(self.group_id)
        w.u64(self.epoch)
        w.u8(self.content_type)
        return w.getvalue()

    def content_aad(self) -> bytes:
        """§6.3.1 PrivateContentAAD: group id, epoch, content type, authenticated data."""
        w = Writer()
        w.raw(self.sender_data_aad())
        w.opaque(self.authenticated_data)
        return w.getvalue()


@dataclass(frozen=True, slots=True)
class PrivateMessageContent:
    """§6.3.1: content, auth data and all-zero padding (its length is ``padding``)."""

    content: Content
    auth: FramedContentAuthData
    padding: int = 0

    def to_bytes(self) -> bytes:
        w = Writer()
        write_content(w, self.content)
        self.auth.encode(w)
        w.raw(bytes(self.padding))
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, content_type: ContentType) -> PrivateMessageContent:
        """Parse a decrypted content; non-zero padding is a DecodeError (§6.3.1)."""
        return decode_all(data, lambda r: cls._read(r, content_type), "PrivateMessageContent")

    @classmethod
    def _read(cls, r: Reader, content_type: ContentType) -> PrivateMessageContent:
        content = read_content(r, content_type)
        auth = FramedContentAuthData.read(r, content_type)
        padding = r.raw(r.remaining, "padding")
        if any(padding):
            raise DecodeError("PrivateMessageContent padding is not all zero")
        return cls(content, auth, len(padding))


@dataclass(frozen=True, slots=True)
class SenderData(WireStruct):
    """§6.3.2: ``struct { uint32 leaf_index; uint32 generation; opaque reuse_guard[4]; }``."""

    leaf_index: int
    generation: int
    reuse_guard: bytes

    def encode(self, w: Writer) -> None:
        if len(self.reuse_guard) != 4:
            raise ValueError("reuse_guard must be 4 bytes")
        w.u32(self.leaf_index)
        w.u32(self.generation)
        w.raw(self.reuse_guard)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u32("leaf_index"), r.u32("generation"), r.raw(4, "reuse_guard"))
