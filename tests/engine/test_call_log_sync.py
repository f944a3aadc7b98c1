"""Call-log lines from our other devices (``veil.engine.call_log``): a real device store.

The device that took part in a call sends its line in a sync copy; every other device of ours
records it once (by call id), lets it replace a line that only rang here (``missed``,
``answered_elsewhere``), and keeps anything else as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from veil.core import content as payload
from veil.core.call_log import CallLogEntry
from veil.engine import EndedCall, call_log_content
from veil.engine.call_log import record_call, record_synced_call
from veil.store import CallLog, DeviceStore

ME = ("a" * 32, 2)
"""Our account and this device."""
OTHER = ("a" * 32, 1)
"""Our account and the device that sends the sync copy."""
BOB = "b" * 32
CALL = bytes(range(16))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeviceStore]:
    opened = DeviceStore.open(tmp_path / "profile")
    yield opened
    opened.close()


def entry(
    direction: str = "outgoing", outcome: str = "completed", **changes: object
) -> payload.Content:
    fields: dict[str, object] = {
        "call_id": CALL,
        "direction": direction,
        "video": True,
        "outcome": outcome,
        "end_reason": "hangup",
        "duration_ms": 83_000 if outcome == "completed" else None,
        "peer_device": 3 if direction == "incoming" else 0,
    }
    fields.update(changes)
    return payload.Content(CALL, 1_000, call_log=CallLogEntry(**fields))  # type: ignore[arg-type]


def synced(store: DeviceStore, content: payload.Content, now_ms: int = 5_000) -> object:
    with store.transaction():
        return record_synced_call(store, OTHER, BOB, content, now_ms)


def ended(outcome_reason: str = "answered_elsewhere", **changes: object) -> EndedCall:
    fields: dict[str, object] = {
        "call_id": CALL,
        "peer": BOB,
        "peer_device": 3,
        "direction": "incoming",
        "video": True,
        "started_ms": 1_000,
        "end_reason": outcome_reason,
        "ended_by": "peer",
        "answered": False,
        "duration_ms": None,
    }
    fields.update(changes)
    return EndedCall(**fields)  # type: ignore[arg-type]


def test_an_outgoing_call_of_another_device_is_recorded_once(store: DeviceStore) -> None:
    line = synced(store, entry())
    [stored] = store.messages(BOB)
    assert stored == line
    assert (stored.message_id, stored.direction, stored.status) == (CALL, "out", "sent")
    assert (stored.sender_account_id, stored.sender_device_id, stored.sent_ms) == (*OTHER, 1_000)
    assert stored.call == CallLog("video", "completed", "hangup", 83_000)
    assert store.settings(BOB).state == "accepted"  # we started it
    assert synced(store, entry()) is None  # the same copy again: nothing changes
    assert synced(store, entry(outcome="cancelled")) is None  # nor does a different one
    assert store.messages(BOB) == [stored]


def test_the_line_of_the_device_that_took_the_call_replaces_answered_elsewhere(
    store: DeviceStore,
) -> None:
    store.set_timer(BOB, 30, 0)
    assert record_call(store, ME, ended(), 2_000) is not None  # this device only rang
    line = synced(store, entry("incoming"), now_ms=6_000)
    [stored] = store.messages(BOB)
    assert stored == line
    assert stored.call == CallLog("video", "completed", "hangup", 83_000)
    assert (stored.status, stored.expire_at_ms) == ("read", 2_000 + 30_000)  # kept counting
    assert synced(store, entry("incoming", "declined")) is None  # no second replacement


def test_a_missed_line_becomes_the_declined_one_and_counts_as_read(store: DeviceStore) -> None:
    store.set_timer(BOB, 30, 0)
    assert record_call(store, ME, ended("hangup"), 2_000) is not None
    [missed] = store.messages(BOB)
    assert (missed.call and missed.call.outcome, missed.status) == ("missed", "received")
    synced(store, entry("incoming", "declined", end_reason="rejected"), now_ms=6_000)
    [stored] = store.messages(BOB)
    assert stored.call == CallLog("video", "declined", "rejected", None)
    assert (stored.status, stored.expire_at_ms) == ("read", 6_000 + 30_000)
    assert store.conversations()[0].unread == 0


def test_a_synced_line_that_came_first_wins_over_this_devices_missed(store: DeviceStore) -> None:
    """The other device declined while this one still rang: its "missed" is not written."""
    synced(store, entry("incoming", "declined", end_reason="rejected"))
    assert record_call(store, ME, ended("hangup"), 9_000) is None
    [stored] = store.messages(BOB)
    assert stored.call is not None and stored.call.outcome == "declined"


def test_rang_only_outcomes_never_replace_a_line(store: DeviceStore) -> None:
    record_call(store, ME, ended("hangup", answered=True, ended_by="local"), 2_000)  # cancelled
    assert synced(store, entry("incoming", "answered_elsewhere")) is None
    [stored] = store.messages(BOB)
    assert stored.call is not None and stored.call.outcome == "cancelled"


def test_a_stranger_or_a_blocked_peer(store: DeviceStore) -> None:
    synced(store, entry("incoming", "declined", end_reason="rejected"))
    assert store.settings(BOB).state == "request"  # a synced line never lets a stranger in
    store.delete_conversation(BOB)
    store.block(BOB, 0)
    assert synced(store, entry()) is None
    assert store.messages(BOB) == []


def test_what_a_device_sends_about_its_own_line(store: DeviceStore) -> None:
    """Lines of a call this device took part in go to our other devices; rang-only ones not."""
    outgoing = record_call(
        store, ME, ended("timeout", direction="outgoing", call_id=b"\x01" * 16), 3_000
    )
    assert outgoing is not None and outgoing.call is not None
    content = call_log_content(outgoing)
    assert content is not None and content.call_log is not None
    assert content.call_log == CallLogEntry(
        b"\x01" * 16, "outgoing", True, "no_answer", "timeout", None, 0
    )
    assert (content.message_id, content.sent_ms) == (b"\x01" * 16, 1_000)
    payload.encode_content(content, for_sync=True)  # a valid sync-only content
    elsewhere = record_call(store, ME, ended(), 3_000)
    assert elsewhere is not None and call_log_content(elsewhere) is None
    taken = record_call(
        store, ME, ended("hangup", call_id=b"\x02" * 16, answered=True, duration_ms=5), 3_000
    )
    assert taken is not None
    taken_content = call_log_content(taken)
    assert taken_content is not None and taken_content.call_log is not None
    assert (taken_content.call_log.direction, taken_content.call_log.peer_device) == ("incoming", 3)


def test_declined_on_another_device_reads_declined_and_yields_to_that_devices_line(
    store: DeviceStore,
) -> None:
    """Another device of ours declined and told this one, which stopped ringing: its line
    reads "declined" at once (read, not a missed call), it is not sent to our other devices,
    and the declining device's own line replaces it, so every device ends with that line."""
    line = record_call(store, ME, ended("declined_elsewhere", ended_by="local"), 2_000)
    assert line is not None and line.call == CallLog("video", "declined", "declined_elsewhere")
    assert line.status == "read" and store.conversations()[0].unread == 0
    assert call_log_content(line) is None  # it only rang here
    declined = entry("incoming", "declined", end_reason="rejected")
    assert synced(store, declined, now_ms=6_000) is not None
    [stored] = store.messages(BOB)
    assert stored.call == CallLog("video", "declined", "rejected", None)
    assert synced(store, declined) is None  # once


def test_a_declined_here_line_is_not_replaced(store: DeviceStore) -> None:
    """This device declined: its own line stays, whatever a late copy says."""
    line = record_call(store, ME, ended("rejected", ended_by="local"), 2_000)
    assert line is not None and call_log_content(line) is not None
    assert synced(store, entry("incoming", "declined", end_reason="timeout")) is None
    [stored] = store.messages(BOB)
    assert stored.call == CallLog("video", "declined", "rejected", None)
