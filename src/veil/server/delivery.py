"""Delivery to connected devices: a notifier and the per-connection push loop.

ARCHITECTURE.md §3: stored envelopes are pushed over the device's one WebSocket in queue
order; the device acks; acked envelopes are deleted. The loop keeps at most ``window``
unacknowledged envelopes in flight, so a slow device holds a bounded amount of server memory
and never stalls others (each connection has its own task, and a blocked send only blocks it).

:class:`Notifier` tells the loop of a connected device that something was stored for it: it
hands over the stored envelope itself (:meth:`Listener.offer`), or just says "read your
queue" (:meth:`Listener.poke`). In one process it is an in-memory map of listeners; with
several processes :class:`veil.server.fanout.NatsFanout` (a subclass) also carries pokes over
NATS. When the repository makes ids visible in id order and this process makes every commit
(SQLite), a loop that has drained its queue pushes offered envelopes straight from memory --
no database read per delivery; otherwise (PostgreSQL, several processes) an offer is a poke:
a read from the queue's head, which keeps queue order across processes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Protocol

from veil.server.model import Envelope
from veil.server.repository import Repository
from veil.wire.messages import Deliver, EnvelopeOut, QueueEmpty, ServerFrame

DeviceKey = tuple[str, int]
BATCH: Final = 64
WINDOW: Final = 256
RECENTLY_ACKED: Final = 4096
"""(Unordered repositories) acked ids a stream remembers, so that a late offer or a read that
raced the ack's delete cannot push an envelope again."""
LINGER_S: Final = 5.0
"""(On-demand pushing) how long a drained connection's push task waits for more."""
IDLE_RECHECK_S: Final = 30.0
"""A connected device re-reads its queue about this often even without a wake-up (the hub
pokes its connections in turn, see :mod:`veil.server.websocket`)."""


class _Signal:
    """A one-waiter ``asyncio.Event``: a flag and, while someone waits, a future.

    An idle connection holds two of these; an ``asyncio.Event`` (with its deque of waiters)
    costs about 0.8 KiB, this about 0.1 KiB.
    """

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class Listener(Protocol):
    """A connected device, as the notifier sees it."""

    def poke(self) -> None:
        """Something may have been stored: read the queue."""

    def offer(self, envelope: Envelope) -> None:
        """``envelope`` was just committed to this device's queue."""

    def keys_low(self) -> None:
        """The device has few one-time prekeys left."""


class Notifier:
    """Wake-ups and signals for devices connected to this process."""

    def __init__(self) -> None:
        self._listeners: dict[DeviceKey, Listener] = {}

    def register(self, key: DeviceKey, listener: Listener) -> None:
        """Send ``key``'s notices to ``listener`` (a new connection replaces the old)."""
        self._listeners[key] = listener

    def unregister(self, key: DeviceKey, listener: Listener) -> None:
        """Forget ``key``'s listener if it is still this one."""
        if self._listeners.get(key) is listener:
            del self._listeners[key]

    def notify(self, keys: Iterable[DeviceKey]) -> None:
        """Something was stored for these devices."""
        for key in keys:
            listener = self._listeners.get(key)
            if listener is not None:
                listener.poke()

    def deliver(self, envelopes: Iterable[Envelope]) -> None:
        """These envelopes were committed (call in commit order, right after the commit)."""
        for envelope in envelopes:
            listener = self._listeners.get((envelope.account_id, envelope.device_id))
            if listener is not None:
                listener.offer(envelope)

    def notify_keys_low(self, keys: Iterable[DeviceKey]) -> None:
        """These devices have few one-time prekeys left."""
        for key in keys:
            listener = self._listeners.get(key)
            if listener is not None:
                listener.keys_low()

    @property
    def connected(self) -> int:
        """Devices with a live connection in this process."""
        return len(self._listeners)

    async def close(self) -> None:
        """Release what the notifier holds (nothing here; a broker connection in subclasses)."""


def _out(e: Envelope) -> EnvelopeOut:
    return EnvelopeOut(
        e.envelope_id,
        e.sender_account_id,
        e.sender_device_id,
        e.server_ms,
        e.type,
        e.content,
        e.franking_tag,
        e.reporting_tag,
        e.franking_key_id,
        e.request,
    )


