"""The call object of :mod:`veil.client.calls`: its state, media sinks and controls, and
the incoming-call event. Importing this module loads neither aiortc nor PyAV (``import
veil.client`` stays light); they load when a call is placed or answered."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from veil.client.errors import ClientError

if TYPE_CHECKING:  # aiortc and PyAV load with the first call, not with the SDK
    from aiortc import RTCPeerConnection
    from aiortc.contrib.media import MediaRecorder, MediaRelay
    from aiortc.mediastreams import MediaStreamTrack

    from veil.client.calls import CallManager
    from veil.client.calls_media import Switch
    from veil.engine import MessageRecord

CallState = Literal["dialing", "ringing", "connecting", "connected", "ended"]
_ORDER: Final[dict[str, int]] = {
    "dialing": 0,
    "ringing": 1,
    "connecting": 2,
    "connected": 3,
    "ended": 4,
}


@dataclass(frozen=True, slots=True)
class CallStats:
    """What :meth:`Call.stats` reports (RTP, all media of the call together)."""

    bytes_sent: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    rtt_ms: float | None = None
    """Round-trip time from the peer's RTCP receiver reports (None until one arrived)."""

    @property
    def loss(self) -> float:
        """The fraction of packets lost on the way here."""
        total = self.packets_received + self.packets_lost
        return self.packets_lost / total if total else 0.0


class CallEndedError(ClientError):
    """The call ended before reaching the state waited for."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the call ended ({reason})")
        self.reason = reason


@dataclass(frozen=True, slots=True, eq=False)
class IncomingCall:
    """Another device is calling this one: :meth:`accept` or :meth:`reject` (an event of
    :meth:`~veil.client.Client.events`; the call is ``ringing`` until then)."""

    call: Call
    caller: str
    """The caller's account id."""
    caller_device: int
    audio: bool
    video: bool
    request: bool
    """The caller is not an accepted contact (it rings in the message requests)."""

    async def accept(
        self,
        *,
        audio: bool = True,
        video: bool = True,
        audio_source: MediaStreamTrack | None = None,
        video_source: MediaStreamTrack | None = None,
    ) -> Call:
        """Answer: send what the caller offered (audio, video) that ``audio``/``video``
        allow; sources default to a 660 Hz tone and a blue test pattern."""
        await self.call._manager.accept(self.call, audio, video, audio_source, video_source)
        return self.call

    async def reject(self) -> None:
        await self.call._manager.reject(self.call)


