"""Unit and property tests of the crypto wrappers (``veil.core.crypto``).

Known-answer values are in ``test_vectors_signal.py``; these check encodings, refusals and
round trips. Field arithmetic below (curve equation, Legendre symbol) is done independently
with Python integers, so it does not rely on the code under test.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from veil.core.crypto import cbc, xeddsa
from veil.core.crypto.kyber import (
    CIPHERTEXT_LEN,
    PUBLIC_KEY_LEN,
    KyberKeyPair,
    KyberPublicKey,
)
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import DecodeError, InvalidKeyError, InvalidSignatureError
from veil.core.rng import Rng, seeded_rng

P = 2**255 - 19
A = 486662


def _u(value: int) -> PublicKey:
    return PublicKey(value.to_bytes(32, "little"))


def _on_twist(u: int) -> bool:
    """True if u is not the u-coordinate of a point on Curve25519 (v² = u³ + Au² + u)."""
    rhs = (u * u * u + A * u * u + u) % P
    return rhs != 0 and pow(rhs, (P - 1) // 2, P) == P - 1


# Small-order u-coordinates (libsodium's blacklist, cf. RFC 7748 §7): 0 and 1 (orders 4 and
# 2 with the point at infinity), the two of order 8, and -1.
ORDER_8 = (
    int.from_bytes(
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), "little"
    ),
    int.from_bytes(
        bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"), "little"
    ),
)
SMALL_ORDER = (0, 1, *ORDER_8, P - 1)


# --- X25519 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x05",
        b"\x05" + bytes(31),
        b"\x05" + bytes(33),
        bytes(32),
        b"\x06" + bytes(32),
        b"\x00" + bytes(32),
        b"\x08" + bytes(32),
    ],
)
def test_public_key_deserialize_refuses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        PublicKey.deserialize(data)


def test_public_key_serialize_round_trip(rng: Rng) -> None:
    key = PrivateKey.generate(rng).public_key
    data = key.serialize()
    assert len(data) == 33
    assert data[0] == 0x05
    assert PublicKey.deserialize(data) == key


@pytest.mark.parametrize("length", [0, 31, 33])
def test_raw_key_wrong_length(length: int) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey(bytes(length))
    with pytest.raises(InvalidKeyError):
        PrivateKey(bytes(length))


@pytest.mark.parametrize("seed", range(8))
def test_generated_key_is_canonical(seed: int) -> None:
    assert PrivateKey.generate(seeded_rng(seed)).public_key.is_canonical()


@pytest.mark.parametrize("u", [P, P + 1, P + 9, 2**255 - 1, 2**256 - 1])
def test_is_canonical_refuses_u_not_reduced(u: int) -> None:
    assert not _u(u).is_canonical()


@pytest.mark.parametrize("u", SMALL_ORDER)
def test_is_canonical_refuses_small_order(u: int) -> None:
    assert not _u(u).is_canonical()


def test_is_canonical_refuses_twist_point() -> None:
    twist = next(u for u in range(2, 1000) if _on_twist(u))
    assert not _u(twist).is_canonical()


def test_is_canonical_refuses_mixed_order_point(rng: Rng) -> None:
    """Adding the 2-torsion point (0, 0) maps u to 1/u: on the curve, not torsion-free."""
    u = int.from_bytes(PrivateKey.generate(rng).public_key.raw, "little")
    mixed = pow(u, P - 2, P)
    assert not _on_twist(mixed)
    assert not _u(mixed).is_canonical()


@pytest.mark.parametrize("u", [*SMALL_ORDER, P, P + 1, ORDER_8[0] + 2**255])
def test_agree_with_small_order_point_refused(u: int, rng: Rng) -> None:
    with pytest.raises(InvalidKeyError):
        PrivateKey.generate(rng).agree(PublicKey((u % 2**256).to_bytes(32, "little")))


def test_agree_is_symmetric(rng: Rng) -> None:
    a, b = PrivateKey.generate(rng), PrivateKey.generate(rng)
    assert a.agree(b.public_key) == b.agree(a.public_key)


def test_private_key_repr_hides_secret(rng: Rng) -> None:
    key = PrivateKey.generate(rng)
    secret = key.secret_bytes().hex()
    text = repr(key) + str(key)
    assert secret not in text
    assert secret[:16] not in text
    assert "hidden" in text


# --- XEdDSA ---------------------------------------------------------------------------------


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_xeddsa_round_trip(seed: bytes, message: bytes) -> None:
    rng = seeded_rng(seed)
    key = PrivateKey.generate(rng)
    other = PrivateKey.generate(rng)
    signature = xeddsa.sign(key, message, rng)
    assert len(signature) == xeddsa.SIGNATURE_LEN
    assert xeddsa.verify(key.public_key, message, signature)
    assert not xeddsa.verify(other.public_key, message, signature)
    assert not xeddsa.verify(key.public_key, message + b"\x00", signature)
    xeddsa.require_valid(key.public_key, message, signature, "test")


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=100))
def test_xeddsa_spec_variant_verifies(seed: bytes, message: bytes) -> None:
    rng = seeded_rng(seed)
    key = PrivateKey.generate(rng)
    signature = xeddsa.sign_spec(key, message, rng(64))
    assert signature[63] & 0x80 == 0
    assert xeddsa.verify(key.public_key, message, signature)


@pytest.mark.parametrize("bits", [0x20, 0x40, 0x60])
def test_xeddsa_verify_refuses_high_s_bits(bits: int, rng: Rng) -> None:
    key = PrivateKey.generate(rng)
    signature = bytearray(xeddsa.sign(key, b"message", rng))
    assert xeddsa.verify(key.public_key, b"message", bytes(signature))
    signature[63] |= bits
    assert not xeddsa.verify(key.public_key, b"message", bytes(signature))


@pytest.mark.parametrize("length", [0, 32, 63, 65, 128])
def test_xeddsa_verify_refuses_wrong_length(length: int, rng: Rng) -> None:
    key = PrivateKey.generate(rng)
    signature = xeddsa.sign(key, b"m", rng)
    bad = (signature * 3)[:length]
    assert not xeddsa.verify(key.public_key, b"m", bad)
    with pytest.raises(InvalidSignatureError):
        xeddsa.require_valid(key.public_key, b"m", bad, "test")


def test_xeddsa_verify_with_u_minus_one(rng: Rng) -> None:
    """u = -1 has no Edwards image; verification must say no, not raise."""
    signature = xeddsa.sign(PrivateKey.generate(rng), b"m", rng)
    assert not xeddsa.verify(_u(P - 1), b"m", signature)


# --- Kyber1024 ------------------------------------------------------------------------------


def test_kyber_generate_is_deterministic() -> None:
    a = KyberKeyPair.generate(seeded_rng(b"kyber"))
    b = KyberKeyPair.generate(seeded_rng(b"kyber"))
    c = KyberKeyPair.generate(seeded_rng(b"other"))
    assert a.public_key == b.public_key
    assert a.public_key != c.public_key
    assert KyberKeyPair(a.seed_bytes()).public_key == a.public_key


def test_kyber_encapsulate_decapsulate(rng: Rng) -> None:
    pair = KyberKeyPair.generate(rng)
    public = KyberPublicKey.deserialize(pair.public_key.serialize())
    secret, ciphertext = public.encapsulate()
    assert len(secret) == 32
    assert len(ciphertext) == 1 + CIPHERTEXT_LEN
    assert ciphertext[0] == 0x08
    assert pair.decapsulate(ciphertext) == secret
    other = KyberKeyPair.generate(rng)
    assert other.decapsulate(ciphertext) != secret  # implicit rejection, no error
    tampered = ciphertext[:-1] + bytes((ciphertext[-1] ^ 1,))
    assert pair.decapsulate(tampered) != secret


def test_kyber_public_key_serialization(rng: Rng) -> None:
    data = KyberKeyPair.generate(rng).public_key.serialize()
    assert len(data) == 1 + PUBLIC_KEY_LEN
    assert data[0] == 0x08
    for bad in (b"\x05" + data[1:], data[:-1], data + b"\x00", data[1:], b""):
        with pytest.raises(DecodeError):
            KyberPublicKey.deserialize(bad)
    with pytest.raises(DecodeError):
        KyberPublicKey(data[2:])


def test_kyber_decapsulate_refuses_malformed(rng: Rng) -> None:
    pair = KyberKeyPair.generate(rng)
    _, ciphertext = pair.public_key.encapsulate()
    for bad in (b"\x05" + ciphertext[1:], ciphertext[:-1], ciphertext + b"\x00", b""):
        with pytest.raises(DecodeError):
            pair.decapsulate(bad)


@pytest.mark.parametrize("length", [0, 32, 63, 65])
def test_kyber_seed_wrong_length(length: int) -> None:
    with pytest.raises(DecodeError):
        KyberKeyPair(bytes(length))


def test_kyber_repr_hides_seed(rng: Rng) -> None:
    pair = KyberKeyPair.generate(rng)
    seed = pair.seed_bytes().hex()
    text = repr(pair) + str(pair)
    assert seed not in text
    assert seed[:16] not in text


# --- AES-256-CBC ----------------------------------------------------------------------------


def test_cbc_round_trip_lengths(rng: Rng) -> None:
    key, iv = rng(32), rng(16)
    for n in range(71):
        plaintext = rng(n)
        ciphertext = cbc.encrypt(key, iv, plaintext)
        assert len(ciphertext) == (n // 16 + 1) * 16
        assert cbc.decrypt(key, iv, ciphertext) == plaintext


def test_cbc_empty_is_one_block(rng: Rng) -> None:
    key, iv = rng(32), rng(16)
    ciphertext = cbc.encrypt(key, iv, b"")
    assert len(ciphertext) == 16
    assert cbc.decrypt(key, iv, ciphertext) == b""


def _raw_cbc(key: bytes, iv: bytes, padded: bytes) -> bytes:
    enc = Cipher(algorithms.AES256(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


@pytest.mark.parametrize(
    "padded",
    [
        bytes(16),  # pad byte 0
        bytes(15) + b"\x11",  # pad 17 > block
        bytes(15) + b"\xff",
        bytes(14) + b"\x01\x02",  # pad 2, previous byte not 2
        b"\x10" * 15 + b"\x0f" + b"\x10" * 15 + b"\x11",
        bytes(16) + b"\x0f" * 15 + b"\x10",  # pad 16, one byte differs
    ],
)
def test_cbc_bad_padding(padded: bytes, rng: Rng) -> None:
    key, iv = rng(32), rng(16)
    with pytest.raises(DecodeError):
        cbc.decrypt(key, iv, _raw_cbc(key, iv, padded))


@pytest.mark.parametrize("length", [0, 1, 15, 17, 31, 33])
def test_cbc_bad_length(length: int, rng: Rng) -> None:
    with pytest.raises(DecodeError):
        cbc.decrypt(rng(32), rng(16), rng(length))
