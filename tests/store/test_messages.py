"""Messages: dedupe, forward-only statuses, pages, the conversation list, read marks."""

from __future__ import annotations

from typing import Final

import pytest

from veil.store import CallLog, Contact, ConversationSummary, DeviceStore, MessageRecord, StoreError
from veil.store.messages import status_may_change

from .conftest import message, outgoing


def test_add_and_read_back(store: DeviceStore) -> None:
    stored = message(1, attachment=b"pointer", attachment_path="attachments/x")
    assert store.add_message(stored)
    assert store.message("acc-bob", stored.message_id) == stored
    assert store.message("acc-bob", b"\x00" * 16) is None
    assert store.message("acc-carol", stored.message_id) is None


def test_duplicate_is_refused_and_nothing_changes(store: DeviceStore) -> None:
    assert store.add_message(message(1))
    assert not store.add_message(message(1, text="changed", status="read"))
    assert store.message("acc-bob", message(1).message_id) == message(1)
    assert len(store.messages("acc-bob")) == 1


def test_same_id_from_another_sender_is_another_message(store: DeviceStore) -> None:
    received = message(1)
    sent = outgoing(1, sent_ms=99_999)
    assert store.add_message(received)
    assert store.add_message(sent)  # same conversation and id, other sender
    assert store.message("acc-bob", received.message_id) == sent  # newest match
    assert len(store.messages("acc-bob")) == 2


def test_invalid_messages_are_refused(store: DeviceStore) -> None:
    with pytest.raises(StoreError, match="direction"):
        store.add_message(message(1, direction="sideways"))
    with pytest.raises(StoreError, match="status"):
        store.add_message(message(1, status="sent"))  # "in" cannot be "sent"
    with pytest.raises(StoreError, match="status"):
        store.add_message(outgoing(1, status="received"))
    for bad in ("/etc/passwd", "../outside", "attachments/../../x", "C:\\x", ""):
        with pytest.raises(StoreError, match="attachment_path"):
            store.add_message(message(1, attachment_path=bad))
    assert store.messages("acc-bob") == []


NEXT: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("out", "sending"): frozenset({"sent", "delivered", "read", "failed"}),
    ("out", "sent"): frozenset({"delivered", "read", "failed"}),
    ("out", "delivered"): frozenset({"read"}),
    ("out", "read"): frozenset(),
    ("out", "failed"): frozenset({"sent", "delivered", "read"}),
    ("in", "received"): frozenset({"read"}),
    ("in", "read"): frozenset(),
}
"""Every allowed status change, by (direction, current status): the specification."""

STATUSES: Final = ("sending", "sent", "delivered", "read", "failed", "received")


def test_status_transitions_exhaustively() -> None:
    for (direction, old), allowed in NEXT.items():
        for new in STATUSES:
            assert status_may_change(direction, old, new) is (new in allowed), (old, new)


def test_set_status_only_forward(store: DeviceStore) -> None:
    mid = outgoing(1).message_id
    assert not store.set_status("acc-bob", mid, "sent")  # no such message yet
    store.add_message(outgoing(1))
    assert store.set_status("acc-bob", mid, "sent")
    assert store.set_status("acc-bob", mid, "read")
    assert not store.set_status("acc-bob", mid, "delivered")  # late receipt
    assert not store.set_status("acc-bob", mid, "read")
    assert not store.set_status("acc-bob", mid, "failed")
    record = store.message("acc-bob", mid)
    assert record is not None
    assert record.status == "read"
    with pytest.raises(StoreError, match="unknown message status"):
        store.set_status("acc-bob", mid, "lost")


def test_set_status_incoming(store: DeviceStore) -> None:
    store.add_message(message(1))
    mid = message(1).message_id
    assert not store.set_status("acc-bob", mid, "delivered")
    assert store.set_status("acc-bob", mid, "read")
    assert not store.set_status("acc-bob", mid, "received")


def test_messages_page_oldest_first(store: DeviceStore) -> None:
    # Server time orders the timeline; without it (still sending) the sender's clock does.
    store.add_message(message(3, server_ms=30))
    store.add_message(message(1, server_ms=10))
    store.add_message(outgoing(2, sent_ms=20))
    store.add_message(message(4, server_ms=40, conversation="acc-carol"))
    ids = [m.message_id[-1] for m in store.messages("acc-bob")]
    assert ids == [1, 2, 3]
    assert [m.message_id[-1] for m in store.messages("acc-bob", limit=2)] == [2, 3]
    assert [m.message_id[-1] for m in store.messages("acc-bob", before_ms=30)] == [1, 2]
    assert [m.message_id[-1] for m in store.messages("acc-bob", 1, before_ms=30)] == [2]
    assert store.messages("acc-bob", limit=0) == []
    assert store.messages("acc-nobody") == []
    with pytest.raises(StoreError, match="limit"):
        store.messages("acc-bob", limit=-1)


def test_same_timestamp_keeps_arrival_order(store: DeviceStore) -> None:
    for n in (5, 3, 9):
        store.add_message(message(n, server_ms=100))
    assert [m.message_id[-1] for m in store.messages("acc-bob")] == [5, 3, 9]


