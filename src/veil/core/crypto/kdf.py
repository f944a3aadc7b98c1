"""HKDF-SHA256 (RFC 5869, via pyca) and HMAC-SHA256 (RFC 2104, via the standard library and pyca).

The stdlib's ``hmac.digest`` is OpenSSL's one-shot HMAC, the cheapest single HMAC from Python.
For two HMACs under one key (the Double Ratchet's chain step, once per message), one pyca
HMAC context keyed once and copied is cheaper still: :func:`hmac_sha256_pair`.
"""

from __future__ import annotations

import hmac as _hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _pyca_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SHA256 = hashes.SHA256()


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 extract-and-expand (RFC 5869 §2)."""
    return HKDF(_SHA256, length, salt, info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256(key, data)."""
    return _hmac.digest(key, data, "sha256")


def hmac_sha256_pair(key: bytes, first: bytes, second: bytes) -> tuple[bytes, bytes]:
    """(HMAC-SHA256(key, first), HMAC-SHA256(key, second)), keying the HMAC once."""
    one = _pyca_hmac.HMAC(key, _SHA256)
    two = one.copy()
    one.update(first)
    two.update(second)
    return one.finalize(), two.finalize()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two MACs without leaking where they differ."""
    return _hmac.compare_digest(a, b)
