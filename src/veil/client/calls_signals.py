"""The call signalling of :mod:`veil.client.calls`, mixed into
:class:`~veil.client.calls.CallManager`: sending :class:`~veil.core.call_signal.CallSignal`
contents, and acting on those received (ARCHITECTURE.md §5).

From the peer: an ``offer`` rings (or answers ``busy``); on an outgoing call ``ringing``,
``answer``, ``reject``, ``busy`` and ``hangup`` move it on; on an incoming one ``hangup`` and
``answered`` (another device of ours took it) end it. A ``reject`` from any callee device ends
an outgoing call (the person declined); ``busy`` and an unanswered ``hangup`` end it only once
every device said so.

From our own devices (a ``reject`` inside a sync copy about the caller): another device of
ours declined the call, so this one stops ringing at once (``declined_elsewhere``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal, cast

from aiortc import RTCSessionDescription

from veil.client.calls_call import Call, IncomingCall
from veil.core import content as payload
from veil.core.call_signal import CallSignal
from veil.engine import CallSignalReceived

if TYPE_CHECKING:
    from veil.client.calls import CallManager
    from veil.client.client import Client, SendResult

log = logging.getLogger("veil.client.calls")


class SignalHandling:
    """Sends and acts on the call signals of :class:`~veil.client.calls.CallManager`."""

    if TYPE_CHECKING:
        _client: Client
        calls: dict[bytes, Call]
        _incoming: list[IncomingCall]
        ring_timeout_s: float
        connect_timeout_s: float

        def active(self) -> list[Call]: ...
        async def finish(
            self, call: Call, reason: str, by: Literal["local", "peer"], *, notify: bool
        ) -> None: ...
        def _log(self, call: Call) -> None: ...
        def _arm(self, call: Call, delay: float, reason: str) -> None: ...
        def _spawn(self, work: Coroutine[Any, Any, None]) -> None: ...
        async def _quietly(self, work: Coroutine[Any, Any, object]) -> None: ...

    def on_signal(self, event: CallSignalReceived) -> None:
        """Act on a received call signal (called for every one, in order)."""
        s = event.signal
        sender, device = event.sender_account_id, event.sender_device_id
        me = self._client.account.account_id
        if sender == me:
            if event.conversation != me:  # a sync copy: about our call with that peer
                self._on_own_signal(event)
            return
        call = self.calls.get(s.call_id)
        if s.kind == "offer":
            if call is None:
                self._ring(event)
            return
        if call is None or sender != call.peer or call.state == "ended":
            return
        if call.direction == "incoming" and device != call.peer_device:
            return
        self._spawn(self._handle(call, s, device))

    def _ring(self, event: CallSignalReceived) -> None:
        """An offer: ring (or answer ``busy`` when this device is in another call)."""
        s, sender, device = event.signal, event.sender_account_id, event.sender_device_id
        manager = cast("CallManager", self)
        call = Call(manager, s.call_id, sender, "incoming", s.audio, s.video, device)
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
        self._incoming.append(IncomingCall(call, sender, device, s.audio, s.video, event.request))
        self._arm(call, self.ring_timeout_s + 5, "timeout")
        self._spawn(self._quietly(self._signal(call, "ringing")))

    def _on_own_signal(self, event: CallSignalReceived) -> None:
        """A signal another device of ours sent us about its call with ``event.conversation``:
        a ``reject`` means the person declined there, so this device stops ringing."""
        call = self.calls.get(event.signal.call_id)
        if event.signal.kind != "reject" or call is None or call.peer != event.conversation:
            return
        if call.direction == "incoming":
            self._spawn(self._declined_elsewhere(call))

    async def _declined_elsewhere(self, call: Call) -> None:
        async with call._lock:
            if call.state == "ringing":
                await self.finish(call, "declined_elsewhere", "local", notify=False)

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
            elif s.kind == "reject" and call.peer_device is None:
                await self.finish(call, "rejected", "peer", notify=False)  # the person said no
            elif s.kind == "busy" or (s.kind == "hangup" and call.peer_device is None):
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
        """Send a signal of ``call`` to every device of the peer."""
        client = self._client
        content = payload.Content(
            payload.new_message_id(client._rng),
            client.now_ms(),
            call=CallSignal(call.call_id, kind, **fields),
        )
        return await client._send_content(call.peer, content, sync=False)

    async def _declined(self, call: Call) -> None:
        """Tell the caller, and our other devices (so they stop ringing), that this device
        declined ``call``."""
        client = self._client
        own = payload.Content(
            payload.new_message_id(client._rng),
            client.now_ms(),
            call=CallSignal(call.call_id, "reject"),
        )
        await asyncio.gather(
            self._quietly(self._signal(call, "reject")),
            self._quietly(client.tell_own_devices(call.peer, own)),
        )
