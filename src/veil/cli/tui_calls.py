"""Calls in ``veil chat``: ``/call``, ``/video``, ``/hangup``, ``/answer``, ``/reject`` and the
call line above the status line.

A call runs in the app's own asyncio loop (aiortc is asyncio-native; video encoding happens
in its executor threads), so the interface stays live. Sources are the machine's microphone
and camera when it has them, else the synthetic tone and test pattern -- and the call line
says so. aiortc and PyAV load with the first call, placed or received.

The call line reads ``calling bob…``, ``ringing bob…``, ``video call with bob 1:23``, or for
an incoming call ``bob is calling (voice) -- /answer or /reject``; when the call ends it shows
the call-log wording for a few seconds, and the conversation shows the call's line.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Final

from textual.widgets import Static

from veil.client import Call, ClientError, IncomingCall, describe_call
from veil.client.call_history import call_clock

if TYPE_CHECKING:
    from veil.cli.call_sources import Source
    from veil.cli.tui_app import ChatApp

ENDED_SHOWN_S: Final = 5.0
"""How long the call line keeps the outcome of a call that ended."""
_STATES: Final = {
    "dialing": "calling {who}…",
    "ringing": "ringing {who}…",
    "connecting": "connecting to {who}…",
}


class CallLine(Static):
    """The line that shows the call (hidden when there is none)."""


class Calls:
    """The one call (or ringing incoming call) of a :class:`~veil.cli.tui_app.ChatApp`."""

    def __init__(self, app: ChatApp) -> None:
        self.app = app
        self.call: Call | None = None
        self.ringing: IncomingCall | None = None
        self.note = ""
        """Which synthetic source stands in for a missing device (shown with the call)."""
        self._ended_text = ""
        self._ended_until = 0.0

    # --- commands ---------------------------------------------------------------------------
    async def place(self, peer: str, *, video: bool) -> str | None:
        """Call ``peer`` (audio, and video with ``video``) with this machine's sources."""
        self.check_idle()
        audio_source, video_source = _sources(video=video, caller=True)
        self.note = _note(audio_source, video_source)
        try:
            call = await self.app.client.call(
                peer,
                audio=True,
                video=video,
                audio_source=audio_source.track,
                video_source=video_source.track,
            )
        except BaseException:
            for source in (audio_source, video_source):
                if source.track is not None:
                    source.track.stop()
            raise
        self._follow(call)
        return None

    async def answer(self) -> str | None:
        ringing = self.ringing
        if ringing is None or ringing.call.state != "ringing":
            self.ringing = None
            raise ClientError("no call is ringing")
        self.ringing = None
        audio_source, video_source = _sources(video=ringing.video, caller=False)
        self.note = _note(audio_source, video_source)
        call = await ringing.accept(
            audio=True,
            video=ringing.video,
            audio_source=audio_source.track,
            video_source=video_source.track,
        )
        self.call = call  # watched since it rang
        self.show()
        await self.app.open_conversation(self._who(call))
        return None

    async def reject(self) -> str | None:
        ringing, self.ringing = self.ringing, None
        if ringing is None:
            raise ClientError("no call is ringing")
        await ringing.reject()
        return f"declined the call from {self._who(ringing.call)}"

    async def hangup(self) -> str | None:
        if self.ringing is not None:
            return await self.reject()
        call = self.call
        if call is None or call.state == "ended":
            raise ClientError("there is no call to hang up")
        await call.end()
        return None

    # --- events -----------------------------------------------------------------------------
    def on_incoming(self, event: IncomingCall) -> None:
        """A call rings here (the SDK already answers ``busy`` while we are in one)."""
        if self.busy():
            return
        self.ringing = event
        self.app.run_worker(self._watch(event.call), group="calls", exit_on_error=False)
        self.show()

    def busy(self) -> bool:
        ringing = self.ringing is not None and self.ringing.call.state == "ringing"
        return ringing or (self.call is not None and self.call.state != "ended")

    def _follow(self, call: Call) -> None:
        self.call = call
        self.app.run_worker(self._watch(call), group="calls", exit_on_error=False)
        self.show()

    async def _watch(self, call: Call) -> None:
        """Redraw as the call moves on; when it ends, show its line in the chat."""
        while call.state != "ended":
            with contextlib.suppress(TimeoutError):
                await call.wait_for("ended", timeout=0.25)
            self.show()
        if self.ringing is not None and self.ringing.call is call:
            self.ringing = None
        entry = call.log_entry
        self._ended_text = describe_call(entry) if entry is not None else "call ended"
        self._ended_until = time.monotonic() + ENDED_SHOWN_S
        if call.peer == self.app.conversation_id:
            await self.app.mark_read_quietly()
        await self.app.refresh_all()
        self.show()

    # --- the call line ----------------------------------------------------------------------
    def text(self) -> str:
        """What the call line shows now (empty: hide it)."""
        if self.ringing is not None and self.ringing.call.state == "ringing":
            media = "video" if self.ringing.video else "voice"
            request = " (message request)" if self.ringing.request else ""
            who = self._who(self.ringing.call)
            return f"☎ {who} is calling ({media}){request} -- /answer or /reject"
        call = self.call
        if call is not None and call.state != "ended":
            who = self._who(call)
            if call.state == "connected":
                media = "video" if call.video else "voice"
                line = f"☎ {media} call with {who}  {call_clock(call.duration_ms or 0)}"
            else:
                line = "☎ " + _STATES[call.state].format(who=who)
            note = f"  ({self.note})" if self.note else ""
            return f"{line}{note} -- /hangup"
        if self._ended_text and time.monotonic() < self._ended_until:
            return f"☎ {self._ended_text}"
        return ""

    def show(self) -> None:
        """Redraw the call line (called on changes and once a second)."""
        line = self.app.query_one("#call", CallLine)
        text = self.text()
        line.display = bool(text)
        if str(line.content) != text:
            line.update(text)

    def _who(self, call: Call) -> str:
        return self.app.client.username_of(call.peer) or call.peer

    def check_idle(self) -> None:
        if self.ringing is not None and self.ringing.call.state == "ringing":
            raise ClientError("a call is ringing: /answer or /reject it first")
        if self.call is not None and self.call.state != "ended":
            raise ClientError("you are in a call: /hangup first")


def _sources(*, video: bool, caller: bool) -> tuple[Source, Source]:
    """The microphone and (with ``video``) camera, or the tone and pattern instead."""
    from veil.cli.call_sources import Source, open_source  # noqa: PLC0415 - loads aiortc

    audio = open_source("audio", "default", caller=caller)
    return audio, open_source("video", "default", caller=caller) if video else Source(None)


def _note(audio: Source, video: Source) -> str:
    """``test tone: no microphone`` and the like, when a device was missing."""
    missing = []
    if audio.note:
        missing.append("test tone: no microphone")
    if video.note:
        missing.append("test pattern: no camera")
    return ", ".join(missing)
