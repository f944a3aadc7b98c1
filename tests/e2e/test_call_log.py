"""The call log: every call leaves a line in its conversation on each device that saw it
(``veil.engine.call_log``), through a real ``veil server`` and real aiortc calls on loopback.

The lines are message rows of kind ``call``: the SDK's history (``client.messages``), ``veil
inbox NAME`` and ``veil chat`` show them; they follow the conversation's disappearing timer,
the message-request rules and blocks like any message.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from veil.client import CallEndedError, Client, describe_call
from veil.engine import CallLogSynced, MessageRecord, call_log_content

from .conftest import People, VeilServer, linked, veil_cli
from .test_calls import Pump, TwoBobs, connect, loopback_only, pumps, two_bobs, until  # noqa: F401 (fixtures)


def calls_of(client: Client, peer: Client) -> list[MessageRecord]:
    return [m for m in client.messages(peer.account.account_id) if m.kind == "call"]


class FakeClock:
    """Milliseconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


async def test_a_connected_call_is_logged_with_its_duration_on_both_sides(
    people: People,
    pumps: tuple[Pump, Pump],  # noqa: F811 (the fixture imported above)
) -> None:
    alice, bob = people.alice, people.bob
    before = alice.now_ms()
    call, answered = await connect(people, pumps, video=True)
    await asyncio.sleep(1.2)
    await call.end()
    await answered.wait_for("ended", 10)
    [mine] = calls_of(alice, bob)
    assert (mine.message_id, mine.direction, mine.status) == (call.call_id, "out", "sent")
    assert mine.sender_account_id == alice.account.account_id
    assert mine.call is not None
    assert (mine.call.media, mine.call.outcome, mine.call.end_reason) == (
        "video", "completed", "hangup",
    )  # fmt: skip
    assert mine.call.duration_ms is not None and 1000 <= mine.call.duration_ms < 10_000
    assert before <= mine.sent_ms <= alice.now_ms()
    assert describe_call(mine) == "Outgoing video call, 0:01"
    assert call.log_entry == mine  # written before the call said "ended"
    [theirs] = calls_of(bob, alice)
    assert (theirs.direction, theirs.status, theirs.message_id) == ("in", "read", call.call_id)
    assert theirs.call is not None and theirs.call.outcome == "completed"
    assert describe_call(theirs).startswith("Incoming video call, 0:0")
    assert (theirs.expire_timer_s, theirs.expire_at_ms) == (0, None)


async def test_a_cancelled_call_is_missed_on_the_callee_and_unread_until_seen(
    people: People,
    pumps: tuple[Pump, Pump],  # noqa: F811 (the fixture imported above)
) -> None:
    alice, bob = people.alice, people.bob
    call = await alice.call("bob")
    incoming = await pumps[1].incoming()
    await call.wait_for("ringing", 10)
    await call.end()  # Alice gives up while it rings
    await incoming.call.wait_for("ended", 10)
    [mine] = calls_of(alice, bob)
    assert mine.call is not None and mine.call.outcome == "cancelled"
    assert describe_call(mine) == "Outgoing voice call, cancelled"
    [missed] = calls_of(bob, alice)
    assert missed.call is not None
    assert (missed.call.outcome, missed.call.end_reason, missed.call.duration_ms) == (
        "missed", "hangup", None,
    )  # fmt: skip
    assert (missed.direction, missed.status) == ("in", "received")
    assert describe_call(missed) == "Missed voice call"
    [summary] = bob.conversations()
    assert summary.unread == 1  # a missed call counts as unread
    assert (summary.last_kind, summary.last_text, summary.last_call) == ("call", None, missed.call)
    # The conversation list shows the call, not an empty text (and --json the call itself).
    assert veil_cli(bob.profile, "inbox").stdout == "alice (1 unread): ☎ Missed voice call\n"
    [listed] = [
        json.loads(line) for line in veil_cli(bob.profile, "inbox", "--json").stdout.splitlines()
    ]
    assert (listed["last_kind"], listed["last_text"], listed["unread"]) == ("call", None, 1)
    assert listed["call"] == {
        "direction": "in", "media": "audio", "outcome": "missed", "end_reason": "hangup",
        "duration_s": None, "text": "Missed voice call",
    }  # fmt: skip
    # Seeing it marks it read, but no read receipt names it: Alice's line stays "sent".
    assert await bob.mark_read(alice.account.account_id) == 0
    assert calls_of(bob, alice)[0].status == "read"
    await bob.settle()
    await asyncio.sleep(0.5)
    assert calls_of(alice, bob)[0].status == "sent"


