"""The chat commands of ``veil``: register, link, send, receive, listen, and (from
:mod:`veil.cli.inbox` and :mod:`veil.cli.devices`) inbox, devices, safety numbers.

A stable contract for scripts: errors are one line on stderr and exit status 1 (2 for usage
errors); ``--json`` prints one JSON object per line, each with ``type``. The device profile is
``--profile DIR``, else ``$VEIL_PROFILE``, else ``${XDG_DATA_HOME:-~/.local/share}/veil/profile``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import segno

from veil.cli.common import add_no_read, client_command, default_profile, json_line
from veil.cli.devices import add_device_parsers
from veil.cli.inbox import run_inbox
from veil.cli.printing import show
from veil.client import CaughtUp, Client
from veil.engine import MessageReceived

__all__ = ["add_chat_parsers", "default_profile"]


def add_chat_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the chat subcommands to ``veil``'s parser."""
    register = commands.add_parser(
        "register",
        help="create an account (this profile becomes its primary device)",
        description="Register NAME on the server; this profile becomes the primary device.",
    )
    register.add_argument("name", help="the username (letters, digits, _ . -)")
    register.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    register.add_argument("--device-name", default="", help="a name for this device")
    register.set_defaults(handler=client_command(_register, creates=True))

    link = commands.add_parser(
        "link",
        help="link this profile as a new device of an existing account",
        description="Print a veil-link: code; approve it on an existing device with "
        "`veil devices approve CODE`; this waits until then.",
    )
    link.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    link.add_argument("--device-name", default="", help="a name for this device")
    link.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for approval (default 600)"
    )
    link.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    link.set_defaults(handler=client_command(_link, creates=True))

    send = commands.add_parser(
        "send",
        help="send a message or a file",
        description="Send TEXT, or the file --file PATH (with an optional --caption), to NAME, "
        "end-to-end encrypted to all of their devices. A file is encrypted here and uploaded "
        "as a blob the server cannot read.",
    )
    send.add_argument("name", help="the recipient's username")
    send.add_argument("text", nargs="?", help="the message (not with --file)")
    send.add_argument("--file", metavar="PATH", help="send this file as an attachment")
    send.add_argument("--caption", metavar="TEXT", help="a text to go with --file")
    send.add_argument("--json", action="store_true", help="print the result as JSON")
    send.set_defaults(handler=_send_handler)

    receive = commands.add_parser(
        "receive",
        help="fetch what is waiting, print it, exit",
        description="Connect, take everything queued (then wait up to --timeout seconds for "
        "more), print one event per line, exit.",
    )
    receive.add_argument("--json", action="store_true", help="one JSON object per line")
    receive.add_argument(
        "--timeout", type=float, default=0.0, help="seconds to wait for more (default 0)"
    )
    receive.add_argument(
        "--download",
        action="store_true",
        help="download and verify the attachments of the messages, print where they are saved",
    )
    add_no_read(receive)
    receive.set_defaults(handler=client_command(_receive))

    listen = commands.add_parser(
        "listen",
        help="stay connected and print events as they come",
        description="Stay connected and print each event as it arrives (Ctrl-C to stop).",
    )
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.add_argument(
        "--download", action="store_true", help="download and verify attachments as they come"
    )
    add_no_read(listen)
    listen.set_defaults(handler=client_command(_listen))

    inbox = commands.add_parser(
        "inbox",
        help="list conversations, or show one",
        description="Without NAME: the conversations. With NAME: its messages.",
    )
    inbox.add_argument("name", nargs="?", help="a username")
    inbox.add_argument("--json", action="store_true", help="one JSON object per line")
    inbox.add_argument("--limit", type=int, default=50, help="messages to show (default 50)")
    add_no_read(inbox)
    inbox.set_defaults(handler=client_command(run_inbox))

    add_device_parsers(commands)


async def _register(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    await client.close()
    registered = await Client.register(
        client.profile, args.server, args.name, device_name=args.device_name
    )
    async with registered:
        account = registered.account
        print(
            f"registered {account.username} ({account.account_id}) as device "
            f"{account.device_id} on {account.server_url}; profile {client.profile}",
            file=out,
        )
    return 0


async def _link(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    await client.close()

    def show(uri: str) -> None:
        print("on a device of this account, run:", file=out)
        print(f"  veil devices approve {uri}", file=out)
        if not args.no_qr:
            print("(or scan this code with it)", file=out)
            segno.make(uri, error="m", micro=False).terminal(out=out, compact=True)
        out.flush()

    linked = await Client.link(
        client.profile, args.server, device_name=args.device_name, show=show, timeout_s=args.timeout
    )
    async with linked:
        account = linked.account
        print(
            f"linked as device {account.device_id} of {account.username} "
            f"({account.account_id}); profile {client.profile}",
            file=out,
        )
    return 0


def _send_handler(args: argparse.Namespace, out: TextIO) -> int:
    """``veil send``: exactly one of TEXT and --file (a usage error, status 2, otherwise)."""
    problem = None
    if (args.text is None) == (args.file is None):
        problem = "give either TEXT or --file PATH (exactly one)"
    elif args.caption is not None and args.file is None:
        problem = "--caption goes with --file"
    if problem is not None:
        print(
            "usage: veil send NAME (TEXT | --file PATH [--caption TEXT]) [--json]", file=sys.stderr
        )
        print(f"veil send: error: {problem}", file=sys.stderr)
        return 2
    return client_command(_send)(args, out)


async def _send(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.file is not None:
        result = await client.send_file(args.name, args.file, caption=args.caption)
    else:
        result = await client.send(args.name, args.text)
    if args.json:
        json_line(
            out,
            {
                "type": "queued" if result.queued else "sent",
                "id": result.message_id.hex(),
                "to": args.name,
                "timestamp": result.server_ms,
                "devices": [f"{a}.{d}" for a, d in result.devices],
            },
        )
    elif result.queued:
        print(
            f"queued for {args.name}: the server cannot be reached; it goes out with the next "
            "veil send, receive or listen",
            file=out,
        )
    else:
        print(f"sent to {args.name} ({len(result.devices)} devices)", file=out)
    return 0


async def _receive(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    ok = True
    shown: dict[str, None] = {}
    for event in await client.receive(args.timeout):
        ok = await show(client, event, out, args) and ok
        if isinstance(event, MessageReceived):
            shown[event.conversation] = None
    if not args.no_read:  # shown: read (receipts go back, disappearing timers start)
        for conversation in shown:
            await client.mark_read(conversation)
    return 0 if ok else 1


async def _listen(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    async for event in client.events():
        if isinstance(event, CaughtUp):
            continue
        await show(client, event, out, args)
        if isinstance(event, MessageReceived) and not args.no_read:
            await client.mark_read(event.conversation)
    return 0
