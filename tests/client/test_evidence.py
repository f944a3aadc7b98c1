"""The report evidence a device keeps with a received message (veil.engine.evidence)."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from veil.core.errors import DecodeError
from veil.engine.evidence import Evidence


@given(
    st.binary(min_size=1, max_size=300),
    st.binary(min_size=32, max_size=32),
    st.one_of(st.just(b""), st.binary(min_size=32, max_size=32)),
    st.integers(0, 2**31 - 1),
    st.integers(1, 127),
)
def test_round_trip(content: bytes, key: bytes, tag: bytes, key_id: int, device: int) -> None:
    kept = Evidence(content, key, tag, key_id, device)
    assert Evidence.decode(kept.encode()) == kept


@given(st.binary(max_size=200))
def test_damaged_evidence_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        Evidence.decode(data)


def test_repr_hides_the_key_and_content() -> None:
    shown = repr(Evidence(b"the private text", b"K" * 32, b"T" * 32, 3, 1))
    assert "private" not in shown and "KKKK" not in shown and "key_id=3" in shown
