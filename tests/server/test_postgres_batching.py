"""Group commit of sends and acks on PostgreSQL (postgres_batch, postgres_messages).

Concurrent calls share one transaction; every caller must still get its own answer, a failing
send must not fail the others, and nothing may be stored or deleted unless the shared
transaction committed (a failed ``COMMIT`` reaches every caller). The first tests exercise
:class:`GroupCommit` alone, without a database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from veil.server import postgres_messages
from veil.server.model import DeviceMismatch, StoredMessage
from veil.server.postgres_batch import GroupCommit
from veil.server.postgres_repo import PostgresRepository
from veil.server.repository import NotFoundError, QueueFullError

from .conftest import _drop_postgres_database, _fresh_postgres_database
from .test_messages_repo import account, env, send

# --- GroupCommit without a database ------------------------------------------------------------


class Recorder:
    """A flush that records its batches; each item ``n`` answers ``n * 10`` (or raises)."""

    def __init__(self, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail_batch: Exception | None = None

    async def flush(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail_batch is not None:
            raise self.fail_batch
        return [ValueError(n) if n < 0 else n * 10 for n in items]


async def test_group_commit_first_call_goes_alone_then_the_queued_ones_together() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.flush)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.002)  # the first batch is in flight
    rest = [asyncio.create_task(group.submit(n)) for n in range(2, 12)]
    assert await first == 10
    assert await asyncio.gather(*rest) == [n * 10 for n in range(2, 12)]
    assert rec.batches == [[1], list(range(2, 12))]
    assert group.in_flight == 0
    # idle again: a lone call goes at once
    assert await group.submit(5) == 50
    assert rec.batches[-1] == [5]


async def test_group_commit_outcomes_are_per_item_and_a_flush_error_reaches_all() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.flush, max_batch=3)
    results = await asyncio.gather(
        *(group.submit(n) for n in (1, -2, 3, 4)), return_exceptions=True
    )
    assert results[0] == 10 and results[2] == 30 and results[3] == 40
    assert isinstance(results[1], ValueError)
    assert rec.batches == [[1, -2, 3], [4]]  # max_batch
    rec.fail_batch = OSError("lost")
    failed = await asyncio.gather(*(group.submit(n) for n in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in failed)
    rec.fail_batch = None
    assert await group.submit(7) == 70  # the group still works


async def test_group_commit_skips_a_caller_cancelled_before_its_batch() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.flush)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.002)
    gone = asyncio.create_task(group.submit(2))
    kept = asyncio.create_task(group.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == 10 and await kept == 30
    assert rec.batches == [[1], [3]]


async def test_group_commit_runs_up_to_max_in_flight_batches() -> None:
    rec = Recorder(delay=0.2)
    group: GroupCommit[int, int] = GroupCommit(rec.flush, max_in_flight=2)
    a = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.002)
    b = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0.002)
    assert group.in_flight == 2  # the second did not wait for the first
    c = asyncio.create_task(group.submit(3))
    assert list(await asyncio.gather(a, b, c)) == [10, 20, 30]
    assert rec.batches == [[1], [2], [3]]


# --- on PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
async def pg() -> AsyncIterator[tuple[PostgresRepository, str]]:
    """A fresh, migrated PostgreSQL repository, and its DSN."""
    dsn, name = await _fresh_postgres_database()
    repo = await PostgresRepository.connect(dsn)
    try:
        await repo.migrate()
        yield repo, dsn
    finally:
        await repo.close()
        await _drop_postgres_database(name)


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Sizes of the store and ack batches the repository runs."""
    sizes: dict[str, list[int]] = {"store": [], "ack": []}
    store_batch, ack_batch = postgres_messages.store_batch, postgres_messages.ack_batch

    async def recording_store(conn: Any, requests: Sequence[Any]) -> Any:
        sizes["store"].append(len(requests))
        return await store_batch(conn, requests)

    async def recording_ack(conn: Any, requests: Sequence[Any]) -> Any:
        sizes["ack"].append(len(requests))
        return await ack_batch(conn, requests)

    monkeypatch.setattr(postgres_messages, "store_batch", recording_store)
    monkeypatch.setattr(postgres_messages, "ack_batch", recording_ack)
    return sizes


