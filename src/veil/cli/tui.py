"""``veil chat [NAME] [--no-read]``: the terminal client (Textual).

The layout, keys and commands are those of :class:`veil.cli.tui_app.ChatApp`; how messages
and conversations read is :mod:`veil.cli.tui_render`; the slash commands are
:mod:`veil.cli.tui_commands`. The profile is resolved as for the other chat commands
(``--profile``, ``$VEIL_PROFILE``, then the default) and a missing one is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from veil.cli.common import default_profile
from veil.cli.tui_commands import HELP
from veil.client import Client, ClientError, StoreError

_EPILOG = f"""\
keys: Tab / Shift-Tab move between the list and the input; Up / Down and Enter pick a
conversation; Escape goes back to the list; Ctrl-Q quits.
commands: {HELP}
"""


def add_tui_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``veil chat`` to ``veil``'s parser."""
    chat = commands.add_parser(
        "chat",
        help="the interactive terminal client",
        description="Open the terminal chat client: your conversations and message requests "
        "on the left, the open conversation on the right (live: new messages, receipts, "
        "typing, disappearing-message countdowns), an input at the bottom. With NAME, open "
        "the conversation with NAME first.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("name", nargs="?", help="a username to open (or start a chat with)")
    chat.add_argument(
        "--no-read",
        action="store_true",
        help="do not count showing messages as reading them (no read receipt, timers wait)",
    )
    chat.set_defaults(handler=_run)


def _run(args: argparse.Namespace, out: TextIO) -> int:
    profile = Path(args.profile).expanduser() if args.profile else default_profile()
    if not Client.profile_exists(profile):
        print(f"veil: no profile at {profile}: run register or link first", file=sys.stderr)
        return 1

    from veil.cli.tui_app import ChatApp  # noqa: PLC0415 - Textual loads only for `chat`

    async def main() -> None:
        async with Client(profile, trust="strict" if args.strict else "tofu") as client:
            client.account  # noqa: B018 - refuse a profile without an account before drawing
            await ChatApp(client, name=args.name, read=not args.no_read).run_async()

    try:
        asyncio.run(main())
    except (ClientError, StoreError, OSError) as exc:
        print(f"veil: {exc}", file=sys.stderr)
        return 1
    return 0
