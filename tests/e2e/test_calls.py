"""End-to-end encrypted 1:1 calls through a real ``veil server`` (ARCHITECTURE.md §5).

Signalling goes through the server as E2EE content; media goes peer to peer over aiortc on
loopback (aioice is patched to gather 127.0.0.1 only). Sources are built-in: the caller sends
a 440 Hz tone and a red pattern, the callee a 660 Hz tone and a blue pattern, and the tests
check what each side decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aioice.ice
import pytest
from aiortc import RTCIceServer
from aiortc.rtcicetransport import RTCIceGatherer

from veil.client import Call, CallEndedError, Client, ClientEvent, IncomingCall
from veil.client.calls_media import close_to
from veil.engine import CallSignalReceived

from .conftest import People, VeilServer, _free_port, _start, _stop, linked
from .test_turn_relay import SECRET, Relay, relay  # noqa: F401 (a fixture)

RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gather 127.0.0.1 only, and fail loudly if aiortc ever reaches for its default public
    STUN server (it does when a configuration has no ``iceServers``)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])

    def no_default() -> list[RTCIceServer]:
        raise AssertionError("aiortc's default (public) STUN server was used")

    monkeypatch.setattr(RTCIceGatherer, "getDefaultIceServers", no_default)


class Pump:
    """Reads a client's events in the background (calls need it), keeping them for the test."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self.signals: list[str] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.client.events():
            if isinstance(event, CallSignalReceived):
                self.signals.append(event.signal.kind)
            await self.events.put(event)

    async def incoming(self, timeout: float = 10) -> IncomingCall:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if isinstance(event, IncomingCall):
                    return event

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@dataclasses.dataclass
class TwoBobs:
    """Bob with a second, linked device, and an event pump for each of the three devices."""

    bob2: Client
    alice: Pump
    bob1: Pump
    second: Pump


@pytest.fixture
async def two_bobs(people: People, tmp_path: Path) -> AsyncIterator[TwoBobs]:
    """Bob links a second device, and Alice learns of it (she writes to Bob first)."""
    bob2 = await linked(people.bob, tmp_path / "bob2", people.server.url)
    devices = TwoBobs(bob2, Pump(people.alice), Pump(people.bob), Pump(bob2))
    try:
        await people.alice.send("bob", "hi")
        yield devices
    finally:
        for client in (people.alice, people.bob, bob2):
            await client.calls.close()
        for pump in (devices.alice, devices.bob1, devices.second):
            await pump.stop()
        await bob2.close()


@pytest.fixture
async def pumps(people: People) -> AsyncIterator[tuple[Pump, Pump]]:
    alice, bob = Pump(people.alice), Pump(people.bob)
    try:
        yield alice, bob
    finally:
        await people.alice.calls.close()
        await people.bob.calls.close()
        await alice.stop()
        await bob.stop()


