"""Opening a profile: folder and file permissions, pragmas, reopening, refusing bad files."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from veil.store import DeviceStore, StoreError, migrations
from veil.store.schema import APPLICATION_ID

from .conftest import account, message


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_zero")
def test_permissions_even_with_umask_zero(profile: Path) -> None:
    with DeviceStore.open(profile) as store:
        store.save_account(account())  # WAL and shared-memory files now exist
        assert mode(profile) == 0o700
        assert mode(profile / "device.db") == 0o600
        for suffix in ("-wal", "-shm"):
            companion = profile / f"device.db{suffix}"
            assert companion.exists()
            assert mode(companion) == 0o600
        assert mode(store.attachments_dir) == 0o700
        assert store.attachments_dir == profile / "attachments"


@pytest.mark.usefixtures("umask_zero")
def test_loose_permissions_are_tightened(profile: Path) -> None:
    profile.mkdir(parents=True, mode=0o755)
    os.chmod(profile, 0o755)
    (profile / "device.db").touch(mode=0o644)
    os.chmod(profile / "device.db", 0o644)
    with DeviceStore.open(profile):
        assert mode(profile) == 0o700
        assert mode(profile / "device.db") == 0o600


def test_pragmas(store: DeviceStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.latest()
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        conn.close()
    raw = store._connection()
    assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert raw.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version() == migrations.latest()


def test_reopen_keeps_data(profile: Path) -> None:
    with DeviceStore.open(profile) as store:
        store.save_account(account())
        assert store.add_message(message(1))
        store.mark_envelope(9, 100)
    with DeviceStore.open(profile) as store:
        assert store.account() == account()
        assert store.message("acc-bob", message(1).message_id) == message(1)
        assert store.envelope_seen(9)


def test_too_new_schema_is_refused_untouched(profile: Path) -> None:
    DeviceStore.open(profile).close()
    conn = sqlite3.connect(profile / "device.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="created by a newer Veil") as caught:
        DeviceStore.open(profile)
    assert "device.db" in str(caught.value)
    conn = sqlite3.connect(profile / "device.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
    conn.close()


def test_garbage_file_is_refused(profile: Path) -> None:
    profile.mkdir(parents=True)
    (profile / "device.db").write_bytes(b"definitely not SQLite " * 100)
    with pytest.raises(StoreError, match=r"device\.db"):
        DeviceStore.open(profile)


def test_other_sqlite_database_is_refused(profile: Path) -> None:
    profile.mkdir(parents=True)
    conn = sqlite3.connect(profile / "device.db")
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a Veil device store"):
        DeviceStore.open(profile)
    conn = sqlite3.connect(profile / "device.db")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with pytest.raises(StoreError, match="not a Veil device store"):
        DeviceStore.open(profile)


def test_profile_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(StoreError, match="taken"):
        DeviceStore.open(tmp_path / "taken")


def test_closed_store_refuses_calls(store: DeviceStore) -> None:
    store.close()
    store.close()  # idempotent
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.account()
    with pytest.raises(StoreError, match="closed"), store.transaction():
        pass


def test_close_inside_transaction_is_refused(store: DeviceStore) -> None:
    with store.transaction():
        with pytest.raises(StoreError, match="inside a transaction"):
            store.close()
        store.mark_envelope(1, 1)
    assert store.envelope_seen(1)


def test_repr_names_the_profile_only(store: DeviceStore, profile: Path) -> None:
    store.save_account(account())
    assert repr(store) == f"DeviceStore(profile={str(profile)!r})"


def test_two_stores_on_one_profile(profile: Path) -> None:
    with DeviceStore.open(profile) as first, DeviceStore.open(profile) as second:
        first.mark_envelope(5, 1)
        assert second.envelope_seen(5)
