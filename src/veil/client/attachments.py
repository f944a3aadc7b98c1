"""Attachments in the SDK: read and upload a file, download, verify and save one.

Issue 4 (ARCHITECTURE.md §1 "attachments"): a file is encrypted on this device under a fresh
random key (:mod:`veil.engine.attachments`, key-committing), uploaded as an opaque blob
(``POST /v1/attachments``), and the message carries the pointer (blob id, key, digest, size,
name, type). A receiver fetches the blob (never more bytes than the pointer's size implies),
checks digest, MAC and size, and only then writes the plaintext, under the profile's
``attachments/`` folder, with a name of its own making: the sender's name is a hint, reduced
to a safe base name (:func:`safe_file_name`).

:class:`~veil.client.Client` uses these through :meth:`~veil.client.Client.send_file` and
:meth:`~veil.client.Client.download`. File reads and writes run in a worker thread.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from veil.client.errors import ClientError, ProtocolError
from veil.client.http import HttpApi
from veil.core import content as payload
from veil.core.errors import LocalError, VeilError
from veil.core.rng import Rng
from veil.engine import (
    MessageReceived,
    MessageRecord,
    SyncedSent,
    blob_size,
    open_attachment,
    seal_attachment,
)

MAX_FILE_BYTES: Final = 100 << 20
"""The client's default attachment limit: 100 MiB, the server's default."""
SAVED_NAME_BYTES: Final = 120
"""Longest saved file name (UTF-8 bytes), before a `` (n)`` collision suffix."""
FALLBACK_NAME: Final = "attachment"
DEFAULT_TYPE: Final = "application/octet-stream"
_MAX_EXTENSION: Final = 16
_WINDOWS_RESERVED: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)}
)
_FORBIDDEN: Final = frozenset('<>:"|?*')
_PLACEHOLDER: Final = payload.AttachmentPointer("0" * 32, bytes(32), bytes(32), 0)

Message = MessageRecord | MessageReceived | SyncedSent
"""Anything that may carry an attachment pointer."""


class AttachmentTooLargeError(ClientError):
    """A file over the attachment limit (nothing was read whole or uploaded)."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(
            f"{name} is {size} bytes: attachments are at most {limit} bytes ({limit >> 20} MiB)"
        )
        self.size = size
        self.limit = limit


class AttachmentInvalidError(ClientError):
    """A downloaded blob failed verification (digest, MAC or size); nothing was saved."""


