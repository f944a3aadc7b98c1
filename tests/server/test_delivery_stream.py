"""DeviceStream's reads: after a cursor when ids are visible in order, no re-read of a drained
queue, and a failing push loop closes the connection with 1011."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from websockets.exceptions import ConnectionClosed

from veil.server.delivery import DeviceStream
from veil.server.model import Envelope
from veil.server.repository import Repository
from veil.wire.messages import Deliver, QueueEmpty, ServerFrame

from .conftest import Server
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


async def _run(queue: FakeQueue) -> tuple[DeviceStream, asyncio.Event, list[ServerFrame]]:
    frames: list[ServerFrame] = []

    async def send(frame: ServerFrame) -> None:
        frames.append(frame)

    wake = asyncio.Event()
    stream = DeviceStream(queue, KEY, wake, send, batch=4)  # type: ignore[arg-type]
    return stream, wake, frames


@pytest.mark.parametrize("ordered", [True, False])
async def test_short_batch_is_not_read_again_and_in_flight_rows_are_not_pushed_twice(
    ordered: bool,
) -> None:
    queue = FakeQueue(ordered)
    for i in (1, 2):
        queue.add(i)
    stream, wake, frames = await _run(queue)
    task = asyncio.create_task(stream.run())
    await asyncio.sleep(0.05)
    assert [type(f) for f in frames] == [Deliver, QueueEmpty]
    assert len(queue.fetches) == 1  # the short batch drained the queue: no second read
    queue.add(3)
    wake.set()
    await asyncio.sleep(0.05)
    assert isinstance(frames[2], Deliver)
    assert [e.envelope_id for e in frames[2].envelopes] == [3]  # 1, 2 in flight: not again
    if ordered:
        assert queue.fetches[1][0] == 2  # read after the cursor, not from the head
    else:
        assert queue.fetches[1][0] == 0
    await stream.ack([1, 2, 3])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_full_batch_reads_on() -> None:
    queue = FakeQueue(True)
    for i in range(1, 7):
        queue.add(i)
    stream, _, frames = await _run(queue)
    task = asyncio.create_task(stream.run())
    await asyncio.sleep(0.05)
    assert [len(f.envelopes) for f in frames if isinstance(f, Deliver)] == [4, 2]
    assert isinstance(frames[-1], QueueEmpty)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


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
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
