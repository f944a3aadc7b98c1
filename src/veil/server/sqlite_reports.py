"""Reporting secrets and abuse reports on the SQLite repository's connection and thread.

Schema: ``migrations/sqlite/0007_reports.sql``; the contract is
:class:`veil.server.report_store.ReportStore`.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from veil.server.report_store import (
    AlreadyReportedError,
    AttachmentSummary,
    Report,
    ReportedItem,
    message_row,
)
from veil.server.sqlite_executor import SqliteExecutor, transaction

_KEYS: Final = "SELECT key_id, secret FROM reporting_keys ORDER BY key_id"
_KEY: Final = "SELECT secret FROM reporting_keys WHERE key_id = ?"
_FIRST_KEY: Final = (
    "INSERT INTO reporting_keys (key_id, secret, created_ms)"
    " SELECT 1, ?, ? WHERE NOT EXISTS (SELECT 1 FROM reporting_keys)"
)
_NEXT_KEY: Final = (
    "INSERT INTO reporting_keys (key_id, secret, created_ms)"
    " SELECT COALESCE(MAX(key_id), 0) + 1, ?, ? FROM reporting_keys RETURNING key_id"
)
_INSERT_REPORT: Final = (
    "INSERT INTO reports (report_id, reporter_account_id, reporter_username,"
    " reporter_device_id, reported_account_id, reported_username, created_ms, reason)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_MESSAGE: Final = (
    "INSERT INTO reported_messages (report_id, idx, sender_device_id, recipient_device_id,"
    " server_ms, key_id, message_id, sent_ms, text, attachment_file_name, attachment_size,"
    " attachment_content_type, attachment_digest)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TAG: Final = (
    "INSERT INTO reported_tags (reporter_account_id, tag_sha256, report_id) VALUES (?, ?, ?)"
)
_LIST: Final = (
    "SELECT report_id, reporter_account_id, reporter_username, reporter_device_id,"
    " reported_account_id, reported_username, created_ms, reason"
    " FROM reports ORDER BY created_ms DESC, report_id DESC LIMIT ?"
)
_MESSAGES: Final = (
    "SELECT sender_device_id, recipient_device_id, server_ms, key_id, message_id, sent_ms,"
    " text, attachment_file_name, attachment_size, attachment_content_type, attachment_digest"
    " FROM reported_messages WHERE report_id = ? ORDER BY idx"
)


def item(row: Any) -> ReportedItem:
    """A :class:`ReportedItem` from a row of ``_MESSAGES``."""
    attachment = None
    if row[10] is not None:
        attachment = AttachmentSummary(row[7], int(row[8]), row[9], bytes(row[10]))
    return ReportedItem(
        int(row[0]), int(row[1]), int(row[2]), int(row[3]), str(row[4]), int(row[5]), row[6],
        attachment,
    )  # fmt: skip


class SqliteReportStore:
    """:class:`~veil.server.report_store.ReportStore` on a SQLite repository's executor."""

    def __init__(self, executor: SqliteExecutor) -> None:
        self.executor = executor

    async def reporting_keys(self) -> list[tuple[int, bytes]]:
        """Every reporting secret, by key id."""
        rows = await self.executor.run(lambda conn: conn.execute(_KEYS).fetchall())
        return [(int(k), bytes(s)) for k, s in rows]

    async def reporting_key(self, key_id: int) -> bytes | None:
        """One secret, or None."""
        row = await self.executor.run(lambda conn: conn.execute(_KEY, (key_id,)).fetchone())
        return None if row is None else bytes(row[0])

    async def add_first_reporting_key(self, secret: bytes, now_ms: int) -> None:
        """Key 1, unless a key exists."""
        await self.executor.run(
            lambda conn: transaction(
                conn, lambda c: c.execute(_FIRST_KEY, (secret, now_ms)), write=True
            )
        )

    async def add_reporting_key(self, secret: bytes, now_ms: int) -> int:
        """The next key id (under SQLite's write lock, so concurrent rotations differ)."""

        def add(conn: sqlite3.Connection) -> int:
            return int(conn.execute(_NEXT_KEY, (secret, now_ms)).fetchone()[0])

        return await self.executor.run(lambda conn: transaction(conn, add, write=True))

    async def add_report(self, report: Report, tag_hashes: tuple[bytes, ...]) -> None:
        """Report, messages and replay guards in one transaction."""

        def add(conn: sqlite3.Connection) -> None:
            r = report
            conn.execute(
                _INSERT_REPORT,
                (r.report_id, r.reporter_account_id, r.reporter_username, r.reporter_device_id,
                 r.reported_account_id, r.reported_username, r.created_ms, r.reason),
            )  # fmt: skip
            conn.executemany(
                _INSERT_MESSAGE, [message_row(r.report_id, i, m) for i, m in enumerate(r.messages)]
            )
            try:
                conn.executemany(
                    _INSERT_TAG, [(r.reporter_account_id, h, r.report_id) for h in tag_hashes]
                )
            except sqlite3.IntegrityError:
                raise AlreadyReportedError from None

        await self.executor.run(lambda conn: transaction(conn, add, write=True))

    async def list_reports(self, limit: int) -> list[Report]:
        """Newest first."""

        def read(conn: sqlite3.Connection) -> list[Report]:
            reports = []
            for row in conn.execute(_LIST, (limit,)).fetchall():
                items = tuple(item(m) for m in conn.execute(_MESSAGES, (row[0],)))
                (report_id, reporter, reporter_name, device, reported, reported_name) = row[:6]
                reports.append(
                    Report(
                        report_id,
                        reporter,
                        reporter_name,
                        int(device),
                        reported,
                        reported_name,
                        int(row[6]),
                        row[7],
                        items,
                    )
                )
            return reports

        return await self.executor.run(lambda conn: transaction(conn, read, write=False))
