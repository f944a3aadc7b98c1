"""DeviceSocket against a real server: send -> Sent, delivery and acks, refusals, closes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from veil.client.credentials import Credentials
from veil.client.errors import ServerError, TransportError
from veil.client.socket import DeviceSocket, Frame, websocket_url
from veil.wire.messages import Deliver, EnvelopeOut, KeysLow, QueueEmpty

from .conftest import LiveServer, register


async def next_frame(frames: AsyncIterator[Frame], timeout: float = 10) -> Frame:
    """The next frame other than a "prekeys low" notice."""
    while True:
        frame = await asyncio.wait_for(anext(frames), timeout)
        if not isinstance(frame, KeysLow):
            return frame


async def deliveries(
    frames: AsyncIterator[Frame], socket: DeviceSocket, n: int
) -> list[EnvelopeOut]:
    """``n`` envelopes, acked as they come."""
    got: list[EnvelopeOut] = []
    while len(got) < n:
        frame = await next_frame(frames)
        if isinstance(frame, Deliver):
            got.extend(frame.envelopes)
            await socket.ack(e.envelope_id for e in frame.envelopes)
    return got


def test_websocket_url() -> None:
    assert websocket_url("http://h:1/") == "ws://h:1/v1/websocket"
    assert websocket_url("https://veil.example") == "wss://veil.example/v1/websocket"
    with pytest.raises(ValueError, match="must start with"):
        websocket_url("ftp://h")


async def test_send_deliver_ack(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    alice, bob = await register(live.base, "alice"), await register(live.base, "bob")
    async with (
        await DeviceSocket.connect(live.base, alice.credentials) as a,
        await DeviceSocket.connect(live.base, bob.credentials) as b,
    ):
        bob_frames = b.frames()
        assert isinstance(await next_frame(bob_frames), QueueEmpty)
        answers = [await a.send(bob.account_id, [bob.envelope(b"m%d" % i)]) for i in range(5)]
        assert all(not r.duplicate and r.envelopes[0].account_id == bob.account_id for r in answers)
        got = await deliveries(bob_frames, b, 5)
        assert [e.content for e in got] == [b"m%d" % i for i in range(5)]
        assert {(e.sender_account_id, e.sender_device_id) for e in got} == {(alice.account_id, 1)}
        again = await a.send(bob.account_id, [bob.envelope(b"x")], idempotency_key="same")
        dup = await a.send(bob.account_id, [bob.envelope(b"x")], idempotency_key="same")
        assert dup.duplicate and dup.envelopes == again.envelopes
        await deliveries(bob_frames, b, 1)
        for _ in range(100):
            if await live.repo.queue_depth(bob.account_id, 1) == 0:
                break
            await asyncio.sleep(0.05)
        assert await live.repo.queue_depth(bob.account_id, 1) == 0
    assert a.closed and b.closed and a.error is None
    assert [f async for f in b.frames()] == []  # ended by close(): no error
    for device in (alice, bob):  # websockets logs request headers at DEBUG: not ours
        assert device.credentials.credential not in caplog.text
        assert device.credentials.authorization.split()[1] not in caplog.text


async def test_send_failed_is_a_server_error(live: LiveServer) -> None:
    alice, bob = await register(live.base, "alice"), await register(live.base, "bob")
    async with await DeviceSocket.connect(live.base, alice.credentials) as a:
        with pytest.raises(ServerError) as refused:
            await a.send(bob.account_id, [bob.envelope(b"x", device_id=2)])
        error = refused.value
        assert (error.status, error.code) == (409, "device_mismatch")
        [mismatch] = error.details["mismatches"]
        assert mismatch["account_id"] == bob.account_id
        assert (mismatch["missing"], mismatch["extra"]) == ([1], [2])
        assert "mismatches=" in str(error)
        # The socket is still usable after a refusal.
        assert (await a.send(bob.account_id, [bob.envelope(b"ok")])).envelopes


async def test_bad_credentials_refuse_the_handshake(live: LiveServer) -> None:
    alice = await register(live.base, "alice")
    wrong = Credentials(alice.account_id, 1, "not-the-credential")
    with pytest.raises(ServerError) as refused:
        await DeviceSocket.connect(live.base, wrong)
    assert refused.value.is_auth
    assert "not-the-credential" not in str(refused.value)


async def test_server_gone_ends_frames_and_sends(live: LiveServer) -> None:
    alice, bob = await register(live.base, "alice"), await register(live.base, "bob")
    socket = await DeviceSocket.connect(live.base, alice.credentials)
    frames = socket.frames()
    assert isinstance(await next_frame(frames), QueueEmpty)
    await live.stop()
    with pytest.raises(TransportError) as closed:
        await next_frame(frames)
    assert closed.value.url == live.base
    with pytest.raises(TransportError):
        await socket.send(bob.account_id, [bob.envelope(b"x")])
    await socket.close()


async def test_refused_socket_connection() -> None:
    creds = Credentials("c" * 32, 1, "secret-credential")
    with pytest.raises(TransportError) as refused:
        await DeviceSocket.connect("http://127.0.0.1:9", creds, open_timeout_s=5)
    assert "secret" not in str(refused.value)
    assert str(refused.value).startswith("http://127.0.0.1:9: ")
