"""Attachment bytes in PostgreSQL: :class:`PostgresBlobStore` (see :mod:`veil.server.blobs`).

A blob is rows of ``attachment_chunks`` (``migrations/postgres/0004_attachments.sql``), each
:data:`~veil.server.blobs.CHUNK` bytes but the last, numbered from 0. Every chunk is its own
statement (no transaction spans an upload): the metadata row stays incomplete, hence
unserved, until the upload is finished, and an aborted upload deletes its chunks. A chunk's
foreign key to its metadata row means chunks can only be written for a recorded upload, and
go when the row goes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import asyncpg

from veil.server.blobs import CHUNK, BlobGoneError, BlobWriter, check_blob_id

_INSERT: Final = "INSERT INTO attachment_chunks (attachment_id, seq, data) VALUES ($1, $2, $3)"
_READ: Final = "SELECT data FROM attachment_chunks WHERE attachment_id = $1 AND seq = $2"
_DELETE: Final = "DELETE FROM attachment_chunks WHERE attachment_id = $1"


class PostgresBlobStore:
    """Blobs as chunk rows, through an asyncpg pool (``PostgresRepository.pool``)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __repr__(self) -> str:
        return "PostgresBlobStore()"

    async def create(self, blob_id: str) -> BlobWriter:
        """A writer inserting one row per chunk."""
        return _ChunkWriter(self._pool, check_blob_id(blob_id))

    async def open(self, blob_id: str) -> AsyncIterator[bytes] | None:
        """The chunks in order (each read when needed); None if the blob has none."""
        first = await self._pool.fetchval(_READ, check_blob_id(blob_id), 0)
        if first is None:
            return None
        return self._chunks(blob_id, bytes(first))

    async def _chunks(self, blob_id: str, first: bytes) -> AsyncIterator[bytes]:
        yield first
        seq = 1
        while (data := await self._pool.fetchval(_READ, blob_id, seq)) is not None:
            yield bytes(data)
            seq += 1

    async def delete(self, blob_id: str) -> None:
        """Delete the blob's chunks."""
        await self._pool.execute(_DELETE, check_blob_id(blob_id))


class _ChunkWriter:
    def __init__(self, pool: Any, blob_id: str) -> None:
        self._pool = pool
        self._blob_id = blob_id
        self._buffer = bytearray()
        self._seq = 0
        self._done = False

    def __repr__(self) -> str:
        return f"_ChunkWriter({self._blob_id}, {self._seq} chunks)"

    async def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= CHUNK:
            chunk = bytes(self._buffer[:CHUNK])
            del self._buffer[:CHUNK]
            await self._insert(chunk)

    async def _insert(self, chunk: bytes) -> None:
        try:
            await self._pool.execute(_INSERT, self._blob_id, self._seq, chunk)
        except asyncpg.ForeignKeyViolationError:  # the upload's row was swept
            raise BlobGoneError(self._blob_id) from None
        self._seq += 1

    async def commit(self) -> None:
        if self._buffer:
            await self._insert(bytes(self._buffer))
            self._buffer = bytearray()
        self._done = True

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        await self._pool.execute(_DELETE, self._blob_id)
