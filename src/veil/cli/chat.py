"""The chat commands of ``veil``: register, send, receive, listen, inbox, devices, safety
numbers.

A stable contract for scripts: errors are one line on stderr and exit status 1 (2 for usage
errors); ``--json`` prints one JSON object per line, each with ``type``. The device profile is
``--profile DIR``, else ``$VEIL_PROFILE``, else ``${XDG_DATA_HOME:-~/.local/share}/veil/profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import segno

from veil.client import CaughtUp, Client, ClientError, IncomingCall, StoreError, describe_call
from veil.client.attachments import pointer_of
from veil.client.client import ClientEvent
from veil.client.timers import describe_timer, short_duration
from veil.core.content import AttachmentPointer
from veil.engine import (
    ConversationChanged,
    DecryptFailure,
    DeviceAdded,
    IdentityChanged,
    MessageReceived,
    MessageRecord,
    ReceiptReceived,
    SessionReset,
    SyncedSent,
    TimerChanged,
    TypingChanged,
)

Handler = Callable[[argparse.Namespace, TextIO], int]


def default_profile() -> Path:
    """``$VEIL_PROFILE``, else ``${XDG_DATA_HOME:-~/.local/share}/veil/profile``."""
    if os.environ.get("VEIL_PROFILE"):
        return Path(os.environ["VEIL_PROFILE"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "veil" / "profile"


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
    register.set_defaults(handler=_sync(_register, creates=True))

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
    link.set_defaults(handler=_sync(_link, creates=True))

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
    _add_no_read(receive)
    receive.set_defaults(handler=_sync(_receive))

    listen = commands.add_parser(
        "listen",
        help="stay connected and print events as they come",
        description="Stay connected and print each event as it arrives (Ctrl-C to stop).",
    )
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.add_argument(
        "--download", action="store_true", help="download and verify attachments as they come"
    )
    _add_no_read(listen)
    listen.set_defaults(handler=_sync(_listen))

    inbox = commands.add_parser(
        "inbox",
        help="list conversations, or show one",
        description="Without NAME: the conversations. With NAME: its messages.",
    )
    inbox.add_argument("name", nargs="?", help="a username")
    inbox.add_argument("--json", action="store_true", help="one JSON object per line")
    inbox.add_argument("--limit", type=int, default=50, help="messages to show (default 50)")
    _add_no_read(inbox)
    inbox.set_defaults(handler=_sync(_inbox))

    _add_device_parsers(commands)


def _add_device_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    devices.set_defaults(handler=_sync(_devices))

    safety = commands.add_parser(
        "safety-number",
        help="show the safety number with someone",
        description="Show the 60-digit safety number with NAME (compare it with theirs).",
    )
    safety.add_argument("name", help="a username")
    safety.add_argument("--json", action="store_true", help="print JSON")
    safety.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    safety.set_defaults(handler=_sync(_safety_number))

    verify = commands.add_parser(
        "verify",
        help="mark someone's identity key as verified",
        description="After comparing safety numbers: mark NAME's current key as verified.",
    )
    verify.add_argument("name", help="a username")
    verify.set_defaults(handler=_sync(_verify))


def _add_no_read(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-read",
        action="store_true",
        help="do not count showing messages as reading them (no read receipt, timers wait)",
    )


def _sync(
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
    return _sync(_send)(args, out)


async def _send(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.file is not None:
        result = await client.send_file(args.name, args.file, caption=args.caption)
    else:
        result = await client.send(args.name, args.text)
    if args.json:
        _json_line(
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


def _event(  # noqa: PLR0911 - one answer per event type
    client: Client, event: ClientEvent
) -> dict[str, Any] | None:
    """One event as the JSON the CLI prints (``None`` for internal ones): ``type``, ``id``,
    ``from``, ``device`` and ``timestamp`` always, then what the type adds."""

    def head(
        kind: str, ident: bytes | None, account_id: str, device: int | None, ts: int | None
    ) -> dict[str, Any]:
        return {
            "type": kind,
            "id": None if ident is None else ident.hex(),
            "from": client.username_of(account_id) or account_id,
            "device": device,
            "timestamp": ts,
        }

    if isinstance(event, MessageReceived):
        return {
            **head(
                "message",
                event.message_id,
                event.sender_account_id,
                event.sender_device_id,
                event.sent_ms,
            ),
            "from_account": event.sender_account_id,
            "server_timestamp": event.server_ms,
            "text": event.text,
            **_attachment(event.attachment),
            **({"request": True} if event.request else {}),
            **({"expires_in": event.expire_timer_s} if event.expire_timer_s else {}),
        }
    if isinstance(event, SyncedSent):
        me = client.account.account_id
        return {
            **head("sent_elsewhere", event.message_id, me, event.sender_device_id, event.sent_ms),
            "to": client.username_of(event.conversation) or event.conversation,
            "text": event.text,
            **_attachment(event.attachment),
            **({"expires_in": event.expire_timer_s} if event.expire_timer_s else {}),
        }
    if isinstance(event, TimerChanged):
        changed = head("timer", None, event.by_account_id, event.sender_device_id, event.server_ms)
        with_whom = client.username_of(event.conversation) or event.conversation
        return {**changed, "with": with_whom, "seconds": event.seconds}
    if isinstance(event, ConversationChanged):
        me = client.account.account_id
        changed = head("conversation", None, me, event.sender_device_id, None)
        with_whom = client.username_of(event.conversation) or event.conversation
        return {**changed, "with": with_whom, "action": event.action}
    if isinstance(event, ReceiptReceived):
        first = event.message_ids[0] if event.message_ids else None
        return {
            **head("receipt", first, event.conversation, event.sender_device_id, event.server_ms),
            "kind": event.kind,
            "ids": [m.hex() for m in event.message_ids],
        }
    if isinstance(event, TypingChanged):
        typing = head("typing", None, event.conversation, event.sender_device_id, None)
        return {**typing, "started": event.started}
    if isinstance(event, IdentityChanged):
        return head("identity_changed", None, event.account_id, None, None)
    if isinstance(event, DeviceAdded):
        return head("device_added", None, event.account_id, event.device_id, None)
    if isinstance(event, SessionReset):
        reset = head("session_reset", None, event.account_id, event.device_id, None)
        return {**reset, "by_us": event.by_us}
    if isinstance(event, IncomingCall):
        ringing = head("incoming_call", event.call.call_id, event.caller, event.caller_device, None)
        return {**ringing, "audio": event.audio, "video": event.video, "request": event.request}
    if isinstance(event, DecryptFailure):
        failure = head(
            "delivery_failure",
            None,
            event.sender_account_id,
            event.sender_device_id,
            event.server_ms,
        )
        return {**failure, "reason": event.reason}
    return None


def _attachment(pointer: AttachmentPointer | None, path: str | None = None) -> dict[str, Any]:
    """``{"attachment": {name, size, content_type[, path]}}`` for a message that has one."""
    if pointer is None:
        return {}
    shown: dict[str, Any] = {
        "name": pointer.file_name,
        "size": pointer.size,
        "content_type": pointer.content_type,
    }
    if path is not None:
        shown["path"] = path
    return {"attachment": shown}


def _body(data: dict[str, Any]) -> str:
    """A message's text and attachment as one line of text."""
    parts = [data["text"]] if data.get("text") is not None else []
    shown = data.get("attachment")
    if shown is not None:
        kind = f", {shown['content_type']}" if shown["content_type"] else ""
        parts.append(f"[file {shown['name']!r} ({shown['size']} bytes{kind})]")
        if "path" in shown:
            parts.append(f"saved to {shown['path']}")
        elif "error" in shown:
            parts.append(f"not saved: {shown['error']}")
    return " ".join(parts)


