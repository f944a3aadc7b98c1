"""The peer connection of a call (:mod:`veil.client.calls`), mixed into
:class:`~veil.client.calls.CallManager`: the aiortc ``RTCPeerConnection`` with explicit ICE
servers, the local sources, the received tracks (shown, and recorded on request), and how a
connection that fails, closes or goes silent ends the call (ARCHITECTURE.md §5).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Literal

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
)
from aiortc.contrib.media import MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from veil.client.calls_call import Call, CallEndedError
from veil.client.calls_media import Switch
from veil.client.errors import ClientError

if TYPE_CHECKING:
    from veil.client.client import Client

log = logging.getLogger("veil.client.calls")

CLOSE_GRACE_S: Final = 2.0
"""When the peer's connection closes, how long to wait for its ``hangup`` (and its reason)."""


class PeerConnections:
    """Opens and watches the peer connections of :class:`~veil.client.calls.CallManager`."""

    if TYPE_CHECKING:
        _client: Client
        turn_servers: list[RTCIceServer] | None
        relay_only: bool
        media_timeout_s: float

        async def finish(
            self, call: Call, reason: str, by: Literal["local", "peer"], *, notify: bool
        ) -> None: ...
        def _spawn(self, work: Coroutine[Any, Any, None]) -> None: ...
        def _disarm(self, call: Call) -> None: ...

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
