"""End to end, the conversation rules of issue 5 against a real ``veil server`` process:
disappearing messages, message requests, follows, blocking, franked reports.

Clients run on injected clocks (:class:`Clock`), so a 24-hour timer takes no time to test.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from veil.client import (
    Client,
    ClientError,
    ConversationChanged,
    MessageReceived,
    ReceiptReceived,
    ServerError,
    TimerChanged,
)
from veil.client import sending as sending_module
from veil.core import franking
from veil.engine import DecryptFailure, MessageRecord
from veil.engine.evidence import Evidence
from veil.wire.reports import ReportedMessage, ReportRequest

from .conftest import People, VeilServer, linked, veil_cli


class Clock:
    """A settable clock in milliseconds (starts at the real time)."""

    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


async def _reopen(client: Client, clock: Clock) -> Client:
    """The same profile as a client on ``clock``."""
    profile = client.profile
    await client.close()
    again = Client(profile, now_ms=clock)
    again.open()
    return again


async def _register(server: VeilServer, tmp_path: Path, name: str) -> Client:
    return await Client.register(tmp_path / name, server.url, name)


def _of(kind: type, events: list[object]) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
async def strangers(
    veil_server: VeilServer, tmp_path: Path
) -> AsyncIterator[tuple[Client, Client]]:
    """Carol and Dave: registered, no follows, never talked."""
    carol = await _register(veil_server, tmp_path, "carol")
    dave = await _register(veil_server, tmp_path, "dave")
    try:
        yield carol, dave
    finally:
        await carol.close()
        await dave.close()


# --- disappearing messages --------------------------------------------------------------------


async def test_a_timer_applies_to_new_messages_and_each_copy_counts_on_its_own(
    people: People,
) -> None:
    alice_clock, bob_clock = Clock(), Clock()
    alice = await _reopen(people.alice, alice_clock)
    bob = await _reopen(people.bob, bob_clock)
    try:
        bob_id = (await alice.resolve("bob")).account_id
        alice_id = alice.account.account_id
        await alice.send("bob", "before the timer")
        await alice.set_timer("bob", 30)
        await alice.send("bob", "secret")
        events = await bob.receive()
        changed = _of(TimerChanged, events)
        assert [(c.seconds, c.by_account_id) for c in changed] == [(30, alice_id)]
        received = {e.text: e for e in _of(MessageReceived, events)}
        assert received["secret"].expire_timer_s == 30
        assert received["before the timer"].expire_timer_s == 0
        assert alice.timer(bob_id) == 30 and bob.timer(alice_id) == 30

        # Alice's copy counts from sending; Bob's waits until he reads it.
        alice_clock.advance(31)
        assert alice.expire() == 1
        assert [m.text for m in alice.messages(bob_id) if m.kind == "message"] == [
            "before the timer"
        ]
        bob_clock.advance(3600)
        assert bob.expire() == 0
        await bob.mark_read(alice_id)
        bob_clock.advance(29)
        assert bob.expire() == 0
        bob_clock.advance(2)
        assert bob.expire() == 1
        shown = bob.messages(alice_id)
        assert [m.text for m in shown if m.kind == "message"] == ["before the timer"]
        assert [m.expire_timer_s for m in shown if m.kind == "timer"] == [30]

        # Either side may turn it off; later messages stay.
        await bob.set_timer("alice", 0)
        await alice.receive()
        assert alice.timer(bob_id) == 0
        await alice.send("bob", "stays")
        later = _of(MessageReceived, await bob.receive())
        assert [(m.text, m.expire_timer_s) for m in later] == [("stays", 0)]
    finally:
        await alice.close()
        await bob.close()


async def test_the_conversation_list_shows_a_timer_change_like_the_conversation(
    people: People,
) -> None:
    """A conversation whose latest line is a timer change: ``veil inbox`` shows that line as
    ``veil inbox NAME`` does (a timer line has no text), on both sides, ``off`` included."""
    alice, bob = people.alice, people.bob
    await alice.send("bob", "hello")
    await bob.receive()
    await alice.set_timer("bob", 300)
    assert _of(TimerChanged, await bob.receive())
    line = "alice set disappearing messages to 5 minutes"
    assert veil_cli(alice.profile, "inbox").stdout == f"bob: ⏱ {line}\n"
    assert veil_cli(bob.profile, "inbox").stdout == f"alice (1 unread): ⏱ {line}\n"
    shown = veil_cli(bob.profile, "inbox", "alice", "--no-read").stdout.splitlines()
    assert shown[-1] == line  # the same words as the conversation
    [listed] = [json.loads(x) for x in veil_cli(bob.profile, "inbox", "--json").stdout.splitlines()]
    assert (listed["last_kind"], listed["last_text"], listed["timer_seconds"]) == (
        "timer",
        None,
        300,
    )

    await bob.set_timer("alice", 0)
    await alice.receive()
    line = "bob set disappearing messages to off"
    assert veil_cli(alice.profile, "inbox").stdout == f"bob: ⏱ {line}\n"
    assert veil_cli(bob.profile, "inbox").stdout == f"alice (1 unread): ⏱ {line}\n"
    [listed] = [json.loads(x) for x in veil_cli(bob.profile, "inbox", "--json").stdout.splitlines()]
    assert listed["timer_seconds"] == 0

    await alice.send("bob", "after")  # a message after it: the list shows the message again
    await bob.receive()
    assert veil_cli(bob.profile, "inbox").stdout == "alice (2 unread): after\n"


async def test_timer_changes_while_offline_and_expiry_while_the_client_is_stopped(
    people: People,
) -> None:
    clock = Clock()
    alice = people.alice
    await alice.set_timer("bob", 5)
    await alice.send("bob", "five seconds")
    await alice.set_timer("bob", 60)
    await alice.send("bob", "one minute")
    bob = await _reopen(people.bob, clock)
    alice_id = alice.account.account_id
    got = await bob.receive()  # Bob was offline for all of it
    assert [(m.text, m.expire_timer_s) for m in _of(MessageReceived, got)] == [
        ("five seconds", 5),
        ("one minute", 60),
    ]
    assert bob.timer(alice_id) == 60
    await bob.mark_read(alice_id)
    await bob.close()

    clock.advance(10)  # nothing ran while the time passed: the next start purges
    bob = Client(people.bob.profile, now_ms=clock)
    bob.open()
    assert [m.text for m in bob.messages(alice_id) if m.kind == "message"] == ["one minute"]
    await bob.close()
    clock.advance(60)
    bob = Client(people.bob.profile, now_ms=clock)
    bob.open()
    assert [m for m in bob.messages(alice_id) if m.kind == "message"] == []
    await bob.close()


async def test_out_of_range_timers_are_refused(people: People) -> None:
    for seconds in (1, 4, 86_401):
        with pytest.raises(ClientError, match="5 s to 24 h"):
            await people.alice.set_timer("bob", seconds)


async def test_a_linked_device_learns_the_timer_and_the_block(
    people: People, tmp_path: Path
) -> None:
    alice2 = await linked(people.alice, tmp_path / "alice2", people.server.url)
    try:
        await people.alice.send("bob", "hello from the first device")  # learns the new device
        await people.alice.set_timer("bob", 300)
        carol = await _register(people.server, tmp_path, "carol")
        await people.alice.block("carol")
        events = await alice2.receive()
        bob_id = (await alice2.resolve("bob")).account_id
        carol_id = carol.account.account_id
        assert [e.seconds for e in _of(TimerChanged, events)] == [300]
        assert alice2.timer(bob_id) == 300
        blocked = _of(ConversationChanged, events)
        assert [(b.conversation, b.action) for b in blocked] == [(carol_id, "block")]
        assert alice2.store.is_blocked(carol_id)
        await carol.close()
    finally:
        await alice2.close()


# --- message requests ---------------------------------------------------------------------------


async def test_a_stranger_lands_in_requests_without_receipts_until_accepted(
    strangers: tuple[Client, Client],
) -> None:
    carol, dave = strangers
    carol_id = carol.account.account_id
    await carol.send("dave", "hi, we have not met")
    first = _of(MessageReceived, await dave.receive())
    assert [(m.text, m.request) for m in first] == [("hi, we have not met", True)]
    assert [c.conversation for c in dave.requests()] == [carol_id]
    assert [c.conversation for c in dave.store.conversations("accepted")] == []
    await dave.mark_read(carol_id)  # shown, but no read receipt goes back
    await dave.settle()
    assert _of(ReceiptReceived, await carol.receive(timeout=0.5)) == []

    await dave.accept("carol")
    assert dave.requests() == []
    await carol.send("dave", "thanks for accepting")
    second = _of(MessageReceived, await dave.receive())
    assert [(m.text, m.request) for m in second] == [("thanks for accepting", False)]
    await dave.settle()
    receipts = _of(ReceiptReceived, await carol.receive())
    assert [r.kind for r in receipts] == ["delivered"]


async def test_follows_decide_who_may_start_a_chat(veil_server: VeilServer, tmp_path: Path) -> None:
    erin = await _register(veil_server, tmp_path, "erin")
    frank = await _register(veil_server, tmp_path, "frank")
    gina = await _register(veil_server, tmp_path, "gina")
    try:
        assert not (await erin.follow("frank")).followed_by  # one way: still a request
        await erin.send("frank", "one-way follow")
        assert [m.request for m in _of(MessageReceived, await frank.receive())] == [True]

        await gina.follow("erin")
        relation = await erin.follow("gina")
        assert relation.following and relation.followed_by
        await gina.send("erin", "we follow each other")
        assert [m.request for m in _of(MessageReceived, await erin.receive())] == [False]
        assert {c.username for c in await erin.following()} == {"frank", "gina"}
        assert {c.username for c in await erin.followers()} == {"gina"}
        await erin.unfollow("frank")
        assert {c.username for c in await erin.following()} == {"gina"}
    finally:
        for c in (erin, frank, gina):
            await c.close()


async def test_whoever_wrote_first_hears_the_reply_in_the_inbox(
    strangers: tuple[Client, Client],
) -> None:
    carol, dave = strangers
    await carol.send("dave", "hello?")
    await dave.receive()
    await dave.send("carol", "hello, stranger")  # replying accepts the request
    reply = _of(MessageReceived, await carol.receive())
    assert [(m.text, m.request) for m in reply] == [("hello, stranger", False)]
    assert dave.requests() == []


async def test_declining_deletes_the_request_and_tells_nobody(
    strangers: tuple[Client, Client],
) -> None:
    carol, dave = strangers
    carol_id = carol.account.account_id
    await carol.send("dave", "buy my stuff")
    await dave.receive()
    await dave.decline("carol")
    assert dave.requests() == [] and dave.messages(carol_id) == []
    assert _of(ReceiptReceived, await carol.receive(timeout=0.3)) == []
    await carol.send("dave", "again")  # a new request
    assert [m.request for m in _of(MessageReceived, await dave.receive())] == [True]
    assert [c.conversation for c in dave.requests()] == [carol_id]


# --- blocking -------------------------------------------------------------------------------


async def test_a_blocked_sender_is_not_told_and_nothing_reaches_the_blocker(
    strangers: tuple[Client, Client], veil_server: VeilServer
) -> None:
    carol, dave = strangers
    carol_id, dave_id = carol.account.account_id, dave.account.account_id
    await carol.send("dave", "queued before the block")
    await dave.block("carol")  # Dave was offline: the queued message goes too
    result = await carol.send("dave", "after the block")
    assert not result.queued and result.devices  # looks like any send
    assert _of(MessageReceived, await dave.receive()) == []
    with sqlite3.connect(veil_server.database) as db:
        queued = db.execute(
            "SELECT count(*) FROM envelopes WHERE account_id = ? AND sender_account_id = ?",
            (dave_id, carol_id),
        ).fetchone()[0]
    assert queued == 0
    assert [c.username for c in await dave.blocked()] == ["carol"]
    with pytest.raises(ClientError, match="you blocked carol"):
        await dave.send("carol", "and you cannot write to someone you block")
    with pytest.raises(ServerError) as hidden:
        await carol._api().lookup("dave")  # the blocked cannot see the blocker
    assert hidden.value.status == 404

    await dave.unblock("carol")
    await carol.send("dave", "after the unblock")
    assert [m.text for m in _of(MessageReceived, await dave.receive())] == ["after the unblock"]


async def test_the_client_drops_what_slips_through_a_block(
    strangers: tuple[Client, Client], veil_server: VeilServer
) -> None:
    """An envelope that reaches the blocker anyway (queued by a send that raced the block, or
    by a server that ignores blocks) is dropped by the blocker's client."""
    carol, dave = strangers
    carol_id, dave_id = carol.account.account_id, dave.account.account_id
    await carol.send("dave", "slips through")
    with sqlite3.connect(veil_server.database) as db:
        rows = db.execute("SELECT * FROM envelopes WHERE account_id = ?", (dave_id,)).fetchall()
    assert len(rows) == 1
    await dave.block("carol")  # the server drops the queued envelope...
    with sqlite3.connect(veil_server.database) as db:  # ...which a racing send puts back
        marks = ",".join("?" * len(rows[0]))
        db.execute(f"INSERT INTO envelopes VALUES ({marks})", rows[0])
    assert _of(MessageReceived, await dave.receive()) == []
    assert dave.engine.dropped["blocked"] == 1
    assert dave.messages(carol_id) == []


