"""``veil demo``: a server and a short scripted conversation, to see Veil work.

Starts ``veil server`` (SQLite in a data folder), registers two users in their own device
profiles, has them exchange messages end to end, and prints what the server stored while the
messages waited -- ciphertext only -- next to what each user's device shows. Then the server
keeps running (``--exit`` stops it instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sqlite3
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import TextIO

from veil.cli.serverproc import start_server
from veil.client import Client
from veil.engine import MessageReceived

SCRIPT = [
    ("alice", "bob", "Hi Bob! Lunch at noon?"),
    ("bob", "alice", "Sure -- the usual place."),
    ("alice", "bob", "See you there."),
]


def add_demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``veil demo``."""
    demo = commands.add_parser(
        "demo",
        help="start a server and run a short scripted conversation",
        description="Start `veil server`, register alice and bob in temporary profiles, "
        "exchange end-to-end encrypted messages, and print what the server stored "
        "(ciphertext) and what the devices show. The server keeps running unless --exit.",
    )
    demo.add_argument("--port", type=int, default=8080, help="server port (default 8080)")
    demo.add_argument("--data-dir", help="server data folder (default: a temporary one)")
    demo.add_argument("--exit", action="store_true", help="stop the server after the demo")
    demo.set_defaults(handler=run_demo)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo (see the module docstring)."""
    if not _port_free(args.port):
        print(f"veil: port {args.port} is in use; try `veil demo --port 8090`", file=sys.stderr)
        return 1
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="veil-demo-server-"))
    profiles = Path(tempfile.mkdtemp(prefix="veil-demo-profiles-"))
    url = f"http://127.0.0.1:{args.port}"
    signal.signal(signal.SIGTERM, _interrupt)  # stop the server too, as Ctrl-C does
    print(f"[1/4] starting veil server on {url} (data in {data})", file=out, flush=True)
    try:
        proc = start_server(args.port, data)
    except RuntimeError as exc:
        print(f"veil: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_conversation(url, profiles, data / "veil.db", out))
        if args.exit:
            return 0
        print(f"\nthe server keeps running on {url} (Ctrl-C stops it)", file=out, flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


async def _conversation(url: str, profiles: Path, database: Path, out: TextIO) -> None:
    print(f"[2/4] registering alice and bob (profiles in {profiles})", file=out, flush=True)
    clients = {
        name: await Client.register(profiles / name, url, name, device_name=f"{name}'s laptop")
        for name in ("alice", "bob")
    }
    try:
        print("[3/4] the conversation, and what the server holds meanwhile:", file=out)
        for sender, recipient, text in SCRIPT:
            await clients[sender].send(recipient, text)
            with contextlib.closing(sqlite3.connect(database)) as db:
                rows = list(db.execute("SELECT envelope_id, type, content FROM envelopes"))
            for envelope_id, kind, content in rows:
                blob = bytes(content)
                print(
                    f"    server, envelope {envelope_id} (type {kind}, {len(blob)} bytes): "
                    f"{blob[:24].hex()}...  plaintext visible: {text.encode() in blob}",
                    file=out,
                )
            request = False
            for event in await clients[recipient].receive(timeout=0.2):
                if isinstance(event, MessageReceived):
                    tag = " (in message requests)" if event.request else ""
                    print(f"    {recipient}'s device shows{tag}: {sender}: {event.text}", file=out)
                    request = request or event.request
            if request:  # they never talked and do not follow each other
                await clients[recipient].accept(sender)
                print(f"    {recipient} accepts {sender}'s message request", file=out)
            await clients[sender].receive(timeout=0.2)  # receipts
        print("[4/4] safety numbers (compare them out of band):", file=out)
        a = await clients["alice"].safety_number("bob")
        b = await clients["bob"].safety_number("alice")
        print(
            f"    alice sees {a.displayable[:20]}...  bob sees {b.displayable[:20]}...  "
            f"equal: {a.displayable == b.displayable}",
            file=out,
            flush=True,
        )
    finally:
        for client in clients.values():
            await client.close()
