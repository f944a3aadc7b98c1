"""Envelope dedupe and the outbox."""

from __future__ import annotations

import pytest

from veil.store import DeviceStore, OutboxItem, StoreError


def test_envelopes(store: DeviceStore) -> None:
    assert not store.envelope_seen(1)
    store.mark_envelope(1, 100)
    store.mark_envelope(2, 200)
    store.mark_envelope(3, 300)
    store.mark_envelope(1, 999)  # a repeat: the first time counts
    assert store.envelope_seen(1)
    assert store.purge_envelopes(200) == 1  # strictly older
    assert not store.envelope_seen(1)
    assert store.envelope_seen(2)
    assert store.purge_envelopes(1000) == 2
    assert store.purge_envelopes(1000) == 0


def item(n: int, **changes: object) -> OutboxItem:
    fields: dict[str, object] = {
        "item_id": None,
        "conversation": "acc-bob",
        "message_id": bytes([n]) * 16,
        "content": b"secret content %d" % n,
        "created_ms": n,
    }
    fields.update(changes)
    return OutboxItem(**fields)  # type: ignore[arg-type]


def test_outbox_fifo_bump_remove(store: DeviceStore) -> None:
    assert store.outbox() == []
    first = store.enqueue(item(1))
    second = store.enqueue(item(2, attempts=1))
    assert second > first
    store.bump_outbox(second)
    store.bump_outbox(second)
    assert store.outbox() == [item(1, item_id=first), item(2, item_id=second, attempts=3)]
    store.remove_outbox(first)
    store.remove_outbox(first)
    store.bump_outbox(first)  # gone: no-op
    assert [i.item_id for i in store.outbox()] == [second]
    store.remove_outbox(second)
    third = store.enqueue(item(3))
    assert third > second  # ids are never reused


def test_enqueue_refuses_an_id_or_negative_attempts(store: DeviceStore) -> None:
    with pytest.raises(StoreError, match="item_id"):
        store.enqueue(item(1, item_id=5))
    with pytest.raises(StoreError, match="attempts"):
        store.enqueue(item(1, attempts=-1))
    assert store.outbox() == []


def test_outbox_repr_hides_content() -> None:
    text = repr(item(1))
    assert "secret content" not in text
    assert "<16 bytes>" in text
