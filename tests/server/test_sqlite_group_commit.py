"""SQLite group commit: concurrent sends share a transaction, each body in its own SAVEPOINT.

Covers :meth:`SqliteExecutor.run_grouped` and the repository's use of it: many concurrent
sends are all stored with correct, distinct ids; a failing send (exception or device
mismatch) in a group leaves the others stored; a result is delivered only once the group's
COMMIT is durable (visible from a second connection); a failed COMMIT fails every job.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from veil.server import sqlite_executor
from veil.server.model import DeviceMismatch, NewDevice, OutgoingEnvelope, StoredMessage
from veil.server.repository import NotFoundError, QueueFullError
from veil.server.sqlite_repo import SqliteRepository

ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqliteRepository]:
    repo = SqliteRepository(tmp_path / "veil.db")
    await repo.migrate()
    for account_id in (ALICE, BOB, CAROL):
        device = NewDevice(77, b"h" * 32, "phone")
        await repo.create_account(account_id, account_id[:8], account_id[:8], b"k", device, 1)
    yield repo
    await repo.close()


def _to(account_id: str, content: bytes, registration_id: int = 77) -> list[OutgoingEnvelope]:
    return [OutgoingEnvelope(account_id, 1, registration_id, 1, content)]


async def _send(
    repo: SqliteRepository,
    recipient: str,
    content: bytes,
    *,
    registration_id: int = 77,
    key: str | None = None,
    max_queue: int = 10_000,
) -> StoredMessage | list[DeviceMismatch]:
    envelopes = _to(recipient, content, registration_id)
    return await repo.store_message(ALICE, 1, recipient, envelopes, key, 5, max_queue)


async def _hold(repo: SqliteRepository) -> tuple[asyncio.Future[None], asyncio.Event]:
    """Hold the database thread until the returned event is set, so a group queues up."""
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()

    def block(conn: sqlite3.Connection) -> None:
        loop.call_soon_threadsafe(started.set_result, None)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)

    holder = asyncio.ensure_future(repo.executor.run(block))
    await started
    return holder, release


async def test_200_concurrent_sends_all_stored_in_few_transactions(
    repo: SqliteRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    run_group = sqlite_executor._run_group

    def counting(conn: sqlite3.Connection, group: list[sqlite_executor._Job]) -> object:
        sizes.append(len(group))
        return run_group(conn, group)

    monkeypatch.setattr(sqlite_executor, "_run_group", counting)
    holder, release = await _hold(repo)
    sends = [asyncio.ensure_future(_send(repo, BOB, i.to_bytes(2, "big"))) for i in range(200)]
    await asyncio.sleep(0.05)
    release.set()
    await holder
    results = await asyncio.gather(*sends)
    assert all(isinstance(r, StoredMessage) and not r.duplicate for r in results)
    ids = [r.envelope_ids[BOB, 1] for r in results if isinstance(r, StoredMessage)]
    assert len(set(ids)) == 200 and ids == sorted(ids)  # submission order kept
    stored = await repo.fetch_envelopes(BOB, 1, 0, 1000)
    assert [e.envelope_id for e in stored] == ids
    assert [int.from_bytes(e.content, "big") for e in stored] == list(range(200))
    assert await repo.queue_depth(BOB, 1) == 200
    assert sum(sizes) == 200 and len(sizes) <= 2  # MAX_GROUP is 256: one group, maybe two


async def test_failing_sends_in_a_group_do_not_affect_the_others(repo: SqliteRepository) -> None:
    await _send(repo, CAROL, b"fills carol's queue")  # carol's queue is full at max_queue=1
    holder, release = await _hold(repo)
    sends = [
        asyncio.ensure_future(_send(repo, BOB, b"ok-1")),
        asyncio.ensure_future(_send(repo, "x" * 32, b"no such account")),
        asyncio.ensure_future(_send(repo, BOB, b"stale", registration_id=5)),
        asyncio.ensure_future(_send(repo, CAROL, b"queue full", max_queue=1)),
        asyncio.ensure_future(_send(repo, BOB, b"ok-2", key="idem")),
        asyncio.ensure_future(_send(repo, BOB, b"ok-2 again", key="idem")),
        asyncio.ensure_future(_send(repo, BOB, b"ok-3")),
    ]
    await asyncio.sleep(0.05)
    release.set()
    await holder
    results = await asyncio.gather(*sends, return_exceptions=True)
    ok1, missing, stale, full, ok2, dup, ok3 = results
    assert isinstance(missing, NotFoundError)
    assert isinstance(full, QueueFullError)
    assert stale == [DeviceMismatch(BOB, missing=(), extra=(), stale=(1,))]
    for r in (ok1, ok2, ok3):
        assert isinstance(r, StoredMessage) and not r.duplicate
    assert isinstance(dup, StoredMessage) and dup.duplicate
    assert isinstance(ok2, StoredMessage) and dup.envelope_ids == ok2.envelope_ids
    contents = [e.content for e in await repo.fetch_envelopes(BOB, 1, 0, 100)]
    assert contents == [b"ok-1", b"ok-2", b"ok-3"]
    assert await repo.queue_depth(CAROL, 1) == 1


async def test_an_unexpected_error_rolls_back_only_its_own_body(repo: SqliteRepository) -> None:
    insert = "INSERT INTO envelopes (account_id, device_id, sender_account_id,"
    insert += " sender_device_id, server_ms, type, content) VALUES (?, 1, ?, 1, 1, 1, ?)"

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute(insert, (BOB, ALICE, b"half"))  # written, then the body fails
        raise RuntimeError("boom")

    holder, release = await _hold(repo)
    first = asyncio.ensure_future(_send(repo, BOB, b"before"))
    bad = asyncio.ensure_future(repo.executor.run_grouped(half_done))
    last = asyncio.ensure_future(_send(repo, BOB, b"after"))
    await asyncio.sleep(0.05)
    release.set()
    await holder
    assert isinstance(await first, StoredMessage)
    with pytest.raises(RuntimeError, match="boom"):
        await bad
    assert isinstance(await last, StoredMessage)
    contents = [e.content for e in await repo.fetch_envelopes(BOB, 1, 0, 100)]
    assert contents == [b"before", b"after"]


async def test_results_arrive_only_after_commit(repo: SqliteRepository, tmp_path: Path) -> None:
    """When a send returns, a second connection already sees what it stored."""
    other = sqlite3.connect(tmp_path / "veil.db", isolation_level=None)
    try:

        async def send_and_check(i: int) -> int:
            result = await _send(repo, BOB, f"m{i}".encode())
            assert isinstance(result, StoredMessage)
            envelope_id = result.envelope_ids[BOB, 1]
            # Runs right when the future resolves, on the event loop, before anything else.
            row = other.execute(
                "SELECT content FROM envelopes WHERE envelope_id = ?", (envelope_id,)
            ).fetchone()
            assert row == (f"m{i}".encode(),)
            return envelope_id

        holder, release = await _hold(repo)
        checks = [asyncio.ensure_future(send_and_check(i)) for i in range(50)]
        await asyncio.sleep(0.05)
        release.set()
        await holder
        assert len(set(await asyncio.gather(*checks))) == 50
    finally:
        other.close()


async def test_a_failed_commit_fails_every_job_of_the_group(
    repo: SqliteRepository, tmp_path: Path
) -> None:
    """A deferred foreign-key violation makes the shared COMMIT fail: nobody's data stays."""

    def commit_fails(conn: sqlite3.Connection) -> None:
        # A deferred foreign-key violation is only detected at COMMIT.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute(
            "INSERT INTO envelopes (account_id, device_id, sender_account_id,"
            " sender_device_id, server_ms, type, content)"
            " VALUES ('nobody', 1, 'x', 1, 1, 1, x'00')"
        )

    holder, release = await _hold(repo)
    ok = asyncio.ensure_future(_send(repo, BOB, b"lost with the group"))
    bad = asyncio.ensure_future(repo.executor.run_grouped(commit_fails))
    await asyncio.sleep(0.05)
    release.set()
    await holder
    for job in (ok, bad):
        with pytest.raises(sqlite3.IntegrityError):
            await job
    assert await repo.fetch_envelopes(BOB, 1, 0, 100) == []
    # The executor goes on working afterwards.
    assert isinstance(await _send(repo, BOB, b"next"), StoredMessage)
    assert [e.content for e in await repo.fetch_envelopes(BOB, 1, 0, 100)] == [b"next"]


