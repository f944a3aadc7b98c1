"""Message framing structs (RFC 9420 §6): the MLSMessage envelope, and every framing struct.

MLSMessage (§6) is defined here; the other framing structs live in three modules and are
re-exported, so ``veil.core.mls.structs.framing`` is the one import path for all of them:

* :mod:`.framed_content` -- WireFormat, ContentType, SenderType, Sender, FramedContent and
  FramedContentAuthData (§6, §6.1);
* :mod:`.public_message` -- FramedContentTBS, AuthenticatedContent, AuthenticatedContentTBM,
  PublicMessage (§6.1-6.2) and the transcript-hash inputs (§8.2);
* :mod:`.private_message` -- PrivateMessage with PrivateMessageContent, SenderData and the two
  AAD structs (§6.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from veil.core.errors import UnsupportedVersionError
from veil.core.mls.codec import Reader, Writer
from veil.core.mls.structs._base import WireStruct, closed_enum
from veil.core.mls.structs.framed_content import (
    MLS10,
    Content,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    Sender,
    SenderType,
    WireFormat,
    content_type_of,
    read_content,
    write_content,
)
from veil.core.mls.structs.group import GroupInfo, Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.private_message import (
    PrivateMessage,
    PrivateMessageContent,
    SenderData,
)
from veil.core.mls.structs.public_message import (
    AuthenticatedContent,
    PublicMessage,
    framed_content_tbs,
    interim_transcript_hash_input,
)

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


__all__ = [
    "MLS10",
    "AuthenticatedContent",
    "Content",
    "ContentType",
    "FramedContent",
    "FramedContentAuthData",
    "MLSMessage",
    "MessageBody",
    "PrivateMessage",
    "PrivateMessageContent",
    "PublicMessage",
    "Sender",
    "SenderData",
    "SenderType",
    "WireFormat",
    "content_type_of",
    "framed_content_tbs",
    "interim_transcript_hash_input",
    "read_content",
    "write_content",
]