# --- sending ----------------------------------------------------------------------------------
def read_file(path: str | os.PathLike[str], limit: int) -> tuple[bytes, str]:
    """The bytes and base name of a regular file; refused over ``limit`` before reading it."""
    source = Path(path).expanduser()
    name = source.name
    try:  # non-blocking open: a FIFO or device in its place must not hang us
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ClientError(f"{source} is not a regular file")
            if info.st_size > limit:
                raise AttachmentTooLargeError(name, info.st_size, limit)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise ClientError(f"cannot read {source}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:  # it grew while we read it
        raise AttachmentTooLargeError(name, len(data), limit)
    return data, name


def sendable_name(name: str) -> str:
    """A file name as the message carries it: valid UTF-8, at most 255 bytes."""
    clean = name.encode("utf-8", "replace").decode("utf-8")
    return _fit(clean, payload.MAX_NAME_BYTES)


def content_type(name: str) -> str:
    """The MIME type guessed from the name's extension (``application/octet-stream``)."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or DEFAULT_TYPE


def check_caption(caption: str | None) -> None:
    """Refuse a caption the message format cannot carry (before anything is uploaded)."""
    try:
        payload.encode_content(
            payload.Content(bytes(payload.MESSAGE_ID_LEN), 0, text=caption, attachment=_PLACEHOLDER)
        )
    except LocalError as exc:
        raise ClientError(f"cannot send that caption: {exc}") from None


async def upload_file(
    api: HttpApi, path: str | os.PathLike[str], limit: int, rng: Rng
) -> payload.AttachmentPointer:
    """Read, encrypt and upload ``path``; the pointer to put into the message."""
    data, name = await asyncio.to_thread(read_file, path, limit)
    try:
        sealed = await asyncio.to_thread(seal_attachment, data, rng)
    except LocalError as exc:
        raise ClientError(f"cannot send {name}: {exc}") from None
    del data
    created = await api.upload_attachment(sealed.blob)
    if created.size != len(sealed.blob) or created.sha256 != sealed.digest.hex():
        raise ProtocolError("the server stored different bytes than were uploaded")
    name = sendable_name(name)
    return sealed.pointer(created.attachment_id, name, content_type(name))


# --- receiving --------------------------------------------------------------------------------
def pointer_of(message: Message) -> payload.AttachmentPointer | None:
    """The attachment pointer of a message or event (``None`` if it has none)."""
    if isinstance(message, MessageRecord):
        if message.attachment is None:
            return None
        try:
            return payload.decode_content(message.attachment).attachment
        except VeilError as exc:
            raise ClientError(f"the stored attachment pointer is not valid: {exc}") from None
    return message.attachment


async def fetch(api: HttpApi, pointer: payload.AttachmentPointer, limit: int) -> bytes:
    """Download and verify the attachment; its plaintext.

    Refuses a pointer over ``limit`` before downloading, never reads more than the blob for
    the pointer's size can be, and raises :class:`AttachmentInvalidError` unless digest, MAC
    and size all check out.
    """
    label = safe_file_name(pointer.file_name)
    if pointer.size > limit:
        raise AttachmentTooLargeError(label, pointer.size, limit)
    blob = await api.download_attachment(pointer.blob_id, blob_size(pointer.size))
    try:
        return await asyncio.to_thread(open_attachment, pointer, blob)
    except VeilError as exc:
        raise AttachmentInvalidError(
            f"the attachment {label} failed verification ({exc}): it was changed on the server"
            " or on the way; nothing was saved"
        ) from None


def safe_file_name(hint: str) -> str:
    """A file name of our own making from the sender's ``hint``.

    The last path component only (``/`` and ``\\`` both separate), no control, format or
    other invisible characters (NUL, bidi overrides), none of ``<>:"|?*``, no leading dots or
    spaces, no trailing dots or spaces, not a reserved Windows device name, at most
    :data:`SAVED_NAME_BYTES` bytes with its extension kept; ``attachment`` if nothing is left.
    """
    name = hint.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        "_" if ch in _FORBIDDEN else ch
        for ch in name
        if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " "
    )
    name = name.lstrip(". ").rstrip(". ")
    if not name:
        return FALLBACK_NAME
    if name.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    return _fit(name, SAVED_NAME_BYTES)


def save_private(folder: Path, hint: str, data: bytes) -> Path:
    """Write ``data`` into ``folder`` under a safe, unused name derived from ``hint``.

    The bytes go to a temporary file (``0600``) that is flushed to disk, then renamed over a
    name reserved with ``O_EXCL`` (``name.ext``, ``name (1).ext``, ...): an existing file is
    never overwritten and a reader never sees half a file.
    """
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        for candidate in _candidates(safe_file_name(hint)):
            target = folder / candidate
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                continue
            os.replace(temp, target)
            return target
        raise ClientError(f"no free file name for {safe_file_name(hint)} in {folder}")
    finally:
        Path(temp).unlink(missing_ok=True)


def _candidates(name: str) -> Iterator[str]:
    stem, extension = _split(name)
    yield name
    for n in range(1, 10_000):
        yield f"{stem} ({n}){extension}"


def _split(name: str) -> tuple[str, str]:
    """``("report", ".pdf")``; no extension for a name without a dot or a long "extension"."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension.encode()) > _MAX_EXTENSION:
        return name, ""
    return stem, "." + extension


def _fit(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes, keeping its extension."""
    if len(name.encode()) <= limit:
        return name
    stem, extension = _split(name)
    budget = limit - len(extension.encode())
    return stem.encode()[:budget].decode("utf-8", "ignore").rstrip(". ") + extension
