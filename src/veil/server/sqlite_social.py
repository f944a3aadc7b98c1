"""The social graph of the SQLite repository: follows, accepted chats, blocks.

Functions take the connection and run inside the transaction the repository opens (one call,
one transaction; SQLite has one writer, so the checks and the writes of a call cannot
interleave with a send). How a send uses these tables: :mod:`veil.server.sqlite_messages`.

Schema: ``migrations/sqlite/0006_social.sql``.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from veil.server.model import LinkedAccount, Relation

_EXISTS: Final = "SELECT 1 FROM accounts WHERE account_id = ?"
_BLOCKS: Final = "SELECT 1 FROM blocks WHERE blocker = ? AND blocked = ?"

# ?1 the account, ?2 the other one.
_RELATION: Final = (
    "SELECT EXISTS (SELECT 1 FROM accounts WHERE account_id = ?2),"
    " EXISTS (SELECT 1 FROM follows WHERE follower = ?1 AND followee = ?2),"
    " EXISTS (SELECT 1 FROM follows WHERE follower = ?2 AND followee = ?1),"
    " EXISTS (SELECT 1 FROM chats WHERE owner = ?1 AND peer = ?2),"
    " EXISTS (SELECT 1 FROM chats WHERE owner = ?2 AND peer = ?1),"
    " EXISTS (SELECT 1 FROM blocks WHERE blocker = ?1 AND blocked = ?2)"
)

# The lists: (table, column of the account asking, column of the listed accounts).
_LISTS: Final = {
    "following": ("follows", "follower", "followee"),
    "followers": ("follows", "followee", "follower"),
    "blocks": ("blocks", "blocker", "blocked"),
}


def _exists(conn: sqlite3.Connection, account_id: str) -> bool:
    return conn.execute(_EXISTS, (account_id,)).fetchone() is not None


def is_blocked(conn: sqlite3.Connection, blocker: str, blocked: str) -> bool:
    """Whether ``blocker`` blocks ``blocked``."""
    return conn.execute(_BLOCKS, (blocker, blocked)).fetchone() is not None


def follow(conn: sqlite3.Connection, follower: str, followee: str, now_ms: int) -> bool:
    """``follower`` follows ``followee``; False if that account is unknown or blocks them."""
    if not _exists(conn, followee) or is_blocked(conn, followee, follower):
        return False
    conn.execute(
        "INSERT OR IGNORE INTO follows (follower, followee, created_ms) VALUES (?, ?, ?)",
        (follower, followee, now_ms),
    )
    return True


def unfollow(conn: sqlite3.Connection, follower: str, followee: str) -> bool:
    """Stop following; False if there was no follow."""
    sql = "DELETE FROM follows WHERE follower = ? AND followee = ?"
    return conn.execute(sql, (follower, followee)).rowcount > 0


def accept_chat(conn: sqlite3.Connection, owner: str, peer: str, now_ms: int) -> bool:
    """``owner`` accepts ``peer``'s messages; False if ``peer`` is unknown."""
    if not _exists(conn, peer):
        return False
    conn.execute(
        "INSERT OR IGNORE INTO chats (owner, peer, created_ms) VALUES (?, ?, ?)",
        (owner, peer, now_ms),
    )
    return True


def decline_chat(conn: sqlite3.Connection, owner: str, peer: str) -> bool:
    """``owner`` no longer accepts ``peer``'s messages; False if it did not."""
    sql = "DELETE FROM chats WHERE owner = ? AND peer = ?"
    return conn.execute(sql, (owner, peer)).rowcount > 0


def block(conn: sqlite3.Connection, blocker: str, blocked: str, now_ms: int) -> int | None:
    """Block, drop what ``blocked`` has queued for ``blocker``'s devices, and remove the
    follows both ways; how many envelopes were dropped, None if ``blocked`` is unknown."""
    if not _exists(conn, blocked):
        return None
    conn.execute(
        "INSERT OR IGNORE INTO blocks (blocker, blocked, created_ms) VALUES (?, ?, ?)",
        (blocker, blocked, now_ms),
    )
    conn.execute(
        "DELETE FROM follows WHERE (follower = ?1 AND followee = ?2)"
        " OR (follower = ?2 AND followee = ?1)",
        (blocker, blocked),
    )
    sql = "DELETE FROM envelopes WHERE account_id = ? AND sender_account_id = ?"
    return int(conn.execute(sql, (blocker, blocked)).rowcount)


def unblock(conn: sqlite3.Connection, blocker: str, blocked: str) -> bool:
    """Remove a block; False if there was none."""
    sql = "DELETE FROM blocks WHERE blocker = ? AND blocked = ?"
    return conn.execute(sql, (blocker, blocked)).rowcount > 0


def listed(conn: sqlite3.Connection, kind: str, account_id: str) -> list[LinkedAccount]:
    """The accounts of one of :data:`_LISTS`, oldest relationship first."""
    table, mine, theirs = _LISTS[kind]  # fixed names only are formatted in
    sql = (
        f"SELECT a.account_id, a.display_username, t.created_ms FROM {table} AS t"  # noqa: S608
        f" JOIN accounts AS a ON a.account_id = t.{theirs}"
        f" WHERE t.{mine} = ? ORDER BY t.created_ms, a.account_id"
    )
    return [LinkedAccount(*row) for row in conn.execute(sql, (account_id,))]


def relation(conn: sqlite3.Connection, account_id: str, other: str) -> Relation | None:
    """Between ``account_id`` and ``other``; None if ``other`` is unknown."""
    found, *flags = conn.execute(_RELATION, (account_id, other)).fetchone()
    return Relation(*(bool(f) for f in flags)) if found else None
