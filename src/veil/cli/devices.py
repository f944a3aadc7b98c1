"""``veil devices``, ``veil safety-number`` and ``veil verify``: this account's devices and
the peers' identity keys."""

from __future__ import annotations

import argparse
from typing import TextIO

import segno

from veil.cli.common import client_command, json_line
from veil.client import Client


def add_device_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``devices``, ``safety-number``, ``verify``."""
    devices = commands.add_parser(
        "devices",
        help="list or remove this account's devices",
        description="List this account's devices, or remove one.",
    )
    devices.add_argument("--json", action="store_true", help="one JSON object per line")
    actions = devices.add_subparsers(
        title="actions", metavar="[remove ID | approve CODE]", dest="devices_action"
    )
    remove = actions.add_parser("remove", help="remove a linked device")
    remove.add_argument("device_id", type=int, help="the device id (2..127)")
    approve = actions.add_parser("approve", help="approve a new device (its veil-link: code)")
    approve.add_argument("code", help="the veil-link:... text the new device shows")
    devices.set_defaults(handler=client_command(_devices))

    safety = commands.add_parser(
        "safety-number",
        help="show the safety number with someone",
        description="Show the 60-digit safety number with NAME (compare it with theirs).",
    )
    safety.add_argument("name", help="a username")
    safety.add_argument("--json", action="store_true", help="print JSON")
    safety.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    safety.set_defaults(handler=client_command(_safety_number))

    verify = commands.add_parser(
        "verify",
        help="mark someone's identity key as verified",
        description="After comparing safety numbers: mark NAME's current key as verified.",
    )
    verify.add_argument("name", help="a username")
    verify.set_defaults(handler=client_command(_verify))


async def _devices(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.devices_action == "approve":
        await client.approve_link(args.code)
        print("approved: the new device is being linked", file=out)
        return 0
    if args.devices_action == "remove":
        await client.remove_device(args.device_id)
        print(f"removed device {args.device_id}", file=out)
        return 0
    me = client.account.device_id
    for d in await client.devices():
        if args.json:
            json_line(
                out,
                {
                    "type": "device",
                    "id": d.device_id,
                    "name": d.name,
                    "created": d.created_ms,
                    "this": d.device_id == me,
                },
            )
        else:
            mark = " (this device)" if d.device_id == me else ""
            print(f"{d.device_id}: {d.name or '(unnamed)'}{mark}", file=out)
    return 0


async def _safety_number(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    number = await client.safety_number(args.name)
    digits = number.displayable
    groups = " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))
    if args.json:
        json_line(
            out,
            {
                "type": "safety_number",
                "with": args.name,
                "digits": digits,
                "qr": number.scannable.hex(),
            },
        )
    else:
        print(f"safety number with {args.name}:\n{groups}", file=out)
        if not args.no_qr:
            print("or scan this with their device:", file=out)
            segno.make(number.scannable, error="m", micro=False).terminal(out=out, compact=True)
    return 0


async def _verify(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    await client.verify(args.name)
    print(f"{args.name} is verified", file=out)
    return 0
