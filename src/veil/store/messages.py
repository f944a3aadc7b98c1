"""Messages of 1:1 conversations, their statuses, and the conversation list.

A message is identified by ``(conversation, sender_account_id, message_id)``; storing it twice
is refused (:meth:`MessageStore.add_message` returns False), which makes a re-delivered or
re-sent message harmless. Statuses only move forward (:func:`status_may_change`), so receipts
arriving out of order cannot undo each other.

Timeline order: by server time when known (``server_ms``: one clock for every sender), else by
the sender's clock (``sent_ms``), then by arrival. ``before_ms`` and ``last_ms`` use the same
position.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import PurePosixPath, PureWindowsPath
from typing import Final

from veil.store.base import Row, StoreBase
from veil.store.errors import StoreError
from veil.store.records import (
    CALL_MEDIA,
    CALL_OUTCOMES,
    CONVERSATION_STATES,
    DIRECTIONS,
    IN_STATUSES,
    MESSAGE_KINDS,
    OUT_STATUSES,
    CallLog,
    ConversationSummary,
    MessageRecord,
)

_OUT_ORDER: Final = {"sending": 0, "sent": 1, "delivered": 2, "read": 3}
_INSERT: Final = (
    "INSERT INTO messages (conversation, message_id, direction, sender_account_id,"
    " sender_device_id, sent_ms,"
    " server_ms, received_ms, text, attachment, attachment_path, status, kind,"
    " expire_timer_s, expire_at_ms, franking, call_media, call_outcome, call_end_reason,"
    " call_duration_ms, sort_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (conversation, sender_account_id, message_id) DO NOTHING"
)
_BY_ID: Final = (
    "SELECT conversation, message_id, direction, sender_account_id, sender_device_id, sent_ms,"
    " server_ms, received_ms, text, attachment, attachment_path, status, kind,"
    " expire_timer_s, expire_at_ms, franking, call_media, call_outcome, call_end_reason,"
    " call_duration_ms FROM messages WHERE conversation = ? AND message_id = ?"
    " ORDER BY seq DESC LIMIT 1"
)
# The latest `limit` rows (optionally before a timeline position), returned oldest first.
_PAGE: Final = (
    "SELECT conversation, message_id, direction, sender_account_id, sender_device_id, sent_ms,"
    " server_ms, received_ms, text, attachment, attachment_path, status, kind,"
    " expire_timer_s, expire_at_ms, franking, call_media, call_outcome, call_end_reason,"
    " call_duration_ms FROM ("
    " SELECT * FROM messages WHERE conversation = ? AND (? IS NULL OR sort_ms < ?)"
    " ORDER BY sort_ms DESC, seq DESC LIMIT ?) ORDER BY sort_ms, seq"
)
# Read receipts name messages only: a call-log line is this device's own note.
_UNREAD_IDS: Final = (
    "SELECT message_id FROM messages"
    " WHERE conversation = ? AND direction = 'in' AND status = 'received' AND kind = 'message'"
    " ORDER BY sort_ms, seq"
)
_MARK_READ: Final = (
    "UPDATE messages SET status = 'read',"
    " expire_at_ms = CASE WHEN expire_timer_s > 0 AND expire_at_ms IS NULL"
    " THEN ? + expire_timer_s * 1000 ELSE expire_at_ms END"
    " WHERE conversation = ? AND direction = 'in' AND status = 'received'"
)
# A call line gets a fuller outcome; it counts as read (its timer starts, if it had not).
_UPDATE_CALL: Final = (
    "UPDATE messages SET call_media = ?, call_outcome = ?, call_end_reason = ?,"
    " call_duration_ms = ?, status = CASE WHEN direction = 'in' THEN 'read' ELSE status END,"
    " expire_at_ms = CASE WHEN expire_timer_s > 0 AND expire_at_ms IS NULL"
    " THEN ? + expire_timer_s * 1000 ELSE expire_at_ms END"
    " WHERE conversation = ? AND sender_account_id = ? AND message_id = ? AND kind = 'call'"
    " AND call_outcome IN ({})"
)
_EXPIRE_BATCH: Final = 500
_EXPIRED: Final = (
    "SELECT attachment_path FROM messages"
    " WHERE expire_at_ms IS NOT NULL AND expire_at_ms <= ? ORDER BY expire_at_ms, seq LIMIT 500"
)
_DELETE_EXPIRED: Final = (
    "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages"
    " WHERE expire_at_ms IS NOT NULL AND expire_at_ms <= ? ORDER BY expire_at_ms, seq LIMIT 500)"
)
_SUMMARIES: Final = """
WITH ranked AS (
    SELECT conversation, sort_ms, text, seq, kind, direction,
           call_media, call_outcome, call_end_reason, call_duration_ms,
           ROW_NUMBER() OVER win AS position,
           COUNT(*) OVER everything AS total,
           SUM(direction = 'in' AND status = 'received') OVER everything AS unread
    FROM messages
    WINDOW everything AS (PARTITION BY conversation),
           win AS (PARTITION BY conversation ORDER BY sort_ms DESC, seq DESC)
)
SELECT r.conversation, c.username, r.sort_ms, r.text, r.unread, r.total,
       coalesce(s.timer_s, 0), coalesce(s.state, 'accepted'), r.kind, r.direction,
       r.call_media, r.call_outcome, r.call_end_reason, r.call_duration_ms
