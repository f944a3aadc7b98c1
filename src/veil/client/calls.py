"""End-to-end encrypted 1:1 calls (ARCHITECTURE.md §5): the SDK side.

A call is an aiortc ``RTCPeerConnection`` between two devices. Everything that sets it up
travels as E2EE content (:class:`~veil.core.call_signal.CallSignal`), so the DTLS fingerprints
in the session descriptions are authenticated end to end, and aiortc checks the peer's DTLS
certificate against them: a server (or anyone) rewriting a description cannot stand in the
middle, the handshake fails and the call ends with ``dtls_failed``::

    call = await alice.call("bob", video=True)              # offer to every device of bob
    await call.wait_for("connected", timeout=30)
    ...
    async for event in bob.events():                        # on bob's side
        if isinstance(event, IncomingCall):
            call = await event.accept()                     # or: await event.reject()

Both clients must be reading :meth:`~veil.client.Client.events` meanwhile: signals arrive
there. The flow: the caller sends ``offer`` to every device of the callee, each answers
``ringing`` (or ``busy`` when it is already in a call); the device that accepts sends
``answer``; the caller then sends ``answered`` naming that device, so the others stop ringing.
``reject``, ``busy`` and ``hangup`` (with a reason) end it.

States: ``dialing`` (outgoing, offer sent) -> ``ringing`` (a callee device rings; an incoming
call starts here) -> ``connecting`` (answered; ICE and DTLS under way) -> ``connected`` ->
``ended`` (:attr:`Call.end_reason`: ``hangup``, ``rejected``, ``busy``, ``timeout``,
``answered_elsewhere``, ``dtls_failed``, ``ice_failed``, ``connect_timeout``,
``connection_closed``, ``peer_lost`` (no media for ``media_timeout_s``), ``failed``, or the
reason the peer gave).

ICE servers: :attr:`CallManager.turn_servers` when set, otherwise what the server hands out
(``GET /v1/calls/turn``); always passed explicitly, so aiortc never adds a public STUN server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Literal

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from veil.client.calls_call import Call, CallEndedError, CallState, IncomingCall
from veil.client.calls_media import PatternSource, Switch, ToneSource
from veil.client.errors import ClientError
from veil.core import content as payload
from veil.core.call_signal import CallSignal
from veil.engine import CallSignalReceived, EndedCall, StoreError, call_log_content

if TYPE_CHECKING:
    from veil.client.client import Client, SendResult

log = logging.getLogger("veil.client.calls")

__all__ = ["Call", "CallEndedError", "CallManager", "CallState", "IncomingCall"]

RING_TIMEOUT_S: Final = 60.0
"""An unanswered call ends (``timeout``) after this long."""
CONNECT_TIMEOUT_S: Final = 20.0
MEDIA_TIMEOUT_S: Final = 10.0
"""An answered call that has not connected by then ends (``connect_timeout``)."""
CLOSE_GRACE_S: Final = 2.0
"""When the peer's connection closes, how long to wait for its ``hangup`` (and its reason)."""


