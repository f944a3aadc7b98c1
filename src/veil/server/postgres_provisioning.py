"""Provisioning mailboxes and linking codes of the PostgreSQL repository (asyncpg).

Functions take an asyncpg connection (or the pool). Every check that a write depends on is in
the write's own ``WHERE`` clause, so concurrent requests from any number of server processes
stay correct under ``READ COMMITTED``: of two ``UPDATE ... WHERE message IS NULL`` (or two
``DELETE ... RETURNING`` of one row) the second waits for the first and then finds nothing to
change, hence a message is stored once, delivered once, and a code is consumed once.

Schema: ``migrations/postgres/0003_provisioning.sql``.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg

from veil.server.model import Provisioning
from veil.server.repository import NotFoundError, PutOutcome

_INSERT: Final = (
    "INSERT INTO provisioning (provisioning_id, token_hash, created_ms, expires_ms)"
    " VALUES ($1, $2, $3, $4)"
)
_GET: Final = (
    "SELECT provisioning_id, token_hash, expires_ms, message IS NOT NULL AS has_message"
    " FROM provisioning WHERE provisioning_id = $1"
)
_PUT: Final = (
    "UPDATE provisioning SET message = $2"
    " WHERE provisioning_id = $1 AND expires_ms > $3 AND message IS NULL RETURNING true"
)
_TAKE: Final = (
    "DELETE FROM provisioning"
    " WHERE provisioning_id = $1 AND expires_ms > $2 AND message IS NOT NULL RETURNING message"
)
_INSERT_CODE: Final = (
    "INSERT INTO provisioning_codes (code_hash, account_id, created_ms, expires_ms)"
    " VALUES ($1, $2, $3, $4)"
)
_CONSUME_CODE: Final = (
    "DELETE FROM provisioning_codes WHERE code_hash = $1 AND account_id = $2 RETURNING expires_ms"
)
_PURGE: Final = """
WITH mailboxes AS (DELETE FROM provisioning WHERE expires_ms <= $1 RETURNING 1),
     codes AS (DELETE FROM provisioning_codes WHERE expires_ms <= $1 RETURNING 1)
SELECT (SELECT count(*) FROM mailboxes) + (SELECT count(*) FROM codes)"""


async def create(
    db: Any, provisioning_id: str, token_hash: bytes, now_ms: int, expires_ms: int
) -> None:
    """Open an empty mailbox."""
    await db.execute(_INSERT, provisioning_id, token_hash, now_ms, expires_ms)


async def get(db: Any, provisioning_id: str) -> Provisioning | None:
    """The mailbox, expired or not."""
    row = await db.fetchrow(_GET, provisioning_id)
    if row is None:
        return None
    return Provisioning(
        provisioning_id=str(row["provisioning_id"]),
        token_hash=bytes(row["token_hash"]),
        expires_ms=int(row["expires_ms"]),
        has_message=bool(row["has_message"]),
    )


async def put_message(db: Any, provisioning_id: str, message: bytes, now_ms: int) -> PutOutcome:
    """Store the message in a live, empty mailbox."""
    if await db.fetchval(_PUT, provisioning_id, message, now_ms) is not None:
        return "stored"
    found = await get(db, provisioning_id)  # a fresh snapshot: the winner has committed
    if found is None or found.expires_ms <= now_ms:
        return "missing"
    return "occupied"


async def take_message(db: Any, provisioning_id: str, now_ms: int) -> bytes | None:
    """Delete a live mailbox holding a message; the message."""
    message = await db.fetchval(_TAKE, provisioning_id, now_ms)
    return None if message is None else bytes(message)


async def delete(db: Any, provisioning_id: str) -> bool:
    """Delete one mailbox."""
    sql = "DELETE FROM provisioning WHERE provisioning_id = $1 RETURNING true"
    return await db.fetchval(sql, provisioning_id) is not None


async def add_code(
    db: Any, code_hash: bytes, account_id: str, now_ms: int, expires_ms: int
) -> None:
    """Record a code's hash (:class:`NotFoundError` for an unknown account)."""
    try:
        await db.execute(_INSERT_CODE, code_hash, account_id, now_ms, expires_ms)
    except asyncpg.ForeignKeyViolationError:
        raise NotFoundError(account_id) from None


async def consume_code(conn: Any, account_id: str, code_hash: bytes, now_ms: int) -> bool:
    """Delete the account's code with this hash; True if it was live (not expired)."""
    expires_ms = await conn.fetchval(_CONSUME_CODE, code_hash, account_id)
    return expires_ms is not None and int(expires_ms) > now_ms


async def purge(db: Any, now_ms: int) -> int:
    """Delete expired mailboxes and codes; how many rows."""
    return int(await db.fetchval(_PURGE, now_ms))
