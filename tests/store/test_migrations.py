"""Schema migrations: the committed version-1 fixture, upgrades, and refusing bad steps.

The fixture ``fixtures/device_v1.db`` is a committed binary written by ``make_fixture.py``
(raw SQL, as the first schema version wrote it). A committed file, rather than SQL generated
in the test, freezes what an old Veil left on disk: if someone edited ``0001_init.sql`` after
release, a generated fixture would silently follow the edit, while this one keeps testing the
real upgrade path (and :func:`test_fixture_matches_migration_0001` flags the edit).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from veil.store import (
    AccountRecord,
    CallLog,
    Contact,
    DeviceStore,
    IdentityRecord,
    MessageRecord,
    OutboxItem,
    StoreError,
    migrations,
)

from . import make_fixture


def schema_of(conn: sqlite3.Connection) -> set[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
    ).fetchall()
    return {(t, n, " ".join(s.split())) for t, n, s in rows}


def test_fixture_matches_migration_0001() -> None:
    fresh = sqlite3.connect(":memory:")
    make_fixture.build_v1(fresh)
    fixture = sqlite3.connect(f"file:{make_fixture.FIXTURE}?mode=ro", uri=True)
    try:
        assert fixture.execute("PRAGMA user_version").fetchone()[0] == 1
        assert schema_of(fixture) == schema_of(fresh)
    finally:
        fixture.close()
        fresh.close()


def test_loader_finds_contiguous_versions() -> None:
    found = migrations.load()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "init"
    assert migrations.latest() == len(found)


@pytest.fixture
def upgraded(profile: Path) -> DeviceStore:
    profile.mkdir(parents=True)
    shutil.copyfile(make_fixture.FIXTURE, profile / "device.db")
    return DeviceStore.open(profile)


def test_version_1_fixture_opens_with_its_data(upgraded: DeviceStore) -> None:
    store = upgraded
    try:
        assert store.schema_version() == migrations.latest()
        assert store.account() == AccountRecord(
            "https://veil.example", "acc-alice", 2, "cred-v1", "Alice", b"\x01" * 32, 777,
            1700000000000,
        )  # fmt: skip
        assert store.signed_prekey(3) == b"\x02" * 32
        assert store.kyber_prekey(6) == b"\x03" * 64
        assert store.kyber_prekey_count() == 1
        assert store.one_time_prekey(100) == b"\x05" * 32
        assert store.next_key_id("signed") == 4
        assert store.next_key_id("kyber") == 8
        assert store.next_key_id("one_time") == 101
        assert store.session("acc-bob", 1) == b"session-v1"
        assert store.identity("acc-bob") == IdentityRecord(
            "acc-bob", b"\x05" + b"\x06" * 32, "verified", 1700000000004
        )
        assert store.contact_by_username("BOB") == Contact("acc-bob", "Bob")
        assert store.messages("acc-bob") == [
            MessageRecord(
                "acc-bob", b"\x10" * 16, "in", "acc-bob", 1, 1700000001000, 1700000001100,
                1700000001200, "hi alice", None, None, "received",
            ),
            MessageRecord(
                "acc-bob", b"\x11" * 16, "out", "acc-alice", 2, 1700000002000, 1700000002100,
                None, "hi bob", b"pointer", "attachments/a1", "delivered",
            ),
        ]  # fmt: skip
        assert store.conversations()[0].unread == 1
        assert store.envelope_seen(41)
        assert store.outbox() == [
            OutboxItem(1, "acc-bob", b"\x12" * 16, b"content-v1", 1700000003000, 2)
        ]
        assert not store.add_message(store.messages("acc-bob")[0])  # dedupe still holds
    finally:
        store.close()


ORIGINAL_LOAD = migrations.load
NEXT = len(ORIGINAL_LOAD()) + 1
"""A version after the newest real one (the tests add a step of their own)."""
EXTRA = migrations.Migration(
    NEXT, "drafts", "CREATE TABLE drafts (conversation TEXT PRIMARY KEY, text TEXT NOT NULL);"
)


def test_upgrade_applies_a_new_step_once(profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile.mkdir(parents=True)
    shutil.copyfile(make_fixture.FIXTURE, profile / "device.db")
    monkeypatch.setattr(migrations, "load", lambda: [*ORIGINAL_LOAD(), EXTRA])
    with DeviceStore.open(profile) as store:
        assert store.schema_version() == NEXT
        assert store.envelope_seen(41)
        store._exec("INSERT INTO drafts VALUES ('acc-bob', 'draft')")
    with DeviceStore.open(profile) as store:  # reopening applies nothing again
        assert store._one("SELECT text FROM drafts") == ("draft",)
    monkeypatch.undo()
    with pytest.raises(StoreError, match="created by a newer Veil"):
        DeviceStore.open(profile)


def test_failing_step_leaves_the_previous_version(
    profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile.mkdir(parents=True)
    shutil.copyfile(make_fixture.FIXTURE, profile / "device.db")
    broken = migrations.Migration(
        NEXT, "broken", "CREATE TABLE half (x INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    )
    monkeypatch.setattr(migrations, "load", lambda: [*ORIGINAL_LOAD(), broken])
    with pytest.raises(StoreError, match=r"device\.db"):
        DeviceStore.open(profile)
    monkeypatch.undo()
    with DeviceStore.open(profile) as store:
        assert store.schema_version() == NEXT - 1
        assert store._one("SELECT name FROM sqlite_master WHERE name = 'half'") is None
        assert store.envelope_seen(41)


# --- version 3: the call log (the messages table is rebuilt) --------------------------------
def test_fixture_v2_matches_migrations_0001_and_0002() -> None:
    fresh = sqlite3.connect(":memory:")
    make_fixture.build_v1(fresh)
    make_fixture.upgrade_to_v2(fresh)
    fixture = sqlite3.connect(f"file:{make_fixture.FIXTURE_V2}?mode=ro", uri=True)
    try:
        assert fixture.execute("PRAGMA user_version").fetchone()[0] == 2
        assert schema_of(fixture) == schema_of(fresh)
    finally:
        fixture.close()
        fresh.close()


def test_version_2_fixture_keeps_every_row_through_the_rebuild(profile: Path) -> None:
    profile.mkdir(parents=True)
    shutil.copyfile(make_fixture.FIXTURE_V2, profile / "device.db")
    with DeviceStore.open(profile) as store:
        assert store.schema_version() == migrations.latest() >= 3
        got = store.messages("acc-bob")
        assert [m.message_id[0] for m in got] == [0x10, 0x11, 0x13, 0x14]
        assert got[1].attachment == b"pointer" and got[1].attachment_path == "attachments/a1"
        timer, vanishing = got[2], got[3]
        assert (timer.kind, timer.expire_timer_s, timer.text) == ("timer", 30, None)
        assert (vanishing.kind, vanishing.expire_at_ms) == ("message", 1700000035200)
        assert vanishing.franking == b"evidence-v2" and vanishing.call is None
        assert store.settings("acc-bob").timer_s == 30
        assert store.settings("acc-carol").state == "request"
        assert store.is_blocked("acc-mallory")
        assert store.next_expiry() == 1700000035200
        assert store.conversations()[0].unread == 1
        assert not store.add_message(got[0])  # the uniqueness constraint came along
        names = {r[0] for r in store._all("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {
            "messages_timeline",
            "messages_by_id",
            "messages_unread",
            "messages_expiry",
        } <= names
        assert store._one("SELECT name FROM sqlite_master WHERE name = 'messages_v3'") is None
        line = MessageRecord(
            "acc-bob", b"\x15" * 16, "out", "acc-alice", 2, 1700000008000, None, None, None,
            None, None, "sent", kind="call", call=CallLog("video", "completed", "hangup", 83_000),
        )  # fmt: skip
        assert store.add_message(line)
        assert store.messages("acc-bob")[-1] == line
    with DeviceStore.open(profile) as store:  # and it reads back after reopening
        assert store.message("acc-bob", b"\x15" * 16) == line


def test_the_schema_refuses_half_a_call_line(profile: Path) -> None:
    with DeviceStore.open(profile) as store, pytest.raises(StoreError, match="CHECK constraint"):
        store._exec(
            "INSERT INTO messages (conversation, message_id, direction, sender_account_id,"
            " sender_device_id, sent_ms, sort_ms, status, kind, call_media)"
            " VALUES ('acc-bob', x'01', 'in', 'acc-bob', 1, 1, 1, 'read', 'call', 'audio')"
        )
