"""FramedContent and its parts (RFC 9420 §6, §6.1).

The wire format, content type and sender enums, the Sender struct, FramedContent (§6) and
FramedContentAuthData (§6.1), shared by the PublicMessage (:mod:`.public_message`) and
PrivateMessage (:mod:`.private_message`) framings.

The content of a FramedContent is ``bytes`` (application data), a Proposal or a Commit; the
content type follows from it. FramedContentAuthData, whose layout depends on the content type,
is read with ``read(r, content_type)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from veil.core.errors import DecodeError
from veil.core.mls.codec import Reader, Writer
from veil.core.mls.structs._base import WireStruct, closed_enum
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.common import ProtocolVersion
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
