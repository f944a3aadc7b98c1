"""Message framing structs (RFC 9420 §6).

FramedContent and its signed/MACed forms (FramedContentTBS, FramedContentAuthData,
AuthenticatedContent, AuthenticatedContentTBM, §6.1-6.2), PublicMessage (§6.2),
PrivateMessage with PrivateMessageContent, SenderData and the two AAD structs (§6.3), the
transcript-hash inputs (§8.2) and the MLSMessage envelope (§6).

The content of a FramedContent is ``bytes`` (application data), a Proposal or a Commit; the
content type follows from it. Structs whose layout depends on a field of an enclosing struct
(FramedContentAuthData, PrivateMessageContent) are read with ``read(r, content_type)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from veil.core.errors import DecodeError, LocalError, UnsupportedVersionError
from veil.core.mls.codec import Reader, Writer, decode_all
from veil.core.mls.structs._base import WireStruct, closed_enum
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.common import ProtocolVersion
from veil.core.mls.structs.group import GroupContext, GroupInfo, Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import Proposal


class WireFormat(IntEnum):
    """§6, §17.2 (a message of an unknown wire format cannot be read)."""

    MLS_PUBLIC_MESSAGE = 1
    MLS_PRIVATE_MESSAGE = 2
    MLS_WELCOME = 3
    MLS_GROUP_INFO = 4
    MLS_KEY_PACKAGE = 5


class ContentType(IntEnum):
    """§6: ``enum { reserved(0), application(1), proposal(2), commit(3), (255) }``."""

    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3


class SenderType(IntEnum):
    """§6: member, external, new_member_proposal, new_member_commit."""

    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4


MLS10 = ProtocolVersion.MLS10
Content = bytes | Proposal | Commit


@dataclass(frozen=True, slots=True)
class Sender(WireStruct):
    """§6: a member (``index`` = leaf index), an external sender (``index`` = position in
    the external_senders extension) or a new member (no index)."""

    sender_type: SenderType
    index: int = 0

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        return cls(SenderType.MEMBER, leaf_index)

    @property
    def has_index(self) -> bool:
        return self.sender_type in (SenderType.MEMBER, SenderType.EXTERNAL)

    @property
    def has_group_context(self) -> bool:
        """§6.1: the FramedContentTBS carries the GroupContext for these senders."""
        return self.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)

    def encode(self, w: Writer) -> None:
        w.u8(self.sender_type)
        if self.has_index:
            w.u32(self.index)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        sender_type = closed_enum(r, 1, SenderType, "sender_type")
        sender = cls(sender_type)
        return cls(sender_type, r.u32("sender index")) if sender.has_index else sender


def content_type_of(content: Content) -> ContentType:
    if isinstance(content, Proposal):
        return ContentType.PROPOSAL
    if isinstance(content, Commit):
        return ContentType.COMMIT
    return ContentType.APPLICATION


def write_content(w: Writer, content: Content) -> None:
    """The content body alone (the select arm of FramedContent / PrivateMessageContent)."""
    if isinstance(content, bytes):
        w.opaque(content)
    else:
        content.encode(w)


def read_content(r: Reader, content_type: ContentType) -> Content:
    if content_type == ContentType.APPLICATION:
        return r.opaque("application_data")
    if content_type == ContentType.PROPOSAL:
        return Proposal.decode(r)
    return Commit.decode(r)


@dataclass(frozen=True, slots=True)
class FramedContent(WireStruct):
    """§6: group id, epoch, sender, authenticated data and the content."""

    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    content: Content
    _encoding: bytes | None = field(default=None, init=False, compare=False, repr=False)
    """The encoding: the exact bytes it was decoded from, else computed on first use. Not an
    ``__init__`` argument, so ``dataclasses.replace`` never carries a stale one over."""

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.content)

    def encoding(self) -> bytes:
        """The encoded FramedContent (signed in FramedContentTBS, MACed in
        AuthenticatedContentTBM, hashed in the transcript): encoded at most once."""
        if self._encoding is None:
            w = Writer()
            w.opaque(self.group_id)
            w.u64(self.epoch)
            self.sender.encode(w)
            w.opaque(self.authenticated_data)
            w.u8(self.content_type)
            write_content(w, self.content)
            object.__setattr__(self, "_encoding", w.getvalue())
        assert self._encoding is not None
        return self._encoding

    def encode(self, w: Writer) -> None:
        w.raw(self.encoding())

    @classmethod
    def decode(cls, r: Reader) -> Self:
        start = r.position
        group_id = r.opaque("group_id")
        epoch = r.u64("epoch")
        sender = Sender.decode(r)
        authenticated_data = r.opaque("authenticated_data")
        content_type = closed_enum(r, 1, ContentType, "content_type")
        content = read_content(r, content_type)
        framed = cls(group_id, epoch, sender, authenticated_data, content)
        # The codec is canonical (minimal varints, 0/1 presence bytes, unknown enum values
        # kept), so these bytes are what encoding the decoded value would give.
        object.__setattr__(framed, "_encoding", r.buffer[start : r.position])
        return framed


@dataclass(frozen=True, slots=True)
class FramedContentAuthData:
    """§6.1: the signature, and the confirmation tag iff the content is a commit."""

    signature: bytes
    confirmation_tag: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.opaque(self.signature)
        if self.confirmation_tag is not None:
            w.opaque(self.confirmation_tag)

    @classmethod
    def read(cls, r: Reader, content_type: ContentType) -> FramedContentAuthData:
        signature = r.opaque("signature")
        if content_type == ContentType.COMMIT:
            return cls(signature, r.opaque("confirmation_tag"))
        return cls(signature)

    def check_shape(self, content_type: ContentType) -> None:
        """A confirmation tag is present iff the content is a commit (else DecodeError)."""
        if (self.confirmation_tag is not None) != (content_type == ContentType.COMMIT):
            raise DecodeError("confirmation_tag must be present exactly for commits")


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


MessageBody = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage

_BODIES: dict[WireFormat, type[MessageBody]] = {
    WireFormat.MLS_PUBLIC_MESSAGE: PublicMessage,
    WireFormat.MLS_PRIVATE_MESSAGE: PrivateMessage,
    WireFormat.MLS_WELCOME: Welcome,
    WireFormat.MLS_GROUP_INFO: GroupInfo,
    WireFormat.MLS_KEY_PACKAGE: KeyPackage,
}


@dataclass(frozen=True, slots=True)
class MLSMessage(WireStruct):
    """§6: ``version = mls10``, the wire format and the matching body.

    A version other than mls10 is a DecodeError (its body could not be trusted to parse).
    """

    body: MessageBody

    @property
    def wire_format(self) -> WireFormat:
        for wire_format, body_type in _BODIES.items():
            if isinstance(self.body, body_type):
                return wire_format
        raise TypeError("not an MLSMessage body")  # pragma: no cover - typing forbids it

    def encode(self, w: Writer) -> None:
        w.u16(MLS10)
        w.u16(self.wire_format)
        self.body.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        version = r.u16("MLSMessage version")
        if version != MLS10:
            raise UnsupportedVersionError(f"unsupported MLS protocol version {version}")
        wire_format = closed_enum(r, 2, WireFormat, "wire_format")
        return cls(_BODIES[wire_format].decode(r))
