"""Attachment encryption, key-committing (docs/client-design.md "veil.core.content", Attachments).

A sender draws a fresh 32-byte key ``K`` per attachment (:func:`new_attachment_key`) and
derives everything from it::

    aes_key (32) || mac_key (32) || iv (16) = HKDF-SHA256(K, salt = "", info = "veil attachment v1")
    blob   = iv || AES-256-CBC(aes_key, iv, PKCS7(data)) || HMAC-SHA256(mac_key, iv || ciphertext)
    digest = SHA-256(blob)

The :class:`~veil.core.content.AttachmentPointer` inside the E2EE message carries ``K``, the
digest and the plaintext size; the server stores the blob without being able to read it. The
IV is derived, not random, so a key must never encrypt two attachments (each gets its own).

Why this is key-committing (no "invisible salamanders", Dodis, Grubbs, Ristenpart, Woodage,
CRYPTO 2018; Albertini, Duong, Gueron, Kölbl, Luykx, Schmieg, USENIX Security 2022): with
AES-GCM the tag is a polynomial in a key-dependent GHASH key, so for two chosen keys one can
solve a linear equation for a ciphertext that authenticates under both, each key giving a
different plaintext (one recipient sees a cat, another -- or the abuse moderator -- sees
something else, from the same bytes and digest). Here the MAC key is HKDF(K), and HMAC-SHA256
is collision resistant even across keys: a blob valid under ``K1`` and ``K2 != K1`` needs
HMAC(mac_key1, m) = HMAC(mac_key2, m) (and the same derived IV), which costs about 2^128 work,
not a linear solve. Since the digest also fixes the blob, a (key, digest) pair in a message
pins down exactly one plaintext. ``tests/core/test_attachment.py`` builds such a GCM
two-key ciphertext and shows this scheme refuses every key but its own.

:func:`decrypt_attachment` raises only :class:`RemoteError` subclasses (:class:`BadMacError`
for a digest, IV or MAC mismatch, :class:`DecodeError` for sizes, lengths and padding); no
error message holds key or plaintext bytes.
"""

from __future__ import annotations

import hashlib
from typing import Final

from veil.core.content import MAX_ATTACHMENT_SIZE
from veil.core.crypto import cbc
from veil.core.crypto.kdf import constant_time_equal, hkdf_sha256, hmac_sha256
from veil.core.errors import BadMacError, DecodeError, LocalError
from veil.core.rng import Rng

KEY_LEN: Final = 32
DIGEST_LEN: Final = 32
_INFO: Final = b"veil attachment v1"
_IV_LEN: Final = 16
_MAC_LEN: Final = 32
_BLOCK: Final = 16


def new_attachment_key(rng: Rng) -> bytes:
    """A fresh random 32-byte attachment key (one per attachment, never reused)."""
    return rng(KEY_LEN)


def blob_size(size: int) -> int:
    """Length of the blob that encrypts ``size`` plaintext bytes (IV, padded CBC, MAC)."""
    return _IV_LEN + (size // _BLOCK + 1) * _BLOCK + _MAC_LEN


def encrypt_attachment(data: bytes, key: bytes) -> tuple[bytes, bytes]:
    """Encrypt ``data`` under ``key``; return ``(blob, digest)``. :class:`LocalError` on misuse."""
    if len(key) != KEY_LEN:
        raise LocalError("attachment key must be 32 bytes")
    if len(data) > MAX_ATTACHMENT_SIZE:
        raise LocalError("attachment larger than 2 GiB")
    aes_key, mac_key, iv = _derive(key)
    body = iv + cbc.encrypt(aes_key, iv, data)
    blob = body + hmac_sha256(mac_key, body)
    return blob, hashlib.sha256(blob).digest()


def decrypt_attachment(blob: bytes, key: bytes, digest: bytes, size: int) -> bytes:
    """Check ``blob`` against ``digest`` and ``key``, decrypt, check the plaintext is ``size``.

    Order: sizes and lengths (cheap, no secret involved), digest (constant time), derived IV
    and MAC (constant time), then CBC decryption and the length of the plaintext.
    """
    if len(key) != KEY_LEN or len(digest) != DIGEST_LEN:
        raise DecodeError("attachment key and digest must be 32 bytes")
    if not 0 <= size <= MAX_ATTACHMENT_SIZE:
        raise DecodeError("attachment size out of range")
    if len(blob) != blob_size(size):
        raise DecodeError("attachment blob length does not match its size")
    if not constant_time_equal(hashlib.sha256(blob).digest(), digest):
        raise BadMacError("attachment digest does not match")
    aes_key, mac_key, iv = _derive(key)
    body, mac = blob[:-_MAC_LEN], blob[-_MAC_LEN:]
    iv_ok = constant_time_equal(body[:_IV_LEN], iv)
    if not constant_time_equal(hmac_sha256(mac_key, body), mac) or not iv_ok:
        raise BadMacError("attachment MAC does not verify")
    data = cbc.decrypt(aes_key, iv, body[_IV_LEN:])
    if len(data) != size:
        raise DecodeError("attachment plaintext length does not match its size")
    return data


def _derive(key: bytes) -> tuple[bytes, bytes, bytes]:
    okm = hkdf_sha256(key, b"", _INFO, 80)
    return okm[:32], okm[32:64], okm[64:]
