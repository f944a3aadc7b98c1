"""The call log: one line per 1:1 call in its conversation (ARCHITECTURE.md §5).

When a call ends, the device that saw it writes a message row of kind ``"call"`` (the
message id is the call id) with what happened: the media, an outcome
(:data:`veil.store.records.CALL_OUTCOMES`, from :func:`call_outcome`), the raw end reason and
how long it was connected. The conversation rules apply as to any message:

* **blocked** peers leave no line (the server refuses their call signalling; this catches a
  call that began before the block);
* **message requests**: a call from a stranger is the first line of a conversation that is
  a request; our own call to someone new starts an accepted conversation;
* **disappearing messages**: the line carries the conversation's timer; like our own
  messages it starts counting when written, except a missed call, which (like a received
  message) counts from when it is first read -- it is unread until then.

Only this device's view is recorded: a caller's other devices do not see its calls yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from veil.store import CallLog, DeviceStore, MessageRecord

Direction = Literal["outgoing", "incoming"]


@dataclass(frozen=True, slots=True)
class EndedCall:
    """What the call layer knows about a call that just ended."""

    call_id: bytes
    peer: str
    """The other account's id."""
    peer_device: int | None
    """The peer's device that called (incoming) or answered (outgoing), if any."""
    direction: Direction
    video: bool
    started_ms: int
    """Wall-clock time the call was placed, or began ringing here."""
    end_reason: str
    ended_by: Literal["local", "peer"]
    answered: bool
    """It was answered (here, for an incoming call; by the peer, for an outgoing one)."""
    duration_ms: int | None
    """How long it was connected (None: it never connected)."""
    request: bool = False
    """An incoming call from a conversation that is (or would start as) a message request."""


_UNANSWERED: Final = {"rejected": "declined", "busy": "busy", "timeout": "no_answer"}
"""Outcomes of an outgoing call no device answered, by end reason (others: ``failed``)."""


def call_outcome(call: EndedCall) -> str:
    """The call-log outcome of ``call`` (see :data:`veil.store.records.CALL_OUTCOMES`)."""
    reason = call.end_reason
    if call.duration_ms is not None:
        return "completed"
    hung_up_here = reason == "hangup" and call.ended_by == "local"
    if call.answered:  # answered, never connected
        return "cancelled" if hung_up_here else "failed"
    if call.direction == "incoming":
        if reason == "rejected" and call.ended_by == "local":
            return "declined"
        # else it rang out, the caller gave up, or this device was busy with another call
        return "answered_elsewhere" if reason == "answered_elsewhere" else "missed"
    if hung_up_here:
        return "cancelled"
    return _UNANSWERED.get(reason, "failed")


def record_call(
    store: DeviceStore, me: tuple[str, int], call: EndedCall, now_ms: int
) -> MessageRecord | None:
    """Write the call-log line of ``call`` (``me``: our account id and device id); the row,
    or None when none is kept (a blocked peer, or the line exists already)."""
    outcome = call_outcome(call)
    incoming = call.direction == "incoming"
    missed = incoming and outcome == "missed"
    with store.transaction():
        if store.is_blocked(call.peer):
            return None
        settings = store.settings(call.peer)
        if not settings.known:
            state = "request" if incoming and call.request else "accepted"
            store.set_state(call.peer, state, now_ms)
        timer = settings.timer_s
        record = MessageRecord(
            conversation=call.peer,
            message_id=call.call_id,
            direction="in" if incoming else "out",
            sender_account_id=call.peer if incoming else me[0],
            sender_device_id=(call.peer_device or 0) if incoming else me[1],
            sent_ms=call.started_ms,
            server_ms=None,
            received_ms=now_ms if incoming else None,
            text=None,
            attachment=None,
            attachment_path=None,
            status=("received" if missed else "read") if incoming else "sent",
            kind="call",
            expire_timer_s=timer,
            expire_at_ms=now_ms + timer * 1000 if timer and not missed else None,
            call=CallLog("video" if call.video else "audio", outcome, call.end_reason,
                         call.duration_ms),
        )  # fmt: skip
        if not store.add_message(record):
            return None
    return record
