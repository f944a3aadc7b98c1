"""Calls in ``veil chat``: ``/call``, ``/answer``, ``/hangup`` and the call-log lines, with a
Pilot against a real ``veil server`` and a real aiortc call (loopback) to and from Bob's SDK
client. This machine has no microphone or camera: the TUI says it sends the test tone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from textual.widgets import Static

from e2e.test_calls import Pump, loopback_only  # noqa: F401 (an autouse fixture)
from veil.cli.tui_app import ChatApp
from veil.client import Client

from .conftest import People
from .test_tui import list_lines, rows, status, type_line, until


@pytest.fixture
async def alice_tui(people: People) -> AsyncIterator[Client]:
    """A second client on alice's profile for her TUI (the real clock: calls take time)."""
    async with Client(people.alice.profile) as client:
        yield client
        await client.calls.close()


@pytest.fixture
async def bob(people: People) -> AsyncIterator[Pump]:
    pump = Pump(people.bob)
    try:
        yield pump
    finally:
        await people.bob.calls.close()
        await pump.stop()


def call_line(app: ChatApp) -> str:
    line = app.query_one("#call", Static)
    return str(line.content) if line.display else ""


async def test_a_call_placed_from_the_tui_connects_and_leaves_a_line(
    people: People, alice_tui: Client, bob: Pump
) -> None:
    app = ChatApp(alice_tui, name="bob")
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.peer == "bob", "the conversation open")
        assert call_line(app) == ""  # no call: no call line
        await type_line(pilot, "/call")
        incoming = await bob.incoming()
        assert (incoming.audio, incoming.video) == (True, False)
        await until(pilot, lambda: call_line(app).startswith("☎ ringing bob…"), "ringing")
        assert "test tone: no microphone" in call_line(app)
        answered = await incoming.accept()
        await until(pilot, lambda: "voice call with bob  0:0" in call_line(app), "connected")
        await until(pilot, lambda: "0:01" in call_line(app), "a second on the clock", 10)
        assert call_line(app).endswith("-- /hangup")
        await until(pilot, lambda: answered.audio_in.frames > 20, "alice's tone at bob")
        assert abs(answered.audio_in.frequency() - 440) < 10  # the stand-in tone arrives
        await type_line(pilot, "/hangup")
        await answered.wait_for("ended", 10)
        await until(pilot, lambda: any("Outgoing voice call" in r for r in rows(app)), "line")
        [line] = [r for r in rows(app) if "call" in r]
        assert line.startswith("☎ ") and line.endswith("Outgoing voice call, 0:01")
        assert call_line(app) == "☎ Outgoing voice call, 0:01"  # for a few seconds
        [bobs] = [m for m in people.bob.messages(alice_tui.account.account_id) if m.call]
        assert bobs.call is not None and bobs.call.outcome == "completed"


async def test_a_call_that_rings_and_is_cancelled_shows_missed(
    people: People, alice_tui: Client, bob: Pump
) -> None:
    app = ChatApp(alice_tui, name="bob")
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.peer == "bob", "the conversation open")
        call = await people.bob.call("alice", video=True)
        await until(pilot, lambda: "bob is calling (video)" in call_line(app), "the ring")
        assert call_line(app).endswith("-- /answer or /reject")
        await call.wait_for("ringing", 10)
        await call.end()  # bob gives up
        await until(pilot, lambda: any("Missed video call" in r for r in rows(app)), "missed")
        assert call_line(app) == "☎ Missed video call"
        await type_line(pilot, "/answer")
        await until(pilot, lambda: status(app) == "no call is ringing", "nothing to answer")


async def test_an_incoming_call_is_answered_in_the_tui(
    people: People, alice_tui: Client, bob: Pump
) -> None:
    app = ChatApp(alice_tui)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: list_lines(app)[:1] == ["Conversations"], "the list")
        call = await people.bob.call("alice")
        await until(pilot, lambda: "bob is calling (voice)" in call_line(app), "the ring")
        await type_line(pilot, "/call")  # one call at a time
        await until(pilot, lambda: "a call is ringing" in status(app), "refused")
        await type_line(pilot, "/answer")
        await call.wait_for("connected", 15)
        await until(pilot, lambda: "voice call with bob" in call_line(app), "connected")
        assert app.peer == "bob"  # answering opened the caller's conversation
        await call.end()
        await until(pilot, lambda: any("Incoming voice call, 0:0" in r for r in rows(app)), "log")
        await type_line(pilot, "/hangup")
        await until(pilot, lambda: "no call to hang up" in status(app), "nothing to hang up")


async def test_the_once_a_second_tick_after_the_widgets_are_gone_does_nothing(
    people: People, alice_tui: Client
) -> None:
    """The tick timer can fire while the app is closing (seen in CI): it must not crash."""
    app = ChatApp(alice_tui, name="bob")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await app.screen.query_one("#call").remove()  # as when the app tears down its widgets
        await app._tick()  # the timer's callback, called at the bad moment
        assert app.is_running
