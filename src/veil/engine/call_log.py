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

Every device of ours shows the same line. The device that took part in a call -- the one that
placed it, or the callee device that answered or declined it -- sends its line to our other
devices in a sync copy (a :class:`~veil.core.call_log.CallLogEntry`, :func:`call_log_content`),
and each of them records it (:func:`record_synced_call`), idempotently by call id:

* a line that is not there yet is written (so the caller's other devices, which never see the
  call's signalling, get an "Outgoing ..." line); the conversation rules above apply, and a
  conversation this device never saw starts ``accepted`` for an outgoing call and as a
  ``request`` for an incoming one (a synced line never lets a stranger in);
* a callee device that only rang wrote ``missed`` or ``answered_elsewhere``, or ``declined``
  with the end reason ``declined_elsewhere`` (another device of ours declined, and said so at
  once so that this one stopped ringing): the line of the device that took the call is fuller
  (``Incoming video call, 1:23``, ``..., declined``), so it replaces that line, and the line
  counts as read (the call was dealt with); so every device ends with the same line;
* any other line stays as it is (a repeated or late sync copy changes nothing). If the sync
  copy arrives while this device is still ringing, the line it writes wins over the "missed"
  this device would write when its ringing stops.

Devices that only rang (``missed``, ``answered_elsewhere``, ``declined_elsewhere``) send
nothing: every callee device rang, so each wrote its own line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

from veil.core import content as payload
from veil.core.call_log import CallLogEntry
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


RANG_ONLY: Final = ("missed", "answered_elsewhere")
"""Outcomes of an incoming call this device only rang for: it sends no sync copy of its line,
and the synced line of the device that took the call replaces it."""
DECLINED_ELSEWHERE: Final = "declined_elsewhere"
"""The end reason of an incoming call another device of ours declined while this one rang:
its line reads ``declined`` (and is read) at once; like a :data:`RANG_ONLY` line it is not
synced, and the declining device's synced line replaces it."""
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
        if (reason == "rejected" and call.ended_by == "local") or reason == DECLINED_ELSEWHERE:
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
    incoming = call.direction == "incoming"
    line = _line(
        me[0],
        call.peer,
        call.call_id,
        incoming,
        (call.peer, call.peer_device or 0) if incoming else me,
        call.started_ms,
        CallLog("video" if call.video else "audio", call_outcome(call), call.end_reason,
                call.duration_ms),
        now_ms,
    )  # fmt: skip
    with store.transaction():
        return _write(store, line, request=call.request, now_ms=now_ms)


def record_synced_call(
    store: DeviceStore, me: tuple[str, int], peer: str, content: payload.Content, now_ms: int
) -> MessageRecord | None:
    """Record the call-log line another device of ours (``me``: our account id and that
    device's id) sent about a call with ``peer`` (see the module docstring); the row written
    or updated, or None when nothing changed. Runs inside the caller's transaction."""
    entry = content.call_log
    assert entry is not None
    incoming = entry.direction == "incoming"
    line = _line(
        me[0],
        peer,
        entry.call_id,
        incoming,
        (peer, entry.peer_device) if incoming else me,
        content.sent_ms,
        CallLog("video" if entry.video else "audio", entry.outcome, entry.end_reason,
                entry.duration_ms),
        now_ms,
    )  # fmt: skip
    written = _write(store, line, request=incoming, now_ms=now_ms)
    assert line.call is not None
    if written is not None or not incoming or _rang_only(line.direction, line.call):
        return written
    replaces: tuple[str, ...] = RANG_ONLY
    mine = store.message(peer, entry.call_id)
    if mine is not None and mine.call is not None and _rang_only(mine.direction, mine.call):
        replaces = (mine.call.outcome,)  # e.g. declined, when declined_elsewhere
    if store.update_call(peer, peer, entry.call_id, line.call, replaces=replaces, now_ms=now_ms):
        return store.message(peer, entry.call_id)
    return None


def _rang_only(direction: str, call: CallLog) -> bool:
    """This device only rang for the call of a line (so it sends it to no other device, and a
    synced line of the device that took the call replaces it)."""
    if direction != "in":
        return False
    return call.outcome in RANG_ONLY or call.end_reason == DECLINED_ELSEWHERE


def call_log_content(line: MessageRecord) -> payload.Content | None:
    """What this device tells our other devices about the call of ``line`` (its own call-log
    line): the inner content of a sync copy to the peer, or None when it only rang."""
    call = line.call
    if call is None or _rang_only(line.direction, call):
        return None
    incoming = line.direction == "in"
    entry = CallLogEntry(
        call_id=line.message_id,
        direction="incoming" if incoming else "outgoing",
        video=call.media == "video",
        outcome=call.outcome,
        end_reason=call.end_reason,
        duration_ms=call.duration_ms,
        peer_device=line.sender_device_id if incoming else 0,
    )
    return payload.Content(line.message_id, line.sent_ms, call_log=entry)


def _line(
    me: str,
    peer: str,
    call_id: bytes,
    incoming: bool,
    sender: tuple[str, int],
    started_ms: int,
    call: CallLog,
    now_ms: int,
) -> MessageRecord:
    """The row of a call-log line, before the conversation's timer is applied."""
    missed = incoming and call.outcome == "missed"
    return MessageRecord(
        conversation=peer,
        message_id=call_id,
        direction="in" if incoming else "out",
        sender_account_id=sender[0],
        sender_device_id=sender[1],
        sent_ms=started_ms,
        server_ms=None,
        received_ms=now_ms if incoming else None,
        text=None,
        attachment=None,
        attachment_path=None,
        status=("received" if missed else "read") if incoming else "sent",
        kind="call",
        call=call,
    )


def _write(
    store: DeviceStore, line: MessageRecord, *, request: bool, now_ms: int
) -> MessageRecord | None:
    """Add ``line`` under the conversation rules (no line for a blocked peer; a first line
    decides the conversation's state; the conversation's timer); the row added, or None.
    Inside the caller's transaction."""
    if store.is_blocked(line.conversation):
        return None
    settings = store.settings(line.conversation)
    if not settings.known:
        state = "request" if line.direction == "in" and request else "accepted"
        store.set_state(line.conversation, state, now_ms)
    timer = settings.timer_s
    counting = timer and line.status != "received"  # a missed call counts once read
    expire_at = now_ms + timer * 1000 if counting else None
    record = replace(line, expire_timer_s=timer, expire_at_ms=expire_at)
    return record if store.add_message(record) else None
