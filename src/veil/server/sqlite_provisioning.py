"""Provisioning mailboxes and linking codes of the SQLite repository: SQL run on its thread.

Like :mod:`veil.server.sqlite_messages`, every function takes the connection and does no
``BEGIN``/``COMMIT`` of its own: the repository wraps each call in one transaction (writes
take SQLite's write lock up front with ``BEGIN IMMEDIATE``, so a check and the write that
depends on it cannot interleave with another writer, in this process or another).

Schema: ``migrations/sqlite/0003_provisioning.sql``.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from veil.server.model import Provisioning
from veil.server.repository import NotFoundError, PutOutcome

_INSERT: Final = (
    "INSERT INTO provisioning (provisioning_id, token_hash, created_ms, expires_ms)"
    " VALUES (?, ?, ?, ?)"
)
_GET: Final = (
    "SELECT provisioning_id, token_hash, expires_ms, message IS NOT NULL"
    " FROM provisioning WHERE provisioning_id = ?"
)
_PUT: Final = (
    "UPDATE provisioning SET message = ?"
    " WHERE provisioning_id = ? AND expires_ms > ? AND message IS NULL"
)
_TAKE: Final = (
    "DELETE FROM provisioning"
    " WHERE provisioning_id = ? AND expires_ms > ? AND message IS NOT NULL RETURNING message"
)
_INSERT_CODE: Final = (
    "INSERT INTO provisioning_codes (code_hash, account_id, created_ms, expires_ms)"
    " VALUES (?, ?, ?, ?)"
)
_CONSUME_CODE: Final = (
    "DELETE FROM provisioning_codes WHERE code_hash = ? AND account_id = ? RETURNING expires_ms"
)


def create(
    conn: sqlite3.Connection, provisioning_id: str, token_hash: bytes, now_ms: int, expires_ms: int
) -> None:
    """Open an empty mailbox."""
    conn.execute(_INSERT, (provisioning_id, token_hash, now_ms, expires_ms))


def get(conn: sqlite3.Connection, provisioning_id: str) -> Provisioning | None:
    """The mailbox, expired or not."""
    row = conn.execute(_GET, (provisioning_id,)).fetchone()
    return None if row is None else Provisioning(row[0], row[1], row[2], bool(row[3]))


def put_message(
    conn: sqlite3.Connection, provisioning_id: str, message: bytes, now_ms: int
) -> PutOutcome:
    """Store the message in a live, empty mailbox."""
    if conn.execute(_PUT, (message, provisioning_id, now_ms)).rowcount == 1:
        return "stored"
    found = get(conn, provisioning_id)
    if found is None or found.expires_ms <= now_ms:
        return "missing"
    return "occupied"


def take_message(conn: sqlite3.Connection, provisioning_id: str, now_ms: int) -> bytes | None:
    """Delete a live mailbox holding a message; the message."""
    row = conn.execute(_TAKE, (provisioning_id, now_ms)).fetchone()
    return None if row is None else bytes(row[0])


def delete(conn: sqlite3.Connection, provisioning_id: str) -> bool:
    """Delete one mailbox."""
    sql = "DELETE FROM provisioning WHERE provisioning_id = ?"
    return conn.execute(sql, (provisioning_id,)).rowcount > 0


def add_code(
    conn: sqlite3.Connection, code_hash: bytes, account_id: str, now_ms: int, expires_ms: int
) -> None:
    """Record a code's hash (:class:`NotFoundError` for an unknown account)."""
    try:
        conn.execute(_INSERT_CODE, (code_hash, account_id, now_ms, expires_ms))
    except sqlite3.IntegrityError:  # the foreign key: a code hash is 256 random bits
        raise NotFoundError(f"no account {account_id!r}") from None


def consume_code(conn: sqlite3.Connection, account_id: str, code_hash: bytes, now_ms: int) -> bool:
    """Delete the account's code with this hash; True if it was live (not expired)."""
    row = conn.execute(_CONSUME_CODE, (code_hash, account_id)).fetchone()
    return row is not None and int(row[0]) > now_ms


def purge(conn: sqlite3.Connection, now_ms: int) -> int:
    """Delete expired mailboxes and codes; how many rows."""
    mailboxes = conn.execute("DELETE FROM provisioning WHERE expires_ms <= ?", (now_ms,))
    codes = conn.execute("DELETE FROM provisioning_codes WHERE expires_ms <= ?", (now_ms,))
    return int(mailboxes.rowcount) + int(codes.rowcount)