class CallManager:
    """The calls of one client (``client.calls``): places, answers and ends them, and acts on
    the call signals the client receives."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.turn_servers: list[RTCIceServer] | None = None
        """ICE servers to use instead of asking the server (``[]``: host candidates only)."""
        self.relay_only = False
        """Offer and answer only relayed (TURN) candidates: the peer never learns this
        device's addresses. A call that cannot get a relay ends with ``relay_failed``."""
        self.ring_timeout_s = RING_TIMEOUT_S
        self.connect_timeout_s = CONNECT_TIMEOUT_S
        self.media_timeout_s = MEDIA_TIMEOUT_S
        """A connected call with no frame from the peer for this long ends (``peer_lost``)."""
        self.calls: dict[bytes, Call] = {}
        self._incoming: list[IncomingCall] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def active(self) -> list[Call]:
        """The calls not ended."""
        return [c for c in self.calls.values() if c.state != "ended"]

    # --- outgoing ---------------------------------------------------------------------------
    async def call(
        self,
        who: str,
        *,
        audio: bool = True,
        video: bool = False,
        audio_source: MediaStreamTrack | None = None,
        video_source: MediaStreamTrack | None = None,
    ) -> Call:
        """Call ``who`` (a username or account id): the offer goes to every device of theirs.
        Sources default to a 440 Hz tone and a red test pattern."""
        if not (audio or video):
            raise ClientError("a call carries audio, video or both")
        contact = await self._client.resolve(who)
        call_id = self._client._rng(16)
        call = Call(self, call_id, contact.account_id, "outgoing", audio, video)
        self.calls[call_id] = call
        async with call._lock:  # signals for this call wait until the offer is out
            try:
                pc = await self._connection(call)
                if audio:
                    self._add(call, pc, audio_source or ToneSource(440.0))
                if video:
                    self._add(call, pc, video_source or PatternSource((255, 0, 0)))
                await pc.setLocalDescription(await pc.createOffer())
                sdp = self._checked_sdp(pc)
                result = await self._signal(call, "offer", sdp=sdp, audio=audio, video=video)
            except CallEndedError as exc:
                await self.finish(call, exc.reason, "local", notify=False)
                raise
            except BaseException:
                await self.finish(call, "failed", "local", notify=False)
                raise
            call._devices = {d for a, d in result.devices if a == call.peer}
            self._arm(call, self.ring_timeout_s, "timeout")
        return call

    # --- incoming ---------------------------------------------------------------------------
    async def accept(
        self,
        call: Call,
        audio: bool,
        video: bool,
        audio_source: MediaStreamTrack | None,
        video_source: MediaStreamTrack | None,
    ) -> None:
        async with call._lock:
            if call.state != "ringing" or call.direction != "incoming":
                raise CallEndedError(call.end_reason or "not ringing")
            call._set("connecting")
            self._arm(call, self.connect_timeout_s, "connect_timeout")
            try:
                pc = await self._connection(call)
                await pc.setRemoteDescription(RTCSessionDescription(call._offer_sdp, "offer"))
                if call.audio and audio:
                    self._add(call, pc, audio_source or ToneSource(660.0))
                if call.video and video:
                    self._add(call, pc, video_source or PatternSource((0, 0, 255)))
                await pc.setLocalDescription(await pc.createAnswer())
                await self._signal(call, "answer", sdp=self._checked_sdp(pc))
            except CallEndedError as exc:
                await self.finish(call, exc.reason, "local", notify=True)
                raise
            except BaseException:
                await self.finish(call, "failed", "local", notify=True)
                raise

    async def reject(self, call: Call) -> None:
        async with call._lock:
            if call.state != "ringing" or call.direction != "incoming":
                return
            await self.finish(call, "rejected", "local", notify=False)
        await self._quietly(self._signal(call, "reject"))

    def take_incoming(self) -> list[IncomingCall]:
        """The incoming calls surfaced since the last call (for the events stream)."""
        out, self._incoming = self._incoming, []
        return out

    # --- signals ----------------------------------------------------------------------------
    def on_signal(self, event: CallSignalReceived) -> None:
        """Act on a received call signal (called for every one, in order)."""
        s = event.signal
        sender, device = event.sender_account_id, event.sender_device_id
        if sender == self._client.account.account_id:
            return  # our other devices' calls: their call-log lines come as sync copies
        call = self.calls.get(s.call_id)
        if s.kind == "offer":
            if call is not None:
                return
            call = Call(self, s.call_id, sender, "incoming", s.audio, s.video, device)
            call._offer_sdp = s.sdp
            call.request = event.request
            if self.active():
                call.end_reason, call.ended_by = "busy", "local"
                self._log(call)  # a missed call: this device was in another one
                call._set("ended")
                self.calls[s.call_id] = call
                self._spawn(self._quietly(self._signal(call, "busy")))
                return
            self.calls[s.call_id] = call
            self._incoming.append(
                IncomingCall(call, sender, device, s.audio, s.video, event.request)
            )
            self._arm(call, self.ring_timeout_s + 5, "timeout")
            self._spawn(self._quietly(self._signal(call, "ringing")))
            return
        if call is None or sender != call.peer or call.state == "ended":
            return
        if call.direction == "incoming" and device != call.peer_device:
            return
        self._spawn(self._handle(call, s, device))

    async def _handle(self, call: Call, s: CallSignal, device: int) -> None:
        async with call._lock:
            if call.state == "ended":
                return
            if call.direction == "incoming":
                if s.kind == "hangup":
                    await self.finish(call, s.reason or "hangup", "peer", notify=False)
                elif s.kind == "answered" and s.device_id != self._client.account.device_id:
                    await self.finish(call, "answered_elsewhere", "peer", notify=False)
                return
            if s.kind == "ringing" and call.state == "dialing":
                call._set("ringing")
            elif s.kind == "answer" and call.peer_device is None:
                await self._answered(call, s, device)
            elif s.kind in ("reject", "busy") or (s.kind == "hangup" and call.peer_device is None):
                call._declined[device] = s.kind
                if call.peer_device is None and call._devices <= set(call._declined):
                    busy = all(kind == "busy" for kind in call._declined.values())
                    reason = "busy" if busy else "rejected"
                    await self.finish(call, reason, "peer", notify=False)
            elif s.kind == "hangup" and device == call.peer_device:
                await self.finish(call, s.reason or "hangup", "peer", notify=False)

    async def _answered(self, call: Call, s: CallSignal, device: int) -> None:
        call.peer_device = device
        call._set("connecting")
        self._arm(call, self.connect_timeout_s, "connect_timeout")
        pc = call._pc
        assert pc is not None
        try:
            await pc.setRemoteDescription(RTCSessionDescription(s.sdp, "answer"))
        except Exception as exc:  # a description aiortc cannot use
            log.warning("the answer to a call is not usable: %s", type(exc).__name__)
            await self.finish(call, "failed", "local", notify=True)
            return
        await self._quietly(self._signal(call, "answered", device_id=device))

    async def _signal(self, call: Call, kind: str, **fields: Any) -> SendResult:
        signal = CallSignal(call.call_id, kind, **fields)
        client = self._client
        content = payload.Content(payload.new_message_id(client._rng), client.now_ms(), call=signal)
        return await client._send_content(call.peer, content, sync=False)

    # --- the peer connection ----------------------------------------------------------------
    async def _connection(self, call: Call) -> RTCPeerConnection:
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        servers = await self._ice_servers()  # always explicit: no default public STUN
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        call._pc = pc

        def on_track(track: MediaStreamTrack) -> None:
            sink = call.audio_in if track.kind == "audio" else call.video_in
            if call.record_path is None:
                sink.attach(track)
                return
            if call._recorder is None or call._relay is None:
                call._relay = MediaRelay()
                call._recorder = MediaRecorder(str(call.record_path))
            sink.attach(call._relay.subscribe(track))  # one copy to look at, one to keep
            call._recorder.addTrack(call._relay.subscribe(track))

        def on_state() -> None:
            if call._pc is not pc or call.state == "ended":
                return
            state = pc.connectionState
            if state == "connected" and call.state == "connecting":
                call._set("connected")
                self._disarm(call)
                self._spawn(self._watch(call, pc))
                if call._recorder is not None:
                    self._spawn(call._recorder.start())
            elif state == "failed":
                self._spawn(self.finish(call, _failure(pc), "local", notify=True))
            elif state == "closed":
                self._spawn(self._closed(call))

        pc.on("track", on_track)
        pc.on("connectionstatechange", on_state)
        return pc

    async def _ice_servers(self) -> list[RTCIceServer]:
        if self.turn_servers is not None:
            return list(self.turn_servers)
        try:
            issued = await self._client._api().turn()
        except ClientError as exc:
            log.warning("no TURN credentials (host candidates only): %s", exc)
            return []
        if not issued.urls:
            return []
        return [RTCIceServer(list(issued.urls), issued.username, issued.credential)]

    def _add(self, call: Call, pc: RTCPeerConnection, source: MediaStreamTrack) -> None:
        switch = Switch(source)
        call._switches[switch.kind] = switch
        pc.addTrack(switch)

    async def _watch(self, call: Call, pc: RTCPeerConnection) -> None:
        """End a connected call whose peer vanished: its sources send frames all the time
        (silence and black pictures while muted), so ``media_timeout_s`` without any frame
        means the other device is gone (crashed, lost its network) -- long before ICE
        consent checks would notice."""
        started = time.monotonic()
        while call._pc is pc and call.state == "connected":
            await asyncio.sleep(min(0.5, self.media_timeout_s / 4))
            heard = [s.last_frame_at for s in (call.audio_in, call.video_in) if s.last_frame_at]
            last = max(heard, default=started)
            if call._pc is pc and time.monotonic() - last > self.media_timeout_s:
                await self.finish(call, "peer_lost", "local", notify=True)

    async def _closed(self, call: Call) -> None:
        """The peer closed the connection: its ``hangup`` (with the reason) should follow."""
        await asyncio.sleep(CLOSE_GRACE_S)
        await self.finish(call, "connection_closed", "peer", notify=False)

    # --- ending -----------------------------------------------------------------------------
    async def finish(
        self, call: Call, reason: str, by: Literal["local", "peer"], *, notify: bool
    ) -> None:
        """End ``call`` (once): close its media and, with ``notify``, tell the peer."""
        if call.state == "ended":
            return
        call.end_reason, call.ended_by = reason, by
        call.ended_at = time.monotonic()
        self._log(call)  # before the state changes: whoever waits for "ended" finds the line
        call._set("ended")
        self._disarm(call)
        if notify:
            await self._quietly(self._signal(call, "hangup", reason=reason))
        pc, call._pc = call._pc, None
        for switch in call._switches.values():
            switch.stop()
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
        await call.audio_in.close()
        await call.video_in.close()
        recorder, call._recorder = call._recorder, None
        if recorder is not None:
            with contextlib.suppress(Exception):  # the file is as complete as it got
                await recorder.stop()

    def _log(self, call: Call) -> None:
        """Write the call's line in its conversation (:mod:`veil.engine.call_log`)."""
        assert call.end_reason is not None and call.ended_by is not None
        ended = EndedCall(
            call_id=call.call_id,
            peer=call.peer,
            peer_device=call.peer_device,
            direction=call.direction,
            video=call.video,
            started_ms=call.started_ms,
            end_reason=call.end_reason,
            ended_by=call.ended_by,
            answered=call.answered_at is not None,
            duration_ms=call.duration_ms,
            request=call.request,
        )
        try:
            call.log_entry = self._client.engine.record_call(ended)
        except (ClientError, StoreError) as exc:  # e.g. the client is closing
            log.warning("a call was not logged: %s", exc)
            return
        synced = None if call.log_entry is None else call_log_content(call.log_entry)
        if synced is not None:  # our other devices show the same line
            self._spawn(self._quietly(self._client.tell_own_devices(call.peer, synced)))

    def _arm(self, call: Call, delay: float, reason: str) -> None:
        self._disarm(call)

        async def expire() -> None:
            await asyncio.sleep(delay)
            call._timer = None  # finish() must not cancel the task it runs in
            await self.finish(call, reason, "local", notify=True)

        call._timer = asyncio.ensure_future(expire())

    def _disarm(self, call: Call) -> None:
        timer, call._timer = call._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def close(self) -> None:
        """Hang up every call and wait for the work under way (the client is closing)."""
        for call in self.active():
            await self.finish(call, "hangup", "local", notify=True)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _quietly(self, work: Coroutine[Any, Any, object]) -> None:
        try:
            await work
        except ClientError as exc:
            log.info("a call signal was not sent: %s", exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        failure = None if task.cancelled() else task.exception()
        if failure is not None:  # the type only: a message could quote an SDP
            log.error("call handling failed: %s", type(failure).__name__)

    def _checked_sdp(self, pc: RTCPeerConnection) -> str:
        """The local description; :class:`CallEndedError` (``relay_failed``) if the call is
        relay-only and the relay gave no candidate (e.g. it refused the credential)."""
        description = pc.localDescription
        assert description is not None  # set just before
        if self.relay_only and " typ relay" not in description.sdp:
            raise CallEndedError("relay_failed")
        return description.sdp


def _failure(pc: RTCPeerConnection) -> str:
    """Why the connection failed: the DTLS handshake (e.g. a fingerprint that does not match
    the certificate), ICE (no candidate pair works), or otherwise."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is None:
            continue
        if dtls.transport.state == "failed":
            return "ice_failed"
        if dtls.state == "failed":
            return "dtls_failed"
    return "failed"