class Call:
    """One 1:1 call, outgoing or incoming (its states: see :mod:`veil.client.calls`)."""

    def __init__(
        self,
        manager: CallManager,
        call_id: bytes,
        peer: str,
        direction: Literal["outgoing", "incoming"],
        audio: bool,
        video: bool,
        peer_device: int | None = None,
    ) -> None:
        self.call_id = call_id
        self.peer = peer
        """The other account's id."""
        self.peer_device = peer_device
        """The other device (for an outgoing call: the one that answered)."""
        self.direction = direction
        self.audio, self.video = audio, video
        self.state: CallState = "dialing" if direction == "outgoing" else "ringing"
        self.end_reason: str | None = None
        self.ended_by: Literal["local", "peer"] | None = None
        from veil.client.calls_media import AudioSink, VideoSink  # noqa: PLC0415 - see above

        self.audio_in = AudioSink()
        self.video_in = VideoSink()
        self.started_at = time.monotonic()
        self.started_ms = manager._client.now_ms()
        """Wall-clock time (the client's clock) the call was placed, or began ringing here."""
        self.connected_at: float | None = None
        self.answered_at: float | None = None
        """``time.monotonic()`` when it was answered (here, or by the peer)."""
        self.ended_at: float | None = None
        self.request = False
        """An incoming call from a message request (or a stranger)."""
        self.log_entry: MessageRecord | None = None
        """The call-log line written when it ended (None before, or if none was kept)."""
        self._manager = manager
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pc: RTCPeerConnection | None = None
        self._switches: dict[str, Switch] = {}
        self._timer: asyncio.Task[None] | None = None
        self._offer_sdp = ""
        self.record_path: Path | None = None
        """Where the received media is being recorded (:meth:`record_to`)."""
        self._recorder: MediaRecorder | None = None
        self._relay: MediaRelay | None = None
        self._devices: set[int] = set()  # the callee devices the offer went to
        self._declined: dict[int, str] = {}
        self._refused: set[int] = set()  # callee devices told a late answer came too late

    def __repr__(self) -> str:
        return f"Call({self.call_id.hex()[:12]}…, {self.direction}, {self.peer}, {self.state})"

    @property
    def connected_ms(self) -> int | None:
        """Milliseconds from dialing (or ringing) to connected; None if it never connected."""
        if self.connected_at is None:
            return None
        return round((self.connected_at - self.started_at) * 1000)

    @property
    def duration_ms(self) -> int | None:
        """How long it has been (or was) connected; None if it never connected."""
        if self.connected_at is None:
            return None
        end = time.monotonic() if self.ended_at is None else self.ended_at
        return round((end - self.connected_at) * 1000)

    @property
    def audio_frames_received(self) -> int:
        return self.audio_in.frames

    @property
    def video_frames_received(self) -> int:
        return self.video_in.frames

    async def wait_for(self, state: CallState, timeout: float = 30.0) -> None:
        """Return once the call reached ``state`` (or a later one); :class:`CallEndedError`
        if it ended first (unless ``state`` is ``ended``); ``TimeoutError`` after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                if self.state == "ended" and state != "ended":
                    raise CallEndedError(self.end_reason or "failed")
                if _ORDER[self.state] >= _ORDER[state]:
                    return
                await self._changed.wait()

    def record_to(self, path: str | os.PathLike[str]) -> None:
        """Record what the peer sends into ``path`` (any container PyAV writes, chosen by the
        extension: ``.mkv`` or ``.mp4`` for audio and video, ``.wav`` or ``.ogg`` for audio).
        Call it before the media arrives: right after placing the call, or before accepting."""
        if self.state in ("connected", "ended") or self._recorder is not None:
            raise ClientError("recording starts before the call connects")
        self.record_path = Path(path).expanduser()

    async def stats(self) -> CallStats:
        """Live figures from the peer connection (zeros before it exists or after the end)."""
        pc = self._pc
        if pc is None:
            return CallStats()
        from aiortc.stats import (  # noqa: PLC0415 - aiortc is loaded once a call exists
            RTCInboundRtpStreamStats,
            RTCOutboundRtpStreamStats,
            RTCRemoteInboundRtpStreamStats,
        )

        report = await pc.getStats()
        sent = received = lost = 0
        rtts: list[float] = []
        for item in report.values():
            if isinstance(item, RTCOutboundRtpStreamStats):
                sent += item.bytesSent
            elif isinstance(item, RTCInboundRtpStreamStats):
                received += item.packetsReceived
                lost += max(0, item.packetsLost)
            elif isinstance(item, RTCRemoteInboundRtpStreamStats) and item.roundTripTime:
                rtts.append(item.roundTripTime)
        rtt = round(1000 * sum(rtts) / len(rtts), 1) if rtts else None
        return CallStats(sent, received, lost, rtt)

    def mute(self, *, audio: bool | None = None, video: bool | None = None) -> None:
        """Send silence (``audio=True``) or black pictures (``video=True``) instead of the
        sources; ``False`` turns them back on; None leaves that side as it is."""
        for kind, value in (("audio", audio), ("video", video)):
            switch = self._switches.get(kind)
            if value is not None and switch is not None:
                switch.muted = value

    async def end(self, reason: str = "hangup") -> None:
        """Hang up (or, for a call still ringing here, reject it)."""
        if self.direction == "incoming" and self.state == "ringing":
            await self._manager.reject(self)
        else:
            await self._manager.finish(self, reason, "local", notify=True)

    def _set(self, state: CallState) -> None:
        if state == self.state:
            return
        self.state = state
        if state == "connecting":
            self.answered_at = time.monotonic()
        elif state == "connected":
            self.connected_at = time.monotonic()
        elif state == "ended" and self.ended_at is None:
            self.ended_at = time.monotonic()
        self._changed.set()
        self._changed = asyncio.Event()
