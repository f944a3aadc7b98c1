"""Where attachment bytes live: the :class:`BlobStore` interface and its file implementation.

A blob is an opaque byte string (client-side encrypted, ARCHITECTURE.md §1) under a 32-hex-digit
id; its metadata (owner, size, expiry) is in the repository, which is written *before* the
bytes and completed after them (:mod:`veil.server.attachments`), so a blob is served only once
its bytes are durable and only until it expires.

Implementations:

* :class:`FileBlobStore` (SQLite deployments): one file per blob under
  ``<data_dir>/attachments/``, written to ``<id>.part``, ``fsync``-ed, renamed to ``<id>``
  and the folder ``fsync``-ed; an aborted upload removes its ``.part`` file.
* :class:`veil.server.postgres_blobs.PostgresBlobStore`: 1 MiB ``bytea`` rows in the shared
  database, so every server process behind one address serves every blob.

Writers buffer at most :data:`CHUNK` bytes: a body is never held whole in memory.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Final, Protocol

CHUNK: Final = 1 << 20
"""Bytes written (and read back) at a time; PostgreSQL stores one row per chunk."""
_BLOB_ID: Final = re.compile(r"[0-9a-f]{32}")


def check_blob_id(blob_id: str) -> str:
    """``blob_id`` if it is 32 lowercase hex digits (never a path), else ``ValueError``."""
    if _BLOB_ID.fullmatch(blob_id) is None:
        raise ValueError("a blob id is 32 lowercase hex digits")
    return blob_id


class BlobWriter(Protocol):
    """One blob being written; nothing of it is readable before :meth:`commit`."""

    async def write(self, data: bytes) -> None:
        """Append bytes."""

    async def commit(self) -> None:
        """Make the blob durable and readable."""

    async def abort(self) -> None:
        """Drop what was written (idempotent; after :meth:`commit` it does nothing)."""


class BlobStore(Protocol):
    """Opaque blobs by id."""

    async def create(self, blob_id: str) -> BlobWriter:
        """Start writing a new blob."""

    async def open(self, blob_id: str) -> AsyncIterator[bytes] | None:
        """The committed blob's bytes, in chunks; None if there is none."""

    async def delete(self, blob_id: str) -> None:
        """Remove the blob and any partial write of it (no error if there is none)."""


class FileBlobStore:
    """Blobs as files in one folder (created with mode 0700 when first written)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def _path(self, blob_id: str, suffix: str = "") -> Path:
        return self.root / (check_blob_id(blob_id) + suffix)

    async def create(self, blob_id: str) -> BlobWriter:
        """A writer to ``<id>.part`` (renamed to ``<id>`` on commit)."""
        part = self._path(blob_id, ".part")

        def open_part() -> IO[bytes]:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            return os.fdopen(fd, "wb")

        file = await asyncio.to_thread(open_part)
        return _FileWriter(file, part, self._path(blob_id))

    async def open(self, blob_id: str) -> AsyncIterator[bytes] | None:
        """The file's bytes (the file is opened when the first chunk is read)."""
        path = self._path(blob_id)
        if not await asyncio.to_thread(path.is_file):
            return None
        return _read_file(path)

    async def delete(self, blob_id: str) -> None:
        """Remove ``<id>`` and ``<id>.part``."""
        paths = (self._path(blob_id), self._path(blob_id, ".part"))

        def unlink() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        await asyncio.to_thread(unlink)


class _FileWriter:
    def __init__(self, file: IO[bytes], part: Path, final: Path) -> None:
        self._file = file
        self._part = part
        self._final = final
        self._buffer = bytearray()
        self._done = False

    def __repr__(self) -> str:
        return f"_FileWriter({self._final.name})"

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        data, self._buffer = bytes(self._buffer), bytearray()
        await asyncio.to_thread(self._file.write, data)

    async def commit(self) -> None:
        await self._flush()

        def finish() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            try:
                os.replace(self._part, self._final)
            except FileNotFoundError:  # swept while being written
                raise BlobGoneError(self._final.name) from None
            _fsync_folder(self._final.parent)

        await asyncio.to_thread(finish)
        self._done = True

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()

        def drop() -> None:
            self._file.close()
            self._part.unlink(missing_ok=True)

        await asyncio.to_thread(drop)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    try:
        file = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError:  # deleted since open(): the response ends short
        return
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk
    finally:
        file.close()


class BlobGoneError(Exception):
    """A blob being written was removed underneath its writer (its upload expired)."""
