"""What every ``veil`` chat command shares: the default profile, running an async command on
the profile's client, the ``--no-read`` flag and the JSON-lines output (see
:mod:`veil.cli.chat` for the contract)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from veil.client import Client, ClientError, StoreError

Handler = Callable[[argparse.Namespace, TextIO], int]


def default_profile() -> Path:
    """``$VEIL_PROFILE``, else ``${XDG_DATA_HOME:-~/.local/share}/veil/profile``."""
    if os.environ.get("VEIL_PROFILE"):
        return Path(os.environ["VEIL_PROFILE"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "veil" / "profile"


def add_no_read(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-read",
        action="store_true",
        help="do not count showing messages as reading them (no read receipt, timers wait)",
    )


def client_command(
    command: Callable[[Client, argparse.Namespace, TextIO], Awaitable[int]],
    *,
    creates: bool = False,
) -> Handler:
    """Run an async command on the profile's client; errors become one line on stderr.

    Only commands that ``creates`` a profile (register, link) may start one; the others
    refuse a profile folder with no device store instead of leaving an empty one behind.
    """

    def run(args: argparse.Namespace, out: TextIO) -> int:
        profile = Path(args.profile).expanduser() if args.profile else default_profile()
        if not creates and not Client.profile_exists(profile):
            print(f"veil: no profile at {profile}: run register or link first", file=sys.stderr)
            return 1

        async def main() -> int:
            async with Client(profile, trust="strict" if args.strict else "tofu") as client:
                return await command(client, args, out)

        try:
            return asyncio.run(main())
        except (ClientError, StoreError, OSError) as exc:
            print(f"veil: {exc}", file=sys.stderr)
            return 1

    return run


def json_line(out: TextIO, data: dict[str, Any]) -> None:
    out.write(json.dumps(data, separators=(",", ":")) + "\n")
    out.flush()
