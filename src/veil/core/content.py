"""The end-to-end encrypted payload of a 1:1 message (docs/client-design.md "veil.core.content").

What a Signal message carries, encoded with the core's strict protobuf codec
(:mod:`veil.core.protobuf`), then padded (:func:`pad`) before encryption and unpadded
(:func:`unpad`) after decryption::

    Content    {1: version (=1), 2: message_id (16 bytes), 3: sent_ms (sender clock),
                4: text (UTF-8), 5: Attachment, 6: Receipt, 7: SyncSent, 8: Typing,
                9: SessionReset, 10: expire_timer_s, 11: TimerUpdate,
                12: ConversationAction, 13: CallSignal (veil.core.call_signal),
                14: CallLogEntry (veil.core.call_log)}
    Attachment {1: blob id (32 lowercase hex), 2: key (32 bytes), 3: digest (SHA-256 of the
                blob, 32 bytes), 4: size (plaintext bytes), 5: file name, 6: content type}
    Receipt    {1: kind (1 delivered, 2 read), 2: repeated message_id (16 bytes each)}
    SyncSent   {1: destination account id (32 lowercase hex), 2: the encoded Content sent}
    Typing     {1: started (bool: 0 or 1; absent means 0)}
    SessionReset {1: device id whose messages could not be read (1..127)}
    TimerUpdate {1: seconds (0 = off, else 5..86400)}
    ConversationAction {1: action (1 accept, 2 decline, 3 block, 4 unblock)}
    CallLogEntry (veil.core.call_log)

Disappearing messages (ARCHITECTURE.md §1): a text/attachment message carries its own timer
in ``expire_timer_s`` (0 or absent: it never disappears); a :class:`TimerUpdate` is the control
message "the conversation's timer is now N" and is itself shown in the conversation. A
:class:`ConversationAction` is what one of our devices did to a conversation (accepted or
declined a message request, blocked, unblocked) and travels only inside a :class:`SyncSent` to
our other devices (``destination`` names the peer). A :class:`CallLogEntry` is likewise
sync-only: the call-log line of a 1:1 call with ``destination`` that one of our devices took
part in, so that every device of ours shows the same line; the enclosing Content's
``sent_ms`` is when the call started.

Rules (checked by :func:`encode_content`, which raises :class:`LocalError`, and by
:func:`decode_content`, which raises only :class:`DecodeError`):

* exactly one body -- text, attachment, receipt, sync, typing, reset, timer, action, call
  signal or call-log entry -- except text with an attachment (a caption);
* ``expire_timer_s`` is 0 or :data:`MIN_TIMER_S`..:data:`MAX_TIMER_S`, and only on a text or
  attachment message; a timer update's seconds obey the same range;
* an action or a call-log entry only inside a sync copy; a call-log entry's outcome is one
  of its direction's (``missed`` and ``answered_elsewhere`` are incoming, ``busy`` and
  ``no_answer`` outgoing) and it has a duration exactly when ``completed``;
* text at most :data:`MAX_TEXT_BYTES` UTF-8 bytes, file name and content type at most
  :data:`MAX_NAME_BYTES`, at most :data:`MAX_RECEIPT_IDS` ids per receipt (at least one),
  attachment size at most :data:`MAX_ATTACHMENT_SIZE`; strings are strict UTF-8;
* the content inside a :class:`SyncSent` is itself a valid Content and not a sync; the only
  call signal it may be is a ``reject`` (one of our devices declined the call with
  ``destination``, so our others stop ringing).

Unknown field numbers are skipped, as the codec documents (and protobuf requires), so a later
version may add fields. A payload whose only body is one this version does not know still
fails the "exactly one body" rule and raises :class:`DecodeError`. A non-repeated field sent
twice keeps its last value (the codec's rule). The encoder writes fields in number order, so
equal values encode to equal bytes.

A file name is the sender's hint: whoever writes the file must reduce it to a safe base name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from veil.core import protobuf as pb
from veil.core.call_log import (
    CallLogEntry,
    call_log_problem,
    decode_call_log,
    encode_call_log,
)
from veil.core.call_signal import CallSignal, call_problem, decode_call, encode_call
from veil.core.errors import DecodeError, LocalError, VeilError
from veil.core.rng import Rng

CONTENT_VERSION: Final = 1
MESSAGE_ID_LEN: Final = 16
MAX_TEXT_BYTES: Final = 64 * 1024
MAX_NAME_BYTES: Final = 255
MAX_RECEIPT_IDS: Final = 1000
MAX_ATTACHMENT_SIZE: Final = 2**31
MAX_SENT_MS: Final = 2**63 - 1
RECEIPT_DELIVERED: Final = 1
RECEIPT_READ: Final = 2
PAD_BLOCK: Final = 160
MIN_TIMER_S: Final = 5
MAX_TIMER_S: Final = 24 * 3600
TIMER_PRESETS_S: Final = (5, 30, 60, 300, 3600, 8 * 3600, 24 * 3600)
"""The timers a user picks from (any whole second in 5 s .. 24 h is also allowed)."""
ACTION_ACCEPT: Final = 1
ACTION_DECLINE: Final = 2
ACTION_BLOCK: Final = 3
ACTION_UNBLOCK: Final = 4
ACTIONS: Final = (ACTION_ACCEPT, ACTION_DECLINE, ACTION_BLOCK, ACTION_UNBLOCK)

_HEX32: Final = re.compile(r"[0-9a-f]{32}")
_CONTENT: Final = {
    **{n: (pb.VARINT, False) for n in (1, 3, 10)},
    **{n: (pb.LEN, False) for n in (2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14)},
}
_ATTACHMENT: Final = {
    **{n: (pb.LEN, False) for n in (1, 2, 3, 5, 6)},
    4: (pb.VARINT, False),
}
_RECEIPT: Final = {1: (pb.VARINT, False), 2: (pb.LEN, True)}
_SYNC: Final = {1: (pb.LEN, False), 2: (pb.LEN, False)}
_ONE_UINT: Final = {1: (pb.VARINT, False)}
MAX_DEVICE_ID: Final = 127


@dataclass(frozen=True, slots=True)
class AttachmentPointer:
    """Where an encrypted attachment lives and how to open it (:mod:`veil.core.attachment`)."""

    blob_id: str
    key: bytes
    digest: bytes
    size: int
    file_name: str = ""
    content_type: str = ""

    def __repr__(self) -> str:
        return (
            f"AttachmentPointer(blob_id={self.blob_id!r}, key=<hidden>,"
            f" digest={self.digest.hex()[:16]}…, size={self.size},"
            f" file_name={self.file_name!r}, content_type={self.content_type!r})"
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """Delivery (:data:`RECEIPT_DELIVERED`) or read (:data:`RECEIPT_READ`) receipt."""

    kind: int
    message_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SyncSent:
    """A copy for the sender's other devices of a Content sent to ``destination``."""

    destination: str
    content: bytes

    def __repr__(self) -> str:
        return f"SyncSent(destination={self.destination!r}, content=<{len(self.content)} bytes>)"


