"""A call-log line as our own devices share it (ARCHITECTURE.md §5; the call log of 1:1 calls).

When a call ends, the device of ours that took part in it sends its call-log line to our other
devices inside a sync copy (``Content`` field 14, :mod:`veil.core.content`), so every one of
our devices shows the same line. Wire form (the core's strict protobuf codec)::

    CallLogEntry {1: call id (16 bytes), 2: direction (1 outgoing, 2 incoming), 3: video
                  (bool; absent means 0: a voice call), 4: outcome (1 completed, 2 missed,
                  3 declined, 4 busy, 5 no_answer, 6 cancelled, 7 answered_elsewhere,
                  8 failed), 5: end reason (1 to 32 of a-z0-9_), 6: connected duration in ms
                  (present exactly for a completed call), 7: the peer's device (1..127;
                  absent: unknown)}

The call's start is the enclosing content's ``sent_ms``; the peer is the sync copy's
destination.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from veil.core import protobuf as pb
from veil.core.errors import DecodeError

CALL_ID_LEN: Final = 16
MAX_DURATION_MS: Final = 2**63 - 1
MAX_PEER_DEVICE: Final = 127
CALL_DIRECTIONS: Final = ("outgoing", "incoming")
"""A call-log entry's directions, numbered from 1 on the wire."""
CALL_LOG_OUTCOMES: Final = (
    "completed",
    "missed",
    "declined",
    "busy",
    "no_answer",
    "cancelled",
    "answered_elsewhere",
    "failed",
)
"""A call-log entry's outcomes, numbered from 1 on the wire (the store's call outcomes)."""
_ONE_WAY_OUTCOMES: Final = {
    "missed": "incoming",
    "answered_elsewhere": "incoming",
    "busy": "outgoing",
    "no_answer": "outgoing",
}
_END_REASON: Final = re.compile(r"[a-z0-9_]{1,32}")
_SCHEMA: Final = {
    **{n: (pb.LEN, False) for n in (1, 5)},
    **{n: (pb.VARINT, False) for n in (2, 3, 4, 6, 7)},
}


@dataclass(frozen=True, slots=True)
class CallLogEntry:
    """The call-log line of a call with the peer named by the enclosing sync copy, as the
    device of ours that took part in it recorded it."""

    call_id: bytes
    direction: str
    """``"outgoing"`` or ``"incoming"`` (:data:`CALL_DIRECTIONS`)."""
    video: bool
    outcome: str
    """One of :data:`CALL_LOG_OUTCOMES`."""
    end_reason: str
    """The call's own end reason (``hangup``, ``timeout``, ``rejected``, ...)."""
    duration_ms: int | None = None
    """How long it was connected (None: it never connected)."""
    peer_device: int = 0
    """The peer's device that called or answered (0: none, or unknown)."""


def call_log_problem(e: CallLogEntry) -> str | None:
    """What is wrong with a call-log entry, or None."""
    return next(_problems(e), None)


def _problems(e: CallLogEntry) -> Iterator[str]:
    """The rules ``e`` breaks, in order (the caller stops at the first)."""
    if len(e.call_id) != CALL_ID_LEN:
        yield "a call id is 16 bytes"
    if e.direction not in CALL_DIRECTIONS or e.outcome not in CALL_LOG_OUTCOMES:
        yield "unknown call direction or outcome"
    if _ONE_WAY_OUTCOMES.get(e.outcome, e.direction) != e.direction:
        yield f"an {e.direction} call cannot end {e.outcome}"
    if _END_REASON.fullmatch(e.end_reason) is None:
        yield "an end reason is 1 to 32 characters of a-z, 0-9 and _"
    if (e.duration_ms is not None) != (e.outcome == "completed"):
        yield "a call has a duration exactly when it completed"
    if e.duration_ms is not None and not 0 <= e.duration_ms <= MAX_DURATION_MS:
        yield "call duration out of range"
    if not 0 <= e.peer_device <= MAX_PEER_DEVICE:
        yield "peer device id out of range"


def encode_call_log(e: CallLogEntry) -> bytes:
    """The entry's wire form (the caller checks :func:`call_log_problem` first)."""
    parts = [
        pb.field_bytes(1, e.call_id),
        pb.field_varint(2, CALL_DIRECTIONS.index(e.direction) + 1),
    ]
    if e.video:
        parts.append(pb.field_varint(3, 1))
    parts += [
        pb.field_varint(4, CALL_LOG_OUTCOMES.index(e.outcome) + 1),
        pb.field_bytes(5, e.end_reason.encode()),
    ]
    if e.duration_ms is not None:
        parts.append(pb.field_varint(6, e.duration_ms))
    if e.peer_device:
        parts.append(pb.field_varint(7, e.peer_device))
    return b"".join(parts)


def decode_call_log(data: bytes) -> CallLogEntry:
    """Parse an entry; raises only DecodeError (its rules are checked by the caller)."""
    f = pb.parse(data, _SCHEMA)
    direction, outcome = _uint(f, 2, "call direction"), _uint(f, 4, "call outcome")
    video = f.get(3, 0)
    if not 1 <= direction <= len(CALL_DIRECTIONS) or not 1 <= outcome <= len(CALL_LOG_OUTCOMES):
        raise DecodeError("unknown call direction or outcome")
    if video not in (0, 1):
        raise DecodeError("the video flag is 0 or 1")
    reason = pb.get_bytes(f, 5, "end reason")
    try:
        end_reason = reason.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("string is not valid UTF-8") from None
    return CallLogEntry(
        call_id=pb.get_bytes(f, 1, "call id"),
        direction=CALL_DIRECTIONS[direction - 1],
        video=video == 1,
        outcome=CALL_LOG_OUTCOMES[outcome - 1],
        end_reason=end_reason,
        duration_ms=_uint(f, 6, "call duration") if 6 in f else None,
        peer_device=_uint(f, 7, "peer device") if 7 in f else 0,
    )


def _uint(fields: dict[int, pb.FieldValue], number: int, what: str) -> int:
    value = fields.get(number)
    if not isinstance(value, int):
        raise DecodeError(f"missing {what}")
    return value
