"""Known-answer tests against the Signal values in ``<vectors>/signal/*.json``.

The values come from unit tests of libsignal and libsignal-protocol-c (see
``signal/FORMAT.md``, which names each source). Every expected output below is read from the
vector files; nothing is computed by Veil and then compared with itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from veil.core.crypto import xeddsa
from veil.core.crypto.kdf import hkdf_sha256, hmac_sha256
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.signal.fingerprint import (
    ScannableFingerprint,
    compare,
    fingerprint,
    parse_scannable,
)


def _read(vectors_dir: Path, name: str) -> dict[str, Any]:
    with (vectors_dir / "signal" / name).open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


# --- loaders: one per vector file -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agreement:
    alice_private: bytes
    alice_public: bytes
    bob_private: bytes
    bob_public: bytes
    shared_secret: bytes


@dataclass(frozen=True, slots=True)
class XEdDSAVerify:
    identity_private: bytes
    identity_public: bytes
    message: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class XEdDSASign:
    private_key: bytes
    message: bytes
    random: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class CurveVectors:
    agreement: Agreement
    verify: XEdDSAVerify
    sign: XEdDSASign
    legacy_sign: XEdDSASign


def load_curve25519_xeddsa(vectors_dir: Path) -> CurveVectors:
    """``signal/curve25519-xeddsa.json``: an object of four sections, each with a ``source``.

    * ``x25519_agreement``: hex ``alice_private``, ``alice_public``, ``bob_private``,
      ``bob_public`` (raw 32-byte X25519 keys, privates possibly unclamped) and
      ``shared_secret``.
    * ``xeddsa_verify``: hex ``identity_private``/``identity_public`` (raw 32 bytes),
      ``message`` (33 bytes, a serialized public key), ``signature`` (64 bytes, libsignal's
      sign-bit encoding), ``expect_valid`` (true).
    * ``xeddsa_sign``: hex ``private_key`` (32, clamped), ``message`` (200 zero bytes),
      ``random`` (64-byte Z), ``signature`` per the XEdDSA paper; the public key is
      X25519(private_key, 9).
    * ``legacy_curve25519_sign``: same fields, old libsignal ``curve25519_sign`` nonce.
    """
    data = _read(vectors_dir, "curve25519-xeddsa.json")
    a = data["x25519_agreement"]
    v = data["xeddsa_verify"]
    assert v["expect_valid"] is True

    def sign_section(s: dict[str, Any]) -> XEdDSASign:
        return XEdDSASign(
            _hex(s["private_key"]), _hex(s["message"]), _hex(s["random"]), _hex(s["signature"])
        )

    return CurveVectors(
        agreement=Agreement(
            _hex(a["alice_private"]),
            _hex(a["alice_public"]),
            _hex(a["bob_private"]),
            _hex(a["bob_public"]),
            _hex(a["shared_secret"]),
        ),
        verify=XEdDSAVerify(
            _hex(v["identity_private"]),
            _hex(v["identity_public"]),
            _hex(v["message"]),
            _hex(v["signature"]),
        ),
        sign=sign_section(data["xeddsa_sign"]),
        legacy_sign=sign_section(data["legacy_curve25519_sign"]),
    )


@dataclass(frozen=True, slots=True)
class ChainKeyVector:
    chain_key: bytes
    chain_index: int
    message_cipher_key: bytes
    message_mac_key: bytes
    message_counter: int
    next_chain_key: bytes
    next_chain_index: int


def load_double_ratchet_chain_key(vectors_dir: Path) -> ChainKeyVector:
    """``signal/double-ratchet-chain-key.json``: one object (plus ``source``).

    Hex ``chain_key`` (32) at integer ``chain_index``; expected hex ``message_cipher_key``
    and ``message_mac_key`` (32 each) with integer ``message_counter``, and hex
    ``next_chain_key`` at ``next_chain_index``.
    """
    d = _read(vectors_dir, "double-ratchet-chain-key.json")
    return ChainKeyVector(
        _hex(d["chain_key"]),
        d["chain_index"],
        _hex(d["message_cipher_key"]),
        _hex(d["message_mac_key"]),
        d["message_counter"],
        _hex(d["next_chain_key"]),
        d["next_chain_index"],
    )


@dataclass(frozen=True, slots=True)
class X3DHVector:
    session_version: int
    pairs: dict[str, tuple[bytes, bytes]]
    """name -> (private 32 bytes, serialized public 33 bytes), without ``bob_ratchet``."""
    expected_bob_sender_chain_key: bytes
    expected_alice_receiver_chain_key: bytes


def load_x3dh_v3_session_init(vectors_dir: Path) -> X3DHVector:
    """``signal/x3dh-v3-session-init.json``: one object (plus ``source``).

    ``session_version`` (3); hex ``<name>_public`` (33-byte serialized) and
    ``<name>_private`` (32) for ``alice_identity``, ``alice_base``, ``bob_identity``,
    ``bob_signed_prekey`` and ``bob_ratchet`` (whose private half does not match its public
    half: not loaded); ``one_time_prekey`` (null); hex ``expected_bob_sender_chain_key`` and
    ``expected_alice_receiver_chain_key`` (32, equal).
    """
    d = _read(vectors_dir, "x3dh-v3-session-init.json")
    assert d["one_time_prekey"] is None
    names = ("alice_identity", "alice_base", "bob_identity", "bob_signed_prekey")
    return X3DHVector(
        d["session_version"],
        {n: (_hex(d[f"{n}_private"]), _hex(d[f"{n}_public"])) for n in names},
        _hex(d["expected_bob_sender_chain_key"]),
        _hex(d["expected_alice_receiver_chain_key"]),
    )


@dataclass(frozen=True, slots=True)
class Party:
    stable_id: bytes
    identity_key: PublicKey


@dataclass(frozen=True, slots=True)
class ScannableVector:
    version: int
    alice: bytes
    bob: bytes


@dataclass(frozen=True, slots=True)
class FingerprintVectors:
    iterations: int
    alice: Party
    bob: Party
    displayable: str
    scannable: tuple[ScannableVector, ...]
    encoding: ScannableFingerprint
    encoded: bytes


def load_fingerprint(vectors_dir: Path) -> FingerprintVectors:
    """``signal/fingerprint.json``: one object (plus ``source``).

    ``iterations`` (5200); ``alice``/``bob``: ``stable_id`` (UTF-8 string, a phone number)
    and hex ``identity_key`` (33-byte serialized); ``displayable_fingerprint`` (60 digits,
    the same for versions 1 and 2); ``scannable``: a list of {``version``, hex
    ``alice_scannable`` (Alice local), hex ``bob_scannable`` (Bob local)};
    ``scannable_encoding``: {``version``, hex ``local_fingerprint``, hex
    ``remote_fingerprint`` (32 each), hex ``encoded`` (the expected protobuf)}.
    """
    d = _read(vectors_dir, "fingerprint.json")

    def party(p: dict[str, Any]) -> Party:
        return Party(p["stable_id"].encode(), PublicKey.deserialize(_hex(p["identity_key"])))

    e = d["scannable_encoding"]
    return FingerprintVectors(
        d["iterations"],
        party(d["alice"]),
        party(d["bob"]),
        d["displayable_fingerprint"],
        tuple(
            ScannableVector(s["version"], _hex(s["alice_scannable"]), _hex(s["bob_scannable"]))
            for s in d["scannable"]
        ),
        ScannableFingerprint(
            e["version"], _hex(e["local_fingerprint"]), _hex(e["remote_fingerprint"])
        ),
        _hex(e["encoded"]),
    )


@pytest.fixture(scope="module")
def curve(vectors_dir: Path) -> CurveVectors:
    return load_curve25519_xeddsa(vectors_dir)


@pytest.fixture(scope="module")
def chain(vectors_dir: Path) -> ChainKeyVector:
    return load_double_ratchet_chain_key(vectors_dir)


@pytest.fixture(scope="module")
def x3dh(vectors_dir: Path) -> X3DHVector:
    return load_x3dh_v3_session_init(vectors_dir)


@pytest.fixture(scope="module")
def fp(vectors_dir: Path) -> FingerprintVectors:
    return load_fingerprint(vectors_dir)


# --- X25519 and XEdDSA ----------------------------------------------------------------------


def test_x25519_agreement_both_directions(curve: CurveVectors) -> None:
    v = curve.agreement
    alice = PrivateKey(v.alice_private)
    bob = PrivateKey(v.bob_private)
    assert alice.agree(PublicKey(v.bob_public)) == v.shared_secret
    assert bob.agree(PublicKey(v.alice_public)) == v.shared_secret


def test_x25519_private_key_gives_public_key(curve: CurveVectors) -> None:
    v = curve.agreement
    assert PrivateKey(v.alice_private).public_key.raw == v.alice_public
    assert PrivateKey(v.bob_private).public_key.raw == v.bob_public
    assert PrivateKey(curve.verify.identity_private).public_key.raw == curve.verify.identity_public


def test_xeddsa_verify_libsignal_signature(curve: CurveVectors) -> None:
    v = curve.verify
    assert xeddsa.verify(PublicKey(v.identity_public), v.message, v.signature)


def test_xeddsa_verify_fails_for_every_flipped_bit(curve: CurveVectors) -> None:
    v = curve.verify
    key = PublicKey(v.identity_public)
    accepted = []
    for bit in range(len(v.signature) * 8):
        tampered = bytearray(v.signature)
        tampered[bit // 8] ^= 1 << (bit % 8)
        if xeddsa.verify(key, v.message, bytes(tampered)):
            accepted.append(bit)
    assert accepted == []


def test_xeddsa_verify_fails_for_other_message(curve: CurveVectors) -> None:
    v = curve.verify
    assert not xeddsa.verify(PublicKey(v.identity_public), v.message[:-1], v.signature)


def test_xeddsa_sign_spec_reproduces_paper_vector(curve: CurveVectors) -> None:
    v = curve.sign
    key = PrivateKey(v.private_key)
    assert xeddsa.sign_spec(key, v.message, v.random) == v.signature
    assert xeddsa.verify(key.public_key, v.message, v.signature)


def test_xeddsa_libsignal_style_signature_verifies(curve: CurveVectors) -> None:
    v = curve.sign
    key = PrivateKey(v.private_key)
    signature = xeddsa.sign_with_nonce(key, v.message, v.random)
    assert len(signature) == 64
    assert xeddsa.verify(key.public_key, v.message, signature)


def test_legacy_curve25519_sign_verifies(curve: CurveVectors) -> None:
    v = curve.legacy_sign
    key = PrivateKey(v.private_key)
    assert v.signature != curve.sign.signature
    assert xeddsa.verify(key.public_key, v.message, v.signature)


# --- Double Ratchet symmetric step and X3DH v3 ----------------------------------------------


def test_double_ratchet_chain_key_step(chain: ChainKeyVector) -> None:
    assert (chain.chain_index, chain.message_counter, chain.next_chain_index) == (0, 0, 1)
    seed = hmac_sha256(chain.chain_key, b"\x01")
    assert hmac_sha256(chain.chain_key, b"\x02") == chain.next_chain_key
    okm = hkdf_sha256(seed, None, b"WhisperMessageKeys", 80)
    assert okm[:32] == chain.message_cipher_key
    assert okm[32:64] == chain.message_mac_key


def test_x3dh_v3_key_pairs_match(x3dh: X3DHVector) -> None:
    for name, (private, public) in x3dh.pairs.items():
        assert PrivateKey(private).public_key.serialize() == public, name


def test_x3dh_v3_session_init_chain_key(x3dh: X3DHVector) -> None:
    assert x3dh.session_version == 3
    keys = {n: PrivateKey(priv) for n, (priv, _) in x3dh.pairs.items()}
    pub = {n: PublicKey.deserialize(p) for n, (_, p) in x3dh.pairs.items()}
    alice = (
        keys["alice_identity"].agree(pub["bob_signed_prekey"])
        + keys["alice_base"].agree(pub["bob_identity"])
        + keys["alice_base"].agree(pub["bob_signed_prekey"])
    )
    bob = (
        keys["bob_signed_prekey"].agree(pub["alice_identity"])
        + keys["bob_identity"].agree(pub["alice_base"])
        + keys["bob_signed_prekey"].agree(pub["alice_base"])
    )
    assert alice == bob
    derived = hkdf_sha256(b"\xff" * 32 + alice, None, b"WhisperText", 64)
    assert derived[32:] == x3dh.expected_bob_sender_chain_key
    assert derived[32:] == x3dh.expected_alice_receiver_chain_key


# --- safety numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_fingerprint_displayable(fp: FingerprintVectors, version: int) -> None:
    a = fingerprint(
        version,
        fp.iterations,
        fp.alice.stable_id,
        fp.alice.identity_key,
        fp.bob.stable_id,
        fp.bob.identity_key,
    )
    b = fingerprint(
        version,
        fp.iterations,
        fp.bob.stable_id,
        fp.bob.identity_key,
        fp.alice.stable_id,
        fp.alice.identity_key,
    )
    assert a.displayable == fp.displayable
    assert b.displayable == fp.displayable


def test_fingerprint_vectors_cover_versions_1_and_2(fp: FingerprintVectors) -> None:
    assert sorted(s.version for s in fp.scannable) == [1, 2]


@pytest.mark.parametrize("index", [0, 1])
def test_fingerprint_scannable(fp: FingerprintVectors, index: int) -> None:
    s = fp.scannable[index]
    a = fingerprint(
        s.version,
        fp.iterations,
        fp.alice.stable_id,
        fp.alice.identity_key,
        fp.bob.stable_id,
        fp.bob.identity_key,
    )
    b = fingerprint(
        s.version,
        fp.iterations,
        fp.bob.stable_id,
        fp.bob.identity_key,
        fp.alice.stable_id,
        fp.alice.identity_key,
    )
    assert a.scannable == s.alice
    assert b.scannable == s.bob
    assert a.compare(s.bob)
    assert b.compare(s.alice)
    assert not a.compare(s.alice)


@pytest.mark.parametrize("index", [0, 1])
def test_fingerprint_scannable_vectors_compare(fp: FingerprintVectors, index: int) -> None:
    s = fp.scannable[index]
    assert compare(s.alice, s.bob)
    assert compare(s.bob, s.alice)
    alice, bob = parse_scannable(s.alice), parse_scannable(s.bob)
    assert alice.version == bob.version == s.version
    assert (alice.local, alice.remote) == (bob.remote, bob.local)


def test_fingerprint_scannable_encoding(fp: FingerprintVectors) -> None:
    assert fp.encoding.serialize() == fp.encoded
    assert parse_scannable(fp.encoded) == fp.encoding
