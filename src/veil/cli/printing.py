"""How ``veil receive`` and ``veil listen`` show events: as JSON objects (``--json``) or one
line of text each, downloading attachments first with ``--download``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Final, TextIO

from veil.cli.common import json_line
from veil.client import Client, ClientError, IncomingCall, describe_call_log
from veil.client.client import ClientEvent
from veil.client.timers import describe_timer
from veil.core.content import AttachmentPointer
from veil.engine import (
    CallLog,
    CallLogSynced,
    ConversationChanged,
    DecryptFailure,
    DeviceAdded,
    IdentityChanged,
    MessageReceived,
    ReceiptReceived,
    SessionReset,
    SyncedSent,
    TimerChanged,
    TypingChanged,
)

CALL_ICON = "☎"
TIMER_ICON = "⏱"


def call_fields(call: CallLog, direction: str) -> dict[str, Any]:
    """A call-log line's details as JSON: ``direction``, ``media``, ``outcome``,
    ``end_reason``, ``duration_s`` (None: it never connected) and ``text`` (the wording)."""
    duration = call.duration_ms
    return {
        "direction": direction,
        "media": call.media,
        "outcome": call.outcome,
        "end_reason": call.end_reason,
        "duration_s": None if duration is None else round(duration / 1000, 1),
        "text": describe_call_log(call, direction),
    }


def event_data(  # noqa: PLR0911 - one answer per event type
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
            **attachment_data(event.attachment),
            **({"request": True} if event.request else {}),
            **({"expires_in": event.expire_timer_s} if event.expire_timer_s else {}),
        }
    if isinstance(event, SyncedSent):
        me = client.account.account_id
        return {
            **head("sent_elsewhere", event.message_id, me, event.sender_device_id, event.sent_ms),
            "to": client.username_of(event.conversation) or event.conversation,
            "text": event.text,
            **attachment_data(event.attachment),
            **({"expires_in": event.expire_timer_s} if event.expire_timer_s else {}),
        }
    if isinstance(event, TimerChanged):
        changed = head("timer", None, event.by_account_id, event.sender_device_id, event.server_ms)
        with_whom = client.username_of(event.conversation) or event.conversation
        return {**changed, "with": with_whom, "seconds": event.seconds}
    if isinstance(event, CallLogSynced):
        line = event.line
        assert line.call is not None
        me = client.account.account_id
        logged = head("call_log", line.message_id, me, event.sender_device_id, line.sent_ms)
        with_whom = client.username_of(event.conversation) or event.conversation
        return {**logged, "with": with_whom, **call_fields(line.call, line.direction)}
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


def attachment_data(pointer: AttachmentPointer | None, path: str | None = None) -> dict[str, Any]:
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


def body_text(data: dict[str, Any]) -> str:
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


async def download(client: Client, event: ClientEvent, data: dict[str, Any]) -> bool:
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


async def show(client: Client, event: ClientEvent, out: TextIO, args: argparse.Namespace) -> bool:
    """Print one event (downloading its attachment first with ``--download``); False if a
    download failed."""
    data = event_data(client, event)
    if data is None:
        return True
    ok = await download(client, event, data) if args.download else True
    print_data(data, out, args.json)
    return ok


def print_data(data: dict[str, Any], out: TextIO, as_json: bool) -> None:
    if as_json:
        json_line(out, data)
        return
    text = _TEXTS.get(data["type"])
    if text is not None:
        print(text(data), file=out)
    out.flush()


def _message_text(data: dict[str, Any]) -> str:
    tags = " (message request)" if data.get("request") else ""
    if data.get("expires_in"):
        tags += f" (disappears {describe_timer(data['expires_in'])} after reading)"
    return f"{data['from']} [{data['device']}]{tags}: {body_text(data)}"


def _conversation_text(data: dict[str, Any]) -> str:
    done = {"accept": "accepted", "decline": "declined", "block": "blocked"}
    verb = done.get(data["action"], data["action"] + "ed")
    return f"(another device of yours) {verb} {data['with']}"


def _reset_text(data: dict[str, Any]) -> str:
    side = "we could not read" if data["by_us"] else "it could not read our messages"
    who, device = data["from"], data["device"]
    return f"the session with {who}'s device {device} was reset automatically ({side})"


def _calling_text(data: dict[str, Any]) -> str:
    kinds = " and ".join(k for k in ("audio", "video") if data[k])
    return (
        f"{data['from']} is calling ({kinds}); this command does not take calls:"
        " `veil answer` waits for the next one"
    )


_TEXTS: Final[dict[str, Callable[[dict[str, Any]], str]]] = {
    "message": _message_text,
    "timer": lambda d: f"{d['from']} set disappearing messages to {describe_timer(d['seconds'])}",
    "conversation": _conversation_text,
    "call_log": lambda d: f"(another device of yours) {CALL_ICON} {d['with']}: {d['text']}",
    "sent_elsewhere": lambda d: f"(you, device {d['device']}) -> {d['to']}: {body_text(d)}",
    "receipt": lambda d: f"{d['from']} {d['kind']} {len(d['ids'])} message(s)",
    "identity_changed": lambda d: f"the safety number with {d['from']} changed: verify it",
    "device_added": lambda d: f"{d['from']} has a new device ({d['device']})",
    "session_reset": _reset_text,
    "incoming_call": _calling_text,
    "delivery_failure": lambda d: f"a message from {d['from']} could not be read ({d['reason']})",
}
"""How each event type reads as one line of text (others, e.g. typing, are not printed)."""
