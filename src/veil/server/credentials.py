"""Device credentials: random secrets the server stores only as hashes.

A credential is 24 random bytes (URL-safe base64, 32 characters): with 192 bits of entropy a
plain SHA-256 hash is enough (no password-stretching needed), and checking it costs one hash
and a constant-time comparison per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

_DOMAIN: Final = b"veil device credential v1\x00"


def new_credential() -> str:
    """A fresh credential for a new device."""
    return secrets.token_urlsafe(24)


def hash_credential(credential: str) -> bytes:
    """The 32-byte hash the server stores."""
    return hashlib.sha256(_DOMAIN + credential.encode()).digest()


def credential_matches(credential: str, stored_hash: bytes) -> bool:
    """Constant-time check of a presented credential against the stored hash."""
    return hmac.compare_digest(hash_credential(credential), stored_hash)
