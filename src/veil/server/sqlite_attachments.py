"""Attachment metadata of the SQLite repository: SQL run on its thread.

The bytes live in files (:class:`veil.server.blobs.FileBlobStore`); this table says which
blobs exist, whose they are, and until when they are served. Functions take the connection
and leave the transaction to the repository (see :mod:`veil.server.sqlite_messages`).

Schema: ``migrations/sqlite/0004_attachments.sql``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from veil.server.model import Attachment

# SQLite >= 3.32 allows 32766 host parameters per statement; stay far below it.
_CHUNK: Final = 500

_INSERT: Final = (
    "INSERT INTO attachments (attachment_id, account_id, created_ms, expires_ms)"
    " VALUES (?, ?, ?, ?)"
)
_FINISH: Final = (
    "UPDATE attachments SET complete = 1, size = ?, sha256 = ?, expires_ms = ?"
    " WHERE attachment_id = ? AND complete = 0 AND expires_ms > ?"
)
_GET: Final = (
    "SELECT attachment_id, account_id, created_ms, expires_ms, complete, size, sha256"
    " FROM attachments WHERE attachment_id = ?"
)
_EXPIRE: Final = (
    "UPDATE attachments SET expires_ms = ?"
    " WHERE attachment_id = ? AND account_id = ? AND complete = 1 AND expires_ms > ?"
)
_EXPIRED: Final = "SELECT attachment_id FROM attachments WHERE expires_ms <= ? LIMIT ?"


def add(
    conn: sqlite3.Connection, attachment_id: str, account_id: str, now_ms: int, deadline_ms: int
) -> None:
    """Record an upload that is starting."""
    conn.execute(_INSERT, (attachment_id, account_id, now_ms, deadline_ms))


def finish(
    conn: sqlite3.Connection,
    attachment_id: str,
    size: int,
    sha256: bytes,
    now_ms: int,
    expires_ms: int,
) -> bool:
    """Mark a live, incomplete upload complete."""
    args = (size, sha256, expires_ms, attachment_id, now_ms)
    return conn.execute(_FINISH, args).rowcount == 1


def get(conn: sqlite3.Connection, attachment_id: str) -> Attachment | None:
    """The metadata row."""
    row = conn.execute(_GET, (attachment_id,)).fetchone()
    if row is None:
        return None
    digest = None if row[6] is None else bytes(row[6])
    return Attachment(row[0], row[1], row[2], row[3], bool(row[4]), row[5], digest)


def expire(conn: sqlite3.Connection, attachment_id: str, account_id: str, now_ms: int) -> bool:
    """Make the owner's live, complete attachment expired now."""
    return conn.execute(_EXPIRE, (now_ms, attachment_id, account_id, now_ms)).rowcount == 1


def expired(conn: sqlite3.Connection, now_ms: int, limit: int) -> list[str]:
    """Ids of up to ``limit`` expired rows."""
    return [str(row[0]) for row in conn.execute(_EXPIRED, (now_ms, limit))]


def remove(conn: sqlite3.Connection, attachment_ids: Sequence[str]) -> int:
    """Delete these rows; how many."""
    removed = 0
    unique = list(dict.fromkeys(attachment_ids))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))  # only "?" marks are formatted in
        sql = f"DELETE FROM attachments WHERE attachment_id IN ({marks})"  # noqa: S608
        removed += conn.execute(sql, chunk).rowcount
    return removed
