"""Attachment metadata of :class:`~veil.server.postgres_repo.PostgresRepository`.

The bytes are in ``attachment_chunks`` (:class:`veil.server.postgres_blobs.PostgresBlobStore`),
whose rows go with their metadata row (``ON DELETE CASCADE``). Functions take an asyncpg
connection or the pool; each is one statement, hence one transaction.

Schema: ``migrations/postgres/0004_attachments.sql``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from veil.server.model import Attachment

_INSERT: Final = (
    "INSERT INTO attachments (attachment_id, account_id, created_ms, expires_ms)"
    " VALUES ($1, $2, $3, $4)"
)
_FINISH: Final = (
    "UPDATE attachments SET complete = true, size = $2, sha256 = $3, expires_ms = $5"
    " WHERE attachment_id = $1 AND NOT complete AND expires_ms > $4 RETURNING true"
)
_GET: Final = (
    "SELECT attachment_id, account_id, created_ms, expires_ms, complete, size, sha256"
    " FROM attachments WHERE attachment_id = $1"
)
_EXPIRE: Final = (
    "UPDATE attachments SET expires_ms = $3"
    " WHERE attachment_id = $1 AND account_id = $2 AND complete AND expires_ms > $3"
    " RETURNING true"
)
_EXPIRED: Final = "SELECT attachment_id FROM attachments WHERE expires_ms <= $1 LIMIT $2"
_REMOVE: Final = (
    "WITH gone AS (DELETE FROM attachments WHERE attachment_id = ANY ($1::text[]) RETURNING 1)"
    " SELECT count(*) FROM gone"
)


async def add(db: Any, attachment_id: str, account_id: str, now_ms: int, deadline_ms: int) -> None:
    """Record an upload that is starting."""
    await db.execute(_INSERT, attachment_id, account_id, now_ms, deadline_ms)


async def finish(
    db: Any, attachment_id: str, size: int, sha256: bytes, now_ms: int, expires_ms: int
) -> bool:
    """Mark a live, incomplete upload complete."""
    done = await db.fetchval(_FINISH, attachment_id, size, sha256, now_ms, expires_ms)
    return done is not None


async def get(db: Any, attachment_id: str) -> Attachment | None:
    """The metadata row."""
    row = await db.fetchrow(_GET, attachment_id)
    if row is None:
        return None
    return Attachment(
        attachment_id=str(row["attachment_id"]),
        account_id=str(row["account_id"]),
        created_ms=int(row["created_ms"]),
        expires_ms=int(row["expires_ms"]),
        complete=bool(row["complete"]),
        size=int(row["size"]),
        sha256=None if row["sha256"] is None else bytes(row["sha256"]),
    )


async def expire(db: Any, attachment_id: str, account_id: str, now_ms: int) -> bool:
    """Make the owner's live, complete attachment expired now."""
    return await db.fetchval(_EXPIRE, attachment_id, account_id, now_ms) is not None


async def expired(db: Any, now_ms: int, limit: int) -> list[str]:
    """Ids of up to ``limit`` expired rows."""
    return [str(row[0]) for row in await db.fetch(_EXPIRED, now_ms, limit)]


async def remove(db: Any, attachment_ids: Sequence[str]) -> int:
    """Delete these rows (their chunks follow); how many."""
    return int(await db.fetchval(_REMOVE, list(attachment_ids)))
