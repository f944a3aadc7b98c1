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
A device that declines sends ``reject`` to the caller (which ends the call: the person said
no) and, in a sync copy, to our other devices, which stop ringing (``declined_elsewhere``).
``busy`` (from every device) and ``hangup`` (with a reason) end it too.

States: ``dialing`` (outgoing, offer sent) -> ``ringing`` (a callee device rings; an incoming
call starts here) -> ``connecting`` (answered; ICE and DTLS under way) -> ``connected`` ->
``ended`` (:attr:`Call.end_reason`: ``hangup``, ``rejected``, ``busy``, ``timeout``,
``answered_elsewhere``, ``declined_elsewhere``, ``dtls_failed``, ``ice_failed``,
``connect_timeout``, ``connection_closed``, ``peer_lost`` (no media for ``media_timeout_s``),
``failed``, or the reason the peer gave).

ICE servers: :attr:`CallManager.turn_servers` when set, otherwise what the server hands out
(``GET /v1/calls/turn``); always passed explicitly, so aiortc never adds a public STUN server.

The manager is split by responsibility: signalling in :mod:`veil.client.calls_signals`, the
peer connection in :mod:`veil.client.calls_peer`, the call object in
:mod:`veil.client.calls_call`; placing, answering and ending calls here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Literal

from aiortc import RTCIceServer, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from veil.client.calls_call import Call, CallEndedError, CallState, IncomingCall
from veil.client.calls_media import PatternSource, ToneSource
from veil.client.calls_peer import CLOSE_GRACE_S, PeerConnections
from veil.client.calls_signals import SignalHandling
from veil.client.errors import ClientError
from veil.engine import EndedCall, StoreError, call_log_content

if TYPE_CHECKING:
    from veil.client.client import Client

log = logging.getLogger("veil.client.calls")

__all__ = [
    "CLOSE_GRACE_S",
    "Call",
    "CallEndedError",
    "CallManager",
    "CallState",
    "IncomingCall",
]

RING_TIMEOUT_S: Final = 60.0
"""An unanswered call ends (``timeout``) after this long."""
CONNECT_TIMEOUT_S: Final = 20.0
MEDIA_TIMEOUT_S: Final = 10.0
"""An answered call that has not connected by then ends (``connect_timeout``)."""


class CallManager(SignalHandling, PeerConnections):
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
        self._early_declines: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        """Declines (sync copies) of calls whose offer has not arrived yet."""
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
        await self._declined(call)  # the caller, and our other devices (they stop ringing)

    def take_incoming(self) -> list[IncomingCall]:
        """The incoming calls surfaced since the last call (for the events stream)."""
        out, self._incoming = self._incoming, []
        return out

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