FROM ranked AS r LEFT JOIN contacts AS c ON c.account_id = r.conversation
LEFT JOIN conversations AS s ON s.conversation = r.conversation
WHERE r.position = 1 AND (? IS NULL OR coalesce(s.state, 'accepted') = ?)
ORDER BY r.sort_ms DESC, r.seq DESC
"""


def status_may_change(direction: str, old: str, new: str) -> bool:
    """Whether a message's status may go from ``old`` to ``new``.

    Outgoing: ``sending < sent < delivered < read``, forward only; ``failed`` from
    ``sending`` or ``sent``; from ``failed`` to ``sent``, ``delivered`` or ``read`` (a retry
    went through, or a receipt proves the message arrived after all). Incoming: ``received``
    to ``read``. Staying put is no change.
    """
    if direction == "in":
        return old == "received" and new == "read"
    if new == "failed":
        return old in ("sending", "sent")
    if new not in _OUT_ORDER:
        return False
    if old == "failed":
        return new != "sending"
    return _OUT_ORDER[new] > _OUT_ORDER[old]


def _record(row: Row) -> MessageRecord:
    conversation, message_id, direction, sender, device, sent, server, received = row[:8]
    text, attachment, path, status, kind, timer, expire_at, franking = row[8:16]
    call = _call_log(row[16:])
    return MessageRecord(
        conversation,
        bytes(message_id),
        direction,
        sender,
        int(device),
        int(sent),
        server,
        received,
        text,
        None if attachment is None else bytes(attachment),
        path,
        status,
        kind,
        int(timer),
        expire_at,
        None if franking is None else bytes(franking),
        call,
    )


def _summary(row: Row) -> ConversationSummary:
    conversation, username, last_ms, text, unread, count, timer_s, state = row[:8]
    kind, direction = row[8:10]
    return ConversationSummary(
        conversation, username, int(last_ms), text, int(unread), int(count), int(timer_s),
        state, kind, direction, _call_log(row[10:]),
    )  # fmt: skip


def _call_log(columns: Row) -> CallLog | None:
    """The call details of a row's four call columns (None: not a call-log line)."""
    media, outcome, end_reason, duration = columns
    return None if media is None else CallLog(media, outcome, end_reason, duration)


def _check_message(message: MessageRecord) -> None:
    if message.direction not in DIRECTIONS:
        raise StoreError(f"unknown message direction {message.direction!r}")
    allowed = OUT_STATUSES if message.direction == "out" else IN_STATUSES
    if message.status not in allowed:
        raise StoreError(f"status {message.status!r} is not one of {message.direction!r} messages")
    if message.attachment_path is not None:
        _check_relative(message.attachment_path)
    if message.kind not in MESSAGE_KINDS:
        raise StoreError(f"unknown message kind {message.kind!r}")
    if message.expire_timer_s < 0:
        raise StoreError("a message timer cannot be negative")
    if (message.kind == "call") != (message.call is not None):
        raise StoreError("a call-log line (kind 'call') and only one carries call details")
    call = message.call
    if call is not None:
        if call.media not in CALL_MEDIA:
            raise StoreError(f"unknown call media {call.media!r}")
        if call.outcome not in CALL_OUTCOMES:
            raise StoreError(f"unknown call outcome {call.outcome!r}")
        if call.duration_ms is not None and call.duration_ms < 0:
            raise StoreError("a call duration cannot be negative")


