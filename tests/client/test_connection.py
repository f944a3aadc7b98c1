"""Connection: backoff, reconnection across a server restart, giving up on bad credentials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from veil.client.backoff import Backoff
from veil.client.connection import Connection
from veil.client.credentials import Credentials
from veil.client.errors import ServerError, TransportError
from veil.client.http import HttpApi
from veil.client.socket import DeviceSocket, Frame
from veil.wire.messages import Deliver, KeysLow, QueueEmpty, SendRequest

from .conftest import LiveServer, register

FAST = Backoff(initial_s=0.05, max_s=0.2)


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    backoff = Backoff()
    assert [backoff.delay(n, lambda: 0.0) for n in range(8)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
    ]  # fmt: skip
    assert backoff.delay(0, lambda: 0.999) == pytest.approx(0.25, rel=0.01)
    assert backoff.delay(10_000, lambda: 0.0) == 30.0
    with pytest.raises(ValueError):
        Backoff(initial_s=0)


async def test_retries_with_backoff_then_gives_up_on_auth() -> None:
    slept: list[float] = []
    attempts = 0

    async def connect() -> DeviceSocket:
        nonlocal attempts
        attempts += 1
        if attempts <= 4:
            raise TransportError("http://h", "connection refused")
        if attempts == 5:
            raise ServerError(429, "rate_limited", "slow down", {"retry_after_s": 9.5})
        raise ServerError(403, "unauthorized", "refused")

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    connection = Connection(
        "http://h", Credentials("a" * 32, 1, "x"), connect=connect, sleep=sleep, random=lambda: 0.0
    )
    with pytest.raises(ServerError) as stopped:
        async for _ in connection.frames():
            pass
    assert stopped.value.status == 403 and connection.error is stopped.value
    assert slept == [0.5, 1.0, 2.0, 4.0, 9.5]  # the 429's wait beats the backoff's 8 s
    with pytest.raises(ServerError):
        await connection.send("b" * 32, [])
    await connection.close()


async def _next(frames: AsyncIterator[Frame], timeout: float = 15) -> Frame:
    while True:
        frame = await asyncio.wait_for(anext(frames), timeout)
        if not isinstance(frame, KeysLow):
            return frame


async def test_reconnects_after_a_server_restart(live: LiveServer) -> None:
    alice, bob = await register(live.base, "alice"), await register(live.base, "bob")
    async with (
        Connection(live.base, bob.credentials, backoff=FAST) as conn,
        HttpApi(live.base, alice.credentials) as api,
    ):
        frames = conn.frames()
        assert isinstance(await _next(frames), QueueEmpty)
        await api.send(bob.account_id, SendRequest([bob.envelope(b"before")]))
        first = await _next(frames)
        assert isinstance(first, Deliver) and first.envelopes[0].content == b"before"
        await conn.ack([first.envelopes[0].envelope_id])

        await live.stop()
        with pytest.raises(TransportError):
            await conn.send(alice.account_id, [alice.envelope(b"x")], wait_s=0.3)
        await live.start()  # same port, same database

        assert isinstance(await _next(frames), QueueEmpty)  # the new socket's backlog
        assert conn.connects == 2 and conn.connected
        await api.send(bob.account_id, SendRequest([bob.envelope(b"after")]))
        second = await _next(frames)
        assert isinstance(second, Deliver) and second.envelopes[0].content == b"after"
        answer = await conn.send(alice.account_id, [alice.envelope(b"reply")])
        assert answer.envelopes[0].account_id == alice.account_id


async def test_send_waits_for_the_next_connection(live: LiveServer) -> None:
    alice, bob = await register(live.base, "alice"), await register(live.base, "bob")
    async with Connection(live.base, alice.credentials, backoff=FAST) as conn:
        frames = conn.frames()
        assert isinstance(await _next(frames), QueueEmpty)
        await live.stop()
        for _ in range(100):
            if not conn.connected:
                break
            await asyncio.sleep(0.02)
        sending = asyncio.create_task(
            conn.send(bob.account_id, [bob.envelope(b"queued")], "key-1", wait_s=15)
        )
        await asyncio.sleep(0.3)
        assert not sending.done()
        await live.start()
        answer = await asyncio.wait_for(sending, 15)
        assert not answer.duplicate and conn.connects == 2


async def test_bad_credentials_stop_the_connection(live: LiveServer) -> None:
    alice = await register(live.base, "alice")
    wrong = Credentials(alice.account_id, 1, "wrong-credential")
    async with Connection(live.base, wrong, backoff=FAST) as conn:
        with pytest.raises(ServerError) as stopped:
            await asyncio.wait_for(anext(conn.frames()), 10)
        assert stopped.value.is_auth and "wrong-credential" not in str(stopped.value)
        assert conn.connects == 0 and not conn.connected


async def test_close_ends_frames(live: LiveServer) -> None:
    alice = await register(live.base, "alice")
    conn = Connection(live.base, alice.credentials, backoff=FAST)
    frames = conn.frames()
    assert isinstance(await _next(frames), QueueEmpty)
    await conn.close()
    assert [f async for f in frames] == []
    assert conn.error is None and not conn.connected
    with pytest.raises(TransportError):
        await conn.send(alice.account_id, [])


async def test_a_replaced_connection_gives_up(live: LiveServer) -> None:
    alice = await register(live.base, "alice")
    async with Connection(live.base, alice.credentials, backoff=FAST) as first:
        frames = first.frames()
        assert isinstance(await _next(frames), QueueEmpty)
        async with Connection(live.base, alice.credentials, backoff=FAST) as second:
            with pytest.raises(TransportError) as replaced:
                await _next(frames)
            assert replaced.value.close_code == 4000 and first.error is replaced.value
            assert isinstance(await _next(second.frames()), QueueEmpty)
            assert second.connected and first.connects == 1
