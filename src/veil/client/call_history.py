"""How a call-log line reads: ``Outgoing video call, 1:23``, ``Missed voice call``, ...

A call-log line is a :class:`~veil.engine.MessageRecord` of kind ``"call"`` (written by the
device when the call ends, see :mod:`veil.engine.call_log`); :func:`describe_call` is the one
wording the CLI and the terminal client share. A conversation whose latest line is a call
shows it the same way in the conversation list (:func:`describe_call_log` of the summary's
``last_call`` and ``last_direction``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from veil.engine import CallLog, MessageRecord

_AFTER: Final = {
    "declined": "declined",
    "busy": "busy",
    "no_answer": "no answer",
    "cancelled": "cancelled",
    "answered_elsewhere": "answered on another device",
}


def call_clock(duration_ms: int) -> str:
    """``0:07``, ``1:23``, ``1:02:03``."""
    seconds = max(0, duration_ms) // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe_call(message: MessageRecord) -> str:
    """The line of a call: direction, media and what happened (or how long it lasted)."""
    if message.call is None:
        raise ValueError("not a call-log line")
    return describe_call_log(message.call, message.direction)


def describe_call_log(call: CallLog, direction: str) -> str:
    """The line of a call from its details and direction (``"in"`` or ``"out"``)."""
    media = "video" if call.media == "video" else "voice"
    way = "Incoming" if direction == "in" else "Outgoing"
    if call.outcome == "missed":
        busy = " (you were on another call)" if call.end_reason == "busy" else ""
        return f"Missed {media} call{busy}"
    if call.outcome == "completed":
        return f"{way} {media} call, {call_clock(call.duration_ms or 0)}"
    after = _AFTER.get(call.outcome) or f"failed ({call.end_reason})"
    return f"{way} {media} call, {after}"
