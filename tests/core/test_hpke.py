"""HPKE (RFC 9180) against the official vectors, plus round trips and negative cases.

Every base-mode (0) and psk-mode (1) case of the official file whose KEM/KDF/AEAD we support
runs end to end: DeriveKeyPair, Encap/Decap, the key schedule, all 257 encryptions in sequence
and the 3 exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.crypto import hpke
from veil.core.crypto.hpke import (
    AEADS,
    EXPORT_ONLY,
    KEMS,
    HpkeDecryptError,
    UnsupportedAlgorithmError,
    hpke_suite,
)
from veil.core.errors import InvalidKeyError, LocalError
from veil.core.rng import Rng, seeded_rng

SUITES = [(kem, kdf, aead) for kem in KEMS for kdf in (1, 2, 3) for aead in (1, 2, 3)]


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


def _cases(vectors_dir: Path, name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((vectors_dir / "hpke" / name).read_text())
    return [c for c in cases if c["mode"] in (hpke.MODE_BASE, hpke.MODE_PSK)]


def _run_case(c: dict[str, Any]) -> tuple[int, int]:
    s = hpke_suite(c["kem_id"], c["kdf_id"], c["aead_id"])
    sk_e, pk_e = s.kem.derive_key_pair(_h(c["ikmE"]))
    assert (sk_e, pk_e) == (_h(c["skEm"]), _h(c["pkEm"]))
    sk_r, pk_r = s.kem.derive_key_pair(_h(c["ikmR"]))
    assert (sk_r, pk_r) == (_h(c["skRm"]), _h(c["pkRm"]))
    shared, enc = s.kem.encap_with_ikm(pk_r, _h(c["ikmE"]))
    assert (shared, enc) == (_h(c["shared_secret"]), _h(c["enc"]))
    assert s.kem.decap(enc, sk_r) == shared
    args = (c["mode"], shared, _h(c["info"]), _h(c.get("psk", "")), _h(c.get("psk_id", "")))
    sender, receiver = s.key_schedule(*args), s.key_schedule(*args)
    assert sender.key == _h(c["key"])
    assert sender.base_nonce == _h(c["base_nonce"])
    assert sender.exporter_secret == _h(c["exporter_secret"])
    for e in c["encryptions"]:
        assert sender.seal(_h(e["aad"]), _h(e["pt"])) == _h(e["ct"])
        assert receiver.open(_h(e["aad"]), _h(e["ct"])) == _h(e["pt"])
    for e in c["exports"]:
        assert receiver.export(_h(e["exporter_context"]), e["L"]) == _h(e["exported_value"])
    return len(c["encryptions"]), len(c["exports"])


def test_official_vectors_every_base_and_psk_case(vectors_dir: Path) -> None:
    cases = _cases(vectors_dir, "test-vectors.json")
    totals = [_run_case(c) for c in cases]
    combos = {(c["kem_id"], c["kdf_id"], c["aead_id"]) for c in cases if c["mode"] == 0}
    # 4 KEMs x 2 KDFs x 4 AEADs (incl. export-only) in each of the two modes.
    assert len(cases) == 64 and len(combos) == 32
    assert sum(n for n, _ in totals) == 24 * 257 * 2
    assert sum(n for _, n in totals) == 64 * 3


def test_official_mls_subset(vectors_dir: Path) -> None:
    cases = _cases(vectors_dir, "test-vectors-mls-cs1-cs3.json")
    assert len(cases) == 4
    for c in cases:
        _run_case(c)


def test_official_vector_tampered_ciphertext_fails(vectors_dir: Path) -> None:
    cases = _cases(vectors_dir, "test-vectors.json")
    c = next(c for c in cases if c["aead_id"] == 1 and c["mode"] == hpke.MODE_BASE)
    s = hpke_suite(c["kem_id"], c["kdf_id"], c["aead_id"])
    ctx = s.setup_base_r(_h(c["enc"]), _h(c["skRm"]), _h(c["info"]))
    first = c["encryptions"][0]
    ct = bytearray(_h(first["ct"]))
    ct[0] ^= 1
    with pytest.raises(HpkeDecryptError):
        ctx.open(_h(first["aad"]), bytes(ct))
    assert ctx.seq == 0, "a failed open must not advance the sequence number"
    assert ctx.open(_h(first["aad"]), _h(first["ct"])) == _h(first["pt"])


@pytest.mark.parametrize(("kem", "kdf", "aead"), SUITES)
def test_round_trip_every_combination(kem: int, kdf: int, aead: int, rng: Rng) -> None:
    s = hpke_suite(kem, kdf, aead)
    sk, pk = s.kem.generate_key_pair(rng)
    assert s.kem.public_key(sk) == pk and len(pk) == s.kem.npk and len(sk) == s.kem.nsk
    enc, ct = s.seal_base(pk, b"info", b"aad", b"hello", rng)
    assert len(ct) == 5 + s.aead.nt
    assert s.open_base(enc, sk, b"info", b"aad", ct) == b"hello"
    for bad in ((b"info2", b"aad"), (b"info", b"aad2")):
        with pytest.raises(HpkeDecryptError):
            s.open_base(enc, sk, bad[0], bad[1], ct)
    other_sk, _ = s.kem.generate_key_pair(rng)
    with pytest.raises(HpkeDecryptError):
        s.open_base(enc, other_sk, b"info", b"aad", ct)


@settings(max_examples=25, deadline=None)
@given(
    suite=st.sampled_from([(0x20, 1, 1), (0x10, 1, 3), (0x21, 3, 2), (0x11, 2, 2)]),
    seed=st.binary(min_size=1, max_size=16),
    pt=st.binary(max_size=200),
    aad=st.binary(max_size=40),
    flip=st.integers(min_value=0),
)
def test_property_round_trip_and_bit_flip(
    suite: tuple[int, int, int], seed: bytes, pt: bytes, aad: bytes, flip: int
) -> None:
    s = hpke_suite(*suite)
    rng = seeded_rng(seed)
    sk, pk = s.kem.generate_key_pair(rng)
    enc, sender = s.setup_base_s(pk, b"ctx", rng)
    receiver = s.setup_base_r(enc, sk, b"ctx")
    cts = [sender.seal(aad, pt) for _ in range(3)]
    assert len(set(cts)) == 3, "sequence numbers must change the nonce"
    assert [receiver.open(aad, ct) for ct in cts] == [pt] * 3
    assert sender.export(b"x", 42) == receiver.export(b"x", 42)
    bad = bytearray(cts[0])
    bad[flip % len(bad)] ^= 0x80
    fresh = s.setup_base_r(enc, sk, b"ctx")
    with pytest.raises(HpkeDecryptError):
        fresh.open(aad, bytes(bad))


def test_nist_derive_key_pair_applies_bitmask_and_range(rng: Rng) -> None:
    kem = KEMS[0x12]
    for _ in range(5):
        sk, _pk = kem.derive_key_pair(rng(66))
        assert len(sk) == 66 and sk[0] <= 0x01 and 0 < int.from_bytes(sk, "big") < hpke.P521_ORDER


def test_invalid_public_keys_are_refused(rng: Rng) -> None:
    x = hpke_suite(0x20, 1, 1)
    with pytest.raises(InvalidKeyError):
        x.kem.encap(bytes(32), rng)  # low-order point: all-zero shared secret
    with pytest.raises(InvalidKeyError):
        x.kem.encap(bytes(31), rng)
    p = hpke_suite(0x10, 1, 1)
    not_on_curve = b"\x04" + bytes(31) + b"\x01" + bytes(31) + b"\x01"
    with pytest.raises(InvalidKeyError):
        p.kem.encap(not_on_curve, rng)
    sk, pk = p.kem.generate_key_pair(rng)
    with pytest.raises(InvalidKeyError):
        p.kem.encap(b"\x02" + pk[1:33], rng)  # compressed points are not the HPKE format
    enc, ct = p.seal_base(pk, b"", b"", b"m", rng)
    with pytest.raises(HpkeDecryptError):
        p.open_base(not_on_curve, sk, b"", b"", ct)
    with pytest.raises(HpkeDecryptError):
        p.open_base(enc[:-1], sk, b"", b"", ct)


def test_invalid_private_scalar_is_refused() -> None:
    kem = KEMS[0x10]
    with pytest.raises(InvalidKeyError):
        kem.public_key(bytes(32))
    with pytest.raises(InvalidKeyError):
        kem.public_key(hpke.P256_ORDER.to_bytes(32, "big"))


def test_export_only_suite_exports_but_does_not_encrypt(rng: Rng) -> None:
    s = hpke_suite(0x20, 1, EXPORT_ONLY)
    sk, pk = s.kem.generate_key_pair(rng)
    enc, ctx = s.setup_base_s(pk, b"info", rng)
    assert s.setup_base_r(enc, sk, b"info").export(b"c", 16) == ctx.export(b"c", 16)
    with pytest.raises(LocalError):
        ctx.seal(b"", b"pt")


def test_unknown_ids_and_bad_modes_are_local_errors() -> None:
    with pytest.raises(UnsupportedAlgorithmError):
        hpke_suite(0x30, 1, 1)
    with pytest.raises(UnsupportedAlgorithmError):
        hpke_suite(0x20, 9, 1)
    with pytest.raises(UnsupportedAlgorithmError):
        hpke_suite(0x20, 1, 9)
    s = hpke_suite(0x20, 1, 1)
    with pytest.raises(LocalError):
        s.key_schedule(hpke.MODE_PSK, bytes(32), b"")  # psk mode needs psk and psk_id
    with pytest.raises(LocalError):
        s.key_schedule(2, bytes(32), b"")  # auth modes are not implemented


def test_context_repr_hides_keys(rng: Rng) -> None:
    s = hpke_suite(0x20, 1, 1)
    _, pk = s.kem.generate_key_pair(rng)
    _, ctx = s.setup_base_s(pk, b"", rng)
    text = repr(ctx)
    for secret in (ctx.key, ctx.base_nonce, ctx.exporter_secret):
        assert secret.hex() not in text and repr(secret) not in text


def test_aead_table_sizes() -> None:
    assert (AEADS[1].nk, AEADS[2].nk, AEADS[3].nk) == (16, 32, 32)
    assert all(AEADS[i].nn == 12 for i in (1, 2, 3))


def test_nist_private_key_shorter_than_nsk_is_the_same_scalar(rng: Rng) -> None:
    """RFC 9180 §7.1.2: a P-521 scalar whose top byte is zero may be stored in 65 bytes;
    DeserializePrivateKey reads it as the same integer (SerializePrivateKey stays Nsk)."""
    kem = KEMS[0x12]
    while True:
        sk, pk = kem.derive_key_pair(rng(66))
        if sk[0] == 0:
            break
    assert len(sk) == 66
    short = sk[1:]
    assert kem.public_key(short) == pk == kem.public_key(sk)
    suite = hpke_suite(0x12, 3, 2)
    enc, ct = suite.seal_base(pk, b"info", b"aad", b"msg", rng)
    assert suite.open_base(enc, short, b"info", b"aad", ct) == b"msg"
    assert kem.public_key(sk.lstrip(b"\0")) == pk  # any shorter encoding of the integer


def test_nist_private_key_longer_than_nsk_or_out_of_range_is_refused(rng: Rng) -> None:
    kem = KEMS[0x12]
    sk, _ = kem.derive_key_pair(rng(66))
    with pytest.raises(InvalidKeyError):
        kem.public_key(b"\0" + sk)  # 67 bytes, even with a zero on top
    for bad in (b"", b"\0", bytes(65), hpke.P521_ORDER.to_bytes(66, "big")):
        with pytest.raises(InvalidKeyError):
            kem.public_key(bad)
    with pytest.raises(InvalidKeyError):
        KEMS[0x10].public_key((hpke.P256_ORDER + 1).to_bytes(33, "big"))