def test_conversations(store: DeviceStore) -> None:
    assert store.conversations() == []
    store.save_contact(Contact("acc-bob", "Bob"))
    store.add_message(message(1, server_ms=10))
    store.add_message(message(2, server_ms=20, text=None, attachment=b"ptr"))
    store.add_message(message(3, server_ms=15, conversation="acc-carol", text="yo"))
    store.add_message(outgoing(4, sent_ms=5, conversation="acc-carol"))
    store.set_status("acc-bob", message(1).message_id, "read")
    assert store.conversations() == [
        ConversationSummary("acc-bob", "Bob", 20, None, 1, 2),
        ConversationSummary("acc-carol", None, 15, "yo", 1, 2),
    ]
    store.add_message(outgoing(5, conversation="acc-carol", sent_ms=50, text="later"))
    assert store.conversations()[0] == ConversationSummary(
        "acc-carol", None, 50, "later", 1, 3, last_direction="out"
    )


def test_mark_read(store: DeviceStore) -> None:
    store.add_message(message(2, server_ms=20))
    store.add_message(message(1, server_ms=10))
    store.add_message(message(3, server_ms=30, status="read"))
    store.add_message(outgoing(4))
    store.add_message(message(5, conversation="acc-carol"))
    assert store.mark_read("acc-bob") == [message(1).message_id, message(2).message_id]
    assert store.mark_read("acc-bob") == []
    statuses = {m.message_id[-1]: m.status for m in store.messages("acc-bob")}
    assert statuses == {1: "read", 2: "read", 3: "read", 4: "sending"}
    unread = {c.conversation: c.unread for c in store.conversations()}
    assert unread == {"acc-bob": 0, "acc-carol": 1}  # carol untouched


def test_set_attachment_path(store: DeviceStore) -> None:
    store.add_message(message(1, attachment=b"ptr"))
    mid = message(1).message_id
    assert store.set_attachment_path("acc-bob", mid, "attachments/abc")
    record = store.message("acc-bob", mid)
    assert record is not None
    assert record.attachment_path == "attachments/abc"
    assert not store.set_attachment_path("acc-bob", b"\x00" * 16, "attachments/abc")
    with pytest.raises(StoreError, match="attachment_path"):
        store.set_attachment_path("acc-bob", mid, "/tmp/abc")
    assert store.set_attachment_path("acc-bob", mid, None)


def test_reprs_hide_message_text() -> None:
    text = repr(message(1, text="the secret plan", attachment=b"key material"))
    assert "secret plan" not in text
    assert "key material" not in text
    assert "<15 chars>" in text
    assert "acc-bob" in text
    summary = ConversationSummary("acc-bob", "Bob", 1, "the secret plan", 0, 1)
    assert "secret plan" not in repr(summary)


# --- call-log lines -----------------------------------------------------------------------
def call_line(n: int = 1, **changes: object) -> MessageRecord:
    """A missed call from bob (a call-log line)."""
    base: dict[str, object] = {
        "kind": "call",
        "text": None,
        "call": CallLog("audio", "missed", "timeout"),
    }
    base.update(changes)
    return message(n, **base)


def test_a_call_line_reads_back_and_counts_as_unread_without_a_receipt(
    store: DeviceStore,
) -> None:
    assert store.add_message(message(1))
    assert store.add_message(call_line(2))
    assert [m.call for m in store.messages("acc-bob")] == [
        None, CallLog("audio", "missed", "timeout"),
    ]  # fmt: skip
    assert store.conversations()[0].unread == 2
    # A read receipt names the message, never the call line; both are read afterwards.
    assert store.mark_read("acc-bob", 5000) == [(1).to_bytes(16, "big")]
    assert [m.status for m in store.messages("acc-bob")] == ["read", "read"]


def test_the_summary_of_a_conversation_ending_in_a_call_carries_the_call(
    store: DeviceStore,
) -> None:
    """A call-log line has no text: the conversation list needs its kind and details."""
    store.add_message(message(1, server_ms=10))
    completed = CallLog("video", "completed", "hangup", 83_000)
    store.add_message(
        call_line(2, server_ms=None, sent_ms=20, direction="out", status="sent", call=completed)
    )
    [summary] = store.conversations()
    assert (summary.last_text, summary.last_kind, summary.last_direction) == (None, "call", "out")
    assert (summary.last_ms, summary.last_call, summary.count) == (20, completed, 2)
    store.add_message(message(3, server_ms=30))  # a later message: no call details
    [summary] = store.conversations()
    assert (summary.last_kind, summary.last_direction, summary.last_call) == ("message", "in", None)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"call": None}, "only one carries call details"),
        ({"kind": "message"}, "only one carries call details"),
        ({"call": CallLog("hologram", "missed", "timeout")}, "unknown call media"),
        ({"call": CallLog("audio", "lost", "timeout")}, "unknown call outcome"),
        ({"call": CallLog("audio", "completed", "hangup", -1)}, "cannot be negative"),
    ],
)
def test_a_malformed_call_line_is_refused(
    store: DeviceStore, changes: dict[str, object], error: str
) -> None:
    with pytest.raises(StoreError, match=error):
        store.add_message(call_line(1, **changes))
    assert store.messages("acc-bob") == []
