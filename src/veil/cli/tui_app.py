"""``veil chat``'s Textual application: the conversation list (with message requests apart),
the open conversation, a status line and the input.

It uses the public SDK only: a ready :class:`~veil.client.Client` is given to
:class:`ChatApp` (so tests can inject one with a fake clock); a worker runs
``client.events()`` and redraws what an event touches; once a second the app deletes expired
messages (``client.expire()``) and redraws the open conversation's countdowns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Final

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Footer, Input, Label, ListItem, ListView, Static

from veil.cli import tui_render as render
from veil.cli.tui_calls import CallLine, Calls
from veil.cli.tui_commands import HELP, run_command
from veil.client import (
    CaughtUp,
    Client,
    ClientError,
    ClientEvent,
    ConversationChanged,
    DecryptFailure,
    IdentityChanged,
    IncomingCall,
    MessageReceived,
    StoreError,
    TypingChanged,
)

if TYPE_CHECKING:
    from veil.engine import ConversationSummary

TYPING_EVERY_S: Final = 4.0
"""Send "typing" at most this often while the input changes."""
TYPING_SHOWN_S: Final = 8.0
"""Forget "bob is typing…" this long after the last notice (a lost "stopped")."""
RECONNECT_S: Final = 2.0


class TextItem(ListItem):
    """A line of the conversation list: a section title (disabled) or a conversation."""

    def __init__(self, text: str, *, disabled: bool = False, classes: str | None = None) -> None:
        super().__init__(Label(text, markup=False), disabled=disabled, classes=classes)
        self.text = text

    def set_text(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self.query_one(Label).update(text)


class ConversationItem(TextItem):
    """One conversation of the list; remembers whose it is."""

    def __init__(self, conversation: str, username: str | None, text: str) -> None:
        super().__init__(text)
        self.conversation = conversation
        self.username = username


class MessageRow(Static):
    """One message (or timer change, or call) of the open conversation."""

    def __init__(self, key: str, text: str, *, kind: str = "message") -> None:
        classes = {"timer": "timer-row", "call": "call-row"}.get(kind, "message")
        super().__init__(text, markup=False, classes=classes)
        self.key = key
        self.text = text


class ChatApp(App[None]):
    """The terminal client on one ready (open) :class:`Client`."""

    TITLE = "veil chat"
    CSS = """
    #main { height: 1fr; }
    #conversations { width: 30; border-right: solid $primary; }
    #conversations .section { color: $text-muted; text-style: bold; }
    #chat { width: 1fr; }
    #header { height: 1; text-style: bold; background: $boost; padding: 0 1; }
    #messages { height: 1fr; padding: 0 1; }
    .timer-row { width: 100%; text-align: center; color: $text-muted; }
    .call-row { color: $accent; text-style: italic; }
    #call { height: 1; padding: 0 1; background: $boost; color: $success; text-style: bold; }
    #status { height: 1; padding: 0 1; color: $warning; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("escape", "focus_list", "Conversations"),
    ]

    def __init__(self, client: Client, *, name: str | None = None, read: bool = True) -> None:
        super().__init__()
        self.client = client
        self.read = read
        self.conversation_id: str | None = None
        self.peer: str | None = None
        self._initial = name
        self._lock = asyncio.Lock()  # one command or send at a time, in order
        self._drawing = asyncio.Lock()
        self._list_keys: list[str] = []
        self._typing_sent = -TYPING_EVERY_S
        self._typing_until = 0.0
        self.calls = Calls(self)

    # --- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ListView(id="conversations")
            with Vertical(id="chat"):
                yield Static("no conversation open: /open NAME", id="header", markup=False)
                yield VerticalScroll(id="messages")
        yield CallLine("", id="call", markup=False)
        yield Static("", id="status", markup=False)
        yield Input(placeholder="message, or /help", id="input")
        yield Footer()

    async def on_mount(self) -> None:
        self.calls.show()
        await self.refresh_all()
        self.query_one("#conversations", ListView).focus()
        self.run_worker(self._listen(), name="events", group="events", exit_on_error=False)
        self.set_interval(1.0, self._tick)
        if self._initial:
            self.run_worker(self._guarded(self.open_conversation(self._initial)), group="input")

    # --- status ---------------------------------------------------------------------------
    def set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)
        self._typing_until = 0.0

    @property
    def status(self) -> str:
        return str(self.query_one("#status", Static).content)

    # --- conversations --------------------------------------------------------------------
    async def open_conversation(self, who: str) -> None:
        """Open (or start) the conversation with ``who``: a username or known account id."""
        contact = await self.client.resolve(who)
        if contact.account_id == self.client.account.account_id:
            raise ClientError("that is this account")
        self.conversation_id = contact.account_id
        self.peer = contact.username
        await self._mark_read()
        await self.refresh_all()
        self.query_one("#input", Input).focus()

    def close_conversation(self) -> None:
        self.conversation_id = None
        self.peer = None

    async def _mark_read(self) -> None:
        if self.read and self.conversation_id is not None:
            await self.client.mark_read(self.conversation_id)

    async def mark_read_quietly(self) -> None:
        """Mark the open conversation read; a failure goes to the status line."""
        try:
            await self._mark_read()
        except ClientError as exc:
            self.set_status(str(exc))

    def _is_request(self, conversation: str) -> bool:
        return any(r.conversation == conversation for r in self.client.requests())

    # --- drawing --------------------------------------------------------------------------
    async def refresh_all(self) -> None:
        async with self._drawing:
            await self._draw_list()
            await self._draw_conversation()

    async def _draw_list(self) -> None:
        summaries = self.client.conversations()
        accepted = [s for s in summaries if s.state != "request"]
        requests = self.client.requests()
        wanted: list[tuple[str, TextItem]] = [("#chats", _section("Conversations"))]
        wanted += [(s.conversation, _item(s)) for s in accepted]
        if requests:
            wanted.append(("#requests", _section(f"Requests ({len(requests)})")))
            wanted += [("request:" + s.conversation, _item(s)) for s in requests]
        view = self.query_one("#conversations", ListView)
        keys = [key for key, _ in wanted]
        if keys == self._list_keys:
            for old, (_, new) in zip(view.query_children(TextItem), wanted, strict=True):
                old.set_text(new.text)
            return
        selected = view.highlighted_child
        chosen = selected.conversation if isinstance(selected, ConversationItem) else None
        self._list_keys = keys
        await view.clear()
        await view.extend([item for _, item in wanted])
        places = [i for i, (_, item) in enumerate(wanted) if isinstance(item, ConversationItem)]
        for index in places:
            item = wanted[index][1]
            if isinstance(item, ConversationItem) and item.conversation == chosen:
                view.index = index
                break
        else:  # keep the cursor off the section titles
            view.index = places[0] if places else None

    async def _draw_conversation(self) -> None:
        header = self.query_one("#header", Static)
        pane = self.query_one("#messages", VerticalScroll)
        cid = self.conversation_id
        if cid is None or self.peer is None:
            header.update("no conversation open: /open NAME")
            await pane.remove_children()
            return
        header.update(
            render.header_line(self.peer, self.client.timer(cid), request=self._is_request(cid))
        )
        await self._draw_messages(pane, cid)

    async def _draw_messages(self, pane: VerticalScroll, cid: str) -> None:
        now = self.client.now_ms()
        rows = [
            (f"{m.sender_account_id}:{m.message_id.hex()}", m.kind,
             render.message_line(self.client, m, now))
            for m in self.client.messages(cid)
        ]  # fmt: skip
        shown = list(pane.query(MessageRow))
        if [r.key for r in shown] == [key for key, _, _ in rows]:
            for row, (_, _, text) in zip(shown, rows, strict=True):
                if row.text != text:
                    row.text = text
                    row.update(text)
            return
        await pane.remove_children()
        await pane.mount_all([MessageRow(k, text, kind=kind) for k, kind, text in rows])
        pane.scroll_end(animate=False)

    async def _tick(self) -> None:
        """Once a second: delete what expired, redraw countdowns, forget stale typing.

        The timer can fire while the app is closing, after its widgets are gone: then it
        does nothing."""
        try:
            await self._tick_once()
        except NoMatches:
            return

    async def _tick_once(self) -> None:
        if self._typing_until and time.monotonic() > self._typing_until:
            self.set_status("")
        self.calls.show()
        try:
            removed = self.client.expire()
        except (ClientError, StoreError):  # closing
            return
        async with self._drawing:
            if removed:
                await self._draw_list()
            await self._draw_conversation()

    # --- live events ----------------------------------------------------------------------
    async def _listen(self) -> None:
        while True:
            try:
                async for event in self.client.events():
                    await self._on_event(event)
            except (ClientError, StoreError) as exc:
                self.set_status(f"connection lost: {exc}")
            await asyncio.sleep(RECONNECT_S)

    async def _on_event(self, event: ClientEvent) -> None:
        if isinstance(event, CaughtUp):
            await self.refresh_all()
            return
        if isinstance(event, TypingChanged):
            self._show_typing(event)
            return
        if isinstance(event, IncomingCall):
            self.calls.on_incoming(event)
            return
        if isinstance(event, MessageReceived) and event.conversation == self.conversation_id:
            if self._typing_until:
                self.set_status("")
            await self.mark_read_quietly()
        elif isinstance(event, DecryptFailure):
            who = self._who(event.sender_account_id)
            self.set_status(f"a message from {who} could not be read ({event.reason})")
        elif isinstance(event, IdentityChanged):
            who = self._who(event.account_id)
            self.set_status(f"the safety number with {who} changed: verify it")
        elif isinstance(event, ConversationChanged):
            if event.conversation == self.conversation_id and event.action == "decline":
                self.close_conversation()
            who = self._who(event.conversation)
            self.set_status(f"(another device of yours) {event.action}: {who}")
        await self.refresh_all()

    def _show_typing(self, event: TypingChanged) -> None:
        text = f"{self._who(event.conversation)} is typing…"
        if event.started:
            self.set_status(text)
            self._typing_until = time.monotonic() + TYPING_SHOWN_S
        elif self.status == text:
            self.set_status("")

    def _who(self, account_id: str) -> str:
        return self.client.username_of(account_id) or account_id

    # --- input ----------------------------------------------------------------------------
    async def on_list_view_selected(self, message: ListView.Selected) -> None:
        item = message.item
        if isinstance(item, ConversationItem):
            who = item.username or item.conversation
            self.run_worker(self._guarded(self.open_conversation(who)), group="input")

    def on_input_changed(self, message: Input.Changed) -> None:
        value, peer = message.value, self.peer
        if not value or value.startswith("/") or peer is None:
            return
        now = time.monotonic()
        if now - self._typing_sent >= TYPING_EVERY_S:
            self._typing_sent = now
            self.run_worker(self._send_typing(peer), group="typing", exit_on_error=False)

    async def _send_typing(self, peer: str) -> None:
        with contextlib.suppress(ClientError):  # only a hint
            await self.client.typing(peer, True)

    def on_input_submitted(self, message: Input.Submitted) -> None:
        line = message.value.strip()
        message.input.value = ""
        if line:
            self.run_worker(self._guarded(self._submit(line)), group="input")

    async def _submit(self, line: str) -> None:
        if line.startswith("/") and not line.startswith("//"):
            shown = await run_command(self, line)
            if shown is not None:
                self.set_status(shown)
            await self.refresh_all()
            return
        if self.peer is None:
            raise ClientError(f"open a conversation first: /open NAME ({HELP})")
        self._typing_sent = -TYPING_EVERY_S
        result = await self.client.send(self.peer, line.removeprefix("/"))
        self.set_status("queued: the server cannot be reached" if result.queued else "")
        await self.refresh_all()

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after the commands before it; errors go to the status line."""
        async with self._lock:
            try:
                await work
            except (ClientError, StoreError) as exc:
                self.set_status(str(exc))
                await self.refresh_all()

    def action_focus_list(self) -> None:
        self.query_one("#conversations", ListView).focus()


def _section(title: str) -> TextItem:
    return TextItem(title, disabled=True, classes="section")


def _item(summary: ConversationSummary) -> ConversationItem:
    return ConversationItem(
        summary.conversation, summary.username, render.conversation_line(summary)
    )