async def until(check: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def fingerprints(sdp: str) -> list[str]:
    return re.findall(r"a=fingerprint:\S+ ([0-9A-F:]+)", sdp)


def local_sdp(call: Call) -> str:
    assert call._pc is not None and call._pc.localDescription is not None
    return call._pc.localDescription.sdp


async def connect(
    people: People, pumps: tuple[Pump, Pump], *, video: bool = True
) -> tuple[Call, Call]:
    """Alice calls Bob, Bob accepts; both connected."""
    call = await people.alice.call("bob", audio=True, video=video)
    incoming = await pumps[1].incoming()
    assert incoming.caller == people.alice.account.account_id
    assert incoming.caller_device == people.alice.account.device_id
    assert (incoming.audio, incoming.video, incoming.request) == (True, video, False)
    assert incoming.call.state == "ringing"
    await call.wait_for("ringing", 10)  # Bob's device said it rings
    answered = await incoming.accept()
    await call.wait_for("connected", 15)
    await answered.wait_for("connected", 15)
    return call, answered


async def test_a_call_carries_audio_and_video_both_ways_until_one_side_hangs_up(
    people: People, pumps: tuple[Pump, Pump]
) -> None:
    call, answered = await connect(people, pumps)
    assert call.state == answered.state == "connected"
    assert call.connected_ms is not None and 0 < call.connected_ms < 15_000
    assert call.peer_device == people.bob.account.device_id

    def flowing() -> bool:
        return all(c.audio_in.frames >= 25 and c.video_in.frames >= 10 for c in (call, answered))

    await until(flowing, what="frames both ways")
    # What each side decodes is what the other sent: tone frequency and pattern colour.
    assert abs(answered.audio_in.frequency() - 440) < 10, answered.audio_in.frequency()
    assert abs(call.audio_in.frequency() - 660) < 10, call.audio_in.frequency()
    assert close_to(answered.video_in.colour, RED), answered.video_in.colour
    assert close_to(call.video_in.colour, BLUE), call.video_in.colour
    assert answered.video_in.size == call.video_in.size == (320, 240)

    # Mute: Bob hears silence, then the tone again.
    call.mute(audio=True)
    await until(lambda: answered.audio_in.frequency() == 0.0, what="silence")
    call.mute(audio=False)
    await until(lambda: abs(answered.audio_in.frequency() - 440) < 10, what="the tone again")

    frames = call.video_in.frames
    await answered.end()
    await call.wait_for("ended", 10)
    assert (call.end_reason, call.ended_by) == ("hangup", "peer")
    assert (answered.end_reason, answered.ended_by) == ("hangup", "local")
    assert call.video_in.frames >= frames
    assert "hangup" in pumps[0].signals and "answer" in pumps[0].signals
    assert people.alice.calls.active() == [] and people.bob.calls.active() == []


async def test_the_server_never_sees_the_session_descriptions(
    people: People, pumps: tuple[Pump, Pump]
) -> None:
    server: VeilServer = people.server
    call, answered = await connect(people, pumps, video=False)
    offer, answer = local_sdp(call), local_sdp(answered)
    prints = fingerprints(offer) + fingerprints(answer)
    assert len(prints) >= 2 and prints[0] != fingerprints(answer)[0]
    ufrags = re.findall(r"a=ice-ufrag:(\S+)", offer + answer)
    assert ufrags
    await call.end()
    await answered.wait_for("ended", 10)
    assert answered.end_reason == "hangup" and answered.ended_by == "peer"

    stored = server.database_bytes() + b"".join(server.envelope_contents())
    log = server.log_text()
    assert len(stored) > 10_000
    for secret in [*prints, *ufrags, "a=fingerprint", "a=ice-pwd", "v=0\r\no="]:
        assert secret.encode() not in stored, secret
        assert secret not in log, secret
    # Neither does the fingerprint show in hex without separators.
    assert bytes.fromhex(prints[0].replace(":", "")) not in stored


async def test_a_rewritten_dtls_fingerprint_makes_the_call_fail_closed(
    people: People, pumps: tuple[Pump, Pump], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A man in the middle that rewrote Bob's answer (its certificate fingerprint) cannot
    get media: Alice's DTLS handshake fails against the fingerprint and the call ends."""
    alice = people.alice
    deliver: Callable[[CallSignalReceived], None] = alice.calls.on_signal
    tampered: list[str] = []

    def rewrite(event: CallSignalReceived) -> None:
        s = event.signal
        if s.kind == "answer":
            sdp = re.sub(
                r"(a=fingerprint:\S+ )([0-9A-F])",
                lambda m: m.group(1) + ("0" if m.group(2) != "0" else "1"),
                s.sdp,
            )
            assert sdp != s.sdp
            tampered.append(sdp)
            event = dataclasses.replace(event, signal=dataclasses.replace(s, sdp=sdp))
        deliver(event)

    monkeypatch.setattr(alice.calls, "on_signal", rewrite)
    call = await alice.call("bob", audio=True, video=True)
    incoming = await pumps[1].incoming()
    answered = await incoming.accept()
    with pytest.raises(CallEndedError, match="dtls_failed"):
        await call.wait_for("connected", 15)
    assert len(tampered) == 1
    assert (call.state, call.end_reason, call.ended_by) == ("ended", "dtls_failed", "local")
    assert call.connected_at is None
    await answered.wait_for("ended", 10)
    assert (answered.end_reason, answered.ended_by) == ("dtls_failed", "peer")
    assert call.audio_in.frames == call.video_in.frames == 0
    assert answered.audio_in.frames == answered.video_in.frames == 0


async def test_the_callee_rejects(people: People, pumps: tuple[Pump, Pump]) -> None:
    call = await people.alice.call("bob")
    incoming = await pumps[1].incoming()
    assert (incoming.audio, incoming.video) == (True, False)
    await incoming.reject()
    with pytest.raises(CallEndedError, match="rejected"):
        await call.wait_for("connected", 10)
    assert (call.end_reason, call.ended_by) == ("rejected", "peer")
    assert (incoming.call.end_reason, incoming.call.ended_by) == ("rejected", "local")
    with pytest.raises(CallEndedError):
        await incoming.accept()


async def test_a_device_already_in_a_call_answers_busy(
    people: People, pumps: tuple[Pump, Pump], veil_server: VeilServer, tmp_path: Path
) -> None:
    carol = await Client.register(tmp_path / "carol", veil_server.url, "carol")
    carol_pump = Pump(carol)
    try:
        await carol.follow("bob")
        await people.bob.follow("carol")
        call, answered = await connect(people, pumps, video=False)
        second = await carol.call("bob")
        with pytest.raises(CallEndedError, match="busy"):
            await second.wait_for("connected", 10)
        assert (second.end_reason, second.ended_by) == ("busy", "peer")
        assert call.state == answered.state == "connected"  # the first call goes on
        frames = answered.audio_in.frames
        await until(lambda: answered.audio_in.frames > frames + 10, what="more audio")
        assert not any(isinstance(e, IncomingCall) for e in _drain(pumps[1].events))
    finally:
        await carol.calls.close()
        await carol_pump.stop()
        await carol.close()


async def test_an_unanswered_call_times_out_on_both_sides(
    people: People, pumps: tuple[Pump, Pump]
) -> None:
    people.alice.calls.ring_timeout_s = 1.0
    call = await people.alice.call("bob")
    incoming = await pumps[1].incoming()
    await call.wait_for("ended", 10)
    assert (call.end_reason, call.ended_by) == ("timeout", "local")
    await incoming.call.wait_for("ended", 10)
    assert (incoming.call.end_reason, incoming.call.ended_by) == ("timeout", "peer")


def _drain(queue: asyncio.Queue[ClientEvent]) -> list[ClientEvent]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


@pytest.fixture
async def relayed(
    relay: Relay,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[People]:
    """Alice and Bob on a ``veil server`` that hands out credentials for a real coturn."""
    monkeypatch.setenv("VEIL_TURN_URLS", f"turn:127.0.0.1:{relay.port}?transport=udp")
    monkeypatch.setenv("VEIL_TURN_SECRET", SECRET)
    monkeypatch.setenv("VEIL_TURN_TTL_S", "600")
    port = _free_port()
    data, log = tmp_path / "server", tmp_path / "server.log"
    server = VeilServer(f"http://127.0.0.1:{port}", data, log, _start(port, data, log))
    alice = await Client.register(tmp_path / "alice", server.url, "alice")
    bob = await Client.register(tmp_path / "bob", server.url, "bob")
    try:
        await alice.follow("bob")
        await bob.follow("alice")
        yield People(server, alice, bob)
    finally:
        await alice.close()
        await bob.close()
        _stop(server.proc)


async def test_a_relay_only_call_goes_through_coturn_with_the_servers_credentials(
    relayed: People,
    relay: Relay,  # noqa: F811
) -> None:
    alice, bob = relayed.alice, relayed.bob
    alice.calls.relay_only = bob.calls.relay_only = True
    pumps = (Pump(alice), Pump(bob))
    try:
        call, answered = await connect(relayed, pumps, video=True)
        for c in (call, answered):
            sdp = local_sdp(c)
            assert " typ relay" in sdp and " typ host" not in sdp
            assert c._pc is not None
            ice = c._pc.getTransceivers()[0].sender.transport.transport
            pair = ice.iceGatherer._connection._nominated[1]
            assert pair.local_candidate.type == "relay"
            assert pair.local_candidate.port != relay.port
        await until(
            lambda: answered.audio_in.frames >= 25 and call.video_in.frames >= 10,
            what="relayed frames",
        )
        assert abs(answered.audio_in.frequency() - 440) < 10
        assert close_to(call.video_in.colour, BLUE)
        await call.end()
        await answered.wait_for("ended", 10)
        assert answered.end_reason == "hangup"
    finally:
        for p in pumps:
            await p.stop()


async def test_a_relay_refusing_the_credential_fails_the_call_with_a_clear_reason(
    relayed: People,
) -> None:
    alice = relayed.alice
    issued = await alice._api().turn()
    alice.calls.turn_servers = [RTCIceServer(issued.urls, issued.username, "d3JvbmcK")]
    alice.calls.relay_only = True
    with pytest.raises(CallEndedError, match="relay_failed"):
        await alice.call("bob")
    [call] = alice.calls.calls.values()
    assert (call.state, call.end_reason) == ("ended", "relay_failed")
    # The offer never left: Bob has nothing ringing.
    assert not [e for e in await relayed.bob.receive(timeout=0.5) if isinstance(e, IncomingCall)]


async def test_every_device_of_the_callee_rings_and_the_first_to_answer_takes_it(
    people: People, two_bobs: TwoBobs
) -> None:
    """Bob has two devices: both ring; the second one answers; the first stops ringing
    (``answered_elsewhere``) and the call connects with the one that answered."""
    bob2, bob1, second = two_bobs.bob2, two_bobs.bob1, two_bobs.second
    call = await people.alice.call("bob", audio=True, video=False)
    ringing1, ringing2 = await bob1.incoming(), await second.incoming()
    assert ringing1.call.call_id == ringing2.call.call_id == call.call_id
    answered = await ringing2.accept()
    await call.wait_for("connected", 15)
    await answered.wait_for("connected", 15)
    assert call.peer_device == bob2.account.device_id
    await ringing1.call.wait_for("ended", 10)
    assert ringing1.call.end_reason == "answered_elsewhere"
    await until(lambda: call.audio_in.frames > 20, what="audio at alice")
    assert abs(call.audio_in.frequency() - 660) < 10
    await call.end()
    await answered.wait_for("ended", 10)
    assert (answered.end_reason, answered.ended_by) == ("hangup", "peer")


async def test_a_peer_that_vanishes_mid_call_is_detected(people: People) -> None:
    """Bob answers with `veil answer` in its own process, which is then killed (no hang-up,
    no DTLS close): Alice's call ends with ``peer_lost`` once no media came for the timeout."""
    await people.bob.close()  # the CLI process takes Bob's device over
    answering = subprocess.Popen(
        [sys.executable, "-m", "veil", "--profile", str(people.bob.profile), "answer",
         "--auto", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    alice = Pump(people.alice)
    try:
        assert answering.stdout is not None
        assert json.loads(answering.stdout.readline())["state"] == "waiting"
        people.alice.calls.media_timeout_s = 2.0
        call = await people.alice.call("bob", audio=True, video=False)
        await call.wait_for("connected", 20)
        await until(lambda: call.audio_in.frames > 10, what="audio from bob's process")
        answering.kill()  # gone: no hang-up, no close
        await call.wait_for("ended", 15)
        assert (call.end_reason, call.ended_by) == ("peer_lost", "local")
    finally:
        if answering.poll() is None:
            answering.kill()
        answering.communicate(timeout=10)
        await people.alice.calls.close()
        await alice.stop()


async def test_a_blocked_caller_never_rings_the_blocker(people: People) -> None:
    """Bob blocks Alice: her offer is stored nowhere (the server drops it, she is not told);
    Bob's devices show nothing and her call ends unanswered."""
    await people.bob.block("alice")
    alice, bob = Pump(people.alice), Pump(people.bob)
    try:
        people.alice.calls.ring_timeout_s = 1.5
        call = await people.alice.call("bob", audio=True, video=False)
        await call.wait_for("ended", 10)
        assert call.end_reason == "timeout" and call.connected_ms is None
        with pytest.raises(TimeoutError):
            await bob.incoming(timeout=1.0)
        assert "offer" not in bob.signals
    finally:
        await people.alice.calls.close()
        await people.bob.calls.close()
        await alice.stop()
        await bob.stop()
