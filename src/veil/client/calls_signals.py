"""The call signalling of :mod:`veil.client.calls`, mixed into
:class:`~veil.client.calls.CallManager`: sending :class:`~veil.core.call_signal.CallSignal`
contents, and acting on those received (ARCHITECTURE.md §5).

From the peer: an ``offer`` rings (or answers ``busy``); on an outgoing call ``ringing``,
``answer``, ``reject``, ``busy`` and ``hangup`` move it on; on an incoming one ``hangup`` and
``answered`` (another device of ours took it) end it. A ``reject`` from any callee device ends
an outgoing call (the person declined); ``busy`` and an unanswered ``hangup`` end it only once
every device said so.

From our own devices (a ``reject`` inside a sync copy about the caller): another device of
ours declined the call, so this one stops ringing at once (``declined_elsewhere``). A decline
that arrives before its offer is remembered (the last :data:`EARLY_DECLINES`, for
:data:`EARLY_DECLINE_S`), so the offer then does not ring.

An ``answer`` (or ICE) from a callee device for an outgoing call that already ended (another
device declined at the same moment) gets a ``hangup`` naming the end reason, once per device,
so that device ends at once; a ``hangup`` is never answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from aiortc import RTCSessionDescription

from veil.client.calls_call import Call, IncomingCall
from veil.core import content as payload
from veil.core.call_signal import CallSignal
from veil.engine import CallSignalReceived

if TYPE_CHECKING:
    from veil.client.calls import CallManager
    from veil.client.client import Client, SendResult

log = logging.getLogger("veil.client.calls")

EARLY_DECLINES: Final = 64
"""How many declines (sync copies) for calls not seen yet a device remembers..."""
EARLY_DECLINE_S: Final = 60.0
"""...and for how long: an offer arriving after its decline does not ring."""


class SignalHandling:
    """Sends and acts on the call signals of :class:`~veil.client.calls.CallManager`."""

    if TYPE_CHECKING:
        _client: Client
        calls: dict[bytes, Call]
        _early_declines: OrderedDict[bytes, tuple[str, float]]
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
        if call is None or sender != call.peer:
            return
        if call.state == "ended":
            self._refuse_late(call, s, device)
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
        if self._declined_early(s.call_id, sender):
            # another device of ours declined it before the offer reached this one
            call.end_reason, call.ended_by = "declined_elsewhere", "local"
            self._log(call)
            call._set("ended")
            self.calls[s.call_id] = call
            return
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
        if event.signal.kind != "reject":
            return
        if call is None:  # the offer has not reached this device yet: remember the decline
            early = self._early_declines
            early[event.signal.call_id] = (event.conversation, time.monotonic())
            early.move_to_end(event.signal.call_id)
            while len(early) > EARLY_DECLINES:
                early.popitem(last=False)
            return
        if call.peer != event.conversation:
            return
        if call.direction == "incoming":
            self._spawn(self._declined_elsewhere(call))

    def _declined_early(self, call_id: bytes, caller: str) -> bool:
        """Another device of ours declined ``call_id`` (from ``caller``) before its offer
        reached this one (forgotten after :data:`EARLY_DECLINE_S`)."""
        now = time.monotonic()
        early = self._early_declines
        while early and now - next(iter(early.values()))[1] > EARLY_DECLINE_S:
            early.popitem(last=False)
        seen = early.get(call_id)
        if seen is None or seen[0] != caller:
            return False
        del early[call_id]
        return True

    def _refuse_late(self, call: Call, s: CallSignal, device: int) -> None:
        """An ``answer`` (or ICE) from a callee device for an outgoing call that already
        ended (e.g. another device declined at the same moment): tell it with a ``hangup``
        naming the end reason, once per device, so it ends at once instead of timing out.
        Never in reply to a ``hangup`` (no loop)."""
        if call.direction != "outgoing" or s.kind not in ("answer", "ice"):
            return
        if device == call.peer_device or device in call._refused:
            return  # the device the call was with knows it ended
        call._refused.add(device)
        reason = call.end_reason or "hangup"
        self._spawn(self._quietly(self._signal(call, "hangup", reason=reason)))

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
