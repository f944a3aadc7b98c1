"""X25519 keys in Signal's encoding (WIRE.md §3.1; RFC 7748 §5).

A public key travels as ``0x05 || u`` (33 bytes); a private key is 32 bytes, clamped by X25519
itself. The scalar multiplications come from libsodium through PyNaCl: its fixed-base
multiplication (key generation) is about twice as fast as pyca's, which computes the public key
with the Montgomery ladder, and its variable-base one (DH) needs no key object per call. A
shared secret of all zeros (a small-order peer key) is refused with :class:`InvalidKeyError`.
"""

from __future__ import annotations

import hmac
from typing import Final

import nacl.bindings as _sodium
import nacl.exceptions as _sodium_errors

from veil.core.errors import DecodeError, InvalidKeyError
from veil.core.rng import Rng

DJB_TYPE: Final = 0x05
KEY_LEN: Final = 32
SERIALIZED_LEN: Final = 33
_P: Final = 2**255 - 19


class PublicKey:
    """A peer's (or our own) X25519 public key. Immutable, hashable, compared by value."""

    __slots__ = ("_serialized", "raw")
    raw: bytes
    _serialized: bytes

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_LEN:
            raise InvalidKeyError(f"X25519 public key must be {KEY_LEN} bytes, got {len(raw)}")
        raw = bytes(raw)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "_serialized", b"\x05" + raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PublicKey is immutable")

    def __copy__(self) -> PublicKey:
        return self

    def __deepcopy__(self, memo: object) -> PublicKey:
        return self

    def __reduce__(self) -> tuple[type[PublicKey], tuple[bytes]]:
        return (PublicKey, (self.raw,))

    @classmethod
    def deserialize(cls, data: bytes) -> PublicKey:
        """Parse ``0x05 || u``; raise :class:`DecodeError` on anything else."""
        if len(data) != SERIALIZED_LEN or data[0] != DJB_TYPE:
            raise DecodeError(f"expected a {SERIALIZED_LEN}-byte type-5 public key")
        return cls(data[1:])

    def serialize(self) -> bytes:
        """``0x05 || u``, the 33-byte form every Signal message and signature uses."""
        return self._serialized

    def is_canonical(self) -> bool:
        """True if u < p and the point is in the prime-order subgroup (torsion-free).

        The check maps u to the Edwards y = (u - 1) / (u + 1) and asks libsodium whether
        that point is valid and in the main subgroup. Twist points and small-order points fail.
        """
        u = int.from_bytes(self.raw, "little")
        if u >= _P or (u + 1) % _P == 0:
            return False
        y = (u - 1) * pow(u + 1, -1, _P) % _P
        return bool(_sodium.crypto_core_ed25519_is_valid_point(y.to_bytes(32, "little")))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and hmac.compare_digest(self.raw, other.raw)

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.raw.hex()[:16]}…)"


class PrivateKey:
    """Our X25519 private key and its public key. ``repr`` never shows the secret.

    The public key is derived on first use and cached, so loading many stored keys (e.g. the
    archived states of a session record) costs no scalar multiplication until one is used.
    """

    __slots__ = ("_public", "_secret")
    _secret: bytes
    _public: PublicKey | None

    def __init__(self, secret: bytes, public_key: PublicKey | None = None) -> None:
        if len(secret) != KEY_LEN:
            raise InvalidKeyError(f"X25519 private key must be {KEY_LEN} bytes")
        object.__setattr__(self, "_secret", bytes(secret))
        object.__setattr__(self, "_public", public_key)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PrivateKey is immutable")

    def __copy__(self) -> PrivateKey:
        return self

    def __deepcopy__(self, memo: object) -> PrivateKey:
        return self

    @property
    def public_key(self) -> PublicKey:
        """X25519(secret, 9), computed once."""
        public = self._public
        if public is None:
            public = PublicKey(_sodium.crypto_scalarmult_base(self._secret))
            object.__setattr__(self, "_public", public)
        return public

    @classmethod
    def generate(cls, rng: Rng) -> PrivateKey:
        """A fresh key pair from 32 bytes of ``rng``."""
        return cls(rng(KEY_LEN))

    def secret_bytes(self) -> bytes:
        """The 32 private bytes, for persisting in a session or key record."""
        return self._secret

    def agree(self, peer: PublicKey) -> bytes:
        """X25519(our secret, peer) -> 32-byte shared secret (RFC 7748 §6.1)."""
        try:
            return bytes(_sodium.crypto_scalarmult(self._secret, peer.raw))
        except _sodium_errors.RuntimeError as exc:
            raise InvalidKeyError("X25519 with this public key gives the all-zero secret") from exc

    def __repr__(self) -> str:
        return f"PrivateKey(public={self.public_key!r}, secret=<hidden>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.public_key)