def _check_relative(path: str) -> None:
    """A path inside the profile: relative, no ``..``, no drive."""
    pure = PurePosixPath(path)
    windows = PureWindowsPath(path)
    if (
        not path
        or pure.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in pure.parts
        or ".." in windows.parts
    ):
        raise StoreError("attachment_path must be a relative path inside the profile")


class MessageStore(StoreBase):
    """Messages, statuses, the conversation list."""

    def add_message(self, message: MessageRecord) -> bool:
        """Store a message; False (and nothing stored) if its sender already has this id here."""
        _check_message(message)
        m = message
        sort_ms = m.sent_ms if m.server_ms is None else m.server_ms
        changed = self._exec(
            _INSERT,
            (
                m.conversation,
                bytes(m.message_id),
                m.direction,
                m.sender_account_id,
                m.sender_device_id,
                m.sent_ms,
                m.server_ms,
                m.received_ms,
                m.text,
                None if m.attachment is None else bytes(m.attachment),
                m.attachment_path,
                m.status,
                m.kind,
                m.expire_timer_s,
                m.expire_at_ms,
                None if m.franking is None else bytes(m.franking),
                None if m.call is None else m.call.media,
                None if m.call is None else m.call.outcome,
                None if m.call is None else m.call.end_reason,
                None if m.call is None else m.call.duration_ms,
                sort_ms,
            ),
        )
        return changed == 1

    def message(self, conversation: str, message_id: bytes) -> MessageRecord | None:
        """The message with this id in the conversation (the newest, if several senders)."""
        row = self._one(
            _BY_ID,
            (conversation, bytes(message_id)),
        )
        return None if row is None else _record(row)

    def set_status(self, conversation: str, message_id: bytes, status: str) -> bool:
        """Move the status of the message(s) with this id forward; return whether one changed.

        A status that may not follow the current one (:func:`status_may_change`) is ignored,
        so a late "delivered" after "read" changes nothing. An unknown status is a
        :class:`StoreError`.
        """
        if status not in OUT_STATUSES and status not in IN_STATUSES:
            raise StoreError(f"unknown message status {status!r}")

        def work(conn: sqlite3.Connection) -> bool:
            rows = self._sql(
                conn,
                "SELECT seq, direction, status FROM messages"
                " WHERE conversation = ? AND message_id = ?",
                (conversation, bytes(message_id)),
            ).fetchall()
            changed = False
            for seq, direction, old in rows:
                if status_may_change(direction, old, status):
                    self._sql(conn, "UPDATE messages SET status = ? WHERE seq = ?", (status, seq))
                    changed = True
            return changed

        return self._write(work)

    def update_call(
        self,
        conversation: str,
        sender_account_id: str,
        call_id: bytes,
        call: CallLog,
        *,
        replaces: Iterable[str],
        now_ms: int,
    ) -> bool:
        """Give the call-log line ``call_id`` of this sender the details ``call``, if its
        outcome now is one of ``replaces``; an incoming line becomes read (its disappearing
        timer starts at ``now_ms``). Whether a line changed."""
        _check_message(
            MessageRecord(conversation, call_id, "in", sender_account_id, 0, 0, None, None,
                          None, None, None, "read", "call", call=call)
        )  # fmt: skip
        wanted = sorted(set(replaces))
        if not wanted or any(outcome not in CALL_OUTCOMES for outcome in wanted):
            raise StoreError(f"unknown call outcomes to replace: {wanted!r}")
        sql = _UPDATE_CALL.format(", ".join("?" * len(wanted)))
        changed = self._exec(
            sql,
            (call.media, call.outcome, call.end_reason, call.duration_ms, now_ms, conversation,
             sender_account_id, bytes(call_id), *wanted),
        )  # fmt: skip
        return changed > 0

    def set_attachment_path(self, conversation: str, message_id: bytes, path: str | None) -> bool:
        """Record where a message's downloaded attachment lives (relative to the profile).

        Applies to the newest message with this id; returns whether there was one.
        """
        if path is not None:
            _check_relative(path)
        changed = self._exec(
            "UPDATE messages SET attachment_path = ? WHERE seq = ("
            " SELECT seq FROM messages WHERE conversation = ? AND message_id = ?"
            " ORDER BY seq DESC LIMIT 1)",
            (path, conversation, bytes(message_id)),
        )
        return changed == 1

    def messages(
        self, conversation: str, limit: int = 100, before_ms: int | None = None
    ) -> list[MessageRecord]:
        """The latest ``limit`` messages (before ``before_ms`` if given), oldest first."""
        if limit < 0:
            raise StoreError(f"limit must not be negative, got {limit}")
        rows = self._all(_PAGE, (conversation, before_ms, before_ms, limit))
        return [_record(row) for row in rows]

    def conversations(self, state: str | None = None) -> list[ConversationSummary]:
        """One summary per conversation with messages, newest activity first; only those in
        ``state`` (``"accepted"`` or ``"request"``) if given."""
        if state is not None and state not in CONVERSATION_STATES:
            raise StoreError(f"unknown conversation state {state!r}")
        return [_summary(row) for row in self._all(_SUMMARIES, (state, state))]

    def mark_read(self, conversation: str, now_ms: int = 0) -> list[bytes]:
        """Mark the conversation's unread incoming messages (and missed-call lines) read and
        start their disappearing timers at ``now_ms``; return the ids of the messages among
        them, in order (what a read receipt names: a call-log line is this device's own)."""

        def work(conn: sqlite3.Connection) -> list[bytes]:
            rows = self._sql(conn, _UNREAD_IDS, (conversation,)).fetchall()
            self._sql(conn, _MARK_READ, (now_ms, conversation))
            return [bytes(row[0]) for row in rows]

        return self._write(work)

    def next_expiry(self) -> int | None:
        """When the next message disappears (None: no timer is counting)."""
        value = self._scalar("SELECT min(expire_at_ms) FROM messages")
        return None if value is None else int(value)

    def expire(self, now_ms: int) -> int:
        """Delete every message whose time is up at ``now_ms``, with its downloaded
        attachment file; how many. The rows go first (in one transaction), then the files:
        a crash in between leaves an orphan file, never a message pointing at nothing."""
        removed = 0
        while True:
            doomed = self._write(lambda conn: self._delete_expired(conn, now_ms))
            self._remove_files(p for p in doomed if p is not None)
            removed += len(doomed)
            if len(doomed) < _EXPIRE_BATCH:
                return removed

    def _delete_expired(self, conn: sqlite3.Connection, now_ms: int) -> list[str | None]:
        rows = self._sql(conn, _EXPIRED, (now_ms,)).fetchall()
        self._sql(conn, _DELETE_EXPIRED, (now_ms,))
        return [row[0] for row in rows]

    def delete_conversation(self, conversation: str) -> int:
        """Delete every message of the conversation (and their files) and its settings."""

        def work(conn: sqlite3.Connection) -> list[str | None]:
            rows = self._sql(
                conn, "SELECT attachment_path FROM messages WHERE conversation = ?", (conversation,)
            ).fetchall()
            self._sql(conn, "DELETE FROM messages WHERE conversation = ?", (conversation,))
            self._sql(conn, "DELETE FROM conversations WHERE conversation = ?", (conversation,))
            return [row[0] for row in rows]

        paths = self._write(work)
        self._remove_files(p for p in paths if p is not None)
        return len(paths)

    def _remove_files(self, paths: Iterable[str]) -> None:
        for relative in paths:
            _check_relative(relative)
            with contextlib.suppress(FileNotFoundError):
                (self.profile / relative).unlink()
