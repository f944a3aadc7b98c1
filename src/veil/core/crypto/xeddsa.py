"""XEdDSA signatures with X25519 keys, as libsignal makes and checks them.

Spec: "The XEdDSA and VXEdDSA Signature Schemes" (Signal, rev. 1, 2016-10-20), §2.3 and §3;
libsignal's sign-bit variant per WIRE.md §3.1:

* sign: k = clamped private key, a = k mod q, A = a·B **without** forcing A's sign bit to 0;
  r = SHA-512(0xFE ‖ 0xFF×31 ‖ k ‖ M ‖ Z) mod q (hash_1 of the spec, §2.4), R = r·B,
  h = SHA-512(R ‖ A ‖ M) mod q, s = h·a + r mod q; signature = R ‖ s with A's sign bit stored
  in the top bit of byte 63.
* verify: take the sign bit from byte 63 and clear it; refuse s ≥ 2^253; A = the Edwards point
  with y = (u - 1)/(u + 1) and that sign; then ordinary (cofactorless) Ed25519 verification,
  done by pyca.

One deliberate difference from libsignal: pyca (OpenSSL) refuses s ≥ q, where libsignal
reduces s mod q and accepts it. Honest signers never produce such an s; refusing it only
closes a signature-malleability gap.

The scalar and point arithmetic is libsodium's (PyNaCl ``crypto_core_ed25519_*``); only the
birational map u -> y is computed here, with Python integers.
"""

from __future__ import annotations

import hashlib
from typing import Final

import nacl.bindings as _sodium
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import InvalidSignatureError
from veil.core.rng import Rng

SIGNATURE_LEN: Final = 64
_P: Final = 2**255 - 19
_HASH1_PREFIX: Final = b"\xfe" + b"\xff" * 31


def _clamp(secret: bytes) -> bytes:
    k = bytearray(secret)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def _reduce(digest64: bytes) -> bytes:
    return bytes(_sodium.crypto_core_ed25519_scalar_reduce(digest64))


def _scalar_muladd(h: bytes, a: bytes, r: bytes) -> bytes:
    """h·a + r mod q."""
    return bytes(
        _sodium.crypto_core_ed25519_scalar_add(_sodium.crypto_core_ed25519_scalar_mul(h, a), r)
    )


def sign(private_key: PrivateKey, message: bytes, rng: Rng) -> bytes:
    """XEdDSA-sign ``message`` with an X25519 private key (libsignal's sign-bit encoding)."""
    return sign_with_nonce(private_key, message, rng(64))


def sign_with_nonce(private_key: PrivateKey, message: bytes, z: bytes) -> bytes:
    """Deterministic core of :func:`sign`, with the 64 random bytes ``z`` given (for tests)."""
    k = _clamp(private_key.secret_bytes())
    a = _reduce(k + bytes(32))
    big_a = bytes(_sodium.crypto_scalarmult_ed25519_base_noclamp(a))
    sign_bit = big_a[31] & 0x80
    r = _reduce(hashlib.sha512(_HASH1_PREFIX + k + message + z).digest())
    big_r = bytes(_sodium.crypto_scalarmult_ed25519_base_noclamp(r))
    h = _reduce(hashlib.sha512(big_r + big_a + message).digest())
    s = bytearray(_scalar_muladd(h, a, r))
    s[31] |= sign_bit
    return big_r + bytes(s)


def sign_spec(private_key: PrivateKey, message: bytes, z: bytes) -> bytes:
    """XEdDSA exactly as the paper's §3 (A's sign bit forced to 0, a negated if needed).

    libsignal does not sign this way; this is here to check the paper's known-answer vector
    (libsignal-protocol-c ``xeddsa_fast_test``) and so that both variants are tested.
    """
    k = _clamp(private_key.secret_bytes())
    a = _reduce(k + bytes(32))
    big_a = bytearray(_sodium.crypto_scalarmult_ed25519_base_noclamp(a))
    if big_a[31] & 0x80:
        a = bytes(_sodium.crypto_core_ed25519_scalar_negate(a))
        big_a[31] &= 0x7F
    r = _reduce(hashlib.sha512(_HASH1_PREFIX + a + message + z).digest())
    big_r = bytes(_sodium.crypto_scalarmult_ed25519_base_noclamp(r))
    h = _reduce(hashlib.sha512(big_r + bytes(big_a) + message).digest())
    return big_r + _scalar_muladd(h, a, r)


def verify(public_key: PublicKey, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid XEdDSA signature of ``message`` by ``public_key``."""
    if len(signature) != SIGNATURE_LEN:
        return False
    sign_bit = signature[63] & 0x80
    if signature[63] & 0x60:  # s >= 2^253 once the sign bit is cleared
        return False
    u = int.from_bytes(public_key.raw, "little") & ((1 << 255) - 1)
    if (u + 1) % _P == 0:
        return False
    y = (u - 1) * pow(u + 1, -1, _P) % _P
    ed = bytearray(y.to_bytes(32, "little"))
    ed[31] |= sign_bit
    sig = bytearray(signature)
    sig[63] &= 0x7F
    try:
        Ed25519PublicKey.from_public_bytes(bytes(ed)).verify(bytes(sig), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def require_valid(public_key: PublicKey, message: bytes, signature: bytes, what: str) -> None:
    """Raise :class:`InvalidSignatureError` unless ``signature`` is valid; ``what`` names it."""
    if not verify(public_key, message, signature):
        raise InvalidSignatureError(f"{what} signature does not verify")
