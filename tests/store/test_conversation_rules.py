"""Disappearing messages, request states and blocks in the device store (schema v2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from veil.store import DeviceStore, StoreError

from . import make_fixture
from .conftest import message, outgoing

T0 = 1_700_000_000_000


def test_a_received_message_starts_counting_when_read(store: DeviceStore) -> None:
    store.add_message(message(1, expire_timer_s=30))
    store.add_message(message(2))  # no timer: stays
    assert store.message("acc-bob", message(1).message_id).expire_at_ms is None  # type: ignore[union-attr]
    assert store.next_expiry() is None
    assert store.expire(T0 + 10**9) == 0  # not read: nothing counts, however late

    assert store.mark_read("acc-bob", T0) == [message(1).message_id, message(2).message_id]
    assert store.next_expiry() == T0 + 30_000
    assert store.expire(T0 + 29_999) == 0
    assert store.expire(T0 + 30_000) == 1
    assert [m.message_id for m in store.messages("acc-bob")] == [message(2).message_id]
    assert store.next_expiry() is None


def test_reading_again_does_not_restart_the_clock(store: DeviceStore) -> None:
    store.add_message(message(1, expire_timer_s=60))
    store.mark_read("acc-bob", T0)
    store.add_message(message(2, expire_timer_s=60))
    store.mark_read("acc-bob", T0 + 50_000)  # only the new message starts now
    assert [m.expire_at_ms for m in store.messages("acc-bob")] == [T0 + 60_000, T0 + 110_000]


def test_our_own_copies_count_from_sending(store: DeviceStore) -> None:
    sent = outgoing(1, expire_timer_s=5, expire_at_ms=T0 + 5_000)
    store.add_message(sent)
    assert store.next_expiry() == T0 + 5_000
    assert store.expire(T0 + 5_000) == 1
    assert store.messages("acc-bob") == []


def test_expiry_deletes_the_downloaded_file(store: DeviceStore) -> None:
    folder = store.attachments_dir
    (folder / "photo.jpg").write_bytes(b"jpeg")
    store.add_message(
        outgoing(1, attachment=b"ptr", attachment_path="attachments/photo.jpg", expire_timer_s=5,
                 expire_at_ms=T0)
    )  # fmt: skip
    assert store.expire(T0) == 1
    assert not (folder / "photo.jpg").exists()


def test_expiry_survives_a_restart(profile: Path) -> None:
    with DeviceStore.open(profile) as store:
        store.add_message(message(1, expire_timer_s=5))
        store.mark_read("acc-bob", T0)
    with DeviceStore.open(profile) as store:  # the client was not running at T0 + 5 s
        assert store.expire(T0 + 60_000) == 1
        assert store.messages("acc-bob") == []


def test_many_expired_messages_go_in_batches(store: DeviceStore) -> None:
    with store.transaction():
        for i in range(1, 1203):
            store.add_message(outgoing(i, expire_timer_s=5, expire_at_ms=T0 + i))
    assert store.expire(T0 + 1000) == 1000
    assert len(store.messages("acc-bob", limit=5000)) == 202


def test_settings_default_then_change(store: DeviceStore) -> None:
    fresh = store.settings("acc-bob")
    assert (fresh.timer_s, fresh.state, fresh.known) == (0, "accepted", False)
    store.set_state("acc-bob", "request", T0)
    store.set_timer("acc-bob", 3600, T0)
    got = store.settings("acc-bob")
    assert (got.timer_s, got.state, got.known) == (3600, "request", True)
    with pytest.raises(StoreError, match="state"):
        store.set_state("acc-bob", "maybe", T0)
    with pytest.raises(StoreError, match="negative"):
        store.set_timer("acc-bob", -1, T0)


def test_requests_are_listed_apart(store: DeviceStore) -> None:
    store.add_message(message(1, conversation="acc-bob"))
    store.add_message(message(2, conversation="acc-carol", sender_account_id="acc-carol"))
    store.set_state("acc-carol", "request", T0)
    store.set_timer("acc-bob", 30, T0)
    assert [c.conversation for c in store.conversations("request")] == ["acc-carol"]
    assert [c.conversation for c in store.conversations("accepted")] == ["acc-bob"]
    summaries = {c.conversation: c for c in store.conversations()}
    assert summaries["acc-bob"].timer_s == 30
    assert summaries["acc-carol"].state == "request"


def test_declining_deletes_the_conversation_and_its_files(store: DeviceStore) -> None:
    (store.attachments_dir / "f.bin").write_bytes(b"x")
    store.add_message(message(1, attachment=b"p", attachment_path="attachments/f.bin"))
    store.add_message(message(2, conversation="acc-dave", sender_account_id="acc-dave"))
    store.set_state("acc-bob", "request", T0)
    assert store.delete_conversation("acc-bob") == 1
    assert store.messages("acc-bob") == []
    assert not store.settings("acc-bob").known
    assert not (store.attachments_dir / "f.bin").exists()
    assert len(store.messages("acc-dave")) == 1


def test_block_list(store: DeviceStore) -> None:
    store.block("acc-bob", T0)
    store.block("acc-bob", T0 + 1)  # no change
    store.block("acc-carol", T0 + 2)
    assert store.blocked() == ["acc-bob", "acc-carol"]
    assert store.is_blocked("acc-bob")
    assert store.unblock("acc-bob")
    assert not store.unblock("acc-bob")
    store.replace_blocked(["acc-dave"], T0 + 3)
    assert store.blocked() == ["acc-dave"]


def test_a_version_1_store_upgrades_with_defaults(profile: Path) -> None:
    profile.mkdir(parents=True)
    shutil.copyfile(make_fixture.FIXTURE, profile / "device.db")
    with DeviceStore.open(profile) as store:
        old = store.messages("acc-bob")
        assert old and all(m.kind == "message" and m.expire_timer_s == 0 for m in old)
        assert all(m.expire_at_ms is None and m.franking is None for m in old)
        assert store.settings("acc-bob").known is False
        assert store.blocked() == []


def test_franking_evidence_is_kept_and_hidden_from_repr(store: DeviceStore) -> None:
    store.add_message(message(1, franking=b"EVIDENCE-BYTES"))
    kept = store.message("acc-bob", message(1).message_id)
    assert kept is not None and kept.franking == b"EVIDENCE-BYTES"
    assert "EVIDENCE" not in repr(kept)
