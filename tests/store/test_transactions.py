"""Atomicity: rollback on exceptions, no nesting, threads wait, a killed process loses nothing
it committed and keeps nothing it did not."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from veil.store import Contact, DeviceStore, OutboxItem, StoreError

from .conftest import account, message


class BoomError(Exception):
    pass


def test_exception_inside_transaction_leaves_nothing(store: DeviceStore) -> None:
    with pytest.raises(BoomError), store.transaction():
        store.save_account(account())
        store.add_one_time_prekeys([(1, b"k")])
        store.save_session("acc-bob", 1, b"s")
        store.add_message(message(1))
        store.mark_envelope(1, 1)
        store.save_contact(Contact("acc-bob", "bob"))
        store.enqueue(OutboxItem(None, "acc-bob", b"m" * 16, b"c", 1))
        assert store.message("acc-bob", message(1).message_id) is not None  # visible inside
        raise BoomError
    assert store.account() is None
    assert store.one_time_prekey_count() == 0
    assert store.session("acc-bob", 1) is None
    assert store.messages("acc-bob") == []
    assert not store.envelope_seen(1)
    assert store.contacts() == []
    assert store.outbox() == []
    assert not store.in_transaction()


def test_commit_makes_everything_visible(store: DeviceStore, profile: Path) -> None:
    with store.transaction():
        store.add_message(message(1))
        store.mark_envelope(1, 1)
        with DeviceStore.open(profile) as other:  # another connection sees nothing yet
            assert not other.envelope_seen(1)
    with DeviceStore.open(profile) as other:
        assert other.envelope_seen(1)
        assert len(other.messages("acc-bob")) == 1


def test_nesting_is_refused(store: DeviceStore) -> None:
    with store.transaction():
        store.mark_envelope(1, 1)
        with pytest.raises(StoreError, match="do not nest"), store.transaction():
            pass
        store.mark_envelope(2, 2)  # the outer transaction goes on
    assert store.envelope_seen(1)
    assert store.envelope_seen(2)


def test_nested_attempt_escaping_rolls_back_the_outer(store: DeviceStore) -> None:
    with pytest.raises(StoreError), store.transaction():
        store.mark_envelope(1, 1)
        with store.transaction():
            store.mark_envelope(2, 2)
    assert not store.envelope_seen(1)
    assert not store.envelope_seen(2)


def test_store_error_inside_transaction_can_be_caught(store: DeviceStore) -> None:
    with store.transaction():
        store.mark_envelope(1, 1)
        with pytest.raises(StoreError):
            store.add_message(message(2, status="bogus"))
    assert store.envelope_seen(1)


def test_other_thread_waits_for_the_transaction(store: DeviceStore) -> None:
    done = threading.Event()
    seen: list[bool] = []

    def other() -> None:
        seen.append(store.envelope_seen(1))
        done.set()

    with store.transaction():
        store.mark_envelope(1, 1)
        thread = threading.Thread(target=other)
        thread.start()
        assert not done.wait(0.2)  # blocked until the commit
    thread.join(5)
    assert seen == [True]


CHILD = r"""
import sys, time
from pathlib import Path
from veil.store import DeviceStore, MessageRecord

store = DeviceStore.open(Path(sys.argv[1]))

def msg(n):
    return MessageRecord("acc-bob", n.to_bytes(16, "big"), "in", "acc-bob", 1, n, n, n,
                         "x" * 200, None, None, "received")

if sys.argv[2] == "hold":
    with store.transaction():
        for n in range(1, 200):
            store.add_message(msg(n))
            store.mark_envelope(n, n)
        store.save_session("acc-bob", 1, b"half-done")
        print("inside", flush=True)
        time.sleep(60)
else:
    n = 0
    while True:
        n += 1
        with store.transaction():
            store.add_message(msg(n))
            store.save_session("acc-bob", 1, n.to_bytes(4, "big") * 500)
            store.mark_envelope(n, n)
        if n == 20:
            print("running", flush=True)
"""


def run_and_kill(profile: Path, mode: str, delay: float) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(profile), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() in ("inside", "running")
        time.sleep(delay)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)


def integrity(profile: Path) -> str:
    conn = sqlite3.connect(profile / "device.db")
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_killed_inside_a_transaction_leaves_nothing(profile: Path) -> None:
    DeviceStore.open(profile).close()
    run_and_kill(profile, "hold", 0.0)
    assert integrity(profile) == "ok"
    with DeviceStore.open(profile) as store:
        assert store.messages("acc-bob") == []
        assert not store.envelope_seen(1)
        assert store.session("acc-bob", 1) is None


@pytest.mark.parametrize("delay", [0.05, 0.2])
def test_killed_between_commits_stays_consistent(profile: Path, delay: float) -> None:
    DeviceStore.open(profile).close()
    run_and_kill(profile, "loop", delay)
    assert integrity(profile) == "ok"
    with DeviceStore.open(profile) as store:
        stored = store.messages("acc-bob", limit=1_000_000)
        last = len(stored)
        assert last >= 20
        assert [int.from_bytes(m.message_id, "big") for m in stored] == list(range(1, last + 1))
        assert store.envelope_seen(last)
        assert not store.envelope_seen(last + 1)
        assert store.session("acc-bob", 1) == last.to_bytes(4, "big") * 500