async def test_declined_no_answer_and_busy_are_logged(
    people: People,
    pumps: tuple[Pump, Pump],  # noqa: F811 (the fixture imported above)
) -> None:
    alice, bob = people.alice, people.bob
    declined = await alice.call("bob", video=True)
    incoming = await pumps[1].incoming()
    await incoming.reject()
    await declined.wait_for("ended", 10)
    # While a second call rings, a third meets a busy device.
    alice.calls.ring_timeout_s = 2.0
    unanswered = await alice.call("bob")
    ringing = await pumps[1].incoming()
    busy = await alice.call("bob")
    with pytest.raises(CallEndedError, match="busy"):
        await busy.wait_for("connected", 10)
    await unanswered.wait_for("ended", 10)
    await ringing.call.wait_for("ended", 10)
    by_id = {m.message_id: m for m in calls_of(alice, bob)}
    assert [describe_call(by_id[c.call_id]) for c in (declined, unanswered, busy)] == [
        "Outgoing video call, declined",
        "Outgoing voice call, no answer",
        "Outgoing voice call, busy",
    ]
    by_id = {m.message_id: m for m in calls_of(bob, alice)}
    assert [describe_call(by_id[c.call_id]) for c in (declined, unanswered, busy)] == [
        "Incoming video call, declined",
        "Missed voice call",
        "Missed voice call (you were on another call)",
    ]
    # `veil inbox NAME` shows them, in text and as JSON (each process reads the profile).
    shown = veil_cli(bob.profile, "inbox", "alice", "--no-read").stdout.splitlines()
    assert [line.split(" ", 2)[2] for line in shown] == [
        "Incoming video call, declined",
        "Missed voice call",
        "Missed voice call (you were on another call)",
    ]
    assert all(line.startswith("☎ ") for line in shown)
    lines = veil_cli(alice.profile, "inbox", "bob", "--json").stdout.splitlines()
    first = json.loads(lines[0])
    assert {k: first[k] for k in ("type", "id", "direction", "media", "outcome")} == {
        "type": "call",
        "id": declined.call_id.hex(),
        "direction": "out",
        "media": "video",
        "outcome": "declined",
    }
    assert (first["end_reason"], first["duration_s"], first["from"]) == ("rejected", None, "alice")
    assert first["text"] == "Outgoing video call, declined"


async def test_call_lines_follow_the_disappearing_timer(people: People) -> None:
    """The conversation's timer applies: the caller's line counts from the end of the call,
    the callee's missed call from when it is read (like a received message)."""
    alice_clock, bob_clock = FakeClock(), FakeClock()
    async with (
        Client(people.alice.profile, now_ms=alice_clock) as alice,
        Client(people.bob.profile, now_ms=bob_clock) as bob,
    ):
        alice_pump, bob_pump = Pump(alice), Pump(bob)
        try:
            alice_id = alice.account.account_id
            await alice.set_timer("bob", 30)
            await until(lambda: bob.timer(alice_id) == 30, what="the timer at bob")
            call = await alice.call("bob")
            incoming = await bob_pump.incoming()
            await call.end()
            await incoming.call.wait_for("ended", 10)
            [mine] = calls_of(alice, bob)
            assert (mine.expire_timer_s, mine.expire_at_ms) == (30, alice_clock.now + 30_000)
            [missed] = calls_of(bob, alice)
            assert (missed.expire_timer_s, missed.expire_at_ms) == (30, None)  # not read yet
            alice_clock.advance(29)
            assert alice.expire() == 0
            alice_clock.advance(2)
            assert alice.expire() == 1
            assert calls_of(alice, bob) == []
            bob_clock.advance(3600)  # unread: still there an hour later
            assert bob.expire() == 0 and len(calls_of(bob, alice)) == 1
            await bob.mark_read(alice_id)
            assert calls_of(bob, alice)[0].expire_at_ms == bob_clock.now + 30_000
            bob_clock.advance(31)
            assert bob.expire() == 1
            assert calls_of(bob, alice) == []
        finally:
            await alice.calls.close()
            await bob.calls.close()
            await alice_pump.stop()
            await bob_pump.stop()