@dataclass(frozen=True, slots=True)
class Typing:
    """A typing indicator: started (True) or stopped (False)."""

    started: bool


@dataclass(frozen=True, slots=True)
class SessionReset:
    """ "I could not read what your device ``device_id`` sent me; this message starts a new
    session with it." Sent by the reader of the failed messages, as a PreKey message from a
    fresh bundle, so it gets through whatever state the old session was in."""

    device_id: int


@dataclass(frozen=True, slots=True)
class TimerUpdate:
    """ "Disappearing messages in this conversation are now ``seconds`` (0: off)." """

    seconds: int


@dataclass(frozen=True, slots=True)
class ConversationAction:
    """What one of our devices did to the conversation named by the enclosing sync copy:
    one of :data:`ACTIONS`."""

    action: int


def timer_problem(seconds: int) -> str | None:
    """Why ``seconds`` is not a valid disappearing-message timer, or None (0 is "off")."""
    if seconds == 0 or MIN_TIMER_S <= seconds <= MAX_TIMER_S:
        return None
    return f"a timer is off or {MIN_TIMER_S} s to 24 h ({MAX_TIMER_S} s), not {seconds} s"


@dataclass(frozen=True, slots=True)
class Content:
    """One E2EE payload. ``repr`` hides the text (message plaintext does not belong in logs)."""

    message_id: bytes
    sent_ms: int
    text: str | None = None
    attachment: AttachmentPointer | None = None
    receipt: Receipt | None = None
    sync: SyncSent | None = None
    typing: Typing | None = None
    reset: SessionReset | None = None
    expire_timer_s: int = 0
    timer: TimerUpdate | None = None
    action: ConversationAction | None = None
    call: CallSignal | None = None
    call_log: CallLogEntry | None = None

    def __repr__(self) -> str:
        text = None if self.text is None else f"<{len(self.text)} chars>"
        return (
            f"Content(message_id={self.message_id.hex()}, sent_ms={self.sent_ms}, text={text},"
            f" attachment={self.attachment!r}, receipt={self.receipt!r}, sync={self.sync!r},"
            f" typing={self.typing!r}, reset={self.reset!r},"
            f" expire_timer_s={self.expire_timer_s}, timer={self.timer!r},"
            f" action={self.action!r}, call={self.call!r}, call_log={self.call_log!r})"
        )


