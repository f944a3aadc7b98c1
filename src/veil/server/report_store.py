"""Storage of message franking: the reporting secrets and the verified abuse reports.

Kept apart from :class:`veil.server.repository.Repository` (the per-message hot path): a
:class:`ReportStore` works on the repository's own database -- SQL in
:mod:`veil.server.sqlite_reports` and :mod:`veil.server.postgres_reports`, schema in
``migrations/<dialect>/0007_reports.sql`` -- and :func:`report_store` picks the one that fits
a repository. Every method is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from veil.server.repository import Repository


class AlreadyReportedError(Exception):
    """A revealed message was already reported by this account; nothing was stored."""


@dataclass(frozen=True, slots=True)
class AttachmentSummary:
    """What a report keeps of an attachment pointer: never its key."""

    file_name: str
    size: int
    content_type: str
    digest: bytes
    """SHA-256 of the encrypted blob (identifies the file, opens nothing)."""


@dataclass(frozen=True, slots=True)
class ReportedItem:
    """One verified message of a report: the context its reporting tag bound and what its
    decoded content says."""

    sender_device_id: int
    recipient_device_id: int
    server_ms: int
    key_id: int
    message_id: str
    """The content's message id, lowercase hex."""
    sent_ms: int
    text: str | None
    attachment: AttachmentSummary | None

    def __repr__(self) -> str:
        text = None if self.text is None else f"<{len(self.text)} chars>"
        return (
            f"ReportedItem({self.message_id}, server_ms={self.server_ms},"
            f" key_id={self.key_id}, text={text})"
        )


@dataclass(frozen=True, slots=True)
class Report:
    """A verified report, as stored (usernames copied at submission)."""

    report_id: str
    reporter_account_id: str
    reporter_username: str
    reporter_device_id: int
    reported_account_id: str
    reported_username: str
    created_ms: int
    reason: str
    messages: tuple[ReportedItem, ...]


class ReportStore(Protocol):
    """Reporting secrets and reports on the repository's database."""

    async def reporting_keys(self) -> list[tuple[int, bytes]]:
        """Every reporting secret as ``(key_id, secret)``, by key id."""

    async def reporting_key(self, key_id: int) -> bytes | None:
        """One secret; None if there is no such key."""

    async def add_first_reporting_key(self, secret: bytes, now_ms: int) -> None:
        """Store ``secret`` as key 1 unless a key exists (concurrent callers: one wins)."""

    async def add_reporting_key(self, secret: bytes, now_ms: int) -> int:
        """Store ``secret`` under the next key id (it becomes current); that id."""

    async def add_report(self, report: Report, tag_hashes: tuple[bytes, ...]) -> None:
        """Store the report, its messages and the replay guard rows (SHA-256 of each
        reporting tag, per reporter) in one transaction; :class:`AlreadyReportedError` (and
        nothing stored) when a guard row exists."""

    async def list_reports(self, limit: int) -> list[Report]:
        """Up to ``limit`` reports, newest first."""


def message_row(
    report_id: str,
    index: int,
    m: ReportedItem,
    text: Callable[[str | None], Any] = lambda value: value,
) -> tuple[Any, ...]:
    """The ``reported_messages`` values of one item, in column order (``text`` turns each
    string into what the dialect stores: PostgreSQL keeps UTF-8 bytes, NUL included)."""
    a = m.attachment
    return (
        report_id,
        index,
        m.sender_device_id,
        m.recipient_device_id,
        m.server_ms,
        m.key_id,
        m.message_id,
        m.sent_ms,
        text(m.text),
        None if a is None else text(a.file_name),
        None if a is None else a.size,
        None if a is None else text(a.content_type),
        None if a is None else a.digest,
    )


def report_store(repo: Repository) -> ReportStore:
    """The store on ``repo``'s database (SQLite or PostgreSQL)."""
    from veil.server.postgres_repo import PostgresRepository  # noqa: PLC0415 - avoid a cycle
    from veil.server.sqlite_repo import SqliteRepository  # noqa: PLC0415

    if isinstance(repo, PostgresRepository):
        from veil.server.postgres_reports import PostgresReportStore  # noqa: PLC0415

        return PostgresReportStore(lambda: repo.pool)
    if isinstance(repo, SqliteRepository):
        from veil.server.sqlite_reports import SqliteReportStore  # noqa: PLC0415

        return SqliteReportStore(repo.executor)
    raise ValueError(f"no report store for {type(repo).__name__}")
