"""The device WebSocket (``/v1/websocket``): authenticated at the handshake, one per device.

Frames are MessagePack (:mod:`veil.wire.messages`): the server pushes :class:`Deliver` and
:class:`QueueEmpty`; the device sends :class:`Ack`. A second connection of the same device
replaces the first (closed with :data:`CLOSE_REPLACED`). A malformed frame closes the
connection with a policy-violation code; nothing is acked by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from starlette.websockets import WebSocket

from veil.server import errors
from veil.server.accounts import AccountService
from veil.server.delivery import DeviceKey, DeviceStream, Notifier
from veil.server.metrics import Metrics
from veil.server.repository import Repository
from veil.wire.messages import CLOSE_POLICY, CLOSE_REPLACED, Ack, Deliver, ServerFrame

log = logging.getLogger("veil.server.websocket")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Ack)


class WebSocketHub:
    """Accepts device connections and runs their delivery streams."""

    def __init__(
        self,
        accounts: AccountService,
        repo: Repository,
        notifier: Notifier,
        metrics: Metrics | None = None,
    ) -> None:
        self.accounts = accounts
        self.repo = repo
        self.notifier = notifier
        self.metrics = metrics
        self._sockets: dict[DeviceKey, WebSocket] = {}

    async def endpoint(self, ws: WebSocket) -> None:
        """The ASGI WebSocket endpoint."""
        try:
            who = await self.accounts.authenticate(ws.headers.get("authorization"))
        except errors.ApiError:
            await ws.close(code=CLOSE_POLICY)
            return
        await ws.accept()
        key = (who.account_id, who.device_id)
        previous = self._sockets.get(key)
        self._sockets[key] = ws
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous.close(code=CLOSE_REPLACED)
        wake = self.notifier.register(key)

        unacked: set[int] = set()  # pushed on this connection, for counting acks once

        async def send(frame: ServerFrame) -> None:
            await ws.send_bytes(_encoder.encode(frame))
            if self.metrics is not None and isinstance(frame, Deliver):
                unacked.update(e.envelope_id for e in frame.envelopes)
                self.metrics.envelopes_delivered(e.server_ms for e in frame.envelopes)

        stream = DeviceStream(self.repo, key, wake, send)
        pusher = asyncio.create_task(stream.run())
        try:
            await self._receive_acks(ws, stream, pusher, unacked)
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher
            self.notifier.unregister(key, wake)
            if self._sockets.get(key) is ws:
                del self._sockets[key]

    async def _receive_acks(
        self, ws: WebSocket, stream: DeviceStream, pusher: asyncio.Task[None], unacked: set[int]
    ) -> None:
        while True:
            receive = asyncio.ensure_future(ws.receive())
            done, _ = await asyncio.wait({receive, pusher}, return_when=asyncio.FIRST_COMPLETED)
            if pusher in done:
                receive.cancel()
                if not pusher.cancelled() and pusher.exception() is not None:
                    log.error("delivery failed: %s", type(pusher.exception()).__name__)
                with contextlib.suppress(Exception):
                    await ws.close(code=1011)
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            try:
                if data is None:
                    raise msgspec.DecodeError("text frames are not part of the protocol")
                ack = _decoder.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                with contextlib.suppress(Exception):
                    await ws.close(code=CLOSE_POLICY)
                return
            await stream.ack(ack.envelope_ids)
            if self.metrics is not None:
                acked = unacked.intersection(ack.envelope_ids)
                unacked.difference_update(acked)
                self.metrics.envelopes_acked(len(acked))

    @property
    def connected(self) -> int:
        """Devices connected to this process."""
        return len(self._sockets)