def new_message_id(rng: Rng) -> bytes:
    """A fresh random 16-byte message id, shared by every device's copy of a message."""
    return rng(MESSAGE_ID_LEN)


# --- padding --------------------------------------------------------------------------------


def pad(data: bytes) -> bytes:
    """``data || 0x80 || 0x00*`` to the next multiple of :data:`PAD_BLOCK` (160) bytes.

    Signal's scheme, so a ciphertext's length reveals only a 160-byte bucket. (libsignal's
    clients pad to one byte less, leaving room for the cipher's PKCS#7 byte; Veil pads to the
    multiple itself, as docs/client-design.md specifies.)
    """
    total = (len(data) // PAD_BLOCK + 1) * PAD_BLOCK
    return data + b"\x80" + bytes(total - len(data) - 1)


def unpad(data: bytes) -> bytes:
    """Inverse of :func:`pad`; :class:`DecodeError` unless the padding is exactly pad's."""
    if not data or len(data) % PAD_BLOCK:
        raise DecodeError("padded content length is not a positive multiple of 160")
    end = len(data.rstrip(b"\x00")) - 1
    if end < 0 or data[end] != 0x80 or len(data) - end > PAD_BLOCK:
        raise DecodeError("bad content padding")
    return data[:end]


# --- encoding -------------------------------------------------------------------------------


def encode_content(content: Content, *, for_sync: bool = False) -> bytes:
    """Encode ``content``; :class:`LocalError` if it breaks a rule of the module docstring.

    ``for_sync``: the bytes will go inside a :class:`SyncSent` (the nested rules apply).
    """
    try:
        problem = _problem(content, nested=for_sync)
        if problem is None:
            return _encode(content)
    except UnicodeEncodeError:
        problem = "a string is not encodable as UTF-8"
    raise LocalError(f"invalid content: {problem}")


def _encode(c: Content) -> bytes:
    parts = [
        pb.field_varint(1, CONTENT_VERSION),
        pb.field_bytes(2, c.message_id),
        pb.field_varint(3, c.sent_ms),
    ]
    if c.text is not None:
        parts.append(pb.field_bytes(4, c.text.encode()))
    if c.attachment is not None:
        parts.append(pb.field_bytes(5, _encode_attachment(c.attachment)))
    if c.receipt is not None:
        ids = b"".join(pb.field_bytes(2, i) for i in c.receipt.message_ids)
        parts.append(pb.field_bytes(6, pb.field_varint(1, c.receipt.kind) + ids))
    if c.sync is not None:
        sync = pb.field_bytes(1, c.sync.destination.encode()) + pb.field_bytes(2, c.sync.content)
        parts.append(pb.field_bytes(7, sync))
    if c.typing is not None:
        parts.append(pb.field_bytes(8, pb.field_varint(1, int(c.typing.started))))
    if c.reset is not None:
        parts.append(pb.field_bytes(9, pb.field_varint(1, c.reset.device_id)))
    if c.expire_timer_s:
        parts.append(pb.field_varint(10, c.expire_timer_s))
    if c.timer is not None:
        parts.append(pb.field_bytes(11, pb.field_varint(1, c.timer.seconds)))
    if c.action is not None:
        parts.append(pb.field_bytes(12, pb.field_varint(1, c.action.action)))
    if c.call is not None:
        parts.append(pb.field_bytes(13, encode_call(c.call)))
    if c.call_log is not None:
        parts.append(pb.field_bytes(14, encode_call_log(c.call_log)))
    return b"".join(parts)


def _encode_attachment(a: AttachmentPointer) -> bytes:
    return b"".join(
        (
            pb.field_bytes(1, a.blob_id.encode()),
            pb.field_bytes(2, a.key),
            pb.field_bytes(3, a.digest),
            pb.field_varint(4, a.size),
            pb.field_bytes(5, a.file_name.encode()),
            pb.field_bytes(6, a.content_type.encode()),
        )
    )


# --- validation (shared by encode and decode) -----------------------------------------------


def _problem(c: Content, *, nested: bool) -> str | None:
    """What makes ``c`` invalid, or None. May raise UnicodeEncodeError (encode side only)."""
    return next(_problems(c, nested), None)


def _problems(c: Content, nested: bool) -> Iterator[str]:
    """Yield the first rule ``c`` breaks (the caller stops there), checking cheap rules first."""
    bodies = [
        b is not None
        for b in (
            c.text,
            c.attachment,
            c.receipt,
            c.sync,
            c.typing,
            c.reset,
            c.timer,
            c.action,
            c.call,
            c.call_log,
        )
    ]
    caption = bodies == [True, True] + [False] * 8
    if sum(bodies) != 1 and not caption:
        yield "exactly one body is required (text with an attachment is the only pair)"
    if len(c.message_id) != MESSAGE_ID_LEN:
        yield "message id must be 16 bytes"
    if not 0 <= c.sent_ms <= MAX_SENT_MS:
        yield "sent_ms out of range"
    if c.text is not None and len(c.text.encode()) > MAX_TEXT_BYTES:
        yield "text longer than 64 KiB"
    yield from _some(_timer_field_problem(c))
    if c.action is not None and not nested:
        yield "a conversation action travels only inside a sync copy"
    if c.call_log is not None and not nested:
        yield "a call-log entry travels only inside a sync copy"
    if c.call is not None and nested and c.call.kind != "reject":
        yield "the only call signal inside a sync copy is a reject"
    yield from _some(_body_problem(c, nested))


def _timer_field_problem(c: Content) -> str | None:
    if not c.expire_timer_s:
        return None
    if c.text is None and c.attachment is None:
        return "only a text or attachment message carries a timer"
    return timer_problem(c.expire_timer_s)


def _body_problem(c: Content, nested: bool) -> str | None:
    """What is wrong with the body itself, or None."""
    problem = None
    if c.attachment is not None:
        problem = _attachment_problem(c.attachment)
    elif c.receipt is not None:
        problem = _receipt_problem(c.receipt)
    elif c.sync is not None:
        problem = "a synced content may not itself be a sync" if nested else _sync_problem(c.sync)
    elif c.reset is not None and not 1 <= c.reset.device_id <= MAX_DEVICE_ID:
        problem = "reset device id out of range"
    elif c.timer is not None:
        problem = timer_problem(c.timer.seconds)
    elif c.action is not None and c.action.action not in ACTIONS:
        problem = "unknown conversation action"
    elif c.call is not None:
        problem = call_problem(c.call)
    elif c.call_log is not None:
        problem = call_log_problem(c.call_log)
    return problem


def _some(problem: str | None) -> Iterator[str]:
    if problem is not None:
        yield problem


def _attachment_problem(a: AttachmentPointer) -> str | None:
    if _HEX32.fullmatch(a.blob_id) is None:
        return "blob id must be 32 lowercase hex digits"
    if len(a.key) != 32 or len(a.digest) != 32:
        return "attachment key and digest must be 32 bytes"
    if not 0 <= a.size <= MAX_ATTACHMENT_SIZE:
        return "attachment size out of range"
    if len(a.file_name.encode()) > MAX_NAME_BYTES or len(a.content_type.encode()) > MAX_NAME_BYTES:
        return "file name or content type longer than 255 bytes"
    return None


def _receipt_problem(r: Receipt) -> str | None:
    if r.kind not in (RECEIPT_DELIVERED, RECEIPT_READ):
        return "unknown receipt kind"
    if not 1 <= len(r.message_ids) <= MAX_RECEIPT_IDS:
        return "a receipt holds 1 to 1000 message ids"
    if any(len(i) != MESSAGE_ID_LEN for i in r.message_ids):
        return "message id must be 16 bytes"
    return None


def _sync_problem(s: SyncSent) -> str | None:
    if _HEX32.fullmatch(s.destination) is None:
        return "destination must be an account id (32 lowercase hex digits)"
    try:
        inner = _decode(s.content)
    except DecodeError:
        return "synced content is not a valid content"
    return _problem(inner, nested=True)


# --- decoding -------------------------------------------------------------------------------


def decode_content(data: bytes, *, for_sync: bool = False) -> Content:
    """Decode (unpadded) bytes made by :func:`encode_content`; only :class:`DecodeError`.

    ``for_sync``: the bytes came from inside a :class:`SyncSent` (the nested rules apply).
    """
    try:
        content = _decode(data)
        problem = _problem(content, nested=for_sync)
    except DecodeError:
        raise
    except (VeilError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DecodeError(f"invalid content: {type(exc).__name__}") from None
    if problem is not None:
        raise DecodeError(f"invalid content: {problem}")
    return content


def _decode(data: bytes) -> Content:
    f = pb.parse(data, _CONTENT)
    if _uint(f, 1, "content version") != CONTENT_VERSION:
        raise DecodeError("unknown content version")
    return Content(
        message_id=pb.get_bytes(f, 2, "message id"),
        sent_ms=_uint(f, 3, "sent_ms"),
        text=_text(pb.get_bytes(f, 4, "text")) if 4 in f else None,
        attachment=_decode_attachment(pb.get_bytes(f, 5, "attachment")) if 5 in f else None,
        receipt=_decode_receipt(pb.get_bytes(f, 6, "receipt")) if 6 in f else None,
        sync=_decode_sync(pb.get_bytes(f, 7, "sync")) if 7 in f else None,
        typing=_decode_typing(pb.get_bytes(f, 8, "typing")) if 8 in f else None,
        reset=SessionReset(_uint(pb.parse(pb.get_bytes(f, 9, "reset"), _ONE_UINT), 1, "device"))
        if 9 in f
        else None,
        expire_timer_s=_uint(f, 10, "timer") if 10 in f else 0,
        timer=TimerUpdate(_uint(pb.parse(pb.get_bytes(f, 11, "timer"), _ONE_UINT), 1, "timer"))
        if 11 in f
        else None,
        action=ConversationAction(
            _uint(pb.parse(pb.get_bytes(f, 12, "action"), _ONE_UINT), 1, "action")
        )
        if 12 in f
        else None,
        call=decode_call(pb.get_bytes(f, 13, "call")) if 13 in f else None,
        call_log=decode_call_log(pb.get_bytes(f, 14, "call log")) if 14 in f else None,
    )


def _decode_attachment(data: bytes) -> AttachmentPointer:
    f = pb.parse(data, _ATTACHMENT)
    return AttachmentPointer(
        blob_id=_text(pb.get_bytes(f, 1, "blob id")),
        key=pb.get_bytes(f, 2, "attachment key"),
        digest=pb.get_bytes(f, 3, "attachment digest"),
        size=_uint(f, 4, "attachment size"),
        file_name=_text(pb.opt_bytes(f, 5)),
        content_type=_text(pb.opt_bytes(f, 6)),
    )


def _decode_receipt(data: bytes) -> Receipt:
    f = pb.parse(data, _RECEIPT)
    ids = pb.repeated_bytes(f, 2)
    if len(ids) > MAX_RECEIPT_IDS:
        raise DecodeError("too many message ids in a receipt")
    return Receipt(_uint(f, 1, "receipt kind"), tuple(ids))


def _decode_sync(data: bytes) -> SyncSent:
    f = pb.parse(data, _SYNC)
    return SyncSent(_text(pb.get_bytes(f, 1, "destination")), pb.get_bytes(f, 2, "synced content"))


def _decode_typing(data: bytes) -> Typing:
    started = pb.parse(data, _ONE_UINT).get(1, 0)
    if started not in (0, 1):
        raise DecodeError("typing flag must be 0 or 1")
    return Typing(started == 1)


def _uint(fields: dict[int, pb.FieldValue], number: int, what: str) -> int:
    value = fields.get(number)
    if not isinstance(value, int):
        raise DecodeError(f"missing {what}")
    return value


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("string is not valid UTF-8") from None