async def test_a_blocked_caller_leaves_no_line(
    people: People,
    pumps: tuple[Pump, Pump],  # noqa: F811 (the fixture imported above)
) -> None:
    """A call that was ringing when Bob blocked Alice ends without a line on Bob's device
    (and later calls never reach him)."""
    alice, bob = people.alice, people.bob
    call = await alice.call("bob")
    incoming = await pumps[1].incoming()
    await bob.block("alice")
    await incoming.reject()
    await call.wait_for("ended", 10)
    assert calls_of(bob, alice) == []
    assert [m.call.outcome for m in calls_of(alice, bob) if m.call] == ["declined"]


async def test_a_strangers_call_lands_in_the_message_requests(
    people: People, veil_server: VeilServer, tmp_path: Path
) -> None:
    carol = await Client.register(tmp_path / "carol", veil_server.url, "carol")
    carol_pump, bob_pump = Pump(carol), Pump(people.bob)
    try:
        call = await carol.call("bob")
        incoming = await bob_pump.incoming()
        assert incoming.request
        await call.end()
        await incoming.call.wait_for("ended", 10)
        [request] = people.bob.requests()
        assert request.conversation == carol.account.account_id and request.unread == 1
        [line] = calls_of(people.bob, carol)
        assert describe_call(line) == "Missed voice call"
        [mine] = carol.conversations()  # the caller started an accepted conversation
        assert mine.state == "accepted"
    finally:
        await carol.calls.close()
        await people.bob.calls.close()
        await carol_pump.stop()
        await bob_pump.stop()
        await carol.close()


async def test_a_call_taken_on_another_device_says_so(
    people: People,
    two_bobs: TwoBobs,  # noqa: F811 (the fixture imported above)
) -> None:
    bob2, bob1, second = two_bobs.bob2, two_bobs.bob1, two_bobs.second
    call = await people.alice.call("bob")
    ringing1, ringing2 = await bob1.incoming(), await second.incoming()
    answered = await ringing2.accept()
    await call.wait_for("connected", 15)
    await ringing1.call.wait_for("ended", 10)
    await call.end()
    await answered.wait_for("ended", 10)
    [taken] = calls_of(bob2, people.alice)
    assert taken.call is not None and taken.call.outcome == "completed"
    # Bob's first device said "answered on another device" when the call was taken; the
    # second sends its fuller line when the call ends, and both devices agree.
    await until(
        lambda: calls_of(people.bob, people.alice)[0].call == taken.call,
        what="the answering device's line on the other one",
    )
    [elsewhere] = calls_of(people.bob, people.alice)
    assert describe_call(elsewhere) == describe_call(taken)
    assert describe_call(elsewhere).startswith("Incoming voice call, 0:0")
    assert elsewhere.status == "read"  # nothing to catch up on
    assert (elsewhere.message_id, elsewhere.sender_device_id) == (
        call.call_id, people.alice.account.device_id,
    )  # fmt: skip


