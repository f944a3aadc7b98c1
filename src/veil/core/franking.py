"""Message franking: verifiable abuse reports of end-to-end encrypted messages.

The scheme of Facebook's "Messenger Secret Conversations" technical whitepaper (2016, §3
"Abuse reporting") and of Grubbs, Lu and Ristenpart, "Message Franking via Committing
Authenticated Encryption" (CRYPTO 2017), on HMAC-SHA256:

1. The sender draws a fresh 32-byte franking key ``Kf`` for every message and puts it *inside*
   the ciphertext, beside the encoded content (:func:`frank`)::

       FrankedPlaintext {1: content (the encoded Content), 2: Kf (32 bytes)}

   and sends the franking tag ``T = HMAC-SHA256(Kf, content)`` *beside* the ciphertext. ``T``
   commits to the exact content bytes and reveals nothing of them (``Kf`` is random).
2. The server, which sees ``T`` but not the content, binds it to what it knows -- sender
   account and device, recipient account and device, server time -- with a secret of its own
   (:func:`reporting_tag`)::

       R = HMAC-SHA256(Ks, "veil report v1" || key_id || T || sender || sender_device
                           || recipient || recipient_device || server_ms)

   and delivers ``(T, R, key_id)`` with the envelope. It keeps nothing per message.
3. The recipient decrypts, finds ``(content, Kf)`` and checks ``T == HMAC(Kf, content)``
   (:func:`check_franking_tag`); a message that fails is never shown.
4. To report, the recipient reveals ``content``, ``Kf``, ``R``, ``key_id`` and the context.
   The server recomputes ``T`` from the revealed content and ``R`` from ``T`` and the context
   (:func:`check_report`): a match proves that this exact content was sent by that sender to
   the reporter at that time -- the reporter cannot change a byte, nor present someone else's
   message as sent to them. Messages nobody reports stay unreadable to the server.

The content being franked is the encoded :mod:`veil.core.content` (message id, time, text,
attachment pointer with its key and blob digest, ...), so a reported attachment is pinned
too: the key-committing attachment encryption (:mod:`veil.core.attachment`) makes (key,
digest) determine exactly one file.

Account ids are 32 lowercase hex digits (the server's format); encodings are fixed-length or
length-prefixed, so two different contexts never give the same MAC input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from veil.core import protobuf as pb
from veil.core.crypto.kdf import constant_time_equal, hmac_sha256
from veil.core.errors import DecodeError, LocalError
from veil.core.rng import Rng

KEY_LEN: Final = 32
TAG_LEN: Final = 32
SECRET_LEN: Final = 32
MAX_KEY_ID: Final = 2**31 - 1
_REPORT_LABEL: Final = b"veil report v1"
_FRANKED: Final = {1: (pb.LEN, False), 2: (pb.LEN, False)}
_ACCOUNT_LEN: Final = 32


@dataclass(frozen=True, slots=True)
class Franked:
    """What the sender encrypts (``plaintext``, still to be padded) and sends beside it."""

    plaintext: bytes
    tag: bytes

    def __repr__(self) -> str:
        return f"Franked(<{len(self.plaintext)} bytes>, tag={self.tag.hex()[:16]}…)"


@dataclass(frozen=True, slots=True)
class Opened:
    """A decrypted plaintext split into the content and its franking key."""

    content: bytes
    key: bytes

    def __repr__(self) -> str:
        return f"Opened(content=<{len(self.content)} bytes>, key=<hidden>)"


@dataclass(frozen=True, slots=True)
class ReportingContext:
    """What the server knows of one delivered copy and binds to its franking tag."""

    franking_tag: bytes
    sender_account_id: str
    sender_device_id: int
    recipient_account_id: str
    recipient_device_id: int
    server_ms: int

    def encode(self, key_id: int) -> bytes:
        """The MAC input of :func:`reporting_tag` (fixed-length fields; see the docstring)."""
        if len(self.franking_tag) != TAG_LEN:
            raise LocalError("a franking tag is 32 bytes")
        for account in (self.sender_account_id, self.recipient_account_id):
            if len(account) != _ACCOUNT_LEN or not account.isascii():
                raise LocalError("account ids are 32 ASCII characters")
        if not 0 <= key_id <= MAX_KEY_ID or not 0 <= self.server_ms < 2**63:
            raise LocalError("key id or server time out of range")
        if not (1 <= self.sender_device_id <= 255 and 1 <= self.recipient_device_id <= 255):
            raise LocalError("device ids are 1..255")
        return b"".join(
            (
                _REPORT_LABEL,
                struct.pack(">I", key_id),
                self.franking_tag,
                self.sender_account_id.encode(),
                bytes([self.sender_device_id]),
                self.recipient_account_id.encode(),
                bytes([self.recipient_device_id]),
                struct.pack(">Q", self.server_ms),
            )
        )


def franking_tag(key: bytes, content: bytes) -> bytes:
    """``HMAC-SHA256(Kf, content)``: the sender's commitment to ``content``."""
    if len(key) != KEY_LEN:
        raise LocalError("a franking key is 32 bytes")
    return hmac_sha256(key, content)


def frank(content: bytes, rng: Rng) -> Franked:
    """Wrap encoded ``content`` with a fresh franking key; the plaintext and its tag."""
    key = rng(KEY_LEN)
    plaintext = pb.field_bytes(1, content) + pb.field_bytes(2, key)
    return Franked(plaintext, franking_tag(key, content))


def open_franked(plaintext: bytes) -> Opened:
    """Split a (unpadded) plaintext made by :func:`frank`; only :class:`DecodeError`."""
    fields = pb.parse(plaintext, _FRANKED)
    content = pb.get_bytes(fields, 1, "franked content")
    key = pb.get_bytes(fields, 2, "franking key")
    if len(key) != KEY_LEN:
        raise DecodeError("a franking key is 32 bytes")
    return Opened(content, key)


def check_franking_tag(key: bytes, content: bytes, tag: bytes) -> bool:
    """Whether ``tag`` is the franking tag of ``content`` under ``key`` (constant time)."""
    if len(key) != KEY_LEN or len(tag) != TAG_LEN:
        return False
    return constant_time_equal(franking_tag(key, content), tag)


def reporting_tag(secret: bytes, key_id: int, context: ReportingContext) -> bytes:
    """The server's tag binding a franking tag to sender, recipient and time."""
    if len(secret) < SECRET_LEN:
        raise LocalError("a reporting secret is at least 32 bytes")
    return hmac_sha256(secret, context.encode(key_id))


def check_report(
    secret: bytes,
    key_id: int,
    content: bytes,
    key: bytes,
    tag: bytes,
    context: ReportingContext,
) -> str | None:
    """Verify one revealed message; ``None`` if it is authentic, else why not.

    ``context.franking_tag`` is ignored: it is recomputed from the revealed ``content`` and
    ``key`` (the reporter cannot choose it). ``tag`` is the reporting tag the server delivered.
    """
    if len(key) != KEY_LEN:
        return "franking key must be 32 bytes"
    if len(tag) != TAG_LEN:
        return "reporting tag must be 32 bytes"
    recomputed = ReportingContext(
        franking_tag(key, content),
        context.sender_account_id,
        context.sender_device_id,
        context.recipient_account_id,
        context.recipient_device_id,
        context.server_ms,
    )
    try:
        expected = reporting_tag(secret, key_id, recomputed)
    except LocalError as exc:
        return str(exc)
    if not constant_time_equal(expected, tag):
        return "the reporting tag does not match (altered content or context, or forged)"
    return None
