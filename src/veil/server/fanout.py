"""Wake-ups across server processes: :class:`NatsFanout`, a :class:`Notifier` that also uses NATS.

ARCHITECTURE.md section 4: with several ``veil server`` processes behind one address, the
queues live in PostgreSQL and NATS core subjects only say "an envelope is waiting for device
X", so that the process holding X's WebSocket re-reads X's queue at once.

- ``notify(keys)`` wakes the local connections immediately (as :class:`Notifier` does), then
  hands the keys to a background task that publishes an empty message on
  ``veil.wake.<account_id>.<device_id>`` for each. The send path never waits for NATS: keys
  waiting to be published are a set, so a burst for one device coalesces into one message.
- Each process subscribes to the subjects of the devices connected to it (one subscription
  per connected device, made on the first connection and dropped with the last). NATS then
  routes a wake-up only to the process that wants it, so traffic per process grows with its
  own devices rather than with all sends of all processes (which a ``veil.wake.>`` wildcard
  would deliver to every process).
- "Prekeys low" signals travel the same way, as a message with the body ``keys_low`` (an
  empty body is an envelope wake-up).
- The connection uses ``no_echo``: a process does not receive its own publications (its local
  connections were already woken). A duplicate wake-up would be harmless anyway (an event).

Nothing durable goes through NATS: the envelope is committed to PostgreSQL before it is
published, so a lost wake-up only delays delivery until the next re-read. Re-reads happen when
a device's subscription becomes active (closing the gap between the connection's first queue
read and the subscription), after a reconnection to NATS (publications during the outage may
be lost), and at the latest every :data:`~veil.server.delivery.IDLE_RECHECK_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine, Iterable
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from veil.server.delivery import DeviceKey, Listener, Notifier
from veil.server.model import Envelope

log = logging.getLogger("veil.server.fanout")

SUBJECT_PREFIX: Final = "veil.wake"
KEYS_LOW: Final = b"keys_low"
CONNECT_TIMEOUT_S: Final = 5
FLUSH_TIMEOUT_S: Final = 5
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def subject(key: DeviceKey) -> str:
    """The NATS subject of ``key``'s wake-ups; ``ValueError`` for an account id that is not a
    plain subject token (account ids are 32 hex digits)."""
    account_id, device_id = key
    if not _TOKEN.fullmatch(account_id):
        raise ValueError("account id is not a NATS subject token")
    return f"{SUBJECT_PREFIX}.{account_id}.{device_id}"


class NatsFanout(Notifier):
    """Local wake-ups plus NATS between processes; make it with :meth:`connect`."""

    def __init__(self, nc: Client) -> None:
        super().__init__()
        self._nc = nc
        self._subs: dict[DeviceKey, Subscription | None] = {}
        """Subscribed devices; ``None`` while the subscription is being made."""
        self._outbox: set[DeviceKey] = set()
        self._outbox_keys_low: set[DeviceKey] = set()
        self._outbox_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._publisher = asyncio.create_task(self._publish_loop())
        self.published = 0
        """Wake-ups published (for tests and metrics)."""
        self.received = 0
        """Wake-ups received from other processes."""

    @classmethod
    async def connect(cls, url: str, *, name: str = "veil-server") -> NatsFanout:
        """Connect to NATS at ``url``; raises ``ConnectionError`` if that fails within
        :data:`CONNECT_TIMEOUT_S`. Once connected, the client reconnects on its own forever."""
        fanout: NatsFanout | None = None
        last_error: list[Exception] = []

        async def reconnected() -> None:
            log.info("reconnected to NATS: re-reading the queues of connected devices")
            if fanout is not None:
                fanout.wake_all()

        async def disconnected() -> None:
            if fanout is not None and not fanout._closing:
                log.warning("disconnected from NATS: wake-ups from other processes are delayed")

        async def error(exc: Exception) -> None:
            last_error[:] = [exc]
            if fanout is not None:
                log.warning("NATS error: %s", type(exc).__name__)

        nc = Client()
        try:
            # nats-py retries the first connection as often as later ones (forever here), so
            # the start-up bounds it with a timeout instead.
            await asyncio.wait_for(
                nc.connect(
                    url,
                    name=name,
                    no_echo=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    reconnected_cb=reconnected,
                    disconnected_cb=disconnected,
                    error_cb=error,
                ),
                CONNECT_TIMEOUT_S,
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            cause = last_error[0] if last_error else exc
            raise ConnectionError(f"{type(cause).__name__}: {cause}") from None
        fanout = cls(nc)
        return fanout

    # --- Notifier ---------------------------------------------------------------------------
    def register(self, key: DeviceKey, listener: Listener) -> None:
        super().register(key, listener)
        if key not in self._subs:
            self._subs[key] = None
            self._spawn(self._subscribe(key))

    def unregister(self, key: DeviceKey, listener: Listener) -> None:
        super().unregister(key, listener)
        if key in self._listeners or key not in self._subs:
            return
        sub = self._subs[key]
        if sub is not None:  # a pending subscription drops itself when it completes
            del self._subs[key]
            self._spawn(self._unsubscribe(sub))

    def notify(self, keys: Iterable[DeviceKey]) -> None:
        keys = list(keys)
        super().notify(keys)
        self._outbox.update(keys)
        self._outbox_ready.set()

    def deliver(self, envelopes: Iterable[Envelope]) -> None:
        envelopes = list(envelopes)
        super().deliver(envelopes)
        self._outbox.update((e.account_id, e.device_id) for e in envelopes)
        self._outbox_ready.set()

    def notify_keys_low(self, keys: Iterable[DeviceKey]) -> None:
        keys = list(keys)
        super().notify_keys_low(keys)
        self._outbox_keys_low.update(keys)
        self._outbox_ready.set()

    def wake_all(self) -> None:
        """Make every local connection re-read its queue."""
        super().notify(list(self._listeners))

    async def close(self) -> None:
        """Publish what is pending, then close the NATS connection."""
        self._closing = True
        self._publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._publisher
        if (self._outbox or self._outbox_keys_low) and self._nc.is_connected:
            with contextlib.suppress(Exception):
                await self._publish(self._outbox)
                await self._publish(self._outbox_keys_low, KEYS_LOW)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self._nc.close()

    # --- background work --------------------------------------------------------------------
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _subscribe(self, key: DeviceKey) -> None:
        async def on_message(msg: Msg) -> None:
            self.received += 1
            if msg.data == KEYS_LOW:
                Notifier.notify_keys_low(self, [key])
            else:
                Notifier.notify(self, [key])

        try:
            sub = await self._nc.subscribe(subject(key), cb=on_message)
        except Exception as exc:
            log.warning("cannot subscribe to wake-ups: %s", type(exc).__name__)
            del self._subs[key]  # the next connection of the device tries again
            Notifier.notify(self, [key])
            return
        if key not in self._listeners:  # the device left while the subscription was made
            del self._subs[key]
            await self._unsubscribe(sub)
            return
        self._subs[key] = sub
        try:
            # When the server has answered the PING, it has processed the SUB: every
            # wake-up published from now on reaches us, so one re-read covers the gap.
            await self._nc.flush(FLUSH_TIMEOUT_S)
        except Exception as exc:  # disconnected: the reconnection re-subscribes and wakes all
            log.warning("NATS subscription not confirmed: %s", type(exc).__name__)
        Notifier.notify(self, [key])

    async def _unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    async def _publish_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            keys, self._outbox = self._outbox, set()
            low, self._outbox_keys_low = self._outbox_keys_low, set()
            try:
                await self._publish(keys)
                await self._publish(low, KEYS_LOW)
            except Exception as exc:  # the queues are durable; the re-reads cover a loss
                log.warning("cannot publish %d wake-up(s): %s", len(keys), type(exc).__name__)

    async def _publish(self, keys: Iterable[DeviceKey], body: bytes = b"") -> None:
        for key in keys:
            try:
                name = subject(key)
            except ValueError:
                continue
            await self._nc.publish(name, body)
            self.published += 1
