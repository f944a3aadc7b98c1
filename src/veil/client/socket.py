"""The device WebSocket (``/v1/websocket``): pushed envelopes in, acks and sends out.

Frames are MessagePack :mod:`veil.wire.messages` values. One reader task decodes what the
server pushes: answers to sends (:class:`~veil.wire.messages.Sent` /
:class:`~veil.wire.messages.SendFailed`) resolve the matching :meth:`DeviceSocket.send`; the
rest (:class:`~veil.wire.messages.Deliver`, :class:`~veil.wire.messages.QueueEmpty`,
:class:`~veil.wire.messages.KeysLow`) come out of :meth:`DeviceSocket.frames` in order. The
server keeps at most 256 envelopes unacknowledged per connection, which bounds the frames
waiting here.

The handshake carries the device's HTTP Basic credential; websockets' debug log (which would
print request headers) is silenced for these connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Final

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from veil.client.closing import AsyncClosing
from veil.client.credentials import Credentials
from veil.client.errors import ClientError, ProtocolError, ServerError, TransportError
from veil.client.http import describe
from veil.wire.messages import (
    CLOSE_POLICY,
    CLOSE_REPLACED,
    Ack,
    Deliver,
    KeysLow,
    OutgoingEnvelopeIn,
    QueueEmpty,
    SendFailed,
    SendFrame,
    SendResponse,
    Sent,
    ServerFrame,
)

Frame = Deliver | QueueEmpty | KeysLow
"""What :meth:`DeviceSocket.frames` yields."""

WEBSOCKET_PATH: Final = "/v1/websocket"
MAX_FRAME: Final = 32 * 1024 * 1024
"""Largest frame accepted (the server pushes at most 64 envelopes of <= 256 KiB at once)."""
MAX_ACK: Final = 1024
"""Envelope ids per ack frame (the wire limit)."""
SEND_TIMEOUT_S: Final = 30.0
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ServerFrame)
_END: Final = object()


class _NoDebug(logging.LoggerAdapter[logging.Logger]):
    """A logger that is never enabled for DEBUG (websockets dumps headers there)."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_LOGGER: Final = _NoDebug(logging.getLogger("websockets.client"), {})


def drop_queued(queue: asyncio.Queue[object], end: object) -> None:
    """Empty ``queue`` but for the ``end`` marker."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(end)


def websocket_url(base_url: str) -> str:
    """``<base>/v1/websocket`` with ``http`` -> ``ws`` and ``https`` -> ``wss``."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    elif not base.startswith(("ws://", "wss://")):
        raise ValueError("the server URL must start with http://, https://, ws:// or wss://")
    return base + WEBSOCKET_PATH


def _refused(exc: InvalidStatus) -> ServerError:
    """The server answered the handshake with an HTTP status instead of switching."""
    response = exc.response
    status = response.status_code
    error = ServerError.from_body(
        status,
        bytes(response.body or b""),
        response.reason_phrase,
        response.headers.get("retry-after"),
    )
    if error.code == f"http_{status}" and status in (401, 403):
        return ServerError(
            status,
            "unauthorized",
            f"{status}: the server refused this device's credentials (WebSocket handshake)",
        )
    return error


def _close_reason(code: int | None) -> str:
    if code == CLOSE_REPLACED:
        return "replaced by a newer connection of the same device"
    if code == CLOSE_POLICY:
        return "closed by the server (policy violation)"
    if code is None or code == 1006:
        return "connection lost"
    return f"connection closed (code {code})"


