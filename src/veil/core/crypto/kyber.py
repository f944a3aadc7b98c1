"""Kyber1024 prekeys as libsignal uses them, built on pyca's ML-KEM-1024 (FIPS 203).

WIRE.md §1: keys and ciphertexts are encoded as for ML-KEM-1024, behind a type byte 0x08
(public key ``0x08 || 1568 bytes``, ciphertext ``0x08 || 1568 bytes``). Kyber's (round-3)
shared secret differs from ML-KEM's only by a final hash:

    Kyber_SS = SHAKE256(K || SHA3-256(ct), 32)    where K = ML-KEM shared secret.

Key generation takes the 64-byte ML-KEM seed (d || z) from the caller's :data:`Rng`.
Encapsulation draws its message randomness inside OpenSSL: pyca has no deterministic
encapsulation API, so this is the one place the core is not reproducible from its ``rng``.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.hazmat.primitives.asymmetric import mlkem

from veil.core.errors import DecodeError
from veil.core.rng import Rng

KYBER_TYPE: Final = 0x08
PUBLIC_KEY_LEN: Final = 1568
CIPHERTEXT_LEN: Final = 1568
SEED_LEN: Final = 64
SERIALIZED_PUBLIC_LEN: Final = 1 + PUBLIC_KEY_LEN
SERIALIZED_CIPHERTEXT_LEN: Final = 1 + CIPHERTEXT_LEN


def _kyber_secret(k: bytes, ciphertext: bytes) -> bytes:
    return hashlib.shake_256(k + hashlib.sha3_256(ciphertext).digest()).digest(32)


class KyberPublicKey:
    """A Kyber1024 public key (``0x08 || 1568 bytes`` on the wire)."""

    __slots__ = ("_key", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != PUBLIC_KEY_LEN:
            raise DecodeError(f"Kyber1024 public key must be {PUBLIC_KEY_LEN} bytes")
        try:
            self._key = mlkem.MLKEM1024PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise DecodeError("invalid ML-KEM-1024 public key") from exc
        self.raw = bytes(raw)

    @classmethod
    def deserialize(cls, data: bytes) -> KyberPublicKey:
        """Parse ``0x08 || key``; raise :class:`DecodeError` otherwise."""
        if len(data) != SERIALIZED_PUBLIC_LEN or data[0] != KYBER_TYPE:
            raise DecodeError("expected a type-8 Kyber1024 public key")
        return cls(data[1:])

    def serialize(self) -> bytes:
        """``0x08 || key`` (1569 bytes), the form that is signed and sent."""
        return b"\x08" + self.raw

    def encapsulate(self) -> tuple[bytes, bytes]:
        """Return (shared secret, serialized ciphertext ``0x08 || ct``)."""
        k, ct = self._key.encapsulate()
        return _kyber_secret(k, ct), b"\x08" + ct

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KyberPublicKey) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"KyberPublicKey({self.raw[:8].hex()}…)"


class KyberKeyPair:
    """Our Kyber1024 key pair, kept as its 64-byte ML-KEM seed. ``repr`` hides the seed."""

    __slots__ = ("_key", "_seed", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LEN:
            raise DecodeError(f"ML-KEM seed must be {SEED_LEN} bytes")
        self._seed = bytes(seed)
        self._key = mlkem.MLKEM1024PrivateKey.from_seed_bytes(self._seed)
        self.public_key = KyberPublicKey(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, rng: Rng) -> KyberKeyPair:
        """A fresh key pair from 64 bytes of ``rng``."""
        return cls(rng(SEED_LEN))

    def seed_bytes(self) -> bytes:
        """The 64-byte seed, for persisting the key."""
        return self._seed

    def decapsulate(self, serialized_ciphertext: bytes) -> bytes:
        """Kyber shared secret for ``0x08 || ct``; :class:`DecodeError` if malformed."""
        if len(serialized_ciphertext) != SERIALIZED_CIPHERTEXT_LEN or (
            serialized_ciphertext[0] != KYBER_TYPE
        ):
            raise DecodeError("expected a type-8 Kyber1024 ciphertext")
        ct = serialized_ciphertext[1:]
        try:
            k = self._key.decapsulate(ct)
        except ValueError as exc:
            raise DecodeError("invalid Kyber1024 ciphertext") from exc
        return _kyber_secret(k, ct)

    def __repr__(self) -> str:
        return f"KyberKeyPair(public={self.public_key!r}, seed=<hidden>)"
