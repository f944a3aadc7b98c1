"""The device WebSocket (``/v1/websocket``): authenticated at the handshake, one per device.

Frames are MessagePack (:mod:`veil.wire.messages`). The server pushes :class:`Deliver`,
:class:`QueueEmpty`, :class:`KeysLow` and the answers to sends (:class:`Sent`,
:class:`SendFailed`); the device sends :class:`Ack` and :class:`SendFrame`. A send over the
WebSocket goes through the same :class:`~veil.server.messages.MessageService` as
``PUT /v1/messages/{account_id}`` (same checks, stored durably before the answer), without
an HTTP request per message.

A second connection of the same device replaces the first (closed with
:data:`CLOSE_REPLACED`). A malformed frame closes the connection with a policy-violation
code; nothing is acked or stored by it.

The endpoint is a plain ASGI app (no per-frame framework wrapper). Each connection runs its
handler task (reading frames) and one push task (:class:`DeviceStream`). Acks and sends are
handled in tasks of their own so that a slow commit does not stop the reading; at most
:data:`MAX_PENDING` of them run per connection, beyond which the connection stops reading
(TCP backpressure on that device only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from starlette.types import Receive, Scope, Send

from veil.server import errors
from veil.server.accounts import Caller
from veil.server.delivery import IDLE_RECHECK_S, DeviceKey, DeviceStream, Notifier
from veil.server.messages import MessageService
from veil.server.metrics import Metrics
from veil.server.model import Envelope
from veil.server.repository import Repository
from veil.wire.errors import ErrorBody
from veil.wire.keys import KeyCounts
from veil.wire.messages import (
    CLOSE_POLICY,
    CLOSE_REPLACED,
    Ack,
    ClientFrame,
    Deliver,
    KeysLow,
    SendFailed,
    SendFrame,
    SendRequest,
    Sent,
    ServerFrame,
)

log = logging.getLogger("veil.server.websocket")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ClientFrame)

MAX_PENDING: Final = 64
"""Acks and sends of one connection being processed at once."""
RECHECK_TICK_S: Final = 1.0
CLOSE_INTERNAL: Final = 1011
CLOSE_GRACE_S: Final = 10.0
"""After the server closes a connection for an internal failure, how long the peer has to
answer the close before the handler stops waiting for it."""

KeyCountsFn = Callable[[Caller], Awaitable[KeyCounts]]
Login = Callable[[Scope], Awaitable[Caller]]
"""Who is connecting (rate limits included); raises :class:`errors.ApiError` to refuse."""
SendLimit = Callable[[Caller], float]
"""Seconds the device must wait before its next send (0: go), e.g. a per-account limit."""
_json = msgspec.json.Encoder()


async def _refuse(scope: Scope, send: Send, exc: errors.ApiError) -> None:
    """Refuse a handshake: a 429 as an HTTP answer with its JSON body and ``Retry-After``
    (where the server can send one), anything else as a close (HTTP 403)."""
    if exc.status == 429 and "websocket.http.response" in scope.get("extensions", {}):
        body = _json.encode(ErrorBody(exc.code, exc.message, exc.details))
        retry = str(max(1, round(float(str(exc.details.get("retry_after_s", 1))))))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", retry.encode()),
        ]
        await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": CLOSE_POLICY})


class WebSocketHub:
    """Accepts device connections (an ASGI app) and runs them."""

    def __init__(
        self,
        repo: Repository,
        notifier: Notifier,
        metrics: Metrics,
        *,
        messages: MessageService,
        key_counts: KeyCountsFn,
        login: Login,
        send_limit: SendLimit,
    ) -> None:
        self.repo = repo
        self.notifier = notifier
        self.metrics = metrics
        self.messages = messages
        self.key_counts = key_counts
        self.login = login
        self.send_limit = send_limit
        self._connections: dict[DeviceKey, _Connection] = {}
        self._recheck: asyncio.TimerHandle | None = None
        self._recheck_order: list[_Connection] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI WebSocket endpoint."""
        if scope["type"] != "websocket":  # pragma: no cover - the router sends only these
            return
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            who = await self.login(scope)
        except errors.ApiError as exc:
            await _refuse(scope, send, exc)
            return
        await send({"type": "websocket.accept"})
        # The server keeps the scope for the connection's life; its header list (about
        # 1 KiB) is not needed after the login, so an idle connection does not hold it.
        scope["headers"] = []
        conn = _Connection(self, who, send)
        previous = self._connections.get(conn.key)
        self._connections[conn.key] = conn
        if self._recheck is None:
            self._recheck = asyncio.get_running_loop().call_later(RECHECK_TICK_S, self._tick)
        if previous is not None:
            previous.close_soon(CLOSE_REPLACED)
        try:
            await conn.run(receive)
        finally:
            if self._connections.get(conn.key) is conn:
                del self._connections[conn.key]

    @property
    def connected(self) -> int:
        """Devices connected to this process."""
        return len(self._connections)

    def _tick(self) -> None:
        """Poke a slice of the connections, so each re-reads its queue about every
        :data:`IDLE_RECHECK_S` even without a wake-up (a lost NATS message, say): one timer
        for the hub rather than one per idle connection."""
        if not self._connections:
            self._recheck = None
            self._recheck_order = []
            return
        if not self._recheck_order:
            self._recheck_order = list(self._connections.values())
        share = max(1, math.ceil(len(self._connections) * RECHECK_TICK_S / IDLE_RECHECK_S))
        batch = self._recheck_order[-share:]
        del self._recheck_order[-share:]
        for conn in batch:
            if self._connections.get(conn.key) is conn:
                conn.poke()
        self._recheck = asyncio.get_running_loop().call_later(RECHECK_TICK_S, self._tick)