# --- franking and reports -----------------------------------------------------------------------


def _admin_reports(server: VeilServer) -> list[dict[str, object]]:
    """What the operator's ``veil admin reports --json`` lists."""
    data = str(server.data_dir)
    proc = veil_cli(server.data_dir / "no-profile", "admin", "reports", "--data", data, "--json")
    reports: list[dict[str, object]] = json.loads(proc.stdout)["reports"]
    return reports


def _revealing(sender: str, record: MessageRecord, content: bytes) -> ReportRequest:
    """A report of ``record`` that reveals ``content`` in place of what was received."""
    assert record.franking is not None
    evidence = Evidence.decode(record.franking)
    revealed = ReportedMessage(
        content,
        evidence.franking_key,
        evidence.reporting_tag,
        evidence.key_id,
        record.sender_device_id,
        evidence.recipient_device_id,
        record.server_ms or 0,
    )
    return ReportRequest(sender, [revealed])


async def test_a_reported_message_is_verified_and_nothing_else_is_revealed(people: People) -> None:
    alice, bob = people.alice, people.bob
    alice_id = alice.account.account_id
    await alice.send("bob", "an unreported private line")
    await alice.send("bob", "an abusive line")
    received = _of(MessageReceived, await bob.receive())
    abusive = next(m for m in received if m.text == "an abusive line")
    answer = await bob.report("alice", [abusive.message_id], reason="harassment")
    assert answer.messages == 1

    reports = _admin_reports(people.server)
    assert len(reports) == 1
    text = json.dumps(reports[0])
    assert "an abusive line" in text and "harassment" in text
    assert "an unreported private line" not in text
    assert b"an unreported private line" not in people.server.database_bytes()

    with pytest.raises(ClientError, match="already"):
        await bob.report("alice", [abusive.message_id])  # a replayed report

    record = bob.messages(alice_id)[-1]
    assert record.franking is not None
    evidence = Evidence.decode(record.franking)
    altered = evidence.content.replace(b"abusive", b"friendly")
    with pytest.raises(ServerError) as refused:
        await bob._api().report(_revealing(alice_id, record, altered))
    assert refused.value.status == 422 and refused.value.code == "report_invalid"
    assert len(_admin_reports(people.server)) == 1  # nothing recorded