class DeviceStream:
    """Pushes one device's queue to its connection; the caller feeds acks in.

    Frames: :class:`Deliver` batches in queue order, and one :class:`QueueEmpty` once the
    backlog that was waiting at connection time has been pushed.
    """

    __slots__ = (
        "_acked",
        "_acked_order",
        "_acked_recent",
        "_announced",
        "_cursor",
        "_dirty",
        "_in_flight",
        "_lingered",
        "_live",
        "_offers",
        "_on_failure",
        "_ordered",
        "_pushes",
        "_runner",
        "batch",
        "key",
        "repo",
        "send",
        "wake",
        "window",
    )

    def __init__(
        self,
        repo: Repository,
        key: DeviceKey,
        send: Callable[[ServerFrame], Awaitable[None]],
        *,
        batch: int = BATCH,
        window: int = WINDOW,
    ) -> None:
        self.repo = repo
        self.key = key
        self.send = send
        self.batch = batch
        self.window = window
        self.wake = _Signal()
        self._in_flight: set[int] = set()
        self._acked = _Signal()
        self._ordered = bool(getattr(repo, "ids_visible_in_order", False))
        self._dirty = True  # the queue must be read (first the backlog)
        self._live = False  # (ordered) nothing beyond the cursor but ``_offers`` is stored
        self._offers: list[Envelope] = []
        self._cursor = 0  # (ordered) the highest envelope id read or pushed
        self._acked_order: deque[int] | None = None  # (unordered) the last RECENTLY_ACKED
        self._acked_recent: frozenset[int] | set[int] = frozenset()  # ... as a set
        self._announced = False  # QueueEmpty sent
        self._runner: asyncio.Task[None] | None = None  # (on demand) the push task
        self._on_failure: Callable[[BaseException], None] | None = None
        self._lingered = False
        self._pushes = 0

    def poke(self) -> None:
        """Something may have been stored: read the queue."""
        self._dirty = True
        self.wake.set()
        self._kick()

    def offer(self, envelope: Envelope) -> None:
        """``envelope`` was just committed (offers come in commit order)."""
        if not self._ordered or len(self._offers) >= self.window:
            # With several processes (PostgreSQL), a send committed earlier by another process
            # may not be read yet (its wake-up is on the way over NATS): pushing this one from
            # memory could overtake it. A read from the queue's head keeps queue order.
            self._offers.clear()
            self.poke()
            return
        self._offers.append(envelope)
        self.wake.set()
        self._kick()

    def keys_low(self) -> None:  # pragma: no cover - the connection handles this notice
        """Not the stream's business (see the connection)."""

    async def ack(self, envelope_ids: list[int]) -> None:
        """Delete acknowledged envelopes (only from this device's queue)."""
        ids = [i for i in envelope_ids if i in self._in_flight]
        if ids:
            await self.repo.ack_envelopes(self.key[0], self.key[1], ids)
            if not self._ordered:
                self._remember_acked(ids)
            self._in_flight.difference_update(ids)
            self._acked.set()

    def _remember_acked(self, ids: list[int]) -> None:
        if self._acked_order is None:  # made on first use: most connections never ack
            self._acked_order = deque()
            self._acked_recent = set()
        recent = self._acked_recent
        assert isinstance(recent, set)
        self._acked_order.extend(ids)
        recent.update(ids)
        while len(self._acked_order) > RECENTLY_ACKED:
            recent.discard(self._acked_order.popleft())

    def _new(self, envelope_id: int) -> bool:
        """(Unordered) not pushed on this connection as far as we can tell."""
        return envelope_id not in self._in_flight and envelope_id not in self._acked_recent

    def start(self, on_failure: Callable[[BaseException], None]) -> None:
        """Push on demand: a task runs only while there is something to do, so an idle
        connection holds none (``poke`` and ``offer`` start one). ``on_failure`` is told
        if a push task fails. Re-reads without a wake-up are the caller's job (the hub)."""
        self._on_failure = on_failure
        self._kick()

    def stop(self) -> None:
        """End on-demand pushing (the connection is closing)."""
        self._on_failure = None
        if self._runner is not None:
            self._runner.cancel()

    def _kick(self) -> None:
        if self._on_failure is None or (self._runner is not None and not self._runner.done()):
            return
        runner = self._runner = asyncio.get_running_loop().create_task(self._serve())
        runner.add_done_callback(self._runner_done)

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        if self._runner is runner:
            self._runner = None
        if runner.cancelled():
            return
        exc = runner.exception()
        if exc is not None:
            if self._on_failure is not None:
                self._on_failure(exc)
        elif self._dirty or self.wake.is_set():  # came in as the task was ending
            self._kick()

    async def _serve(self) -> None:
        """(On demand) drain, then linger a while for more before the task ends: a busy
        device keeps one task instead of one per delivery; an idle one holds none."""
        loop = asyncio.get_running_loop()
        while True:
            if not await self.drain():
                return  # nothing was waiting (e.g. a periodic re-read): no reason to linger
            self._lingered = False
            timer = loop.call_later(LINGER_S, self._linger_over)
            try:
                await self.wake.wait()
            finally:
                timer.cancel()
            if self._lingered and not self._dirty and not self._offers:
                return

    def _linger_over(self) -> None:
        self._lingered = True
        self.wake.set()

    async def drain(self) -> bool:
        """Push until the queue is drained (announcing it once per connection); whether
        anything was pushed."""
        before = self._pushes
        announced = False
        while True:
            while len(self._in_flight) >= self.window:
                self._acked.clear()
                await self._acked.wait()
            self.wake.clear()
            room = min(self.batch, self.window - len(self._in_flight))
            if self._live and not self._dirty:
                drained = await self._push_offers(room)
            elif self._ordered:
                drained = await self._read_after_cursor(room)
            else:
                drained = await self._read_head(room)
            if not drained:
                continue
            if not self._announced:
                await self.send(QueueEmpty())
                self._announced = announced = True
            if not self._dirty and not self.wake.is_set():
                return announced or self._pushes != before

    async def _push(self, found: list[Envelope]) -> None:
        self._pushes += 1
        self._in_flight.update(e.envelope_id for e in found)
        await self.send(Deliver([_out(e) for e in found]))

    async def _push_offers(self, room: int) -> bool:
        """Everything committed after our last read was offered, in commit (= id) order:
        push from memory. True when nothing is left to push."""
        if self._ordered:
            found = [e for e in self._offers[:room] if e.envelope_id > self._cursor]
        else:  # a read may have pushed it first (ids do not commit in id order)
            found = [e for e in self._offers[:room] if self._new(e.envelope_id)]
        del self._offers[:room]
        if found:
            self._cursor = max(self._cursor, found[-1].envelope_id)
            await self._push(found)
            return False
        return not self._offers

    async def _read_after_cursor(self, room: int) -> bool:
        """Read after the cursor (ordered repositories). True when the queue is drained.

        The repository promises that ids become visible in id order (SQLite: ids are assigned
        under the database's single write lock, so a lower id always commits before a higher
        one is even allocated). Then every envelope with an id <= the cursor that was ever
        visible was returned by one of our reads, in order (ORDER BY id LIMIT n returns the
        lowest), so reading after the cursor misses nothing and never re-reads an in-flight
        row (no duplicate push).
        """
        self._dirty = False
        self._live = False
        found = await self.repo.fetch_envelopes(self.key[0], self.key[1], self._cursor, room)
        if found:
            self._cursor = max(self._cursor, found[-1].envelope_id)
        # Offers of envelopes the read returned go; later ones were committed after the
        # read's snapshot (a whole group commit is either in it or not).
        self._offers = [e for e in self._offers if e.envelope_id > self._cursor]
        if len(found) < room and not self._dirty:
            # A short read saw the whole visible queue, and no poke came since it began: what
            # was committed after it is exactly what was (and will be) offered, since every
            # commit is offered right after it, in order.
            self._live = True
        if found:
            await self._push(found)
        return self._live and not self._offers

    async def _read_head(self, room: int) -> bool:
        """Read from the queue's head, skipping what is in flight. True when drained.

        With PostgreSQL a send may commit after one with a higher id, so an "after the last
        id" cursor could skip it. Acked envelopes are deleted, so the head is in-flight ones,
        then new. Skip what was in flight when the read started: an ack may complete during
        the read (deleted, no longer in flight) while the read still saw it.
        """
        self._dirty = False
        self._live = False
        pushed = set(self._in_flight)
        limit = len(pushed) + room
        head = await self.repo.fetch_envelopes(self.key[0], self.key[1], 0, limit)
        # Not what was in flight when the read began, nor what an offer pushed or an ack
        # deleted while it ran.
        found = [e for e in head if e.envelope_id not in pushed and self._new(e.envelope_id)]
        seen = {e.envelope_id for e in head}
        self._offers = [e for e in self._offers if e.envelope_id not in seen]
        if len(head) < limit and not self._dirty:
            # A short read saw the whole visible queue, and no poke came since it began:
            # anything committed after the read's snapshot was (or will be) offered or poked
            # (both run after the commit).
            self._live = True
        else:
            self._offers.clear()
        if found:
            await self._push(found)
        return self._live and not self._offers