async def test_reads_queued_with_a_group_never_see_uncommitted_writes(
    repo: SqliteRepository,
) -> None:
    holder, release = await _hold(repo)
    send = asyncio.ensure_future(_send(repo, BOB, b"x"))
    depth = asyncio.ensure_future(repo.queue_depth(BOB, 1))
    await asyncio.sleep(0.05)
    release.set()
    await holder
    assert isinstance(await send, StoredMessage)
    assert await depth == 0  # queued together: the read ran before the group, never inside
    assert await repo.queue_depth(BOB, 1) == 1


async def test_acks_are_grouped_too(repo: SqliteRepository) -> None:
    stored = [await _send(repo, BOB, bytes([i])) for i in range(10)]
    ids = [r.envelope_ids[BOB, 1] for r in stored if isinstance(r, StoredMessage)]
    holder, release = await _hold(repo)
    acks = [asyncio.ensure_future(repo.ack_envelopes(BOB, 1, [i])) for i in ids]
    wrong = asyncio.ensure_future(repo.ack_envelopes(CAROL, 1, ids))
    await asyncio.sleep(0.05)
    release.set()
    await holder
    assert await asyncio.gather(*acks) == [1] * 10
    assert await wrong == 0
    assert await repo.queue_depth(BOB, 1) == 0