class DeviceSocket(AsyncClosing):
    """One live device connection; make it with :meth:`connect` (an async context manager).

    After the socket ends, :attr:`error` says why (``None`` if :meth:`close` ended it).
    """

    def __init__(self, ws: ClientConnection, base_url: str) -> None:
        self._ws = ws
        self._base_url = base_url
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Sent | SendFailed]] = {}
        self._frames: asyncio.Queue[object] = asyncio.Queue()
        self._closing = False
        self._ended = False
        self.error: ClientError | None = None
        self._reader = asyncio.create_task(self._read(), name="veil-device-socket")

    @classmethod
    async def connect(
        cls, base_url: str, credentials: Credentials, *, open_timeout_s: float = 10.0
    ) -> DeviceSocket:
        """Open the device's WebSocket; :class:`ServerError` if the handshake is refused
        (401/403: bad credentials; 429 with ``retry_after_s``), else
        :class:`TransportError` if the server cannot be reached."""
        url = websocket_url(base_url)
        try:
            ws = await connect(
                url,
                additional_headers={"authorization": credentials.authorization},
                compression=None,
                open_timeout=open_timeout_s,
                max_size=MAX_FRAME,
                logger=_LOGGER,
            )
        except InvalidStatus as exc:
            raise _refused(exc) from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise TransportError(base_url, describe(exc)) from None
        return cls(ws, base_url)

    def __repr__(self) -> str:
        state = "closed" if self._ended else "open"
        return f"DeviceSocket({self._base_url!r}, {state})"

    @property
    def closed(self) -> bool:
        """True once the connection has ended (for any reason)."""
        return self._ended

    # --- reading --------------------------------------------------------------------------

    async def _read(self) -> None:
        error: ClientError | None = None
        try:
            async for data in self._ws:
                if isinstance(data, str):
                    error = ProtocolError("the server sent a text frame")
                    break
                try:
                    frame = _decoder.decode(data)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    error = ProtocolError(f"invalid frame from the server: {exc}")
                    break
                if isinstance(frame, Sent | SendFailed):
                    waiter = self._pending.pop(frame.request_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
                else:
                    self._frames.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            if error is None and not self._closing:
                code = self._ws.close_code
                error = TransportError(self._base_url, _close_reason(code), close_code=code)
            self._finish(error)
        if isinstance(error, ProtocolError):
            await self._ws.close(CLOSE_POLICY, "invalid frame")

    def _finish(self, error: ClientError | None) -> None:
        self._ended = True
        self.error = error
        failure = error or TransportError(self._base_url, "socket closed")
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(failure)
        self._pending.clear()
        self._frames.put_nowait(_END)

    async def frames(self) -> AsyncIterator[Frame]:
        """Pushed frames in order; ends after :meth:`close`, raises :attr:`error` (a
        :class:`TransportError` or :class:`ProtocolError`) if the connection broke."""
        while True:
            item = await self._frames.get()
            if item is _END:
                self._frames.put_nowait(_END)  # later calls end too
                if self.error is not None:
                    raise self.error
                return
            assert isinstance(item, Deliver | QueueEmpty | KeysLow)
            yield item

    # --- writing --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended:
            raise self.error or TransportError(self._base_url, "socket closed")

    async def _write(self, data: bytes) -> None:
        self._check_open()
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            raise TransportError(self._base_url, _close_reason(code), close_code=code) from None

    async def ack(self, envelope_ids: Iterable[int]) -> None:
        """Tell the server these envelopes are processed (it deletes them).

        Only envelopes delivered on this connection count; others come again later.
        """
        ids = list(envelope_ids)
        for start in range(0, len(ids), MAX_ACK):
            await self._write(_encoder.encode(Ack(ids[start : start + MAX_ACK])))

    async def send(
        self,
        recipient: str,
        envelopes: Sequence[OutgoingEnvelopeIn],
        idempotency_key: str | None = None,
        *,
        timeout_s: float = SEND_TIMEOUT_S,
    ) -> SendResponse:
        """Send one message (a copy per device) and wait until the server stored it.

        :class:`ServerError` if refused (409 ``device_mismatch`` lists the devices in
        ``details["mismatches"]``), :class:`TransportError` if the socket closes or no
        answer comes in ``timeout_s`` -- the message may then have been stored: retry with
        the same ``idempotency_key``.
        """
        self._check_open()
        request_id = next(self._ids)
        waiter: asyncio.Future[Sent | SendFailed] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        try:
            frame = SendFrame(request_id, recipient, list(envelopes), idempotency_key)
            await self._write(_encoder.encode(frame))
            try:
                answer = await asyncio.wait_for(waiter, timeout_s)
            except TimeoutError:
                reason = f"no answer to a send in {timeout_s:g} s"
                raise TransportError(self._base_url, reason) from None
        finally:
            self._pending.pop(request_id, None)
        if isinstance(answer, SendFailed):
            raise ServerError.from_error_body(answer.status, answer.error)
        return answer.response

    async def close(self) -> None:
        """Close the connection (idempotent); :meth:`frames` then ends at once (frames not
        yet taken are dropped: their envelopes, unacked, come again on the next connection)."""
        self._closing = True
        with contextlib.suppress(WebSocketException, OSError):
            await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
        drop_queued(self._frames, _END)

    async def wait_closed(self) -> ClientError | None:
        """Wait until the connection ends; the reason (``None`` after :meth:`close`)."""
        await asyncio.shield(self._reader)
        return self.error
