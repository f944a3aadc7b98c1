"""``veil inbox``: the conversation list, or one conversation's messages, timer changes and
call-log lines (text, or JSON objects with ``--json``)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any, TextIO

from veil.cli.common import json_line
from veil.cli.printing import CALL_ICON, TIMER_ICON, attachment_data, body_text, call_fields
from veil.client import Client, describe_call, describe_call_log
from veil.client.attachments import pointer_of
from veil.client.timers import describe_timer, short_duration
from veil.engine import ConversationSummary, MessageRecord


def preview(client: Client, summary: ConversationSummary) -> str:
    """What the conversation list shows of the latest line: its text; for a call-log line
    ``☎ Missed voice call``; for a timer change what the conversation shows,
    ``⏱ alice set disappearing messages to 5 minutes`` (neither has text)."""
    if summary.last_call is not None:
        return f"{CALL_ICON} {describe_call_log(summary.last_call, summary.last_direction)}"
    if summary.last_kind == "timer":
        change = _last_timer_change(client, summary)
        if change is not None:
            return f"{TIMER_ICON} {timer_change_text(client, change)}"
        return f"{TIMER_ICON} disappearing messages: {describe_timer(summary.timer_s)}"
    return summary.last_text or ""


def timer_change_text(client: Client, change: MessageRecord) -> str:
    """A timer-change line as ``veil inbox NAME`` shows it: ``alice set disappearing
    messages to 1 hour`` (or ``... to off``)."""
    who = client.username_of(change.sender_account_id) or change.sender_account_id
    return f"{who} set disappearing messages to {describe_timer(change.expire_timer_s)}"


def _last_timer_change(client: Client, summary: ConversationSummary) -> MessageRecord | None:
    """The latest line of the conversation, when it is the timer change it should be."""
    latest = client.messages(summary.conversation, 1)
    return latest[0] if latest and latest[0].kind == "timer" else None


def summary_fields(client: Client, summary: ConversationSummary) -> dict[str, Any]:
    """The JSON of a conversation-list line's latest item: ``last_timestamp``, ``last_kind``,
    ``last_text`` and, for a call-log line, ``call`` (:func:`call_fields`); for a timer
    change, ``timer_seconds`` (0: off)."""
    last = summary.last_call
    fields: dict[str, Any] = {
        "last_timestamp": summary.last_ms,
        "last_kind": summary.last_kind,
        "last_text": summary.last_text,
        **({} if last is None else {"call": call_fields(last, summary.last_direction)}),
    }
    if summary.last_kind == "timer":
        change = _last_timer_change(client, summary)
        fields["timer_seconds"] = summary.timer_s if change is None else change.expire_timer_s
    return fields


def _inbox_list(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """``veil inbox``: one line (or JSON object) per conversation."""
    for c in client.conversations():
        if args.json:
            json_line(
                out,
                {
                    "type": "conversation",
                    "with": c.username or c.conversation,
                    "account": c.conversation,
                    **summary_fields(client, c),
                    "unread": c.unread,
                    "messages": c.count,
                },
            )
        else:
            unread = f" ({c.unread} unread)" if c.unread else ""
            print(f"{c.username or c.conversation}{unread}: {preview(client, c)}", file=out)


async def run_inbox(client: Client, args: argparse.Namespace, out: TextIO) -> int:
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
                json_line(
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
                print(timer_change_text(client, m), file=out)
            continue
        who = client.username_of(m.sender_account_id) or m.sender_account_id
        path = None if m.attachment_path is None else str(client.profile / m.attachment_path)
        attachment = attachment_data(pointer_of(m), path)
        if args.json:
            json_line(
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
            body = body_text({"text": m.text, **attachment})
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
        json_line(
            out,
            {
                "type": "call",
                "id": m.message_id.hex(),
                "from": client.username_of(m.sender_account_id) or m.sender_account_id,
                "device": m.sender_device_id,
                "timestamp": m.sent_ms,
                **call_fields(m.call, m.direction),
                **expiry,
            },
        )
        return
    clock = datetime.fromtimestamp(m.sent_ms / 1000).strftime("%H:%M")
    left = expiry.get("expires_in")
    timer = "" if left is None else f"  ⏱ {short_duration(left * 1000)}"
    print(f"{CALL_ICON} {clock} {describe_call(m)}{timer}", file=out)


def _expiry(timer_s: int, expire_at_ms: int | None, now_ms: int) -> dict[str, int]:
    """``{"expires_in": seconds}`` when a timer applies: what is left if it is counting,
    else the whole timer (it starts when the message is read)."""
    if not timer_s:
        return {}
    if expire_at_ms is None:
        return {"expires_in": timer_s}
    return {"expires_in": max(0, (expire_at_ms - now_ms + 999) // 1000)}
