"""Attachment encryption (``veil.core.attachment``; docs/client-design.md, Attachments).

* round trip, sizes around block boundaries, deterministic layout (IV, CBC, MAC, digest);
* tampering with any byte, a wrong key, a wrong digest, a wrong size -- each raises a
  :class:`RemoteError` subclass whose message holds no key;
* key commitment: a plain AES-GCM ciphertext built to decrypt validly under two different keys
  ("invisible salamanders": Dodis et al., CRYPTO 2018; Albertini et al., USENIX Security 2022)
  -- and Veil's scheme refusing every key but the one a blob was made with.

The GF(2^128) arithmetic below exists only to build the GCM counterexample; it is not used by
Veil.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veil.core.attachment import (
    blob_size,
    decrypt_attachment,
    encrypt_attachment,
    new_attachment_key,
)
from veil.core.crypto.kdf import hkdf_sha256, hmac_sha256
from veil.core.errors import BadMacError, DecodeError, LocalError, RemoteError
from veil.core.rng import Rng

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = st.binary(min_size=32, max_size=32)

# --- round trip and layout ------------------------------------------------------------------


@settings(FUZZ)
@given(st.binary(max_size=3000), KEYS)
def test_round_trip(data: bytes, key: bytes) -> None:
    blob, digest = encrypt_attachment(data, key)
    assert len(blob) == blob_size(len(data))
    assert digest == hashlib.sha256(blob).digest()
    assert decrypt_attachment(blob, key, digest, len(data)) == data


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 4096])
def test_block_boundaries(size: int, rng: Rng) -> None:
    key = new_attachment_key(rng)
    data = rng(size)
    blob, digest = encrypt_attachment(data, key)
    assert len(blob) == 16 + (size // 16 + 1) * 16 + 32
    assert decrypt_attachment(blob, key, digest, size) == data


def test_layout_follows_the_design(rng: Rng) -> None:
    key, data = new_attachment_key(rng), b"attachment bytes"
    okm = hkdf_sha256(key, b"", b"veil attachment v1", 80)
    aes_key, mac_key, iv = okm[:32], okm[32:64], okm[64:]
    enc = Cipher(algorithms.AES256(aes_key), modes.CBC(iv)).encryptor()
    ct = enc.update(data + bytes((16,)) * 16) + enc.finalize()
    expected = iv + ct + hmac_sha256(mac_key, iv + ct)
    assert encrypt_attachment(data, key) == (expected, hashlib.sha256(expected).digest())


def test_new_attachment_key(rng: Rng) -> None:
    first, second = new_attachment_key(rng), new_attachment_key(rng)
    assert len(first) == 32 and first != second


def test_encrypt_refuses_a_bad_key() -> None:
    with pytest.raises(LocalError):
        encrypt_attachment(b"x", bytes(31))


# --- failures -------------------------------------------------------------------------------

DATA = bytes(range(256)) * 3
KEY = bytes(range(32))
BLOB, DIGEST = encrypt_attachment(DATA, KEY)


def _fails(blob: bytes, key: bytes, digest: bytes, size: int) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        decrypt_attachment(blob, key, digest, size)
    assert key.hex() not in str(info.value) and KEY.hex() not in str(info.value)
    return info.value


def test_every_tampered_byte_fails() -> None:
    for pos in range(len(BLOB)):
        tampered = bytearray(BLOB)
        tampered[pos] ^= 0x01
        # with the sender's digest: the digest check catches it
        assert isinstance(_fails(bytes(tampered), KEY, DIGEST, len(DATA)), BadMacError)
        # an attacker who also swaps the digest (e.g. the server): the MAC catches it
        forged = bytes(tampered)
        err = _fails(forged, KEY, hashlib.sha256(forged).digest(), len(DATA))
        assert isinstance(err, BadMacError)


@settings(FUZZ)
@given(KEYS)
def test_any_other_key_fails(other: bytes) -> None:
    if other == KEY:
        return
    assert isinstance(_fails(BLOB, other, DIGEST, len(DATA)), BadMacError)


@pytest.mark.parametrize("size", [len(DATA) - 1, len(DATA) + 1, len(DATA) - 16, 0])
def test_wrong_size_fails(size: int) -> None:
    assert isinstance(_fails(BLOB, KEY, DIGEST, size), DecodeError)


def test_size_inside_the_last_block_fails_after_decryption() -> None:
    data = b"x" * 20  # 2 blocks of ciphertext for sizes 16..31
    blob, digest = encrypt_attachment(data, KEY)
    for size in (16, 19, 21, 31):
        assert isinstance(_fails(blob, KEY, digest, size), DecodeError)


@pytest.mark.parametrize(
    ("key", "digest", "size"),
    [
        (bytes(31), DIGEST, len(DATA)),
        (KEY, DIGEST[:31], len(DATA)),
        (KEY, DIGEST, -1),
        (KEY, DIGEST, 2**31 + 1),
    ],
)
def test_bad_parameters_fail(key: bytes, digest: bytes, size: int) -> None:
    assert isinstance(_fails(BLOB, key, digest, size), DecodeError)


def test_wrong_digest_and_truncation_fail() -> None:
    assert isinstance(_fails(BLOB, KEY, bytes(32), len(DATA)), BadMacError)
    assert isinstance(_fails(BLOB[:-1], KEY, DIGEST, len(DATA)), DecodeError)
    assert isinstance(_fails(BLOB + b"\x00", KEY, DIGEST, len(DATA)), DecodeError)


def test_mac_valid_but_padding_bad_is_a_decode_error() -> None:
    """A malicious sender can MAC a bad padding; that is refused after the MAC, not trusted."""
    okm = hkdf_sha256(KEY, b"", b"veil attachment v1", 80)
    aes_key, mac_key, iv = okm[:32], okm[32:64], okm[64:]
    enc = Cipher(algorithms.AES256(aes_key), modes.CBC(iv)).encryptor()
    ct = enc.update(b"y" * 15 + b"\x00") + enc.finalize()
    blob = iv + ct + hmac_sha256(mac_key, iv + ct)
    assert isinstance(_fails(blob, KEY, hashlib.sha256(blob).digest(), 15), DecodeError)


def test_random_iv_in_blob_is_refused() -> None:
    """The IV is derived from the key; a blob carrying another IV (even MAC'd) is refused."""
    okm = hkdf_sha256(KEY, b"", b"veil attachment v1", 80)
    aes_key, mac_key = okm[:32], okm[32:64]
    iv = bytes(16)
    enc = Cipher(algorithms.AES256(aes_key), modes.CBC(iv)).encryptor()
    ct = enc.update(bytes((16,)) * 16) + enc.finalize()
    blob = iv + ct + hmac_sha256(mac_key, iv + ct)
    assert isinstance(_fails(blob, KEY, hashlib.sha256(blob).digest(), 0), BadMacError)


# --- key commitment: GCM's invisible salamanders, and Veil refusing them ---------------------

_R = 0xE1 << 120  # GCM's reduction polynomial x^128 + x^7 + x^2 + x + 1, bit-reflected


def gf_mul(x: int, y: int) -> int:
    """Multiply in GF(2^128) with GCM's bit order (NIST SP 800-38D, Algorithm 1)."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def gf_pow(x: int, e: int) -> int:
    result = 1 << 127  # the field's 1 in GCM's bit order
    while e:
        if e & 1:
            result = gf_mul(result, x)
        x = gf_mul(x, x)
        e >>= 1
    return result


def gf_inv(x: int) -> int:
    return gf_pow(x, 2**128 - 2)


def aes_block(key: bytes, block: bytes) -> int:
    enc = Cipher(algorithms.AES256(key), modes.ECB()).encryptor()
    return int.from_bytes(enc.update(block) + enc.finalize(), "big")


def two_key_gcm_ciphertext(k1: bytes, k2: bytes, nonce: bytes, first: bytes) -> bytes:
    """A 2-block AES-GCM ciphertext + tag that authenticates under both ``k1`` and ``k2``.

    With no associated data, the tag under key k is
    ``C1·H^3 + C2·H^2 + L·H + E_k(J0)`` where ``H = E_k(0^128)``, ``J0 = nonce || 0^31 || 1``
    and ``L`` the lengths block. Fixing C1 and equating both tags leaves one linear equation
    in C2: ``C2·(H1^2 + H2^2) = C1·(H1^3 + H2^3) + L·(H1 + H2) + E1(J0) + E2(J0)``.
    """
    h1, h2 = aes_block(k1, bytes(16)), aes_block(k2, bytes(16))
    j0 = nonce + b"\x00\x00\x00\x01"
    s1, s2 = aes_block(k1, j0), aes_block(k2, j0)
    length = (0 << 64) | (32 * 8)  # len(A) = 0 bits, len(C) = 256 bits
    c1 = int.from_bytes(first, "big")
    rhs = gf_mul(c1, gf_pow(h1, 3) ^ gf_pow(h2, 3)) ^ gf_mul(length, h1 ^ h2) ^ s1 ^ s2
    c2 = gf_mul(rhs, gf_inv(gf_pow(h1, 2) ^ gf_pow(h2, 2)))
    tag = gf_mul(c1, gf_pow(h1, 3)) ^ gf_mul(c2, gf_pow(h1, 2)) ^ gf_mul(length, h1) ^ s1
    return first + c2.to_bytes(16, "big") + tag.to_bytes(16, "big")


def test_gf_arithmetic() -> None:
    one = 1 << 127
    x = int.from_bytes(hashlib.sha256(b"x").digest()[:16], "big")
    assert gf_mul(x, one) == x
    assert gf_mul(x, gf_inv(x)) == one


def test_plain_gcm_is_not_key_committing() -> None:
    """Invisible salamanders: one GCM ciphertext, two keys, two valid and different plaintexts."""
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    nonce = bytes(12)
    ciphertext = two_key_gcm_ciphertext(k1, k2, nonce, b"first block, any")
    plain1 = AESGCM(k1).decrypt(nonce, ciphertext, None)
    plain2 = AESGCM(k2).decrypt(nonce, ciphertext, None)
    assert plain1 != plain2
    # a recipient checking SHA-256 of the ciphertext (as a digest) cannot tell either
    assert len(plain1) == len(plain2) == 32


def test_veil_attachments_are_key_committing() -> None:
    """The same attack aimed at Veil: the ciphertext from GCM, framed as a Veil blob, fails
    under both keys, and a real Veil blob opens under its own key only."""
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    salamander = two_key_gcm_ciphertext(k1, k2, bytes(12), b"first block, any")
    blob = bytes(16) + salamander[:32] + salamander[32:] + bytes(16)  # IV || 2 blocks || "MAC"
    digest = hashlib.sha256(blob).digest()
    for key in (k1, k2):
        assert isinstance(_fails(blob, key, digest, 16), BadMacError)
    real, real_digest = encrypt_attachment(b"a cat picture", k1)
    assert decrypt_attachment(real, k1, real_digest, 13) == b"a cat picture"
    assert isinstance(_fails(real, k2, real_digest, 13), BadMacError)