async def test_declining_on_one_device_stops_the_others_ringing_at_once(
    people: People,
    two_bobs: TwoBobs,  # noqa: F811 (the fixture imported above)
) -> None:
    """Bob has two devices and declines on the second: the first stops ringing within a
    second or two (``declined_elsewhere``: the decline came to it in a sync copy, long before
    the ring timeout), Alice's call ends ``rejected`` at once, and both of Bob's devices end
    with the same line: the declining device's."""
    bob2, bob1, second = two_bobs.bob2, two_bobs.bob1, two_bobs.second
    call = await people.alice.call("bob")
    ringing1, ringing2 = await bob1.incoming(), await second.incoming()
    await call.wait_for("ringing", 10)
    declined_at = time.monotonic()
    await ringing2.reject()
    await ringing1.call.wait_for("ended", 2)
    assert time.monotonic() - declined_at < 2
    assert (ringing1.call.end_reason, ringing2.call.end_reason) == (
        "declined_elsewhere", "rejected",
    )  # fmt: skip
    with pytest.raises(CallEndedError, match="rejected"):
        await call.wait_for("connected", 2)
    assert (call.end_reason, call.ended_by) == ("rejected", "peer")
    [declined] = calls_of(bob2, people.alice)
    assert describe_call(declined) == "Incoming voice call, declined"
    await until(
        lambda: [m.call for m in calls_of(people.bob, people.alice)] == [declined.call],
        what="the declining device's line on the other one",
    )
    [elsewhere] = calls_of(people.bob, people.alice)
    assert describe_call(elsewhere) == describe_call(declined)
    assert elsewhere.status == "read"  # not a missed call to catch up on
    [mine] = calls_of(people.alice, people.bob)
    assert describe_call(mine) == "Outgoing voice call, declined"
    with pytest.raises(CallEndedError):
        await ringing1.accept()  # too late: it no longer rings


async def test_the_callers_other_device_shows_the_call_too(people: People, tmp_path: Path) -> None:
    """Alice calls from her first device; her second one, which never sees the call's
    signalling, gets the same line through a sync copy -- once, however often it arrives."""
    alice2 = await linked(people.alice, tmp_path / "alice2", people.server.url)
    alice, bob, second = Pump(people.alice), Pump(people.bob), Pump(alice2)
    try:
        await people.alice.send("bob", "hi")  # Alice's first device learns her second one
        call = await people.alice.call("bob", video=True)
        incoming = await bob.incoming()
        answered = await incoming.accept()
        await call.wait_for("connected", 15)
        await call.end()
        await answered.wait_for("ended", 10)
        await until(lambda: calls_of(alice2, people.bob) != [], what="the line on alice2")
        [mine] = calls_of(people.alice, people.bob)
        [synced] = calls_of(alice2, people.bob)
        assert synced.message_id == mine.message_id == call.call_id
        assert (synced.direction, synced.status, synced.sent_ms) == ("out", "sent", mine.sent_ms)
        assert synced.sender_device_id == people.alice.account.device_id
        assert synced.call == mine.call
        assert describe_call(synced).startswith("Outgoing video call, 0:0")
        seen: list[object] = []

        def logged() -> list[MessageRecord]:
            seen.extend(_drain(second))
            return [e.line for e in seen if isinstance(e, CallLogSynced)]

        await until(lambda: logged() != [], what="the CallLogSynced event")
        assert logged() == [synced]
        # The same copy again (a retry) changes nothing on the second device.
        await _resend_line(people.alice, mine)
        await people.alice.send("bob", "after")  # a marker that the copy was processed
        await until(
            lambda: any(m.text == "after" for m in alice2.messages(people.bob.account.account_id)),
            what="the marker on alice2",
        )
        assert calls_of(alice2, people.bob) == [synced]
        assert logged() == [synced]  # no second event either
        # `veil inbox` on the second device lists the call like the first.
        shown = veil_cli(alice2.profile, "inbox", "bob", "--no-read").stdout.splitlines()
        assert [line.split(" ", 2)[2] for line in shown if line.startswith("☎")] == [
            describe_call(synced)
        ]
    finally:
        for client in (people.alice, people.bob, alice2):
            await client.calls.close()
        for pump in (alice, bob, second):
            await pump.stop()
        await alice2.close()


def _drain(pump: Pump) -> list[object]:
    out = []
    while not pump.events.empty():
        out.append(pump.events.get_nowait())
    return out


async def _resend_line(client: Client, line: MessageRecord) -> None:
    content = call_log_content(line)
    assert content is not None
    await client.tell_own_devices(line.conversation, content)
