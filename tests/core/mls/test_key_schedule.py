"""Key schedule (RFC 9420 §8), PSK chaining (§8.4) and transcript hashes (§8.2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from veil.core.errors import LocalError
from veil.core.mls import key_schedule as ks
from veil.core.mls.codec import Writer, varint_bytes
from veil.core.mls.psk import (
    Psk,
    PskType,
    ResumptionUsage,
    external_psk_id,
    psk_label,
    psk_secret,
    resumption_psk_id,
)
from veil.core.mls.suite import suite
from veil.core.mls.transcript import (
    confirmed_transcript_hash,
    interim_transcript_hash,
    transcript_hashes,
)
from veil.core.mls.vectors import key_schedule as ks_runner
from veil.core.mls.vectors import psk_secret as psk_runner

S1 = suite(1)


def _load(vectors_dir: Path, name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((vectors_dir / "mls" / name).read_text())
    return data


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- key schedule -------------------------------------------------------------------------


def test_key_schedule_vectors(vectors_dir: Path) -> None:
    cases = _load(vectors_dir, "key-schedule.json")
    assert sorted(c["cipher_suite"] for c in cases) == list(range(1, 8))
    for case in cases:
        ks_runner.check(case)


@pytest.mark.parametrize("field", ["membership_key", "init_secret", "external_pub"])
def test_key_schedule_vector_tampered_fails(vectors_dir: Path, field: str) -> None:
    case = _load(vectors_dir, "key-schedule.json")[0]
    value = bytearray(_h(case["epochs"][2][field]))
    value[0] ^= 1
    case["epochs"][2][field] = value.hex()
    with pytest.raises(AssertionError, match="epoch 2"):
        ks_runner.check(case)


def test_from_joiner_matches_advance_and_welcome_key(vectors_dir: Path) -> None:
    case = _load(vectors_dir, "key-schedule.json")[0]
    ep = case["epochs"][0]
    ctx = _h(ep["group_context"])
    full = ks.advance(
        S1, _h(case["initial_init_secret"]), _h(ep["commit_secret"]), _h(ep["psk_secret"]), ctx
    )
    joined = ks.from_joiner(S1, _h(ep["joiner_secret"]), _h(ep["psk_secret"]), ctx)
    assert joined == full
    assert ks.welcome_secret(S1, full.joiner_secret, _h(ep["psk_secret"])) == full.welcome_secret
    key, nonce = full.welcome_key_nonce()
    assert (len(key), len(nonce)) == (16, 12)
    assert (key, nonce) == ks.welcome_key_nonce(S1, _h(ep["welcome_secret"]))
    assert full.confirmation_tag(b"x") == S1.mac(full.confirmation_key, b"x")


def test_zero_commit_and_psk_secret_default() -> None:
    ctx = b"group context"
    init = bytes(range(32))
    explicit = ks.advance(S1, init, bytes(32), bytes(32), ctx)
    assert ks.advance(S1, init, None, None, ctx) == explicit
    assert ks.advance(S1, init, None, b"\x01" * 32, ctx) != explicit
    assert ks.advance(S1, init, None, None, ctx + b"!") != explicit


def test_wrong_secret_lengths_are_local_errors() -> None:
    with pytest.raises(LocalError):
        ks.advance(S1, bytes(32), bytes(31), None, b"")
    with pytest.raises(LocalError):
        ks.advance(S1, bytes(32), None, bytes(64), b"")
    with pytest.raises(LocalError):
        ks.from_joiner(S1, bytes(16), None, b"")


def test_epoch_secrets_repr_hides_everything() -> None:
    secrets = ks.advance(S1, bytes(range(32)), None, None, b"ctx")
    text = repr(secrets)
    assert text == "EpochSecrets(suite=1)"
    assert secrets.epoch_secret.hex() not in text


def test_exporter_depends_on_label_context_length() -> None:
    secrets = ks.advance(S1, bytes(range(32)), None, None, b"ctx")
    base = secrets.exporter(b"label", b"context", 32)
    assert len(base) == 32
    assert secrets.exporter(b"label", b"context", 16) != base[:16]  # length is in KDFLabel
    assert secrets.exporter(b"label2", b"context", 32) != base
    assert secrets.exporter(b"label", b"context2", 32) != base


# --- PSKs ---------------------------------------------------------------------------------


def test_psk_secret_vectors(vectors_dir: Path) -> None:
    cases = _load(vectors_dir, "psk_secret.json")
    assert len(cases) == 77
    for case in cases:
        psk_runner.check(case)


def test_psk_vector_order_matters(vectors_dir: Path) -> None:
    case = next(c for c in _load(vectors_dir, "psk_secret.json") if len(c["psks"]) >= 2)
    case["psks"][0], case["psks"][1] = case["psks"][1], case["psks"][0]
    with pytest.raises(AssertionError, match="psk_secret"):
        psk_runner.check(case)


def test_psk_id_encodings() -> None:
    assert external_psk_id(b"id", b"nn") == b"\x01\x02id\x02nn"
    encoded = resumption_psk_id(ResumptionUsage.BRANCH, b"g", 5, b"n")
    assert encoded == b"\x02\x03\x01g" + (5).to_bytes(8, "big") + b"\x01n"
    assert psk_label(b"ID", 1, 3) == b"ID\x00\x01\x00\x03"
    assert int(PskType.EXTERNAL) == 1


def test_psk_accepts_a_struct_id() -> None:
    class FakeId:
        def encode(self, w: Writer) -> None:
            w.u8(1)
            w.opaque(b"id")
            w.opaque(b"nn")

    assert Psk.of(FakeId(), b"k") == Psk(external_psk_id(b"id", b"nn"), b"k")
    assert "k'" not in repr(Psk.of(b"x", b"k"))


def test_psk_secret_empty_is_zero_and_values_matter() -> None:
    assert psk_secret(S1, []) == bytes(32)
    assert psk_secret(suite(5), []) == bytes(64)
    one = psk_secret(S1, [Psk(external_psk_id(b"a", bytes(32)), b"k")])
    assert one != bytes(32)
    assert psk_secret(S1, [Psk(external_psk_id(b"a", bytes(32)), b"K")]) != one
    assert psk_secret(S1, [Psk(external_psk_id(b"b", bytes(32)), b"k")]) != one


# --- transcript hashes --------------------------------------------------------------------


def _split_tag(authenticated_content: bytes, nh: int) -> tuple[bytes, bytes]:
    """AuthenticatedContent of a Commit ends with confirmation_tag<V> (Nh bytes)."""
    header = varint_bytes(nh)
    cut = len(authenticated_content) - len(header) - nh
    assert authenticated_content[cut : cut + len(header)] == header
    return authenticated_content[:cut], authenticated_content[cut + len(header) :]


def test_transcript_hash_vectors(vectors_dir: Path) -> None:
    cases = _load(vectors_dir, "transcript-hashes.json")
    assert len(cases) == 7
    for c in cases:
        s = suite(c["cipher_suite"])
        confirmed_input, tag = _split_tag(_h(c["authenticated_content"]), s.nh)
        before = _h(c["interim_transcript_hash_before"])
        confirmed, interim = transcript_hashes(s, before, confirmed_input, tag)
        assert confirmed == _h(c["confirmed_transcript_hash_after"])
        assert interim == _h(c["interim_transcript_hash_after"])
        assert s.mac(_h(c["confirmation_key"]), confirmed) == tag
        assert confirmed_transcript_hash(s, before, confirmed_input) == confirmed
        assert interim_transcript_hash(s, confirmed, tag) == interim
        assert transcript_hashes(s, before + b"\x00", confirmed_input, tag)[0] != confirmed
        assert interim_transcript_hash(s, confirmed, tag[:-1] + b"\x00") != interim
