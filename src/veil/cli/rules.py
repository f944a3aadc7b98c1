"""The conversation-rule commands of ``veil``: disappearing-message timers, follows, message
requests, blocking and reporting (ARCHITECTURE.md §1). Same contract as :mod:`veil.cli.chat`:
errors one line on stderr with status 1, ``--json`` one object per line with ``type``."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Final, TextIO

from veil.cli.common import client_command, json_line
from veil.cli.inbox import preview, summary_fields
from veil.client import Client, ClientError
from veil.client.timers import PRESETS, describe_timer, parse_timer
from veil.engine import Contact


def add_rules_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add timer, follow, requests, block and report commands to ``veil``'s parser."""
    timer = commands.add_parser(
        "timer",
        help="set or show the disappearing-message timer with someone",
        description="Set the disappearing-message timer with NAME: off, or 5 seconds to 24 "
        f"hours ({', '.join(PRESETS)}, or any duration such as 90s or 1h30m). New messages "
        "disappear that long after they are sent (your copies) or read (theirs), on every "
        "device. Without a DURATION: show the current timer.",
    )
    timer.add_argument("name", help="a username")
    timer.add_argument("duration", nargs="?", help="off, 5s, 30s, 5m, 1h, 24h, ...")
    timer.add_argument("--json", action="store_true", help="print JSON")
    timer.set_defaults(handler=client_command(_timer))

    for name, helptext, runner in (
        ("follow", "follow someone (with a follow back, either may start a chat)", _follow),
        ("unfollow", "stop following someone", _action("unfollow")),
        ("accept", "accept someone's message request", _action("accept")),
        ("decline", "decline someone's message request (deleted; they are not told)",
         _action("decline")),
        ("block", "block someone (they are not told; nothing of theirs reaches you)",
         _action("block")),
        ("unblock", "unblock someone", _action("unblock")),
    ):  # fmt: skip
        command = commands.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + "."
        )
        command.add_argument("name", help="a username")
        command.add_argument("--json", action="store_true", help="print JSON")
        command.set_defaults(handler=client_command(runner))

    for name, helptext, kind in (
        ("following", "list who you follow", "following"),
        ("followers", "list who follows you", "followers"),
        ("blocked", "list who you block", "blocked"),
    ):
        command = commands.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + "."
        )
        command.add_argument("--json", action="store_true", help="one JSON object per line")
        command.set_defaults(handler=client_command(_lister(kind)))

    requests = commands.add_parser(
        "requests",
        help="list message requests",
        description="Messages from people you have no chat with and who do not follow you "
        "back wait here until you accept (veil accept NAME), decline or block. Showing a "
        "request sends no receipt. Read one with `veil inbox NAME`.",
    )
    requests.add_argument("--json", action="store_true", help="one JSON object per line")
    requests.set_defaults(handler=client_command(_requests))

    report = commands.add_parser(
        "report",
        help="report someone's messages to the server's operator",
        description="Reveal the chosen messages from NAME (default: their latest --last) to "
        "the server's operator, who can verify that NAME really sent them to you (message "
        "franking) and sees nothing else of your conversations. MESSAGE-ID is the id shown "
        "by `veil inbox NAME --json` (a unique prefix is enough).",
    )
    report.add_argument("name", help="the username to report")
    report.add_argument("message_ids", nargs="*", metavar="MESSAGE-ID", help="messages to reveal")
    report.add_argument("--reason", default="", help="a short note for the operator")
    report.add_argument("--last", type=int, default=5, help="without ids: reveal this many (5)")
    report.add_argument("--block", action="store_true", help="block NAME after reporting")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=client_command(_report))