async def test_a_message_with_a_forged_franking_tag_is_never_shown(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = franking.frank

    def lying(content: bytes, rng: object) -> franking.Franked:
        made = real(content, rng)  # type: ignore[arg-type]
        return franking.Franked(made.plaintext, bytes(32))

    monkeypatch.setattr(sending_module.franking, "frank", lying)
    await people.alice.send("bob", "unreportable")
    monkeypatch.undo()
    events = await people.bob.receive()
    assert _of(MessageReceived, events) == []
    assert [f.reason for f in _of(DecryptFailure, events)] == ["bad_franking"]
    assert people.bob.engine.failures["bad_franking"] == 1
    await people.alice.send("bob", "honest again")
    assert [m.text for m in _of(MessageReceived, await people.bob.receive())] == ["honest again"]


async def test_an_expired_message_cannot_be_reported(people: People) -> None:
    clock = Clock()
    bob = await _reopen(people.bob, clock)
    try:
        await people.alice.set_timer("bob", 5)
        await people.alice.send("bob", "gone soon")
        got = _of(MessageReceived, await bob.receive())
        await bob.mark_read(people.alice.account.account_id)
        clock.advance(6)
        bob.expire()
        with pytest.raises(ClientError, match="disappeared"):
            await bob.report("alice", [got[0].message_id])
    finally:
        await bob.close()


async def test_a_reported_attachment_is_pinned_by_key_and_digest(
    people: People, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"the picture" * 100)
    await people.alice.send_file("bob", photo, caption="look")
    got = _of(MessageReceived, await people.bob.receive())
    assert got[0].attachment is not None
    alice_id = people.alice.account.account_id
    record = people.bob.messages(alice_id)[-1]
    assert record.franking is not None
    evidence = Evidence.decode(record.franking)
    pointer = got[0].attachment
    # Swapping the attachment key (a salamander's second key) breaks the franking tag.
    swapped = evidence.content.replace(pointer.key, bytes(32))
    assert swapped != evidence.content
    with pytest.raises(ServerError) as refused:
        await people.bob._api().report(_revealing(alice_id, record, swapped))
    assert refused.value.code == "report_invalid"
    answer = await people.bob.report("alice", [got[0].message_id])
    assert answer.messages == 1
    listed = json.dumps(_admin_reports(people.server))
    assert "photo.bin" in listed and "look" in listed
    assert pointer.key.hex() not in listed  # the operator sees what, not how to open it


# --- the CLI ------------------------------------------------------------------------------


def test_the_cli_rules_commands(veil_server: VeilServer, tmp_path: Path) -> None:
    a, b = tmp_path / "ann", tmp_path / "ben"
    veil_cli(a, "register", "ann", "--server", veil_server.url)
    veil_cli(b, "register", "ben", "--server", veil_server.url)
    veil_cli(a, "send", "ben", "hi ben")
    requests = veil_cli(b, "requests", "--json").stdout
    assert requests == ""  # not received yet
    got = [json.loads(x) for x in veil_cli(b, "receive", "--json").stdout.splitlines()]
    assert [(e["text"], e.get("request")) for e in got] == [("hi ben", True)]
    listed = [json.loads(x) for x in veil_cli(b, "requests", "--json").stdout.splitlines()]
    assert [r["with"] for r in listed] == ["ann"]
    veil_cli(b, "accept", "ann")
    assert "no message requests" in veil_cli(b, "requests").stdout

    out = veil_cli(a, "timer", "ben", "5m").stdout
    assert "5 minutes" in out
    bad = veil_cli(a, "timer", "ben", "3s", check=False)
    assert bad.returncode == 1 and "out of range" in bad.stderr
    veil_cli(a, "send", "ben", "disappearing")
    got = [json.loads(x) for x in veil_cli(b, "receive", "--json").stdout.splitlines()]
    timer = [e for e in got if e["type"] == "timer"]
    message = [e for e in got if e["type"] == "message"]
    assert [t["seconds"] for t in timer] == [300]
    assert [(m["text"], m["expires_in"]) for m in message] == [("disappearing", 300)]
    # receive showed it: a read receipt went back, and Ben's copy is counting down.
    shown = [json.loads(x) for x in veil_cli(b, "inbox", "ann", "--json").stdout.splitlines()]
    counting = [m for m in shown if m.get("text") == "disappearing"]
    assert counting and 0 < counting[0]["expires_in"] <= 300
    receipts = [json.loads(x) for x in veil_cli(a, "receive", "--json").stdout.splitlines()]
    assert "read" in [r.get("kind") for r in receipts if r["type"] == "receipt"]

    veil_cli(b, "block", "ann")
    assert veil_cli(b, "blocked").stdout.split() == ["ann"]
    assert veil_cli(a, "send", "ben", "blocked?").returncode == 0
    assert veil_cli(b, "receive", "--json").stdout == ""
    report = veil_cli(b, "report", "ann", "--reason", "spam", "--json")
    assert json.loads(report.stdout)["messages"] >= 1