async def _download(client: Client, event: ClientEvent, data: dict[str, Any]) -> bool:
    """Download the event's attachment (if any) into ``data``; False if that failed."""
    shown = data.get("attachment")
    if shown is None or not isinstance(event, MessageReceived | SyncedSent):
        return True
    try:
        shown["path"] = str(await client.download(event))
    except ClientError as exc:
        shown["error"] = str(exc)
        print(f"veil: {exc}", file=sys.stderr)
        return False
    return True


async def _show(client: Client, event: ClientEvent, out: TextIO, args: argparse.Namespace) -> bool:
    """Print one event (downloading its attachment first with ``--download``); False if a
    download failed."""
    data = _event(client, event)
    if data is None:
        return True
    ok = await _download(client, event, data) if args.download else True
    _print_data(data, out, args.json)
    return ok


def _print_data(data: dict[str, Any], out: TextIO, as_json: bool) -> None:
    if as_json:
        _json_line(out, data)
        return
    who = data.get("from")
    if data["type"] == "message":
        tags = " (message request)" if data.get("request") else ""
        if data.get("expires_in"):
            tags += f" (disappears {describe_timer(data['expires_in'])} after reading)"
        print(f"{who} [{data['device']}]{tags}: {_body(data)}", file=out)
    elif data["type"] == "timer":
        print(f"{who} set disappearing messages to {describe_timer(data['seconds'])}", file=out)
    elif data["type"] == "conversation":
        done = {"accept": "accepted", "decline": "declined", "block": "blocked"}
        verb = done.get(data["action"], data["action"] + "ed")
        print(f"(another device of yours) {verb} {data['with']}", file=out)
    elif data["type"] == "sent_elsewhere":
        print(f"(you, device {data['device']}) -> {data['to']}: {_body(data)}", file=out)
    elif data["type"] == "receipt":
        print(f"{who} {data['kind']} {len(data['ids'])} message(s)", file=out)
    elif data["type"] == "identity_changed":
        print(f"the safety number with {who} changed: verify it", file=out)
    elif data["type"] == "device_added":
        print(f"{who} has a new device ({data['device']})", file=out)
    elif data["type"] == "session_reset":
        side = "we could not read" if data["by_us"] else "it could not read our messages"
        print(
            f"the session with {who}'s device {data['device']} was reset automatically ({side})",
            file=out,
        )
    elif data["type"] == "incoming_call":
        kinds = " and ".join(k for k in ("audio", "video") if data[k])
        print(
            f"{who} is calling ({kinds}); this command does not take calls:"
            " `veil answer` waits for the next one",
            file=out,
        )
    elif data["type"] == "delivery_failure":
        print(f"a message from {who} could not be read ({data['reason']})", file=out)
    out.flush()


