"""A device connection that stays up: :class:`DeviceSocket` after :class:`DeviceSocket`.

:class:`Connection` connects in the background and, whenever the socket breaks (server
restart, network loss, a malformed frame), connects again after a :class:`Backoff` delay;
a connection that stayed up :attr:`Backoff.healthy_s` resets the delays. It gives up only
when the server refuses the credentials (HTTP 401/403 at the handshake) or another
connection of the same device replaced this one (close code 4000, which reconnecting would
only turn into a tug of war); the consumer of :meth:`Connection.frames` then gets that error.

Frames of successive sockets come out of one iterator. An envelope delivered on a socket that
broke before its ack comes again on the next one (at least once; the engine deduplicates).
A send waits for a connection for up to ``send_wait_s``; one with an idempotency key is
retried on the next connection if the socket breaks before the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Final, cast

from veil.client.backoff import Backoff
from veil.client.closing import AsyncClosing
from veil.client.credentials import Credentials
from veil.client.errors import ClientError, ServerError, TransportError, safe_url
from veil.client.socket import DeviceSocket, Frame, drop_queued, websocket_url
from veil.wire.messages import CLOSE_REPLACED, OutgoingEnvelopeIn, SendResponse

log = logging.getLogger("veil.client.connection")

SEND_WAIT_S: Final = 10.0
"""How long a send waits for a connection (and for retries of an idempotent send)."""
_STOP: Final = object()

Connector = Callable[[], Awaitable[DeviceSocket]]


def _fatal(error: ClientError) -> bool:
    """Errors that reconnecting cannot cure."""
    if isinstance(error, ServerError):
        return error.is_auth
    return isinstance(error, TransportError) and error.close_code == CLOSE_REPLACED


class Connection(AsyncClosing):
    """Keeps the device's WebSocket to ``base_url`` up until :meth:`close`.

    Starts on first use of :meth:`frames`, :meth:`send` or :meth:`ack` (or :meth:`start`).
    ``connect``, ``sleep``, ``clock`` (monotonic seconds) and ``random`` replace the network,
    the waits, the health measure and the jitter in tests.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        backoff: Backoff | None = None,
        send_wait_s: float = SEND_WAIT_S,
        open_timeout_s: float = 10.0,
        connect: Connector | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        websocket_url(base_url)  # a bad URL fails here, not in the background
        self._base_url = base_url
        self._credentials = credentials
        self._backoff = backoff or Backoff()
        self._send_wait_s = send_wait_s
        self._open_timeout_s = open_timeout_s
        self._connect = connect or self._open
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self._socket: DeviceSocket | None = None
        self._changed = asyncio.Event()
        self._frames: asyncio.Queue[object] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self.error: ClientError | None = None
        """Why the connection gave up (``None`` while it keeps trying, or after close)."""
        self.connects = 0
        """Connections made so far."""
        self._socket_lasted = 0.0

    def __repr__(self) -> str:
        return f"Connection({safe_url(self._base_url)!r}, connected={self.connected})"

    def _enter(self) -> None:
        self.start()

    @property
    def connected(self) -> bool:
        """True while a socket is open."""
        return self._socket is not None and not self._socket.closed

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._runner is None and not self._closed:
            self._runner = asyncio.create_task(self._run(), name="veil-connection")

    async def _open(self) -> DeviceSocket:
        return await DeviceSocket.connect(
            self._base_url, self._credentials, open_timeout_s=self._open_timeout_s
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the background loop ----------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        try:
            while not self._closed:
                try:
                    socket = await self._connect()
                except ClientError as exc:
                    if _fatal(exc):
                        self.error = exc
                        return
                    delay = self._backoff.delay(attempt, self._random)
                    if isinstance(exc, ServerError) and exc.retry_after_s is not None:
                        delay = max(delay, exc.retry_after_s)
                    attempt += 1
                    log.info("cannot connect (%s); retrying in %.1f s", exc, delay)
                    await self._sleep(delay)
                    continue
                error = await self._pump(socket)
                if self._closed:
                    return
                if error is not None and _fatal(error):
                    self.error = error
                    return
                if self._socket_lasted >= self._backoff.healthy_s:
                    attempt = 0
                delay = self._backoff.delay(attempt, self._random)
                attempt += 1
                log.info("connection lost (%s); reconnecting in %.1f s", error, delay)
                await self._sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave consumers waiting forever
            log.error("connection loop failed: %s", type(exc).__name__)
            self.error = ClientError(f"connection loop failed ({type(exc).__name__})")
        finally:
            self._socket = None
            self._frames.put_nowait(_STOP)
            self._notify()

    async def _pump(self, socket: DeviceSocket) -> ClientError | None:
        """Forward one socket's frames until it ends; why it ended."""
        if self._closed:
            await socket.close()
            return None
        self.connects += 1
        started = self._clock()
        self._socket = socket
        self._notify()
        try:
            async for frame in socket.frames():
                self._frames.put_nowait(frame)
        except ClientError as exc:
            return exc
        finally:
            self._socket_lasted = self._clock() - started
            if self._socket is socket:
                self._socket = None
            self._notify()
            await socket.close()  # already ended unless we are closing; frees it either way
        return None

    # --- the consumer's side ----------------------------------------------------------------

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames of every socket in turn; ends after :meth:`close`, raises :attr:`error`
        (a :class:`ServerError` 401/403, or a :class:`TransportError` for a replaced
        connection) when the connection gives up."""
        self.start()
        while True:
            item = await self._frames.get()
            if item is _STOP:
                self._frames.put_nowait(_STOP)
                if self.error is not None:
                    raise self.error
                return
            yield cast(Frame, item)

    async def _current(self, wait_s: float) -> DeviceSocket:
        """The open socket, waiting up to ``wait_s`` seconds for one."""
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            if self.error is not None:
                raise self.error
            if self._closed:
                raise TransportError(self._base_url, "connection closed")
            socket = self._socket
            if socket is not None and not socket.closed:
                return socket
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TransportError(self._base_url, f"not connected (waited {wait_s:g} s)")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def send(
        self,
        recipient: str,
        envelopes: Sequence[OutgoingEnvelopeIn],
        idempotency_key: str | None = None,
        *,
        wait_s: float | None = None,
    ) -> SendResponse:
        """Send over the current socket (see :meth:`DeviceSocket.send`), waiting up to
        ``wait_s`` (default ``send_wait_s``) for a connection. With an ``idempotency_key``, a
        socket that breaks before the answer is retried on the next one within that time;
        without one the :class:`TransportError` is raised (the send may have been stored)."""
        wait = self._send_wait_s if wait_s is None else wait_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            socket = await self._current(max(0.0, deadline - loop.time()))
            try:
                return await socket.send(recipient, envelopes, idempotency_key)
            except TransportError:
                if idempotency_key is None or loop.time() >= deadline:
                    raise
                log.info("send interrupted; retrying on the next connection")

    async def ack(self, envelope_ids: Iterable[int]) -> None:
        """Ack on the current socket; dropped while disconnected (the server will deliver
        those envelopes again, and acks only what it delivered on the same socket)."""
        socket = self._socket
        if socket is None or socket.closed:
            return
        with contextlib.suppress(TransportError):
            await socket.ack(envelope_ids)

    async def close(self) -> None:
        """Stop: close the socket, stop reconnecting, end :meth:`frames` at once, dropping
        frames not yet taken (idempotent)."""
        self._closed = True
        socket = self._socket
        if socket is not None:
            await socket.close()
        runner = self._runner
        if runner is not None:
            if not runner.done():
                runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        drop_queued(self._frames, _STOP)
        self._notify()
