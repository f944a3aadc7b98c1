"""Attachments: opaque encrypted blobs, uploaded once, fetched by id, gone when they expire.

The client encrypts an attachment (key-committing, ARCHITECTURE.md §1) and sends the
ciphertext; the key and digest travel inside the E2EE message, so the server stores bytes it
cannot read and serves them to anyone holding the unguessable 128-bit id.

An upload streams into a :class:`~veil.server.blobs.BlobStore` and never sits whole in memory.
Its metadata row is written first (incomplete, expiring at the upload deadline) and completed
once the bytes are durable, so:

* a blob is served only when complete and not expired (checked on every fetch: an expired
  blob is never served, even before the sweep removes it);
* a refused upload (over the size limit, empty, client gone) removes its bytes and its row at
  once; an upload interrupted by a crash is removed by the sweep after its deadline.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

from veil.server import errors
from veil.server.accounts import Caller
from veil.server.blobs import BlobGoneError, BlobStore, BlobWriter, FileBlobStore
from veil.server.repository import Repository
from veil.wire.attachments import AttachmentCreated

log = logging.getLogger("veil.server.attachments")

DEFAULT_MAX_BYTES: Final = 100 << 20
DEFAULT_TTL_S: Final = 30 * 24 * 3600
UPLOAD_WINDOW_S: Final = 3600
"""An upload must finish within an hour (after that the sweep may remove it)."""
SWEEP_BATCH: Final = 500

_ID: Final = re.compile(r"[0-9a-f]{32}")
_DIGITS: Final = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class AttachmentSettings:
    """Largest attachment and how long one is kept."""

    max_bytes: int = DEFAULT_MAX_BYTES
    ttl_s: int = DEFAULT_TTL_S


def too_large(limit: int) -> errors.ApiError:
    """413 ``too_large``."""
    return errors.ApiError(413, "too_large", f"an attachment is at most {limit} bytes")


class AttachmentService:
    """Upload, fetch, delete and sweep attachments."""

    def __init__(
        self,
        repo: Repository,
        blobs: BlobStore,
        now_ms: Callable[[], int],
        settings: AttachmentSettings | None = None,
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.now_ms = now_ms
        self.settings = settings or AttachmentSettings()

    async def upload(
        self, caller: Caller, content_length: str | None, body: AsyncIterator[bytes]
    ) -> AttachmentCreated:
        """Store the streamed body (413 over the limit, 400 empty); nothing stays on failure."""
        limit = self.settings.max_bytes
        if content_length is not None:
            if _DIGITS.fullmatch(content_length) is None:
                raise errors.bad_request("Content-Length must be a number")
            if int(content_length) > limit:
                raise too_large(limit)
        attachment_id = secrets.token_hex(16)
        now = self.now_ms()
        await self.repo.add_attachment(
            attachment_id, caller.account_id, now, now + UPLOAD_WINDOW_S * 1000
        )
        writer: BlobWriter | None = None
        try:
            writer = await self.blobs.create(attachment_id)
            size, digest = await _copy(body, writer, limit)
            await writer.commit()
            now = self.now_ms()
            expires = now + self.settings.ttl_s * 1000
            if not await self.repo.finish_attachment(attachment_id, size, digest, now, expires):
                raise BlobGoneError(attachment_id)
        except BlobGoneError:
            await self._discard(attachment_id, writer)
            raise errors.ApiError(408, "upload_expired", "the upload took too long") from None
        except BaseException:
            await self._discard(attachment_id, writer)
            raise
        return AttachmentCreated(attachment_id, size, digest.hex(), expires)

    async def _discard(self, attachment_id: str, writer: BlobWriter | None) -> None:
        """Remove a failed upload's bytes and row (the sweep retries what fails here)."""
        try:
            if writer is not None:
                await writer.abort()
            await self.blobs.delete(attachment_id)
            await self.repo.remove_attachments([attachment_id])
        except Exception as exc:
            log.warning("could not discard a failed upload: %s", type(exc).__name__)

    async def open(self, attachment_id: str) -> tuple[int, AsyncIterator[bytes]]:
        """The size and bytes of a complete, unexpired attachment; 404 otherwise."""
        if _ID.fullmatch(attachment_id) is None:
            raise errors.not_found("attachment")
        meta = await self.repo.get_attachment(attachment_id)
        if meta is None or not meta.complete or meta.expires_ms <= self.now_ms():
            raise errors.not_found("attachment")
        chunks = await self.blobs.open(attachment_id)
        if chunks is None:
            raise errors.not_found("attachment")
        return meta.size, chunks

    async def delete(self, caller: Caller, attachment_id: str) -> None:
        """Remove the caller's account's attachment (404 if it is not one, or is gone)."""
        if _ID.fullmatch(attachment_id) is None:
            raise errors.not_found("attachment")
        if not await self.repo.expire_attachment(attachment_id, caller.account_id, self.now_ms()):
            raise errors.not_found("attachment")
        await self.blobs.delete(attachment_id)  # no longer served from here on
        await self.repo.remove_attachments([attachment_id])

    async def sweep(self) -> int:
        """Remove expired attachments (bytes first, then rows); how many."""
        removed = 0
        while True:
            ids = await self.repo.expired_attachments(self.now_ms(), SWEEP_BATCH)
            for attachment_id in ids:
                await self.blobs.delete(attachment_id)
            removed += await self.repo.remove_attachments(ids) if ids else 0
            if len(ids) < SWEEP_BATCH:
                return removed


async def _copy(body: AsyncIterator[bytes], writer: BlobWriter, limit: int) -> tuple[int, bytes]:
    """Stream ``body`` into ``writer``; its size and SHA-256 (413 past ``limit``)."""
    size = 0
    digest = hashlib.sha256()
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        digest.update(chunk)
        await writer.write(chunk)
    if size == 0:
        raise errors.bad_request("an attachment cannot be empty")
    return size, digest.digest()


def default_blob_store(repo: Repository) -> BlobStore:
    """Files next to a SQLite database (``attachments/``), chunk rows in PostgreSQL."""
    from veil.server.postgres_blobs import PostgresBlobStore  # noqa: PLC0415 - avoid a cycle
    from veil.server.postgres_repo import PostgresRepository  # noqa: PLC0415
    from veil.server.sqlite_repo import SqliteRepository  # noqa: PLC0415

    if isinstance(repo, PostgresRepository):
        return PostgresBlobStore(repo.pool)
    if isinstance(repo, SqliteRepository) and str(repo.path) != ":memory:":
        return FileBlobStore(repo.path.parent / "attachments")
    raise ValueError(f"no default attachment store for {repo!r}: pass one (blobs=...)")