@pytest.mark.postgres
async def test_many_concurrent_sends_each_get_their_own_answer(
    pg: tuple[PostgresRepository, str], batches: dict[str, list[int]]
) -> None:
    repo, _ = pg
    people = [await account(repo, f"u{i}", linked=1) for i in range(12)]
    sends = [(people[i % 12], people[(i + 1 + i // 12) % 12], f"m{i}".encode()) for i in range(120)]
    sends = [(a, b, c) for a, b, c in sends if a != b]
    results = await asyncio.gather(
        *(send(repo, a, b, [env(b, 1, c), env(b, 2, c)], key=c.decode()) for a, b, c in sends)
    )
    assert max(batches["store"]) > 1, batches  # they were grouped
    seen: set[int] = set()
    for (_, b, c), result in zip(sends, results, strict=True):
        assert isinstance(result, StoredMessage) and not result.duplicate
        assert set(result.envelope_ids) == {(b, 1), (b, 2)}
        for device_id in (1, 2):
            mine = result.envelope_ids[(b, device_id)]
            assert mine not in seen
            seen.add(mine)
            got = await repo.fetch_envelopes(b, device_id, mine - 1, 1)
            assert got[0].envelope_id == mine and got[0].content == c
    assert len(seen) == 2 * len(sends)


@pytest.mark.postgres
async def test_many_concurrent_acks_each_get_their_own_count(
    pg: tuple[PostgresRepository, str], batches: dict[str, list[int]]
) -> None:
    repo, _ = pg
    alice = await account(repo, "alice")
    bobs = [await account(repo, f"bob{i}", linked=1) for i in range(10)]
    queued: dict[tuple[str, int], list[int]] = {}
    for bob in bobs:
        for n in range(6):
            result = await send(repo, alice, bob, [env(bob, 1, bytes([n])), env(bob, 2)])
            assert isinstance(result, StoredMessage)
            for key, envelope_id in result.envelope_ids.items():
                queued.setdefault(key, []).append(envelope_id)
    calls: list[tuple[str, int, list[int], int]] = []  # account, device, ids, expected count
    for i, bob in enumerate(bobs):
        mine, other = queued[(bob, 1)], queued[(bob, 2)]
        calls.append((bob, 1, mine[:3] + mine[:1] + [10**9 + i], 3))  # repeat + unknown id
        calls.append((bob, 1, mine[3:], 3))
        calls.append((bob, 2, other[:2], 2))
        calls.append((bob, 3, other[2:], 0))  # not its queue (no such device)
        calls.append((alice, 1, other[2:], 0))  # not its queue
        calls.append((bob, 1, [], 0))
    counts = await asyncio.gather(*(repo.ack_envelopes(a, d, ids) for a, d, ids, _ in calls))
    assert counts == [expected for *_, expected in calls]
    assert max(batches["ack"]) > 1, batches
    for bob in bobs:
        assert await repo.queue_depth(bob, 1) == 0
        assert await repo.queue_depth(bob, 2) == 4
    # The same ids acked again concurrently: nothing left to delete.
    again = await asyncio.gather(*(repo.ack_envelopes(a, d, ids) for a, d, ids, _ in calls))
    assert again == [0] * len(calls)


@pytest.mark.postgres
async def test_failing_sends_in_a_batch_do_not_affect_the_others(
    pg: tuple[PostgresRepository, str], batches: dict[str, list[int]]
) -> None:
    repo, _ = pg
    alice = await account(repo, "alice")
    bob = await account(repo, "bob", linked=1)
    carol = await account(repo, "carol")
    full = await account(repo, "full")
    for _ in range(2):
        await send(repo, alice, full, [env(full, 1)], max_queue=2)
    ghost = uuid.uuid4().hex  # a sender whose account does not exist: its idempotency
    # row violates the foreign key, which aborts the whole batch transaction
    batches["store"].clear()
    outcomes = await asyncio.gather(
        send(repo, alice, bob, [env(bob, 1, b"ok1"), env(bob, 2, b"ok1")]),
        send(repo, alice, uuid.uuid4().hex, [env(bob, 1)]),  # unknown recipient
        send(repo, alice, bob, [env(bob, 1)]),  # mismatch: device 2 missing
        send(repo, alice, full, [env(full, 1)], max_queue=2),  # full queue
        send(repo, alice, carol, [env(carol, 1, b"dup")], key="k"),
        send(repo, alice, carol, [env(carol, 1, b"dup")], key="k"),  # same key, same batch
        send(repo, alice, carol, [env(carol, 1), env(carol, 1)]),  # two to one device
        send(repo, ghost, carol, [env(carol, 1, b"ghost")], key="g"),
        send(repo, carol, bob, [env(bob, 1, b"ok2"), env(bob, 2, b"ok2")], key="k"),
        return_exceptions=True,
    )
    assert batches["store"][0] == 9, batches  # one batch
    ok1, unknown, mismatch, full_queue, first, second, twice, ghostly, ok2 = outcomes
    assert isinstance(ok1, StoredMessage) and not ok1.duplicate
    assert isinstance(unknown, NotFoundError)
    assert mismatch == [DeviceMismatch(bob, missing=(2,), extra=(), stale=())]
    assert isinstance(full_queue, QueueFullError)
    assert isinstance(first, StoredMessage) and isinstance(second, StoredMessage)
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    assert first.envelope_ids == second.envelope_ids
    assert isinstance(twice, ValueError)
    assert isinstance(ghostly, NotFoundError)
    assert isinstance(ok2, StoredMessage) and not ok2.duplicate
    assert [e.content for e in await repo.fetch_envelopes(bob, 1, 0, 10)] == [b"ok1", b"ok2"]
    assert [e.content for e in await repo.fetch_envelopes(bob, 2, 0, 10)] == [b"ok1", b"ok2"]
    assert [e.content for e in await repo.fetch_envelopes(carol, 1, 0, 10)] == [b"dup"]
    assert await repo.queue_depth(full, 1) == 2


_REFUSE_AT_COMMIT = """
CREATE FUNCTION veil_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.content = '\\x706f69736f6e'::bytea OR {all} THEN
        RAISE EXCEPTION 'refused at commit';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER veil_test_refuse AFTER INSERT OR DELETE ON envelopes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION veil_test_refuse();
"""


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_failed_commit_reaches_every_caller_and_stores_nothing(
    pg: tuple[PostgresRepository, str], batches: dict[str, list[int]]
) -> None:
    repo, dsn = pg
    alice = await account(repo, "alice")
    bobs = [await account(repo, f"bob{i}") for i in range(8)]
    await _execute(dsn, _REFUSE_AT_COMMIT.format(all="true"))
    outcomes = await asyncio.gather(
        *(send(repo, alice, bob, [env(bob, 1)], key=f"k{bob}") for bob in bobs),
        return_exceptions=True,
    )
    assert max(batches["store"]) > 1
    assert all(isinstance(o, asyncpg.RaiseError) for o in outcomes), outcomes
    for bob in bobs:
        assert await repo.queue_depth(bob, 1) == 0
    # nor were the idempotency answers kept: the same keys store now
    await _execute(dsn, "DROP TRIGGER veil_test_refuse ON envelopes")
    again = await asyncio.gather(
        *(send(repo, alice, bob, [env(bob, 1)], key=f"k{bob}") for bob in bobs)
    )
    assert all(isinstance(r, StoredMessage) and not r.duplicate for r in again)


@pytest.mark.postgres
async def test_a_send_refused_at_commit_fails_alone(
    pg: tuple[PostgresRepository, str], batches: dict[str, list[int]]
) -> None:
    repo, dsn = pg
    alice = await account(repo, "alice")
    bobs = [await account(repo, f"bob{i}") for i in range(8)]
    await _execute(dsn, _REFUSE_AT_COMMIT.format(all="false"))
    outcomes = await asyncio.gather(
        *(
            send(repo, alice, bob, [env(bob, 1, b"poison" if i == 3 else b"fine")])
            for i, bob in enumerate(bobs)
        ),
        return_exceptions=True,
    )
    assert max(batches["store"]) > 1
    for i, (bob, outcome) in enumerate(zip(bobs, outcomes, strict=True)):
        if i == 3:
            assert isinstance(outcome, asyncpg.RaiseError)
            assert await repo.queue_depth(bob, 1) == 0
        else:
            assert isinstance(outcome, StoredMessage)
            assert await repo.queue_depth(bob, 1) == 1


@pytest.mark.postgres
async def test_a_failed_ack_commit_reaches_every_caller_and_deletes_nothing(
    pg: tuple[PostgresRepository, str], batches: dict[str, list[int]]
) -> None:
    repo, dsn = pg
    alice = await account(repo, "alice")
    bobs = [await account(repo, f"bob{i}") for i in range(8)]
    ids = {}
    for bob in bobs:
        result = await send(repo, alice, bob, [env(bob, 1)])
        assert isinstance(result, StoredMessage)
        ids[bob] = result.envelope_ids[(bob, 1)]
    await _execute(dsn, _REFUSE_AT_COMMIT.format(all="false"))
    first = asyncio.create_task(repo.ack_envelopes(bobs[0], 1, [ids[bobs[0]]]))
    await asyncio.sleep(0)
    outcomes = await asyncio.gather(
        first,
        *(repo.ack_envelopes(bob, 1, [ids[bob]]) for bob in bobs[1:]),
        return_exceptions=True,
    )
    assert max(batches["ack"]) > 1
    assert all(isinstance(o, asyncpg.RaiseError) for o in outcomes), outcomes
    for bob in bobs:
        assert await repo.queue_depth(bob, 1) == 1


@pytest.mark.postgres
async def test_a_batch_whose_connection_dies_fails_every_caller_and_stores_nothing(
    pg: tuple[PostgresRepository, str], batches: dict[str, list[int]]
) -> None:
    repo, dsn = pg
    alice = await account(repo, "alice")
    bobs = [await account(repo, f"bob{i}") for i in range(6)]
    admin = await asyncpg.connect(dsn)
    blocker = await asyncpg.connect(dsn)
    try:
        # Hold the idempotency key "held": the batch's last send waits for it, inside the
        # batch's transaction, after the other sends' statements ran.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "INSERT INTO idempotency VALUES ($1, 'held', 0, 0, '{}', '{}', '{}')", alice
        )
        calls = [send(repo, alice, bob, [env(bob, 1)], key=f"k{bob}") for bob in bobs[:-1]]
        calls.append(send(repo, alice, bobs[-1], [env(bobs[-1], 1)], key="held"))
        gathered = asyncio.gather(*calls, return_exceptions=True)
        pid = None
        for _ in range(200):
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%WITH sub AS%'"
            )
            if pid is not None:
                break
            await asyncio.sleep(0.02)
        assert pid is not None, "the batch never waited for the held key"
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        outcomes = await gathered
        await tx.rollback()
    finally:
        await blocker.close()
        await admin.close()
    assert batches["store"][-1] == len(bobs)
    assert all(isinstance(o, asyncpg.PostgresError | asyncpg.InterfaceError) for o in outcomes), (
        outcomes
    )
    assert len({id(o) for o in outcomes}) == 1  # the batch's one error: nothing was re-run
    for bob in bobs:
        assert await repo.queue_depth(bob, 1) == 0
    # the repository recovers (the pool replaces the connection)
    result = await send(repo, alice, bobs[0], [env(bobs[0], 1)], key=f"k{bobs[0]}")
    assert isinstance(result, StoredMessage) and not result.duplicate


@pytest.mark.postgres
async def test_concurrent_queue_reads_share_statements_and_each_get_their_own_rows(
    pg: tuple[PostgresRepository, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = pg
    sizes: list[int] = []
    fetch_batch = postgres_messages.fetch_batch

    async def recording(conn: Any, requests: Sequence[Any]) -> Any:
        sizes.append(len(requests))
        return await fetch_batch(conn, requests)

    monkeypatch.setattr(postgres_messages, "fetch_batch", recording)
    alice = await account(repo, "alice")
    bobs = [await account(repo, f"bob{i}") for i in range(8)]
    ids: dict[str, list[int]] = {}
    for i, bob in enumerate(bobs):
        for n in range(i + 1):  # bob{i} has i + 1 envelopes
            result = await send(repo, alice, bob, [env(bob, 1, bytes([i, n]))])
            assert isinstance(result, StoredMessage)
            ids.setdefault(bob, []).append(result.envelope_ids[(bob, 1)])
    reads = [(bob, 1, 0, 3) for bob in bobs]  # the first three of each queue
    reads += [(bob, 1, ids[bob][0], 100) for bob in bobs]  # everything after the first
    reads += [(bobs[0], 2, 0, 10), (bobs[0], 1, 0, 0), (bobs[0], 200, 0, 5)]  # none
    got = await asyncio.gather(*(repo.fetch_envelopes(*r) for r in reads))
    assert max(sizes) > 1, sizes  # they were read together
    for (bob, device, after, limit), envelopes in zip(reads, got, strict=True):
        expected = [i for i in ids.get(bob, []) if i > after][:limit] if device == 1 else []
        assert [e.envelope_id for e in envelopes] == expected
        assert all(e.account_id == bob and e.device_id == device for e in envelopes)
        i = bobs.index(bob)
        assert [e.content for e in envelopes] == [
            bytes([i, ids[bob].index(e.envelope_id)]) for e in envelopes
        ]
