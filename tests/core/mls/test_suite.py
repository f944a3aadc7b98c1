"""MLS cipher suites (RFC 9420 §5, §8, §9, §17.1): crypto-basics vectors and negative cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import LocalError, RemoteError
from veil.core.mls.errors import MlsDecryptError, UnsupportedSuiteError, ValidationError
from veil.core.mls.suite import SUITES, CipherSuite, suite
from veil.core.mls.vectors import crypto_basics
from veil.core.rng import Rng, seeded_rng

ALL = sorted(SUITES)


@pytest.fixture(scope="module")
def basics(vectors_dir: Path) -> dict[int, dict[str, Any]]:
    cases = json.loads((vectors_dir / "mls" / "crypto-basics.json").read_text())
    return {c["cipher_suite"]: c for c in cases}


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize("suite_id", ALL)
def test_crypto_basics_vector(basics: dict[int, dict[str, Any]], suite_id: int) -> None:
    crypto_basics.check(basics[suite_id])


@pytest.mark.parametrize("suite_id", ALL)
def test_crypto_basics_wrong_output_is_caught(
    basics: dict[int, dict[str, Any]], suite_id: int
) -> None:
    case = json.loads(json.dumps(basics[suite_id]))
    out = bytearray(_h(case["derive_tree_secret"]["out"]))
    out[-1] ^= 1
    case["derive_tree_secret"]["out"] = out.hex()
    with pytest.raises(AssertionError, match="derive_tree_secret"):
        crypto_basics.check(case)


def test_suite_table_parameters() -> None:
    sizes = {i: (SUITES[i].nh, SUITES[i].nk, SUITES[i].nn) for i in ALL}
    assert sizes == {
        1: (32, 16, 12),
        2: (32, 16, 12),
        3: (32, 32, 12),
        4: (64, 32, 12),
        5: (64, 32, 12),
        6: (64, 32, 12),
        7: (48, 32, 12),
    }
    assert suite(1).name == "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"


@pytest.mark.parametrize("bad", [0, 8, 0x0A0A, 0xFFFF])
def test_unknown_suite_is_refused(bad: int) -> None:
    with pytest.raises(UnsupportedSuiteError) as info:
        suite(bad)
    assert isinstance(info.value, LocalError) and info.value.suite_id == bad


def test_error_classes() -> None:
    err = ValidationError("RFC9420-7.3-leaf-signature", "leaf 3")
    assert err.requirement == "RFC9420-7.3-leaf-signature" and "leaf 3" in str(err)
    assert isinstance(err, RemoteError) and issubclass(MlsDecryptError, RemoteError)


@pytest.mark.parametrize("suite_id", ALL)
def test_signatures_reject_tampering(suite_id: int, rng: Rng) -> None:
    s = suite(suite_id)
    priv, pub = s.generate_signature_key(rng)
    assert s.signature_public(priv) == pub
    sig = s.sign_with_label(priv, b"LeafNodeTBS", b"content", rng)
    assert s.verify_with_label(pub, b"LeafNodeTBS", b"content", sig)
    bad = bytearray(sig)
    bad[len(bad) // 2] ^= 1
    assert not s.verify_with_label(pub, b"LeafNodeTBS", b"content", bytes(bad))
    assert not s.verify_with_label(pub, b"LeafNodeTBS", b"content!", sig)
    assert not s.verify_with_label(pub, b"GroupInfoTBS", b"content", sig)
    _, other = s.generate_signature_key(rng)
    assert not s.verify_with_label(other, b"LeafNodeTBS", b"content", sig)
    assert not s.verify_with_label(pub[:-1], b"LeafNodeTBS", b"content", sig)
    assert not s.verify_with_label(b"", b"LeafNodeTBS", b"content", sig)
    assert not s.verify_with_label(pub, b"LeafNodeTBS", b"content", b"")


@pytest.mark.parametrize("suite_id", [2, 5, 7])
def test_ecdsa_signatures_are_der_and_deterministic(suite_id: int, rng: Rng) -> None:
    s = suite(suite_id)
    priv, _ = s.generate_signature_key(rng)
    sig = s.sign_with_label(priv, b"L", b"c", rng)
    r, ss = decode_dss_signature(sig)  # raises if not DER
    assert r > 0 and ss > 0
    assert s.sign_with_label(priv, b"L", b"c", seeded_rng(9)) == sig


def test_signature_key_generation_is_deterministic_in_the_rng() -> None:
    for s in SUITES.values():
        assert s.generate_signature_key(seeded_rng(5)) == s.generate_signature_key(seeded_rng(5))


@pytest.mark.parametrize("suite_id", ALL)
def test_encrypt_with_label_rejects_wrong_inputs(suite_id: int, rng: Rng) -> None:
    s = suite(suite_id)
    priv, pub = s.derive_key_pair(rng(s.nh))
    assert s.hpke_public(priv) == pub
    kem_output, ct = s.encrypt_with_label(pub, b"UpdatePathNode", b"ctx", b"secret", rng)
    assert s.decrypt_with_label(priv, b"UpdatePathNode", b"ctx", kem_output, ct) == b"secret"
    tampered = bytearray(ct)
    tampered[0] ^= 1
    attempts = [
        (priv, b"Welcome", b"ctx", kem_output, ct),
        (priv, b"UpdatePathNode", b"ctx2", kem_output, ct),
        (priv, b"UpdatePathNode", b"ctx", kem_output, bytes(tampered)),
        (priv, b"UpdatePathNode", b"ctx", kem_output[:-1], ct),
        (priv, b"UpdatePathNode", b"ctx", kem_output, ct[:-1]),
        (s.derive_key_pair(rng(s.nh))[0], b"UpdatePathNode", b"ctx", kem_output, ct),
    ]
    for args in attempts:
        with pytest.raises(MlsDecryptError):
            s.decrypt_with_label(*args)


@pytest.mark.parametrize("suite_id", ALL)
def test_aead_round_trip_and_tamper(suite_id: int, rng: Rng) -> None:
    s = suite(suite_id)
    key, nonce = rng(s.nk), rng(s.nn)
    ct = s.aead_encrypt(key, nonce, b"aad", b"plaintext")
    assert s.aead_decrypt(key, nonce, b"aad", ct) == b"plaintext"
    with pytest.raises(MlsDecryptError):
        s.aead_decrypt(key, nonce, b"aae", ct)
    with pytest.raises(MlsDecryptError):
        s.aead_decrypt(key, nonce, b"aad", ct[:-1])


def test_labelled_functions_add_the_prefix() -> None:
    s = suite(1)
    secret = bytes(range(32))
    # KDFLabel = uint16 length || opaque label<V> || opaque context<V>
    info = (16).to_bytes(2, "big") + bytes([12]) + b"MLS 1.0 test" + bytes([1]) + b"c"
    assert s.expand_with_label(secret, b"test", b"c", 16) == s.expand(secret, info, 16)
    assert s.derive_secret(secret, b"x") == s.expand_with_label(secret, b"x", b"", 32)
    assert s.derive_tree_secret(secret, b"key", 7, 16) == s.expand_with_label(
        secret, b"key", b"\x00\x00\x00\x07", 16
    )


def test_key_package_and_proposal_refs() -> None:
    s = suite(1)
    assert s.key_package_ref(b"kp") == s.ref_hash(b"MLS 1.0 KeyPackage Reference", b"kp")
    assert s.proposal_ref(b"ac") == s.ref_hash(b"MLS 1.0 Proposal Reference", b"ac")
    assert s.key_package_ref(b"kp") != s.proposal_ref(b"kp")


@settings(max_examples=30, deadline=None)
@given(
    suite_id=st.sampled_from(ALL),
    seed=st.binary(max_size=8),
    content=st.binary(max_size=100),
    label=st.binary(min_size=1, max_size=20),
)
def test_property_sign_verify(suite_id: int, seed: bytes, content: bytes, label: bytes) -> None:
    s: CipherSuite = suite(suite_id)
    rng = seeded_rng(seed)
    priv, pub = s.generate_signature_key(rng)
    sig = s.sign_with_label(priv, label, content, rng)
    assert s.verify_with_label(pub, label, content, sig)
    assert not s.verify_with_label(pub, label, content + b"\x00", sig)
