"""``veil chat``: the Textual client driven with a Pilot against a real ``veil server``.

Alice's TUI runs on its own :class:`Client` over alice's profile (a profile can be opened by
several clients: SQLite in WAL mode); bob is the SDK client of the ``people`` fixture. The
assertions read what the widgets render.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, Static

from veil.cli.main import main
from veil.cli.tui_app import ChatApp, MessageRow
from veil.client import Client, MessageReceived, ReceiptReceived

from .conftest import People


class FakeClock:
    """A clock the test moves by hand (milliseconds)."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def alice_tui(people: People, clock: FakeClock) -> AsyncIterator[Client]:
    """A second client on alice's profile, on the fake clock, for her TUI."""
    async with Client(people.alice.profile, now_ms=clock) as client:
        yield client


# --- reading the screen -------------------------------------------------------------------
def list_lines(app: ChatApp) -> list[str]:
    return [str(label.content) for label in app.query("#conversations Label").results(Label)]


def rows(app: ChatApp) -> list[str]:
    return [str(row.content) for row in app.query("#messages MessageRow").results(MessageRow)]


def header(app: ChatApp) -> str:
    return str(app.query_one("#header", Static).content)


def status(app: ChatApp) -> str:
    return str(app.query_one("#status", Static).content)


async def until(
    pilot: Pilot[None], check: Callable[[], bool], what: str, wait: float = 20.0
) -> None:
    deadline = time.monotonic() + wait
    while not check():
        if time.monotonic() > deadline:
            app = pilot.app
            assert isinstance(app, ChatApp)
            screen = f"list={list_lines(app)} header={header(app)!r} rows={rows(app)}"
            screen += f" status={status(app)!r}"
            raise AssertionError(f"timed out waiting for {what}: {screen}")
        await pilot.pause(0.05)


async def type_line(pilot: Pilot[None], line: str) -> None:
    box = pilot.app.query_one("#input", Input)
    box.focus()
    box.value = line
    await pilot.press("enter")


async def befriend(people: People) -> None:
    """A mutual follow: either may start a chat (no message request)."""
    await people.alice.follow("bob")
    await people.bob.follow("alice")


# --- the tests ----------------------------------------------------------------------------
async def test_a_message_arrives_is_read_and_answered(
    people: People, alice_tui: Client, tmp_path: Path
) -> None:
    await befriend(people)
    bob = people.bob
    alice_id = alice_tui.account.account_id
    await bob.send("alice", "hello alice")
    app = ChatApp(alice_tui)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "bob (1)" in list_lines(app), "bob's unread message listed")
        assert list_lines(app)[0] == "Conversations"
        assert "Requests" not in " ".join(list_lines(app))
        app.query_one("#conversations").focus()
        await pilot.press("down", "enter")
        await until(pilot, lambda: any("hello alice" in r for r in rows(app)), "the message")
        [row] = rows(app)
        assert row.startswith("bob  ") and "hello alice" in row
        assert header(app) == "bob"
        await until(pilot, lambda: "bob" in list_lines(app), "the unread count cleared")
        # Opening it read it: bob gets a read receipt and his copy says so.
        seen = [e for e in await bob.receive(timeout=1.0) if isinstance(e, ReceiptReceived)]
        assert "read" in [e.kind for e in seen]
        [mine] = bob.messages(alice_id)
        assert mine.status == "read"
        # A reply typed into the input reaches bob; his delivery receipt shows live.
        await type_line(pilot, "hi bob")
        await until(pilot, lambda: any("hi bob" in r and "sent" in r for r in rows(app)), "sent")
        got = await bob.receive(timeout=1.0)
        assert [e.text for e in got if isinstance(e, MessageReceived)] == ["hi bob"]
        await until(pilot, lambda: "✓✓ delivered" in rows(app)[-1], "delivered")
        assert rows(app)[-1].startswith("you  ")
        # Bob's typing shows in the status line.
        await bob.typing("alice", True)
        await until(pilot, lambda: status(app) == "bob is typing…", "typing")
        # A file goes out as an attachment, summarised in its row.
        note = tmp_path / "note.txt"
        note.write_text("12345")
        await type_line(pilot, f"/file {note} the notes")
        await until(pilot, lambda: "[file note.txt (5 B)]" in rows(app)[-1], "the file row")
        assert rows(app)[-1].split("  ")[2] == "the notes [file note.txt (5 B)]"
        got = [e for e in await bob.receive(timeout=1.0) if isinstance(e, MessageReceived)]
        assert [(e.text, e.attachment and e.attachment.file_name) for e in got] == [
            ("the notes", "note.txt")
        ]


async def test_no_read_sends_no_receipt_and_shows_the_waiting_timer(
    people: People, alice_tui: Client
) -> None:
    await befriend(people)
    bob = people.bob
    await bob.set_timer("alice", 300)
    await bob.send("alice", "this one disappears")
    app = ChatApp(alice_tui, name="bob", read=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: any("disappears" in r for r in rows(app)), "the message")
        assert rows(app)[0] == "bob set disappearing messages to 5 minutes"
        assert app.query("#messages MessageRow").first().has_class("timer-row")
        assert rows(app)[1].endswith("⏱ 5m")  # not counting: it was not read
        assert "disappearing messages: 5 minutes" in header(app)
        assert "bob (1) ⏱" in list_lines(app)
    assert not [e for e in await bob.receive(timeout=0.5) if isinstance(e, ReceiptReceived)
                and e.kind == "read"]  # fmt: skip


