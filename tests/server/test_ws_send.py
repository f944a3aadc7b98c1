"""Sending over the device WebSocket, and the "prekeys low" push, against a real server.

A send frame goes through the same checks as ``PUT /v1/messages`` and is answered with the
same facts (ids, server time, duplicate flag, or the refusal with its status and error body).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from veil.server.keys import LOW_WATERMARK
from veil.wire.messages import (
    Ack,
    Deliver,
    KeysLow,
    OutgoingEnvelopeIn,
    QueueEmpty,
    SendFailed,
    SendFrame,
    Sent,
    ServerFrame,
)

from .conftest import Server
from .test_api import User, upload
from .test_api import register as register_user
from .test_delivery import Device, frames_until_empty, register, websocket

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ServerFrame)


def _envelope(to: Device, content: bytes, device_id: int | None = None) -> OutgoingEnvelopeIn:
    return OutgoingEnvelopeIn(device_id or to.device_id, to.registration_id, 2, content)


async def _answer(ws: ClientConnection, request_id: int) -> Sent | SendFailed:
    """The answer to ``request_id`` (skipping pushes that are not answers)."""
    while True:
        frame = _decoder.decode(await asyncio.wait_for(ws.recv(), 10))
        if isinstance(frame, (Sent, SendFailed)):
            assert frame.request_id == request_id
            return frame


async def _deliveries(ws: ClientConnection, count: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < count:
        frame = _decoder.decode(await asyncio.wait_for(ws.recv(), 10))
        if isinstance(frame, Deliver):
            out.extend(frame.envelopes)
            await ws.send(_encoder.encode(Ack([e.envelope_id for e in frame.envelopes])))
    return out


async def test_send_over_the_websocket_is_stored_answered_and_delivered(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    async with websocket(server, alice) as a, websocket(server, bob) as b:
        await frames_until_empty(a)
        await frames_until_empty(b)
        for i in range(20):
            frame = SendFrame(i, bob.account_id, [_envelope(bob, b"m%d" % i)])
            await a.send(_encoder.encode(frame))
            answer = await _answer(a, i)
            assert isinstance(answer, Sent), answer
            assert not answer.response.duplicate
            [stored] = answer.response.envelopes
            assert (stored.account_id, stored.device_id) == (bob.account_id, 1)
        got = await _deliveries(b, 20)
    assert [e.content for e in got] == [b"m%d" % i for i in range(20)]
    assert {e.sender_account_id for e in got} == {alice.account_id}
    # Acks are applied after the frames that carried them were read: wait for the deletes.
    for _ in range(100):
        if await server.repo.queue_depth(bob.account_id, 1) == 0:
            break
        await asyncio.sleep(0.05)
    assert await server.repo.queue_depth(bob.account_id, 1) == 0


async def test_pipelined_sends_are_each_answered(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    async with websocket(server, alice) as a:
        await frames_until_empty(a)
        for i in range(100):  # more than MAX_PENDING in flight
            await a.send(_encoder.encode(SendFrame(i, bob.account_id, [_envelope(bob, b"x")])))
        answers: dict[int, ServerFrame] = {}
        while len(answers) < 100:
            frame = _decoder.decode(await asyncio.wait_for(a.recv(), 10))
            if isinstance(frame, (Sent, SendFailed)):
                answers[frame.request_id] = frame
    assert all(isinstance(f, Sent) for f in answers.values())
    assert await server.repo.queue_depth(bob.account_id, 1) == 100


async def test_idempotent_send_over_the_websocket_is_stored_once(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    async with websocket(server, alice) as a:
        await frames_until_empty(a)
        first = SendFrame(1, bob.account_id, [_envelope(bob, b"once")], "key-1")
        await a.send(_encoder.encode(first))
        one = await _answer(a, 1)
        await a.send(_encoder.encode(SendFrame(2, bob.account_id, first.envelopes, "key-1")))
        two = await _answer(a, 2)
    assert isinstance(one, Sent) and isinstance(two, Sent)
    assert not one.response.duplicate and two.response.duplicate
    assert one.response.envelopes == two.response.envelopes
    assert await server.repo.queue_depth(bob.account_id, 1) == 1


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [("extra_device", 409, "device_mismatch"), ("unknown_account", 404, "not_found")],
)
async def test_refused_sends_say_why_and_store_nothing(
    server: Server, target: str, status: int, code: str
) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    recipient = "0" * 32 if target == "unknown_account" else bob.account_id
    envelopes = [_envelope(bob, b"a"), _envelope(bob, b"b", device_id=5)]
    if target == "unknown_account":
        envelopes = envelopes[:1]
    async with websocket(server, alice) as a:
        await frames_until_empty(a)
        await a.send(_encoder.encode(SendFrame(7, recipient, envelopes)))
        answer = await _answer(a, 7)
        # The connection stays usable after a refusal.
        await a.send(_encoder.encode(SendFrame(8, bob.account_id, [_envelope(bob, b"ok")])))
        assert isinstance(await _answer(a, 8), Sent)
    assert isinstance(answer, SendFailed)
    assert (answer.status, answer.error.error) == (status, code)
    if code == "device_mismatch":
        [mismatch] = answer.error.details["mismatches"]
        assert mismatch["extra"] == [5]
    assert await server.repo.queue_depth(bob.account_id, 1) == 1


async def test_a_send_to_oneself_as_recipient_device_is_a_mismatch(server: Server) -> None:
    alice = await register(server, "alice")
    async with websocket(server, alice) as a:
        await frames_until_empty(a)
        frame = SendFrame(1, alice.account_id, [_envelope(alice, b"me")])
        await a.send(_encoder.encode(frame))
        answer = await _answer(a, 1)
    # A copy for the sending device itself is not part of the account's other devices.
    assert isinstance(answer, SendFailed) and answer.status in (400, 409)


@pytest.mark.parametrize(
    "raw",
    [
        ["send", 1, "not-an-account", []],
        ["send", -1, "0" * 32, []],
        ["send", 1, "0" * 32, [{"device_id": 1}]],
        ["send", 1, "0" * 32, [], "has space"],
        ["nope", 1],
    ],
)
async def test_malformed_send_frames_close_the_connection(server: Server, raw: list[Any]) -> None:
    bob = await register(server, "bob")
    async with websocket(server, bob) as ws:
        await frames_until_empty(ws)
        await ws.send(_encoder.encode(raw))
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert await server.repo.queue_depth(bob.account_id, 1) == 0


def _auth_device(user: User) -> Device:
    return Device(user.account_id, user.device_id, user.credential, 4242)


async def _keys_low(ws: ClientConnection, timeout: float) -> KeysLow | None:
    try:
        while True:
            frame = _decoder.decode(await asyncio.wait_for(ws.recv(), timeout))
            if isinstance(frame, KeysLow):
                return frame
    except TimeoutError:
        return None


async def test_prekeys_low_is_pushed_when_fetches_drain_the_keys(server: Server) -> None:
    alice = await register_user(server.http, "alice")
    bob = await register_user(server.http, "bob")
    r = await upload(server.http, bob, n=LOW_WATERMARK + 2)
    assert r.status_code == 200, r.text
    async with websocket(server, _auth_device(bob)) as ws:
        frames = []
        while not frames or not isinstance(frames[-1], QueueEmpty):
            frames.append(_decoder.decode(await asyncio.wait_for(ws.recv(), 10)))
        assert not any(isinstance(f, KeysLow) for f in frames)
        # Two fetches leave exactly LOW_WATERMARK: not low yet.
        for _ in range(2):
            r = await server.http.get(f"/v1/keys/{bob.account_id}/1", headers=alice.auth)
            assert r.status_code == 200, r.text
        assert await _keys_low(ws, 0.5) is None
        r = await server.http.get(f"/v1/keys/{bob.account_id}/1", headers=alice.auth)
        assert r.status_code == 200
        low = await _keys_low(ws, 10)
    assert low == KeysLow(LOW_WATERMARK - 1, LOW_WATERMARK - 1)


async def test_prekeys_low_is_pushed_on_connection(server: Server) -> None:
    bob = await register_user(server.http, "bob")
    assert (await upload(server.http, bob, n=2)).status_code == 200
    async with websocket(server, _auth_device(bob)) as ws:
        low = await _keys_low(ws, 10)
    assert low == KeysLow(2, 2)


def test_send_frame_content_round_trips_as_bytes() -> None:
    frame = SendFrame(3, "a" * 32, [OutgoingEnvelopeIn(1, 2, 3, b"\x00\xff")], "k")
    decoded = msgspec.msgpack.decode(_encoder.encode(frame), type=SendFrame)
    assert decoded == frame
    assert base64.b64encode(decoded.envelopes[0].content) == b"AP8="


async def test_a_lost_wake_up_is_covered_by_the_hubs_periodic_re_read(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An envelope stored with no notice (as if the NATS message from another process was
    lost) still reaches the connected device: the hub pokes every connection now and then."""
    import veil.server.websocket as hub_module  # noqa: PLC0415
    from veil.server.model import OutgoingEnvelope, StoredMessage  # noqa: PLC0415

    monkeypatch.setattr(hub_module, "IDLE_RECHECK_S", 1.0)  # every tick pokes everyone
    alice, bob = await register(server, "alice"), await register(server, "bob")
    async with websocket(server, bob) as b:
        await frames_until_empty(b)
        stored = await server.repo.store_message(
            alice.account_id,
            1,
            bob.account_id,
            [OutgoingEnvelope(bob.account_id, 1, bob.registration_id, 2, b"quiet")],
            None,
            1,
            100,
        )
        assert isinstance(stored, StoredMessage)
        [envelope] = await _deliveries(b, 1)
    assert envelope.content == b"quiet"