async def _receive(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    ok = True
    shown: dict[str, None] = {}
    for event in await client.receive(args.timeout):
        ok = await _show(client, event, out, args) and ok
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
        await _show(client, event, out, args)
        if isinstance(event, MessageReceived) and not args.no_read:
            await client.mark_read(event.conversation)
    return 0


def _inbox_list(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """``veil inbox``: one line (or JSON object) per conversation."""
    for c in client.conversations():
        if args.json:
            _json_line(
                out,
                {
                    "type": "conversation",
                    "with": c.username or c.conversation,
                    "account": c.conversation,
                    "last_timestamp": c.last_ms,
                    "last_text": c.last_text,
                    "unread": c.unread,
                    "messages": c.count,
                },
            )
        else:
            unread = f" ({c.unread} unread)" if c.unread else ""
            print(f"{c.username or c.conversation}{unread}: {c.last_text or ''}", file=out)


async def _inbox(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.name is None:
        _inbox_list(client, args, out)
        return 0
    contact = await client.resolve(args.name)
    timer = client.timer(contact.account_id)
    if not args.json and timer:
        print(f"(disappearing messages: {describe_timer(timer)})", file=out)
    now = client.now_ms()
    for m in client.messages(contact.account_id, args.limit):
        if m.kind == "call":
            _print_call(client, m, now, out, as_json=args.json)
            continue
        if m.kind == "timer":
            who = client.username_of(m.sender_account_id) or m.sender_account_id
            if args.json:
                _json_line(
                    out,
                    {
                        "type": "timer",
                        "id": m.message_id.hex(),
                        "from": who,
                        "timestamp": m.sent_ms,
                        "seconds": m.expire_timer_s,
                    },
                )
            else:
                timer_text = describe_timer(m.expire_timer_s)
                print(f"{who} set disappearing messages to {timer_text}", file=out)
            continue
        who = client.username_of(m.sender_account_id) or m.sender_account_id
        path = None if m.attachment_path is None else str(client.profile / m.attachment_path)
        attachment = _attachment(pointer_of(m), path)
        if args.json:
            _json_line(
                out,
                {
                    "type": "message",
                    "id": m.message_id.hex(),
                    "from": who,
                    "device": m.sender_device_id,
                    "timestamp": m.sent_ms,
                    "direction": m.direction,
                    "status": m.status,
                    "text": m.text,
                    **attachment,
                    **_expiry(m.expire_timer_s, m.expire_at_ms, now),
                },
            )
        else:
            body = _body({"text": m.text, **attachment})
            left = _expiry(m.expire_timer_s, m.expire_at_ms, now).get("expires_in")
            clock = "" if left is None else f" ⏱ {short_duration(left * 1000)}"
            print(f"{who}: {body}  [{m.status}]{clock}", file=out)
    if not args.no_read:
        await client.mark_read(contact.account_id)
    return 0


def _print_call(
    client: Client, m: MessageRecord, now_ms: int, out: TextIO, *, as_json: bool
) -> None:
    """A call-log line of ``inbox NAME``: ``☎ 13:02 Outgoing video call, 1:23`` or JSON
    (``type`` ``call``, ``direction``, ``media``, ``outcome``, ``end_reason``,
    ``duration_s``)."""
    assert m.call is not None
    expiry = _expiry(m.expire_timer_s, m.expire_at_ms, now_ms)
    if as_json:
        duration = m.call.duration_ms
        _json_line(
            out,
            {
                "type": "call",
                "id": m.message_id.hex(),
                "from": client.username_of(m.sender_account_id) or m.sender_account_id,
                "device": m.sender_device_id,
                "timestamp": m.sent_ms,
                "direction": m.direction,
                "media": m.call.media,
                "outcome": m.call.outcome,
                "end_reason": m.call.end_reason,
                "duration_s": None if duration is None else round(duration / 1000, 1),
                "text": describe_call(m),
                **expiry,
            },
        )
        return
    clock = datetime.fromtimestamp(m.sent_ms / 1000).strftime("%H:%M")
    left = expiry.get("expires_in")
    timer = "" if left is None else f"  ⏱ {short_duration(left * 1000)}"
    print(f"☎ {clock} {describe_call(m)}{timer}", file=out)


def _expiry(timer_s: int, expire_at_ms: int | None, now_ms: int) -> dict[str, int]:
    """``{"expires_in": seconds}`` when a timer applies: what is left if it is counting,
    else the whole timer (it starts when the message is read)."""
    if not timer_s:
        return {}
    if expire_at_ms is None:
        return {"expires_in": timer_s}
    return {"expires_in": max(0, (expire_at_ms - now_ms + 999) // 1000)}


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
            _json_line(
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
        _json_line(
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


def _json_line(out: TextIO, data: dict[str, Any]) -> None:
    out.write(json.dumps(data, separators=(",", ":")) + "\n")
    out.flush()
