"""The slash commands of ``veil chat``'s input line. Each acts on the open conversation
(except ``/open`` and ``/quit``) through the public SDK; a failure raises
:class:`~veil.client.ClientError`, which the app shows in its status line."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from veil.client import ClientError
from veil.client.timers import describe_timer, parse_timer

if TYPE_CHECKING:
    from veil.cli.tui_app import ChatApp

Command = Callable[["ChatApp", str], Awaitable[str | None]]
"""A command: the app and the rest of the line; the status line to show (or ``None``)."""

HELP = (
    "/open NAME  /timer 5m|off  /file PATH [caption]  /save  /accept  /decline  /block"
    "  /unblock  /report [reason]  /follow  /call [--video]  /video  /hangup  /answer"
    "  /reject  /quit"
)


def _peer(app: ChatApp) -> str:
    if app.peer is None:
        raise ClientError("open a conversation first: /open NAME")
    return app.peer


async def _open(app: ChatApp, rest: str) -> str | None:
    if not rest:
        raise ClientError("usage: /open NAME")
    await app.open_conversation(rest.split(maxsplit=1)[0])
    return None


async def _timer(app: ChatApp, rest: str) -> str | None:
    peer = _peer(app)
    if not rest:
        seconds = app.client.timer(app.conversation_id or peer)
        return f"disappearing messages: {describe_timer(seconds)}"
    seconds = parse_timer(rest)
    await app.client.set_timer(peer, seconds)
    return f"you set disappearing messages to {describe_timer(seconds)}"


async def _file(app: ChatApp, rest: str) -> str | None:
    peer = _peer(app)
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise ClientError(f"usage: /file PATH [caption] ({exc})") from None
    if not words:
        raise ClientError("usage: /file PATH [caption]")
    caption = " ".join(words[1:]) or None
    try:
        result = await app.client.send_file(peer, words[0], caption=caption)
    except OSError as exc:
        raise ClientError(f"cannot read {words[0]}: {exc.strerror or exc}") from None
    return "queued: the server cannot be reached" if result.queued else None


async def _save(app: ChatApp, rest: str) -> str | None:
    """Download, verify and save the newest file of the open conversation."""
    peer = _peer(app)
    conversation = app.conversation_id or (await app.client.resolve(peer)).account_id
    files = [m for m in app.client.messages(conversation) if m.attachment is not None]
    if not files:
        raise ClientError("there is no file in this conversation")
    path = await app.client.download(files[-1])
    return f"saved to {path}"


async def _accept(app: ChatApp, rest: str) -> str | None:
    await app.client.accept(_peer(app))
    return f"accepted {app.peer}"


async def _decline(app: ChatApp, rest: str) -> str | None:
    peer = _peer(app)
    await app.client.decline(peer)
    app.close_conversation()
    return f"declined {peer}"


async def _block(app: ChatApp, rest: str) -> str | None:
    await app.client.block(_peer(app))
    return f"blocked {app.peer}"


async def _unblock(app: ChatApp, rest: str) -> str | None:
    await app.client.unblock(_peer(app))
    return f"unblocked {app.peer}"


async def _report(app: ChatApp, rest: str) -> str | None:
    peer = _peer(app)
    answer = await app.client.report(peer, reason=rest)
    return f"reported {peer} (report {answer.report_id})"


async def _follow(app: ChatApp, rest: str) -> str | None:
    peer = _peer(app)
    relation = await app.client.follow(peer)
    if relation.followed_by:
        return f"you follow {peer}, who follows you back"
    return f"you follow {peer}"


async def _call(app: ChatApp, rest: str) -> str | None:
    """Call the open conversation's peer (``--video``: with video)."""
    if rest not in ("", "--video", "-v"):
        raise ClientError("usage: /call [--video]  (or /video)")
    app.calls.check_idle()
    return await app.calls.place(_peer(app), video=bool(rest))


async def _video(app: ChatApp, rest: str) -> str | None:
    app.calls.check_idle()
    return await app.calls.place(_peer(app), video=True)


async def _hangup(app: ChatApp, rest: str) -> str | None:
    return await app.calls.hangup()


async def _answer(app: ChatApp, rest: str) -> str | None:
    return await app.calls.answer()


async def _reject(app: ChatApp, rest: str) -> str | None:
    return await app.calls.reject()


async def _quit(app: ChatApp, rest: str) -> str | None:
    app.exit()
    return None


async def _help(app: ChatApp, rest: str) -> str | None:
    return HELP


COMMANDS: dict[str, Command] = {
    "open": _open,
    "timer": _timer,
    "file": _file,
    "save": _save,
    "accept": _accept,
    "decline": _decline,
    "block": _block,
    "unblock": _unblock,
    "report": _report,
    "follow": _follow,
    "call": _call,
    "video": _video,
    "hangup": _hangup,
    "answer": _answer,
    "reject": _reject,
    "quit": _quit,
    "help": _help,
}


async def run_command(app: ChatApp, line: str) -> str | None:
    """Run ``/name rest``; the status text to show."""
    name, _, rest = line[1:].partition(" ")
    command = COMMANDS.get(name.lower())
    if command is None:
        raise ClientError(f"unknown command /{name}: {HELP}")
    return await command(app, rest.strip())
