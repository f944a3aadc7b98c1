"""Delivery to connected devices: a notifier and the per-connection push loop.

ARCHITECTURE.md §3: stored envelopes are pushed over the device's one WebSocket in queue
order; the device acks; acked envelopes are deleted. The loop keeps at most ``window``
unacknowledged envelopes in flight, so a slow device holds a bounded amount of server memory
and never stalls others (each connection has its own task, and a blocked send only blocks it).

:class:`Notifier` wakes the loop of a device when something is stored for it. In one process
it is an in-memory map of events; with several processes :class:`veil.server.fanout.NatsFanout`
(a subclass) also carries them over NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from veil.server.model import Envelope
from veil.server.repository import Repository
from veil.wire.messages import Deliver, EnvelopeOut, QueueEmpty, ServerFrame

DeviceKey = tuple[str, int]
BATCH: Final = 64
WINDOW: Final = 256
IDLE_RECHECK_S: Final = 30.0
"""A connected device re-reads its queue at least this often, even without a wake-up."""


class Notifier:
    """Wake-ups for devices connected to this process."""

    def __init__(self) -> None:
        self._events: dict[DeviceKey, asyncio.Event] = {}

    def register(self, key: DeviceKey) -> asyncio.Event:
        """The event the connection of ``key`` waits on (a new connection replaces the old)."""
        event = asyncio.Event()
        self._events[key] = event
        return event

    def unregister(self, key: DeviceKey, event: asyncio.Event) -> None:
        """Forget ``key``'s event if it is still this connection's."""
        if self._events.get(key) is event:
            del self._events[key]

    def notify(self, keys: Iterable[DeviceKey]) -> None:
        """Something was stored for these devices."""
        for key in keys:
            event = self._events.get(key)
            if event is not None:
                event.set()

    @property
    def connected(self) -> int:
        """Devices with a live connection in this process."""
        return len(self._events)

    async def close(self) -> None:
        """Release what the notifier holds (nothing here; a broker connection in subclasses)."""


def _out(e: Envelope) -> EnvelopeOut:
    return EnvelopeOut(
        e.envelope_id, e.sender_account_id, e.sender_device_id, e.server_ms, e.type, e.content
    )


class DeviceStream:
    """Pushes one device's queue to its connection; the caller feeds acks in."""

    def __init__(
        self,
        repo: Repository,
        key: DeviceKey,
        wake: asyncio.Event,
        send: Callable[[ServerFrame], Awaitable[None]],
        *,
        batch: int = BATCH,
        window: int = WINDOW,
    ) -> None:
        self.repo = repo
        self.key = key
        self.wake = wake
        self.send = send
        self.batch = batch
        self.window = window
        self._in_flight: set[int] = set()
        self._acked = asyncio.Event()

    async def ack(self, envelope_ids: list[int]) -> None:
        """Delete acknowledged envelopes (only from this device's queue)."""
        ids = [i for i in envelope_ids if i in self._in_flight]
        if ids:
            await self.repo.ack_envelopes(self.key[0], self.key[1], ids)
            self._in_flight.difference_update(ids)
            self._acked.set()

    async def run(self) -> None:
        """Push forever: the backlog first, then each new envelope as it is stored."""
        announced_empty = False
        # The highest envelope id pushed on this connection (the cursor, when it is safe).
        cursor = 0
        ordered = bool(getattr(self.repo, "ids_visible_in_order", False))
        while True:
            while len(self._in_flight) >= self.window:
                self._acked.clear()
                await self._acked.wait()
            self.wake.clear()
            room = min(self.batch, self.window - len(self._in_flight))
            if ordered:
                # The repository promises that ids become visible in id order (SQLite: ids
                # are assigned under the database's single write lock, so a lower id always
                # commits before a higher one is even allocated). Then every envelope with an
                # id <= ``cursor`` that was ever visible was returned by one of our reads, in
                # order (ORDER BY id LIMIT n returns the lowest), so reading after the cursor
                # misses nothing and never re-reads an in-flight row (no duplicate push).
                found = await self.repo.fetch_envelopes(self.key[0], self.key[1], cursor, room)
                full = len(found) >= room
            else:
                # Read from the queue's head, skipping what is in flight: with PostgreSQL a
                # send may commit after one with a higher id, so an "after the last id" cursor
                # could skip it. Acked envelopes are deleted, so the head is in-flight ones,
                # then new. Skip what was in flight when the read started: an ack may complete
                # during the read (deleted, no longer in flight) while the read still saw it.
                pushed = set(self._in_flight)
                limit = len(pushed) + room
                head = await self.repo.fetch_envelopes(self.key[0], self.key[1], 0, limit)
                found = [e for e in head if e.envelope_id not in pushed]
                full = len(head) >= limit
            if found:
                announced_empty = False
                cursor = max(cursor, found[-1].envelope_id)
                self._in_flight.update(e.envelope_id for e in found)
                await self.send(Deliver([_out(e) for e in found]))
                if full or self.wake.is_set():
                    continue
                # A short read saw the whole visible queue, and no wake-up came since
                # ``wake.clear()`` (before the read): anything committed before the read's
                # snapshot was in it, and anything committed after it would have set ``wake``
                # (notify runs after the commit). So the queue is drained: no second read.
            if not announced_empty:
                await self.send(QueueEmpty())
                announced_empty = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), IDLE_RECHECK_S)
