"""Signed and MACed framing (RFC 9420 §6.1, §6.2) and the transcript-hash inputs (§8.2).

FramedContentTBS (§6.1), AuthenticatedContent with its AuthenticatedContentTBM (§6.2) and
ConfirmedTranscriptHashInput, the InterimTranscriptHashInput (§8.2), and PublicMessage (§6.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from veil.core.errors import LocalError
from veil.core.mls.codec import Reader, Writer
from veil.core.mls.structs._base import WireStruct, closed_enum
from veil.core.mls.structs.framed_content import (
    MLS10,
    FramedContent,
    FramedContentAuthData,
    SenderType,
    WireFormat,
)
from veil.core.mls.structs.group import GroupContext


def _read_framed(r: Reader) -> tuple[FramedContent, FramedContentAuthData]:
    """A FramedContent, then the auth data whose layout its content type decides."""
    content = FramedContent.decode(r)
    return content, FramedContentAuthData.read(r, content.content_type)


def framed_content_tbs(
    wire_format: WireFormat, content: FramedContent, context: GroupContext | None
) -> bytes:
    """§6.1 FramedContentTBS: version, wire format, content, and the GroupContext for member
    and new_member_commit senders (``context`` is required then, ignored otherwise)."""
    w = Writer()
    w.u16(MLS10)
    w.u16(wire_format)
    content.encode(w)
    if content.sender.has_group_context:
        if context is None:
            raise LocalError("FramedContentTBS for this sender needs the GroupContext")
        context.encode(w)
    return w.getvalue()


@dataclass(frozen=True, slots=True)
class AuthenticatedContent(WireStruct):
    """§6.1: wire format, content and auth data (what a ProposalRef hashes)."""

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    def encode(self, w: Writer) -> None:
        w.u16(self.wire_format)
        self.content.encode(w)
        self.auth.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        wire_format = closed_enum(r, 2, WireFormat, "wire_format")
        content, auth = _read_framed(r)
        return cls(wire_format, content, auth)

    def tbs(self, context: GroupContext | None) -> bytes:
        """The FramedContentTBS that ``auth.signature`` signs (label "FramedContentTBS")."""
        return framed_content_tbs(self.wire_format, self.content, context)

    def tbm(self, context: GroupContext | None) -> bytes:
        """§6.2 AuthenticatedContentTBM: FramedContentTBS followed by the auth data."""
        w = Writer()
        w.raw(self.tbs(context))
        self.auth.encode(w)
        return w.getvalue()

    def confirmed_transcript_hash_input(self) -> bytes:
        """§8.2 ConfirmedTranscriptHashInput: wire format, content, signature."""
        w = Writer()
        w.u16(self.wire_format)
        self.content.encode(w)
        w.opaque(self.auth.signature)
        return w.getvalue()


def interim_transcript_hash_input(confirmation_tag: bytes) -> bytes:
    """§8.2 InterimTranscriptHashInput: ``struct { MAC confirmation_tag; }``."""
    w = Writer()
    w.opaque(confirmation_tag)
    return w.getvalue()


@dataclass(frozen=True, slots=True)
class PublicMessage(WireStruct):
    """§6.2: content, auth data and, for member senders, the membership tag."""

    content: FramedContent
    auth: FramedContentAuthData
    membership_tag: bytes | None = None

    def encode(self, w: Writer) -> None:
        self.content.encode(w)
        self.auth.encode(w)
        if self.content.sender.sender_type == SenderType.MEMBER:
            w.opaque(self.membership_tag or b"")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        content, auth = _read_framed(r)
        tag = None
        if content.sender.sender_type == SenderType.MEMBER:
            tag = r.opaque("membership_tag")
        return cls(content, auth, tag)

    def authenticated_content(self) -> AuthenticatedContent:
        return AuthenticatedContent(WireFormat.MLS_PUBLIC_MESSAGE, self.content, self.auth)
