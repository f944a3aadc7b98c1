"""Property tests of safety numbers (``veil.core.signal.fingerprint``, WIRE.md §3.8).

The known-answer checks against libsignal's values are in ``test_vectors_signal.py``; these
check the properties that must hold for any keys and ids.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from veil.core import protobuf as pb
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import DecodeError, LocalError, RemoteError
from veil.core.signal.fingerprint import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    FingerprintVersionMismatchError,
    ScannableFingerprint,
    compare,
    fingerprint,
    parse_scannable,
)

keys = st.binary(min_size=32, max_size=32).map(lambda s: PrivateKey(s).public_key)
ids = st.binary(max_size=40)
small_iterations = st.integers(MIN_ITERATIONS, 20)
versions = st.integers(0, 2**32 - 1)
halves = st.binary(min_size=32, max_size=32)


def _pair(
    version: int, iterations: int, a_id: bytes, a_key: PublicKey, b_id: bytes, b_key: PublicKey
) -> tuple[bytes, bytes, str, str]:
    a = fingerprint(version, iterations, a_id, a_key, b_id, b_key)
    b = fingerprint(version, iterations, b_id, b_key, a_id, a_key)
    return a.scannable, b.scannable, a.displayable, b.displayable


@given(versions, small_iterations, ids, keys, ids, keys)
def test_displayable_is_symmetric_60_digits(
    version: int, iterations: int, a_id: bytes, a_key: PublicKey, b_id: bytes, b_key: PublicKey
) -> None:
    _, _, a_display, b_display = _pair(version, iterations, a_id, a_key, b_id, b_key)
    assert a_display == b_display
    assert len(a_display) == 60
    assert a_display.isascii()
    assert a_display.isdigit()
    assert a_display[:30] <= a_display[30:]


@given(versions, small_iterations, ids, keys, ids, keys)
def test_scannable_sides_match(
    version: int, iterations: int, a_id: bytes, a_key: PublicKey, b_id: bytes, b_key: PublicKey
) -> None:
    a, b, _, _ = _pair(version, iterations, a_id, a_key, b_id, b_key)
    assert compare(a, b)
    assert compare(b, a)
    parsed_a, parsed_b = parse_scannable(a), parse_scannable(b)
    assert parsed_a.version == parsed_b.version == version
    assert (parsed_a.local, parsed_a.remote) == (parsed_b.remote, parsed_b.local)
    assert parsed_a.serialize() == a


@given(small_iterations, ids, keys, ids, keys)
def test_own_payload_does_not_match_itself(
    iterations: int, a_id: bytes, a_key: PublicKey, b_id: bytes, b_key: PublicKey
) -> None:
    assume((a_id, a_key) != (b_id, b_key))
    a, _, _, _ = _pair(2, iterations, a_id, a_key, b_id, b_key)
    assert not compare(a, a)


@given(small_iterations, ids, keys, ids, keys, keys)
def test_changed_key_fails(
    iterations: int, a_id: bytes, a_key: PublicKey, b_id: bytes, b_key: PublicKey, m_key: PublicKey
) -> None:
    """A man in the middle: Alice sees M's key where Bob's should be."""
    assume(m_key != b_key)
    a = fingerprint(2, iterations, a_id, a_key, b_id, m_key)
    b = fingerprint(2, iterations, b_id, b_key, a_id, a_key)
    assert a.displayable != b.displayable
    assert not a.compare(b.scannable)
    assert not b.compare(a.scannable)


@given(small_iterations, ids, keys, ids, keys, ids)
def test_changed_id_fails(
    iterations: int, a_id: bytes, a_key: PublicKey, b_id: bytes, b_key: PublicKey, other: bytes
) -> None:
    assume(other != a_id)
    a = fingerprint(2, iterations, other, a_key, b_id, b_key)
    b = fingerprint(2, iterations, b_id, b_key, a_id, a_key)
    assert a.displayable != b.displayable
    assert not a.compare(b.scannable)
    assert not b.compare(a.scannable)


@given(versions, versions, ids, keys, ids, keys)
def test_version_mismatch_is_typed(
    v1: int, v2: int, a_id: bytes, a_key: PublicKey, b_id: bytes, b_key: PublicKey
) -> None:
    assume(v1 != v2)
    a = fingerprint(v1, 2, a_id, a_key, b_id, b_key)
    b = fingerprint(v2, 2, b_id, b_key, a_id, a_key)
    assert a.displayable == b.displayable  # the displayable form has no version
    with pytest.raises(FingerprintVersionMismatchError) as info:
        a.compare(b.scannable)
    assert (info.value.theirs, info.value.ours) == (v2, v1)
    assert isinstance(info.value, RemoteError)


@given(halves, halves)
def test_missing_version_counts_as_zero(local: bytes, remote: bytes) -> None:
    ours = ScannableFingerprint(2, local, remote).serialize()
    scanned = pb.field_bytes(2, pb.field_bytes(1, remote)) + pb.field_bytes(
        3, pb.field_bytes(1, local)
    )
    with pytest.raises(FingerprintVersionMismatchError) as info:
        compare(ours, scanned)
    assert info.value.theirs == 0
    with pytest.raises(DecodeError):
        parse_scannable(scanned)


@pytest.mark.parametrize("iterations", [-1, 0, 1, MAX_ITERATIONS + 1, 2**32])
def test_iterations_out_of_bounds_refused(iterations: int) -> None:
    key = PrivateKey(bytes(range(32))).public_key
    with pytest.raises(LocalError):
        fingerprint(2, iterations, b"a", key, b"b", key)


@pytest.mark.parametrize("iterations", [MIN_ITERATIONS, DEFAULT_ITERATIONS, MAX_ITERATIONS])
def test_iterations_bounds_accepted(iterations: int) -> None:
    key = PrivateKey(bytes(range(32))).public_key
    assert len(fingerprint(2, iterations, b"a", key, b"b", key).displayable) == 60


@pytest.mark.parametrize("version", [-1, 2**32])
def test_version_outside_uint32_refused(version: int) -> None:
    key = PrivateKey(bytes(range(32))).public_key
    with pytest.raises(LocalError):
        fingerprint(version, 2, b"a", key, b"b", key)


@given(versions, halves, halves)
def test_scannable_round_trip(version: int, local: bytes, remote: bytes) -> None:
    s = ScannableFingerprint(version, local, remote)
    assert parse_scannable(s.serialize()) == s


@given(st.binary(max_size=32).filter(lambda b: len(b) != 32), halves)
def test_wrong_length_half_is_decode_error(short: bytes, good: bytes) -> None:
    for payload in (
        ScannableFingerprint(2, short, good).serialize(),
        ScannableFingerprint(2, good, short).serialize(),
    ):
        with pytest.raises(DecodeError):
            parse_scannable(payload)
        with pytest.raises(DecodeError):
            compare(ScannableFingerprint(2, good, good).serialize(), payload)


def test_version_wider_than_uint32_is_decode_error() -> None:
    payload = ScannableFingerprint(2**32, b"\x00" * 32, b"\x01" * 32).serialize()
    with pytest.raises(DecodeError):
        parse_scannable(payload)


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_parse_random_bytes_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse_scannable(data)


_field = st.one_of(
    st.tuples(st.integers(1, 4), st.integers(0, 2**70)).map(
        lambda f: pb.varint(f[0] << 3) + pb.varint(f[1] & (2**64 - 1))
    ),
    st.tuples(st.integers(1, 4), st.binary(max_size=40)).map(lambda f: pb.field_bytes(*f)),
    st.tuples(st.integers(2, 3), st.binary(max_size=36)).map(
        lambda f: pb.field_bytes(f[0], pb.field_bytes(1, f[1]))
    ),
    st.binary(max_size=4),
)


@settings(max_examples=500)
@given(st.lists(_field, max_size=6).map(b"".join))
def test_parse_and_compare_structured_junk(data: bytes) -> None:
    """Near-valid payloads reach the nested parser; still only DecodeError (or a mismatch)."""
    with contextlib.suppress(DecodeError):
        parse_scannable(data)
    ours = ScannableFingerprint(2, b"\x00" * 32, b"\x01" * 32).serialize()
    with contextlib.suppress(DecodeError, FingerprintVersionMismatchError):
        compare(ours, data)
