"""Attachment cryptography for the SDK: seal a file for upload, open a downloaded blob.

A thin layer over :mod:`veil.core.attachment` (key-committing encryption, docs/client-design.md
"Attachments") so that :mod:`veil.client`, which does the network and file I/O, never calls
the core's cryptography itself. Every attachment gets a fresh random key; the blob is what the
server stores, the :class:`~veil.core.content.AttachmentPointer` (blob id, key, digest, size,
name, type) travels inside the end-to-end encrypted message.
"""

from __future__ import annotations

from dataclasses import dataclass

from veil.core import attachment as core
from veil.core.content import AttachmentPointer
from veil.core.rng import Rng

__all__ = ["SealedAttachment", "blob_size", "open_attachment", "seal_attachment"]


@dataclass(frozen=True, slots=True)
class SealedAttachment:
    """An encrypted attachment ready to upload; ``repr`` hides the key."""

    key: bytes
    blob: bytes
    digest: bytes
    size: int

    def __repr__(self) -> str:
        return (
            f"SealedAttachment(key=<hidden>, blob=<{len(self.blob)} bytes>,"
            f" digest={self.digest.hex()[:16]}…, size={self.size})"
        )

    def pointer(
        self, blob_id: str, file_name: str = "", content_type: str = ""
    ) -> AttachmentPointer:
        """The pointer for the message, once the server named the blob ``blob_id``."""
        return AttachmentPointer(blob_id, self.key, self.digest, self.size, file_name, content_type)


def seal_attachment(data: bytes, rng: Rng) -> SealedAttachment:
    """Encrypt ``data`` under a new random key (:class:`~veil.core.errors.LocalError` if it
    is larger than the format allows)."""
    key = core.new_attachment_key(rng)
    blob, digest = core.encrypt_attachment(data, key)
    return SealedAttachment(key, blob, digest, len(data))


def blob_size(size: int) -> int:
    """The exact length of the blob that holds ``size`` plaintext bytes (a download limit)."""
    return core.blob_size(size)


def open_attachment(pointer: AttachmentPointer, blob: bytes) -> bytes:
    """Check ``blob`` against the pointer's digest, MAC and size, then decrypt it.

    Raises only :class:`~veil.core.errors.RemoteError` subclasses (``BadMacError`` for a
    digest or MAC mismatch, ``DecodeError`` for a wrong length); nothing is returned unless
    every check passed.
    """
    return core.decrypt_attachment(blob, pointer.key, pointer.digest, pointer.size)
