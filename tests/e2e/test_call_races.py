"""Races between the devices of a callee, through a real ``veil server`` (ARCHITECTURE.md §5).

Signals from different devices can cross: the tests put them in the racy order
deterministically by holding back one device's handling of a signal until another one has
been handled (the signals still travel through the server as they would).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from veil.client import Client, IncomingCall, describe_call
from veil.engine import CallSignalReceived

from .conftest import People
from .test_call_log import calls_of
from .test_calls import Pump, TwoBobs, loopback_only, two_bobs, until  # noqa: F401 (fixtures)


def hold_back(client: Client, held: str, until_kind: str, *, own: bool) -> list[str]:
    """Make ``client`` handle its ``held`` call signals only after one ``until_kind`` signal
    (from our own devices with ``own``, else from the peer) has been handled. Returns the
    kinds as handled, in order."""
    manager = client.calls
    original: Callable[[CallSignalReceived], None] = manager.on_signal
    me = client.account.account_id
    stash: list[CallSignalReceived] = []
    order: list[str] = []
    released = False

    def on_signal(event: CallSignalReceived) -> None:
        nonlocal released
        kind = event.signal.kind
        if kind == held and not released:
            stash.append(event)
            return
        original(event)
        order.append(kind)
        if kind == until_kind and (event.sender_account_id == me) == own and not released:
            released = True
            for late in stash:
                original(late)
                order.append(late.signal.kind)

    manager.on_signal = on_signal  # type: ignore[method-assign]
    return order


async def test_an_answer_crossing_a_decline_ends_the_answering_device_at_once(
    people: People,
    two_bobs: TwoBobs,  # noqa: F811 (the fixture imported above)
) -> None:
    """Bob has two devices; one accepts at the very moment the other declines, and the
    caller gets the decline first: the call ends ``rejected``, and the late answer gets a
    ``hangup`` saying so -- the answering device ends at once, not after the connect
    timeout (and nobody answers that hangup)."""
    alice, bob1, second = two_bobs.alice, two_bobs.bob1, two_bobs.second
    order = hold_back(people.alice, "answer", "reject", own=False)
    call = await people.alice.call("bob", audio=True, video=False)
    ringing1, ringing2 = await bob1.incoming(), await second.incoming()
    accepted, _ = await asyncio.gather(ringing2.accept(), ringing1.reject())
    await call.wait_for("ended", 10)
    assert (call.end_reason, call.ended_by) == ("rejected", "peer")
    await until(lambda: "answer" in order, what="the answer handled at alice")
    assert order.index("reject") < order.index("answer")
    started = time.monotonic()
    await accepted.wait_for("ended", 2)
    assert time.monotonic() - started < 2
    assert (accepted.end_reason, accepted.ended_by) == ("rejected", "peer")
    await asyncio.sleep(0.5)  # no ping-pong: one hangup, and no reply to it
    assert second.signals.count("hangup") == 1
    assert alice.signals.count("hangup") == 0
    assert call.state == "ended" and call.end_reason == "rejected"


async def test_a_decline_that_reaches_a_device_before_the_offer_keeps_it_from_ringing(
    people: People,
    two_bobs: TwoBobs,  # noqa: F811 (the fixture imported above)
) -> None:
    """Bob's first device declines; his second device gets that decline (the sync copy)
    before the offer: it remembers the call id, so the offer does not ring there, and it
    writes the same ``declined`` line as a device that was ringing."""
    bob2, bob1, second = two_bobs.bob2, two_bobs.bob1, two_bobs.second
    order = hold_back(bob2, "offer", "reject", own=True)
    call = await people.alice.call("bob", audio=True, video=False)
    ringing1 = await bob1.incoming()
    await ringing1.reject()
    await call.wait_for("ended", 10)
    assert call.end_reason == "rejected"
    await until(lambda: "offer" in order, what="the offer handled at bob2")
    assert order.index("reject") < order.index("offer")
    seen = bob2.calls.calls.get(call.call_id)
    assert seen is not None
    assert (seen.state, seen.end_reason) == ("ended", "declined_elsewhere")
    assert bob2.calls.take_incoming() == []
    await asyncio.sleep(0.5)
    events = [second.events.get_nowait() for _ in range(second.events.qsize())]
    assert not [e for e in events if isinstance(e, IncomingCall)]  # it never rang
    assert second.signals.count("offer") == 1
    [line] = calls_of(bob2, people.alice)  # as if the decline came while it rang
    assert describe_call(line) == "Incoming voice call, declined"
    assert line.status == "read"
