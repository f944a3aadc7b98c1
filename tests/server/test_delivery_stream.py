"""DeviceStream's reads: after a cursor when ids are visible in order, no re-read of a drained
queue, offered envelopes pushed from memory (in order, never twice, never lost), and a failing
push loop closes the connection with 1011."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from websockets.exceptions import ConnectionClosed

from veil.server.delivery import DeviceStream
from veil.server.model import Envelope
from veil.server.repository import Repository
from veil.wire.messages import Deliver, QueueEmpty, ServerFrame

from .conftest import Server, next_frame
from .test_delivery import register, websocket

KEY = ("a" * 32, 1)


class FakeQueue:
    """A queue of envelopes, recording every fetch."""

    def __init__(self, ordered: bool) -> None:
        self.ids_visible_in_order = ordered
        self.rows: dict[int, Envelope] = {}
        self.fetches: list[tuple[int, int]] = []

    def add(self, envelope_id: int) -> None:
        self.rows[envelope_id] = Envelope(envelope_id, KEY[0], 1, "b" * 32, 1, 0, 2, b"x")

    async def fetch_envelopes(
        self, account_id: str, device_id: int, after_id: int, limit: int
    ) -> list[Envelope]:
        self.fetches.append((after_id, limit))
        return [self.rows[i] for i in sorted(self.rows) if i > after_id][:limit]

    async def ack_envelopes(self, account_id: str, device_id: int, ids: Sequence[int]) -> int:
        return sum(self.rows.pop(i, None) is not None for i in ids)


async def _run(queue: FakeQueue, window: int = 256) -> tuple[DeviceStream, list[ServerFrame]]:
    frames: list[ServerFrame] = []

    async def send(frame: ServerFrame) -> None:
        frames.append(frame)

    stream = DeviceStream(queue, KEY, send, batch=4, window=window)  # type: ignore[arg-type]
    return stream, frames


@pytest.mark.parametrize("ordered", [True, False])
async def test_short_batch_is_not_read_again_and_in_flight_rows_are_not_pushed_twice(
    ordered: bool,
) -> None:
    queue = FakeQueue(ordered)
    for i in (1, 2):
        queue.add(i)
    stream, frames = await _run(queue)
    failures = _start(stream)
    await asyncio.sleep(0.05)
    assert [type(f) for f in frames] == [Deliver, QueueEmpty]
    assert len(queue.fetches) == 1  # the short batch drained the queue: no second read
    queue.add(3)
    stream.poke()
    await asyncio.sleep(0.05)
    assert isinstance(frames[2], Deliver)
    assert [e.envelope_id for e in frames[2].envelopes] == [3]  # 1, 2 in flight: not again
    if ordered:
        assert queue.fetches[1][0] == 2  # read after the cursor, not from the head
    else:
        assert queue.fetches[1][0] == 0
    await stream.ack([1, 2, 3])
    _stop(stream, failures)


async def test_full_batch_reads_on() -> None:
    queue = FakeQueue(True)
    for i in range(1, 7):
        queue.add(i)
    stream, frames = await _run(queue)
    failures = _start(stream)
    await asyncio.sleep(0.05)
    assert [len(f.envelopes) for f in frames if isinstance(f, Deliver)] == [4, 2]
    assert isinstance(frames[-1], QueueEmpty)
    _stop(stream, failures)


def _start(stream: DeviceStream) -> list[BaseException]:
    """Push on demand, as a connection does; failures are collected."""
    failures: list[BaseException] = []
    stream.start(failures.append)
    return failures


def _stop(stream: DeviceStream, failures: list[BaseException]) -> None:
    stream.stop()
    assert failures == []


def _hold_reads(queue: FakeQueue) -> asyncio.Event:
    """Make the queue's reads take their snapshot at once but answer only when the returned
    event is set (a read in flight while other things happen)."""
    release = asyncio.Event()
    plain_fetch = queue.fetch_envelopes

    async def slow_fetch(account_id: str, device_id: int, after: int, limit: int) -> list[Envelope]:
        rows = await plain_fetch(account_id, device_id, after, limit)  # the snapshot
        await release.wait()
        return rows

    queue.fetch_envelopes = slow_fetch  # type: ignore[method-assign]
    return release


def _delivered(frames: list[ServerFrame]) -> list[int]:
    return [e.envelope_id for f in frames if isinstance(f, Deliver) for e in f.envelopes]


async def test_offers_after_a_drained_read_are_pushed_from_memory() -> None:
    queue = FakeQueue(True)
    queue.add(1)
    stream, frames = await _run(queue)
    failures = _start(stream)
    await asyncio.sleep(0.05)
    for i in range(2, 12):  # committed (the fake has them) and offered, in order
        queue.add(i)
        stream.offer(queue.rows[i])
    await asyncio.sleep(0.05)
    assert _delivered(frames) == list(range(1, 12))
    assert len(queue.fetches) == 1  # no read per delivery
    assert sum(isinstance(f, QueueEmpty) for f in frames) == 1
    _stop(stream, failures)


async def test_offers_made_during_a_read_are_neither_lost_nor_doubled() -> None:
    queue = FakeQueue(True)
    release = _hold_reads(queue)
    queue.add(1)
    stream, frames = await _run(queue)
    failures = _start(stream)
    await asyncio.sleep(0.02)
    stream.offer(queue.rows[1])  # committed before the snapshot: also in the read
    queue.add(2)  # committed after the snapshot: only offered
    stream.offer(queue.rows[2])
    release.set()
    await asyncio.sleep(0.05)
    assert _delivered(frames) == [1, 2]
    _stop(stream, failures)


async def test_a_poke_during_a_read_forces_another_read() -> None:
    queue = FakeQueue(True)
    release = _hold_reads(queue)
    stream, frames = await _run(queue)
    failures = _start(stream)
    await asyncio.sleep(0.02)
    queue.add(5)  # stored by someone who only pokes (another process)
    stream.poke()
    release.set()
    await asyncio.sleep(0.05)
    assert _delivered(frames) == [5]
    assert len(queue.fetches) == 2
    _stop(stream, failures)


async def test_offers_beyond_the_window_fall_back_to_reading() -> None:
    queue = FakeQueue(True)
    stream, frames = await _run(queue, window=4)
    failures = _start(stream)
    await asyncio.sleep(0.02)
    for i in range(1, 11):
        queue.add(i)
        stream.offer(queue.rows[i])
    await asyncio.sleep(0.05)
    assert _delivered(frames) == [1, 2, 3, 4]  # the window is full: nothing more in flight
    for acked in ([1, 2, 3, 4], [5, 6, 7, 8], [9, 10]):
        await stream.ack(acked)
        await asyncio.sleep(0.05)
    assert _delivered(frames) == list(range(1, 11))  # in order, once each
    assert len(queue.fetches) >= 2  # the dropped offers were read back
    _stop(stream, failures)


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("seed", range(6))
async def test_random_interleavings_deliver_each_envelope_once(ordered: bool, seed: int) -> None:
    """Commits (offered, or only poked as another process's would be), acks and reads in
    random order: every envelope is pushed exactly once; in id order where ids commit in id
    order. Unordered: ids are allocated in order but commit shuffled, as with PostgreSQL."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    queue = FakeQueue(ordered)
    plain_fetch, plain_ack = queue.fetch_envelopes, queue.ack_envelopes

    async def slow_fetch(account_id: str, device_id: int, after: int, limit: int) -> list[Envelope]:
        rows = await plain_fetch(account_id, device_id, after, limit)  # the snapshot
        for _ in range(rng.randint(0, 3)):  # others run while the answer travels
            await asyncio.sleep(0)
        return rows

    async def slow_ack(account_id: str, device_id: int, ids: Sequence[int]) -> int:
        await asyncio.sleep(0)
        return await plain_ack(account_id, device_id, ids)

    queue.fetch_envelopes = slow_fetch  # type: ignore[method-assign]
    queue.ack_envelopes = slow_ack  # type: ignore[method-assign]
    late: list[int] = []  # committed, offer not made yet (the committing task is slow)
    stream, frames = await _run(queue, window=16)
    failures = _start(stream)
    allocated: list[int] = []
    next_id = 1
    for _ in range(400):
        action = rng.random()
        if action < 0.5:
            allocated.append(next_id)
            next_id += 1
            if ordered or len(allocated) >= 3 or rng.random() < 0.3:
                if not ordered:
                    rng.shuffle(allocated)
                committed = allocated.pop(0)
                queue.add(committed)
                if rng.random() < 0.5:
                    stream.offer(queue.rows[committed])
                elif not ordered and rng.random() < 0.6:
                    # (Ordered repositories promise offers right after each commit, in order.)
                    late.append(committed)
                else:
                    stream.poke()
        elif action < 0.6 and late:
            committed = late.pop(0)
            if committed in queue.rows:
                stream.offer(queue.rows[committed])
            else:  # already pushed by a read and acked: a late offer of a deleted row
                stream.offer(Envelope(committed, KEY[0], 1, "b" * 32, 1, 0, 2, b"x"))
        elif action < 0.8:
            pending = [i for i in _delivered(frames) if i in queue.rows]
            if pending:
                await stream.ack(pending[: rng.randint(1, len(pending))])
        await asyncio.sleep(0 if rng.random() < 0.7 else 0.001)
    for committed in allocated:
        queue.add(committed)
        stream.offer(queue.rows[committed])
    for committed in late:
        stream.offer(Envelope(committed, KEY[0], 1, "b" * 32, 1, 0, 2, b"x"))
    for _ in range(60):
        await stream.ack([i for i in _delivered(frames) if i in queue.rows])
        await asyncio.sleep(0.005)
    delivered = _delivered(frames)
    assert len(delivered) == len(set(delivered)), "an envelope was pushed twice"
    assert sorted(delivered) == list(range(1, next_id))
    if ordered:
        assert delivered == sorted(delivered)
    assert not queue.rows
    _stop(stream, failures)


async def test_failing_push_loop_closes_the_socket_with_1011(
    server: Server,
    repo: Repository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bob = await register(server, "bob")

    async def broken(*args: object) -> list[Envelope]:
        raise RuntimeError("database gone")

    monkeypatch.setattr(repo, "fetch_envelopes", broken)
    async with websocket(server, bob) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await next_frame(ws, 10)  # (a "prekeys low" notice comes first)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