async def test_a_timer_counts_down_and_the_message_disappears(
    people: People, alice_tui: Client, clock: FakeClock
) -> None:
    app = ChatApp(alice_tui)
    async with app.run_test(size=(120, 30)) as pilot:
        await type_line(pilot, "/open bob")
        await until(pilot, lambda: header(app) == "bob", "bob's conversation open")
        await type_line(pilot, "/timer 30s")
        await until(pilot, lambda: "30 seconds" in header(app), "the timer in the header")
        assert status(app) == "you set disappearing messages to 30 seconds"
        assert rows(app) == ["you set disappearing messages to 30 seconds"]
        await type_line(pilot, "gone soon")
        await until(pilot, lambda: any("gone soon" in r for r in rows(app)), "the message")
        assert rows(app)[-1].endswith("⏱ 30s")  # our copy counts from the send
        clock.advance(10)
        await until(pilot, lambda: rows(app)[-1].endswith("⏱ 20s"), "the countdown")
        clock.advance(25)
        await until(pilot, lambda: not any("gone soon" in r for r in rows(app)), "expiry")
        assert alice_tui.messages(people.bob.account.account_id)[-1].text != "gone soon"
    got = await people.bob.receive(timeout=0.5)
    assert [e.text for e in got if isinstance(e, MessageReceived)] == ["gone soon"]


async def test_a_message_request_is_listed_apart_and_accepted(
    people: People, alice_tui: Client, tmp_path: Path
) -> None:
    async with await Client.register(tmp_path / "carol", people.server.url, "carol") as carol:
        await carol.send("alice", "hi, we have not met")
        app = ChatApp(alice_tui)
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: "carol (1)" in list_lines(app), "carol's request")
            lines = list_lines(app)
            assert lines.index("Requests (1)") < lines.index("carol (1)")
            await type_line(pilot, "/open carol")
            await until(pilot, lambda: header(app).startswith("carol"), "carol's conversation")
            assert header(app) == "carol  ·  message request"
            assert any("hi, we have not met" in r for r in rows(app))
            await type_line(pilot, "/accept")
            await until(pilot, lambda: status(app) == "accepted carol", "accepted")
            lines = list_lines(app)
            assert "carol" in lines and not any(line.startswith("Requests") for line in lines)
            assert header(app) == "carol"


async def test_save_report_and_block_from_the_input(
    people: People, alice_tui: Client, tmp_path: Path
) -> None:
    await befriend(people)
    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"\x89PNG fake picture" * 50)
    await people.bob.send_file("alice", photo, caption="look")
    await people.bob.send("alice", "and now something rude")
    app = ChatApp(alice_tui)
    async with app.run_test(size=(120, 30)) as pilot:
        await type_line(pilot, "/open bob")
        await until(pilot, lambda: any("something rude" in r for r in rows(app)), "messages")
        await type_line(pilot, "/save")
        await until(pilot, lambda: status(app).startswith("saved to "), "the saved file")
        saved = Path(status(app).removeprefix("saved to "))
        assert saved.read_bytes() == photo.read_bytes()
        await type_line(pilot, "/report rude")
        await until(pilot, lambda: status(app).startswith("reported bob"), "the report")
        await type_line(pilot, "/block")
        await until(pilot, lambda: status(app) == "blocked bob", "the block")
        await people.bob.send("alice", "are you there?")  # stored nowhere: alice blocks him
        await type_line(pilot, "hello?")
        await until(pilot, lambda: "you blocked bob" in status(app), "no writing to him")
    assert [c.username for c in await alice_tui.blocked()] == ["bob"]
    texts = [m.text for m in alice_tui.messages(people.bob.account.account_id)]
    assert "are you there?" not in texts


async def test_errors_show_in_the_status_line(people: People, alice_tui: Client) -> None:
    app = ChatApp(alice_tui)
    async with app.run_test(size=(120, 30)) as pilot:
        await type_line(pilot, "hello?")
        await until(pilot, lambda: "open a conversation first" in status(app), "no conversation")
        await type_line(pilot, "/open nobody-here")
        await until(pilot, lambda: status(app) != "" and "open a" not in status(app), "lookup")
        assert header(app).startswith("no conversation open")
        await type_line(pilot, "/open bob")
        await until(pilot, lambda: header(app) == "bob", "bob's conversation")
        await type_line(pilot, "/timer 3s")
        await until(pilot, lambda: "out of range" in status(app), "the timer error")
        await type_line(pilot, "/frobnicate")
        await until(pilot, lambda: "unknown command /frobnicate" in status(app), "unknown")
        await type_line(pilot, "/file /no/such/file.txt")
        await until(pilot, lambda: "file.txt" in status(app), "the file error")
        assert app.is_running
        assert app.query_one("#input").region.height >= 1
        assert app.query_one("#messages").region.height >= 20
        assert app.query_one("#conversations").region.width == 30
        await pilot.press("ctrl+q")
    assert not app.is_running


def test_chat_refuses_a_missing_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", str(tmp_path / "none"), "chat"]) == 1
    assert "no profile at" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