class _Connection:
    """One device's live connection."""

    __slots__ = (
        "_closed",
        "_failed",
        "_give_up",
        "_pending",
        "_send",
        "_stream",
        "_task",
        "_unacked",
        "hub",
        "key",
        "who",
    )

    def __init__(self, hub: WebSocketHub, who: Caller, send: Send) -> None:
        self.hub = hub
        self.who = who
        self.key: DeviceKey = (who.account_id, who.device_id)
        self._send = send
        self._pending: set[asyncio.Task[None]] = set()
        self._unacked: set[int] = set()  # pushed on this connection, for counting acks once
        self._closed = False
        self._failed = False
        self._task: asyncio.Task[object] | None = None
        self._give_up: asyncio.TimerHandle | None = None
        self._stream: DeviceStream

    async def run(self, receive: Receive) -> None:
        hub = self.hub
        self._task = asyncio.current_task()
        stream = self._stream = DeviceStream(hub.repo, self.key, self.push)
        hub.notifier.register(self.key, self)
        # Before the backlog: a device that only fetches what is waiting and leaves
        # (``veil receive``) still learns that it must upload prekeys.
        with contextlib.suppress(Exception):
            await self._tell_keys_low()
        stream.start(self._push_failed)
        try:
            await self._read(receive, stream)
        except asyncio.CancelledError:
            if not self._failed:  # a shutdown, not our own give-up on a dead peer
                raise
        finally:
            if self._give_up is not None:
                self._give_up.cancel()
            stream.stop()
            hub.notifier.unregister(self.key, self)
            # Acks and sends already read are finished (an ack the device sent before it
            # left still deletes; a send is stored and only its answer is lost -- the device
            # retries with its idempotency key). A server shutdown cancels them instead.
            try:
                await asyncio.gather(*self._pending, return_exceptions=True)
            except asyncio.CancelledError:
                for task in list(self._pending):
                    task.cancel()
                raise

    async def _read(self, receive: Receive, stream: DeviceStream) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            try:
                if data is None:
                    raise msgspec.DecodeError("text frames are not part of the protocol")
                frame = _decoder.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                await self.close(CLOSE_POLICY)
                return
            if len(self._pending) >= MAX_PENDING:
                await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            if isinstance(frame, Ack):
                self._spawn(self._ack(stream, frame.envelope_ids))
            else:
                self._spawn(self._send_message(frame))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _ack(self, stream: DeviceStream, ids: list[int]) -> None:
        await stream.ack(ids)
        acked = self._unacked.intersection(ids)
        self._unacked.difference_update(acked)
        self.hub.metrics.envelopes_acked(len(acked))

    async def _send_message(self, frame: SendFrame) -> None:
        answer: ServerFrame
        try:
            wait = self.hub.send_limit(self.who)
            if wait:
                raise errors.rate_limited(round(wait, 3))
            request = SendRequest(frame.envelopes, frame.idempotency_key)
            response = await self.hub.messages.send(self.who, frame.recipient, request)
            answer = Sent(frame.request_id, response)
        except errors.ApiError as exc:
            answer = SendFailed(
                frame.request_id, exc.status, ErrorBody(exc.code, exc.message, exc.details)
            )
        except Exception as exc:  # never leak details of an unexpected failure
            log.error("internal error in a WebSocket send: %s", type(exc).__name__)
            error = ErrorBody("internal", "internal server error")
            answer = SendFailed(frame.request_id, 500, error)
        with contextlib.suppress(Exception):  # the device left; it retries the send
            await self.push(answer)

    async def push(self, frame: ServerFrame) -> None:
        """Send one frame to the device."""
        await self._send({"type": "websocket.send", "bytes": _encoder.encode(frame)})
        if type(frame) is Deliver:
            self._unacked.update(e.envelope_id for e in frame.envelopes)
            self.hub.metrics.envelopes_delivered(e.server_ms for e in frame.envelopes)

    # --- Listener (the notifier's view of this connection) ---------------------------------
    def poke(self) -> None:
        """Something may have been stored for the device."""
        self._stream.poke()

    def offer(self, envelope: Envelope) -> None:
        """An envelope was just stored for the device."""
        self._stream.offer(envelope)

    def keys_low(self) -> None:
        """Tell the device its prekeys run low (if it does: the counts are checked)."""
        if not self._closed:
            self._spawn(self._tell_keys_low())

    async def _tell_keys_low(self) -> None:
        counts = await self.hub.key_counts(self.who)
        if counts.low:
            with contextlib.suppress(Exception):  # the device left; told on its next visit
                await self.push(KeysLow(counts.one_time_prekeys, counts.kyber_prekeys))

    async def close(self, code: int) -> None:
        """Close the connection (once); the peer's answer ends the handler."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code})

    def close_soon(self, code: int) -> None:
        """Close from outside the connection's tasks (it was replaced)."""
        self._spawn(self.close(code))

    def _push_failed(self, exc: BaseException) -> None:
        if isinstance(exc, OSError):  # the peer is gone; the read loop sees it too
            log.debug("delivery stopped: %s", type(exc).__name__)
        else:
            log.error("delivery failed: %s", type(exc).__name__)
        self._failed = True
        self._spawn(self.close(CLOSE_INTERNAL))
        task = self._task
        if task is not None:  # a peer that never answers the close is given up on
            self._give_up = asyncio.get_running_loop().call_later(CLOSE_GRACE_S, task.cancel)
