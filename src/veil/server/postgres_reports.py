"""Reporting secrets and abuse reports on the PostgreSQL repository's pool (asyncpg).

Schema: ``migrations/postgres/0007_reports.sql``; the contract is
:class:`veil.server.report_store.ReportStore`. Text, file name and content type are stored
as UTF-8 ``BYTEA`` (a revealed message may hold NUL, which ``TEXT`` refuses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import asyncpg

from veil.server.report_store import (
    AlreadyReportedError,
    AttachmentSummary,
    Report,
    ReportedItem,
    message_row,
)

_KEYS: Final = "SELECT key_id, secret FROM reporting_keys ORDER BY key_id"
_KEY: Final = "SELECT secret FROM reporting_keys WHERE key_id = $1"
_FIRST_KEY: Final = (
    "INSERT INTO reporting_keys (key_id, secret, created_ms)"
    " SELECT 1, $1, $2 WHERE NOT EXISTS (SELECT FROM reporting_keys)"
    " ON CONFLICT (key_id) DO NOTHING"
)
_NEXT_KEY: Final = (
    "INSERT INTO reporting_keys (key_id, secret, created_ms)"
    " SELECT coalesce(max(key_id), 0) + 1, $1, $2 FROM reporting_keys"
    " ON CONFLICT (key_id) DO NOTHING RETURNING key_id"
)
_INSERT_REPORT: Final = (
    "INSERT INTO reports (report_id, reporter_account_id, reporter_username,"
    " reporter_device_id, reported_account_id, reported_username, created_ms, reason)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
_INSERT_MESSAGE: Final = (
    "INSERT INTO reported_messages (report_id, idx, sender_device_id, recipient_device_id,"
    " server_ms, key_id, message_id, sent_ms, text, attachment_file_name, attachment_size,"
    " attachment_content_type, attachment_digest)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)
_INSERT_TAG: Final = (
    "INSERT INTO reported_tags (reporter_account_id, tag_sha256, report_id) VALUES ($1, $2, $3)"
)
_LIST: Final = (
    "SELECT report_id, reporter_account_id, reporter_username, reporter_device_id,"
    " reported_account_id, reported_username, created_ms, reason"
    " FROM reports ORDER BY created_ms DESC, report_id DESC LIMIT $1"
)
_MESSAGES: Final = (
    "SELECT report_id, sender_device_id, recipient_device_id, server_ms, key_id, message_id,"
    " sent_ms, text, attachment_file_name, attachment_size, attachment_content_type,"
    " attachment_digest FROM reported_messages WHERE report_id = ANY ($1::text[])"
    " ORDER BY report_id, idx"
)


def _utf8(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _text(data: Any) -> str | None:
    return None if data is None else bytes(data).decode()


def _item(row: Any) -> ReportedItem:
    attachment = None
    if row["attachment_digest"] is not None:
        attachment = AttachmentSummary(
            file_name=_text(row["attachment_file_name"]) or "",
            size=int(row["attachment_size"]),
            content_type=_text(row["attachment_content_type"]) or "",
            digest=bytes(row["attachment_digest"]),
        )
    return ReportedItem(
        sender_device_id=int(row["sender_device_id"]),
        recipient_device_id=int(row["recipient_device_id"]),
        server_ms=int(row["server_ms"]),
        key_id=int(row["key_id"]),
        message_id=str(row["message_id"]),
        sent_ms=int(row["sent_ms"]),
        text=_text(row["text"]),
        attachment=attachment,
    )


class PostgresReportStore:
    """:class:`~veil.server.report_store.ReportStore` on the repository's asyncpg pool."""

    def __init__(self, pool: Callable[[], Any]) -> None:
        self._pool = pool

    async def reporting_keys(self) -> list[tuple[int, bytes]]:
        """Every reporting secret, by key id."""
        return [(int(r[0]), bytes(r[1])) for r in await self._pool().fetch(_KEYS)]

    async def reporting_key(self, key_id: int) -> bytes | None:
        """One secret, or None."""
        secret = await self._pool().fetchval(_KEY, key_id)
        return None if secret is None else bytes(secret)

    async def add_first_reporting_key(self, secret: bytes, now_ms: int) -> None:
        """Key 1, unless a key exists (a concurrent insert of key 1 wins quietly)."""
        await self._pool().execute(_FIRST_KEY, secret, now_ms)

    async def add_reporting_key(self, secret: bytes, now_ms: int) -> int:
        """The next key id; a concurrent rotation that took the same id makes this retry."""
        while True:
            key_id = await self._pool().fetchval(_NEXT_KEY, secret, now_ms)
            if key_id is not None:
                return int(key_id)

    async def add_report(self, report: Report, tag_hashes: tuple[bytes, ...]) -> None:
        """Report, messages and replay guards in one transaction."""
        r = report
        async with self._pool().acquire() as conn, conn.transaction():
            await conn.execute(
                _INSERT_REPORT,
                r.report_id,
                r.reporter_account_id,
                r.reporter_username,
                r.reporter_device_id,
                r.reported_account_id,
                r.reported_username,
                r.created_ms,
                r.reason,
            )
            await conn.executemany(
                _INSERT_MESSAGE,
                [message_row(r.report_id, i, m, _utf8) for i, m in enumerate(r.messages)],
            )
            try:
                await conn.executemany(
                    _INSERT_TAG, [(r.reporter_account_id, h, r.report_id) for h in tag_hashes]
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyReportedError from None

    async def list_reports(self, limit: int) -> list[Report]:
        """Newest first (two statements in one read-only snapshot)."""
        async with (
            self._pool().acquire() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            heads = await conn.fetch(_LIST, limit)
            items: dict[str, list[ReportedItem]] = {}
            for row in await conn.fetch(_MESSAGES, [h["report_id"] for h in heads]):
                items.setdefault(str(row["report_id"]), []).append(_item(row))
        return [
            Report(
                report_id=str(h["report_id"]),
                reporter_account_id=str(h["reporter_account_id"]),
                reporter_username=str(h["reporter_username"]),
                reporter_device_id=int(h["reporter_device_id"]),
                reported_account_id=str(h["reported_account_id"]),
                reported_username=str(h["reported_username"]),
                created_ms=int(h["created_ms"]),
                reason=str(h["reason"]),
                messages=tuple(items.get(str(h["report_id"]), ())),
            )
            for h in heads
        ]
