"""Store-and-forward end to end: HTTP sends into a real uvicorn server, WebSocket delivery out.

Runs on SQLite and PostgreSQL (the ``repo`` fixture), with a real server on a loopback port and
a real WebSocket client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from veil.core.crypto.x25519 import PrivateKey
from veil.wire.messages import Ack, Deliver, QueueEmpty

from .conftest import Server, next_frame

_encoder = msgspec.msgpack.Encoder()


@dataclass
class Device:
    account_id: str
    device_id: int
    credential: str
    registration_id: int

    @property
    def auth(self) -> dict[str, str]:
        raw = f"{self.account_id}.{self.device_id}:{self.credential}".encode()
        return {"authorization": "Basic " + base64.b64encode(raw).decode()}


async def register(server: Server, name: str) -> Device:
    key = base64.b64encode(PrivateKey.generate(os.urandom).public_key.serialize()).decode()
    r = await server.http.post(
        "/v1/accounts", json={"username": name, "identity_key": key, "registration_id": 77}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return Device(body["account_id"], 1, body["credential"], 77)


async def send(
    server: Server, sender: Device, to: Device, content: bytes, **extra: Any
) -> httpx.Response:
    envelope = {
        "device_id": to.device_id,
        "registration_id": to.registration_id,
        "type": 2,
        "content": base64.b64encode(content).decode(),
    }
    return await server.http.put(
        f"/v1/messages/{to.account_id}",
        json={"envelopes": [envelope], **extra},
        headers=sender.auth,
    )


@contextlib.asynccontextmanager
async def websocket(server: Server, device: Device) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws_url, additional_headers=device.auth, open_timeout=10) as ws:
        yield ws


async def frames_until_empty(ws: ClientConnection, timeout: float = 10) -> list[Any]:
    """Envelopes received until the server says the queue is empty."""
    out: list[Any] = []
    while True:
        frame = await next_frame(ws, timeout)
        if isinstance(frame, QueueEmpty):
            return out
        out.extend(frame.envelopes)


async def test_send_then_deliver_then_ack(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    r = await send(server, alice, bob, b"hello bob")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["duplicate"] is False and len(body["envelopes"]) == 1
    async with websocket(server, bob) as ws:
        [env] = await frames_until_empty(ws)
        assert env.content == b"hello bob"
        assert (env.sender_account_id, env.sender_device_id) == (alice.account_id, 1)
        assert env.envelope_id == body["envelopes"][0]["envelope_id"]
        await ws.send(_encoder.encode(Ack([env.envelope_id])))
        for _ in range(100):
            if await server.repo.queue_depth(bob.account_id, 1) == 0:
                break
            await asyncio.sleep(0.02)
        assert await server.repo.queue_depth(bob.account_id, 1) == 0


async def test_live_push_while_connected(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    async with websocket(server, bob) as ws:
        assert await frames_until_empty(ws) == []
        for i in range(5):
            assert (await send(server, alice, bob, f"m{i}".encode())).status_code == 200
        got: list[bytes] = []
        while len(got) < 5:
            frame = await next_frame(ws, 10)
            if isinstance(frame, Deliver):
                got.extend(e.content for e in frame.envelopes)
        assert got == [f"m{i}".encode() for i in range(5)]


async def test_offline_device_gets_everything_in_order_and_unacked_again(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    for i in range(40):
        assert (await send(server, alice, bob, i.to_bytes(2, "big"))).status_code == 200
    async with websocket(server, bob) as ws:
        first = await frames_until_empty(ws)
        assert [int.from_bytes(e.content, "big") for e in first] == list(range(40))
        await ws.send(_encoder.encode(Ack([e.envelope_id for e in first[:30]])))
        await asyncio.sleep(0.3)
    async with websocket(server, bob) as ws:
        again = await frames_until_empty(ws)
        assert [int.from_bytes(e.content, "big") for e in again] == list(range(30, 40))


async def test_device_mismatch_and_idempotency(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    stale = Device(bob.account_id, 1, bob.credential, 999)
    r = await send(server, alice, stale, b"x")
    assert r.status_code == 409
    assert r.json()["details"]["mismatches"] == [
        {"account_id": bob.account_id, "missing": [], "extra": [], "stale": [1]}
    ]
    wrong = Device(bob.account_id, 5, bob.credential, 77)
    r = await send(server, alice, wrong, b"x")
    assert r.status_code == 409
    assert r.json()["details"]["mismatches"][0]["missing"] == [1]
    first = await send(server, alice, bob, b"once", idempotency_key="k-1")
    second = await send(server, alice, bob, b"once", idempotency_key="k-1")
    assert first.status_code == second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["envelopes"] == first.json()["envelopes"]
    async with websocket(server, bob) as ws:
        assert [e.content for e in await frames_until_empty(ws)] == [b"once"]


async def test_bad_credentials_refused_at_the_handshake(server: Server) -> None:
    alice = await register(server, "alice")
    forged = Device(alice.account_id, 1, "not-the-credential-at-all-000000", 77)
    with pytest.raises(InvalidStatus):
        async with websocket(server, forged):
            pass
    with pytest.raises(InvalidStatus):
        async with connect(server.ws_url, open_timeout=10):
            pass


async def test_acks_cannot_touch_another_devices_queue(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    await send(server, alice, bob, b"for bob")
    [stored] = await server.repo.fetch_envelopes(bob.account_id, 1, 0, 10)
    async with websocket(server, alice) as ws:
        await frames_until_empty(ws)
        await ws.send(_encoder.encode(Ack([stored.envelope_id])))
        await asyncio.sleep(0.3)
    assert await server.repo.queue_depth(bob.account_id, 1) == 1


async def test_second_connection_replaces_the_first(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    async with websocket(server, bob) as first:
        await frames_until_empty(first)
        async with websocket(server, bob) as second:
            await frames_until_empty(second)
            with pytest.raises(ConnectionClosed) as info:
                await next_frame(first, 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 4000
            await send(server, alice, bob, b"to the new one")
            frame = await next_frame(second, 10)
            assert isinstance(frame, Deliver) and frame.envelopes[0].content == b"to the new one"


async def test_malformed_frame_closes_without_acking(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    await send(server, alice, bob, b"keep me")
    async with websocket(server, bob) as ws:
        await frames_until_empty(ws)
        await ws.send(b"\xc1garbage")
        with pytest.raises(ConnectionClosed) as info:
            await next_frame(ws, 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert await server.repo.queue_depth(bob.account_id, 1) == 1


async def test_unacked_window_bounds_what_is_in_flight(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    for i in range(300):
        assert (await send(server, alice, bob, i.to_bytes(2, "big"))).status_code == 200
    async with websocket(server, bob) as ws:
        got: list[Any] = []
        with contextlib.suppress(TimeoutError):
            while True:
                frame = await next_frame(ws, 1.0)
                if isinstance(frame, Deliver):
                    got.extend(frame.envelopes)
        assert len(got) == 256  # the window: no more until something is acked
        await ws.send(_encoder.encode(Ack([e.envelope_id for e in got[:100]])))
        rest = await frames_until_empty(ws)
        assert [int.from_bytes(e.content, "big") for e in rest] == list(range(256, 300))


async def test_two_envelopes_for_one_device_is_a_400(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    envelope = {"device_id": 1, "registration_id": 77, "type": 2, "content": "eA=="}
    r = await server.http.put(
        f"/v1/messages/{bob.account_id}",
        json={"envelopes": [envelope, envelope]},
        headers=alice.auth,
    )
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    assert await server.repo.queue_depth(bob.account_id, 1) == 0