async def _timer(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    contact = await client.resolve(args.name)
    if args.duration is None:
        seconds = client.timer(contact.account_id)
    else:
        seconds = parse_timer(args.duration)
        await client.set_timer(args.name, seconds)
    if args.json:
        json_line(out, {"type": "timer", "with": contact.username, "seconds": seconds})
    elif args.duration is None:
        print(f"disappearing messages with {contact.username}: {describe_timer(seconds)}", file=out)
    else:
        print(f"you set disappearing messages to {describe_timer(seconds)}", file=out)
    return 0


async def _follow(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    relation = await client.follow(args.name)
    if args.json:
        json_line(
            out,
            {"type": "follow", "with": args.name, "followed_back": relation.followed_by},
        )
        return 0
    back = (
        f"{args.name} follows you back: either of you can start a chat"
        if relation.followed_by
        else f"a first message from you lands in {args.name}'s requests until they follow back"
        " or accept"
    )
    print(f"you follow {args.name}; {back}", file=out)
    return 0


_ACTIONS: Final = {
    "unfollow": "you no longer follow {name}",
    "accept": "accepted: {name}'s messages now reach your inbox",
    "decline": "declined and deleted {name}'s request",
    "block": "blocked {name} (they are not told)",
    "unblock": "unblocked {name}",
}
"""The one-person commands that only act (the Client method of the same name) and say so."""


def _action(name: str) -> Callable[[Client, argparse.Namespace, TextIO], Awaitable[int]]:
    async def run(client: Client, args: argparse.Namespace, out: TextIO) -> int:
        await getattr(client, name)(args.name)
        if args.json:
            json_line(out, {"type": name, "with": args.name, "ok": True})
        else:
            print(_ACTIONS[name].format(name=args.name), file=out)
        return 0

    return run


def _lister(kind: str) -> Callable[[Client, argparse.Namespace, TextIO], Awaitable[int]]:
    async def run(client: Client, args: argparse.Namespace, out: TextIO) -> int:
        if kind == "following":
            people: list[Contact] = await client.following()
        elif kind == "followers":
            people = await client.followers()
        else:
            people = await client.blocked()
        for contact in people:
            if args.json:
                json_line(
                    out, {"type": kind, "name": contact.username, "account": contact.account_id}
                )
            else:
                print(contact.username, file=out)
        if not people and not args.json:
            print(f"({kind}: nobody)", file=out)
        return 0

    return run


async def _requests(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    waiting = client.requests()
    for c in waiting:
        name = c.username or c.conversation
        if args.json:
            json_line(
                out,
                {
                    "type": "request",
                    "with": name,
                    "account": c.conversation,
                    **summary_fields(client, c),
                    "messages": c.count,
                },
            )
        else:
            print(f"{name} ({c.count} message(s)): {preview(client, c)}", file=out)
    if not waiting and not args.json:
        print("no message requests", file=out)
    return 0


async def _report(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    contact = await client.resolve(args.name)
    ids = [_message_id(client, contact.account_id, prefix) for prefix in args.message_ids]
    answer = await client.report(args.name, ids, reason=args.reason, last=args.last)
    if args.block:
        await client.block(args.name)
    if args.json:
        json_line(
            out,
            {
                "type": "report",
                "with": args.name,
                "report_id": answer.report_id,
                "messages": answer.messages,
                "blocked": bool(args.block),
            },
        )
    else:
        blocked = f"; {args.name} is blocked" if args.block else ""
        print(
            f"reported {args.name}: {answer.messages} message(s) verified by the server"
            f" (report {answer.report_id}){blocked}",
            file=out,
        )
    return 0


def _message_id(client: Client, conversation: str, prefix: str) -> bytes:
    """The message of ``conversation`` whose hex id starts with ``prefix`` (unique)."""
    wanted = prefix.strip().lower()
    if len(wanted) < 4 or any(c not in "0123456789abcdef" for c in wanted):
        raise ClientError(f"{prefix!r} is not a message id (at least 4 hex digits)")
    found = {
        m.message_id
        for m in client.messages(conversation, limit=10_000)
        if m.message_id.hex().startswith(wanted)
    }
    if not found:
        raise ClientError(f"no message {prefix} in that conversation (it may have disappeared)")
    if len(found) > 1:
        raise ClientError(f"{prefix} matches several messages: give more digits")
    return found.pop()
