"""How ``veil chat`` shows things, as plain text: conversation list lines, message rows,
timer rows and the conversation header. Pure functions of SDK records and the client's
clock, so the app only places the strings (and the tests can check them)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from veil.client import Client, ClientError, describe_call
from veil.client.attachments import pointer_of
from veil.client.timers import describe_timer, short_duration

if TYPE_CHECKING:
    from veil.engine import ConversationSummary, MessageRecord

TIMER_ICON = "⏱"
CALL_ICON = "☎"
STATUS_MARKS = {
    "sending": "… sending",
    "sent": "✓ sent",
    "delivered": "✓✓ delivered",
    "read": "✓✓ read",
    "failed": "✗ failed",
}


def human_size(size: int) -> str:
    """``512 B``, ``1.5 KB``, ``3.2 MB``."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def compact_timer(seconds: int) -> str:
    """A whole timer, short: ``30s``, ``5m``, ``1h``, ``1h30m``."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


def conversation_line(summary: ConversationSummary) -> str:
    """``bob (2) ⏱``: the name, the unread count, an icon when messages disappear."""
    line = summary.username or summary.conversation
    if summary.unread:
        line += f" ({summary.unread})"
    if summary.timer_s:
        line += f" {TIMER_ICON}"
    return line


def sender_name(client: Client, message: MessageRecord) -> str:
    """``you`` for our messages, else the sender's username (or account id)."""
    if message.direction == "out":
        return "you"
    return client.username_of(message.sender_account_id) or message.sender_account_id


def timer_line(client: Client, message: MessageRecord) -> str:
    """A timer change: ``alice set disappearing messages to 1 hour``."""
    who = sender_name(client, message)
    return f"{who} set disappearing messages to {describe_timer(message.expire_timer_s)}"


def body(message: MessageRecord) -> str:
    """The text and/or ``[file NAME (SIZE)]``."""
    parts = [message.text] if message.text else []
    try:
        pointer = pointer_of(message)
    except ClientError:
        return " ".join([*parts, "[file (damaged pointer)]"])
    if pointer is not None:
        parts.append(f"[file {pointer.file_name} ({human_size(pointer.size)})]")
    return " ".join(parts)


def countdown(message: MessageRecord, now_ms: int) -> str:
    """``⏱ 4m59s`` while the timer counts, ``⏱ 5m`` before it starts, else empty."""
    if not message.expire_timer_s:
        return ""
    if message.expire_at_ms is None:
        return f"{TIMER_ICON} {compact_timer(message.expire_timer_s)}"
    return f"{TIMER_ICON} {short_duration(message.expire_at_ms - now_ms)}"


def message_line(client: Client, message: MessageRecord, now_ms: int) -> str:
    """One message row: sender, time, body, our delivery status, the countdown."""
    if message.kind == "timer":
        return timer_line(client, message)
    clock = datetime.fromtimestamp(message.sent_ms / 1000).strftime("%H:%M")
    if message.kind == "call":
        left = countdown(message, now_ms)
        line = f"{CALL_ICON} {clock}  {describe_call(message)}"
        return f"{line}  {left}" if left else line
    line = f"{sender_name(client, message)}  {clock}  {body(message)}"
    if message.direction == "out":
        line += f"  {STATUS_MARKS.get(message.status, message.status)}"
    left = countdown(message, now_ms)
    return f"{line}  {left}" if left else line


def header_line(name: str, timer_s: int, *, request: bool) -> str:
    """``bob · disappearing messages: 30 seconds · message request``."""
    parts = [name]
    if timer_s:
        parts.append(f"{TIMER_ICON} disappearing messages: {describe_timer(timer_s)}")
    if request:
        parts.append("message request")
    return "  ·  ".join(parts)
