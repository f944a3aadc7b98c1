"""Attachments: opaque blobs the client encrypted (key and digest travel in the message).

``POST /v1/attachments`` takes the raw bytes (``application/octet-stream``) and answers
:class:`AttachmentCreated`; ``GET /v1/attachments/{attachment_id}`` returns the bytes;
``DELETE`` by the uploader's account removes them before they expire.
"""

from __future__ import annotations

import msgspec


class AttachmentCreated(msgspec.Struct, frozen=True):
    """A stored blob: its unguessable id, size, SHA-256 (hex) and when it stops being served."""

    attachment_id: str
    size: int
    sha256: str
    expires_ms: int
