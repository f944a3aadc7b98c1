"""The social graph of :class:`veil.server.postgres_repo.PostgresRepository`: follows,
accepted chats, blocks. Every function is one statement (one atomic transaction).

How a send uses these tables: the ``_STORE`` statement of :mod:`veil.server.postgres_messages`.
The existence checks lock the other account ``FOR KEY SHARE`` (as a foreign key check would),
so it cannot be deleted between the check and the insert; if the caller's own account is
deleted meanwhile, the insert's foreign key fails (:class:`asyncpg.ForeignKeyViolationError`,
turned into :class:`~veil.server.repository.NotFoundError` by the repository).

Schema: ``migrations/postgres/0006_social.sql``.
"""

from __future__ import annotations

from typing import Any, Final

from veil.server.model import LinkedAccount, Relation

# $1 the account acting, $2 the other one, $3 now.
_FOLLOW: Final = """
WITH target AS (
    SELECT FROM accounts WHERE account_id = $2 FOR KEY SHARE
), ok AS (
    SELECT EXISTS (SELECT FROM target)
           AND NOT EXISTS (SELECT FROM blocks WHERE blocker = $2 AND blocked = $1) AS ok
), ins AS (
    INSERT INTO follows (follower, followee, created_ms)
    SELECT $1, $2, $3 WHERE (SELECT ok FROM ok)
    ON CONFLICT (follower, followee) DO NOTHING
)
SELECT ok FROM ok"""

_ACCEPT: Final = """
WITH target AS (
    SELECT FROM accounts WHERE account_id = $2 FOR KEY SHARE
), ins AS (
    INSERT INTO chats (owner, peer, created_ms)
    SELECT $1, $2, $3 WHERE EXISTS (SELECT FROM target)
    ON CONFLICT (owner, peer) DO NOTHING
)
SELECT EXISTS (SELECT FROM target)"""

# Block, remove the follows both ways and what $2 has queued for $1's devices.
_BLOCK: Final = """
WITH target AS (
    SELECT FROM accounts WHERE account_id = $2 FOR KEY SHARE
), ins AS (
    INSERT INTO blocks (blocker, blocked, created_ms)
    SELECT $1, $2, $3 WHERE EXISTS (SELECT FROM target)
    ON CONFLICT (blocker, blocked) DO NOTHING
), unfollow AS (
    DELETE FROM follows
    WHERE ((follower = $1 AND followee = $2) OR (follower = $2 AND followee = $1))
      AND EXISTS (SELECT FROM target)
), dropped AS (
    DELETE FROM envelopes
    WHERE account_id = $1 AND sender_account_id = $2 AND EXISTS (SELECT FROM target)
    RETURNING 1
)
SELECT EXISTS (SELECT FROM target) AS found, (SELECT count(*) FROM dropped) AS dropped"""

_RELATION: Final = """
SELECT EXISTS (SELECT FROM accounts WHERE account_id = $2) AS found,
       EXISTS (SELECT FROM follows WHERE follower = $1 AND followee = $2) AS following,
       EXISTS (SELECT FROM follows WHERE follower = $2 AND followee = $1) AS followed_by,
       EXISTS (SELECT FROM chats WHERE owner = $1 AND peer = $2) AS accepted,
       EXISTS (SELECT FROM chats WHERE owner = $2 AND peer = $1) AS accepted_by,
       EXISTS (SELECT FROM blocks WHERE blocker = $1 AND blocked = $2) AS blocked"""

# The lists: (table, column of the account asking, column of the listed accounts).
_LISTS: Final = {
    "following": ("follows", "follower", "followee"),
    "followers": ("follows", "followee", "follower"),
    "blocks": ("blocks", "blocker", "blocked"),
}


def _deleted(status: str) -> bool:
    return int(status.rpartition(" ")[2]) > 0


async def is_blocked(conn: Any, blocker: str, blocked: str) -> bool:
    """Whether ``blocker`` blocks ``blocked``."""
    sql = "SELECT EXISTS (SELECT FROM blocks WHERE blocker = $1 AND blocked = $2)"
    return bool(await conn.fetchval(sql, blocker, blocked))


async def follow(conn: Any, follower: str, followee: str, now_ms: int) -> bool:
    """``follower`` follows ``followee``; False if that account is unknown or blocks them."""
    return bool(await conn.fetchval(_FOLLOW, follower, followee, now_ms))


async def unfollow(conn: Any, follower: str, followee: str) -> bool:
    """Stop following; False if there was no follow."""
    sql = "DELETE FROM follows WHERE follower = $1 AND followee = $2"
    return _deleted(await conn.execute(sql, follower, followee))


async def accept_chat(conn: Any, owner: str, peer: str, now_ms: int) -> bool:
    """``owner`` accepts ``peer``'s messages; False if ``peer`` is unknown."""
    return bool(await conn.fetchval(_ACCEPT, owner, peer, now_ms))


async def decline_chat(conn: Any, owner: str, peer: str) -> bool:
    """``owner`` no longer accepts ``peer``'s messages; False if it did not."""
    sql = "DELETE FROM chats WHERE owner = $1 AND peer = $2"
    return _deleted(await conn.execute(sql, owner, peer))


async def block(conn: Any, blocker: str, blocked: str, now_ms: int) -> int | None:
    """Block, drop what ``blocked`` has queued for ``blocker``'s devices, remove the follows
    both ways; how many envelopes were dropped, None if ``blocked`` is unknown."""
    row = await conn.fetchrow(_BLOCK, blocker, blocked, now_ms)
    return int(row["dropped"]) if row["found"] else None


async def unblock(conn: Any, blocker: str, blocked: str) -> bool:
    """Remove a block; False if there was none."""
    sql = "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2"
    return _deleted(await conn.execute(sql, blocker, blocked))


async def listed(conn: Any, kind: str, account_id: str) -> list[LinkedAccount]:
    """The accounts of one of :data:`_LISTS`, oldest relationship first."""
    table, mine, theirs = _LISTS[kind]  # fixed names only are formatted in
    sql = (
        f"SELECT a.account_id, a.display_username, t.created_ms FROM {table} AS t"  # noqa: S608
        f" JOIN accounts AS a ON a.account_id = t.{theirs}"
        f" WHERE t.{mine} = $1 ORDER BY t.created_ms, a.account_id"
    )
    rows = await conn.fetch(sql, account_id)
    return [LinkedAccount(str(r[0]), str(r[1]), int(r[2])) for r in rows]


async def relation(conn: Any, account_id: str, other: str) -> Relation | None:
    """Between ``account_id`` and ``other``; None if ``other`` is unknown."""
    row = await conn.fetchrow(_RELATION, account_id, other)
    if not row["found"]:
        return None
    return Relation(
        bool(row["following"]),
        bool(row["followed_by"]),
        bool(row["accepted"]),
        bool(row["accepted_by"]),
        bool(row["blocked"]),
    )
