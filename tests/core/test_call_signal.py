"""Call signalling inside the E2EE payload (veil.core.call_signal, Content field 13)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veil.core.call_signal import KINDS, CallSignal, call_problem, decode_call
from veil.core.content import Content, _encode, decode_content, encode_content
from veil.core.errors import DecodeError, LocalError

from .strategies import CALLS

CALL_ID = b"\x07" * 16
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\na=fingerprint:sha-256 AB:CD\r\n"


@given(CALLS)
def test_valid_signals_round_trip_in_a_content(signal: CallSignal) -> None:
    content = Content(b"\x01" * 16, 9, call=signal)
    assert decode_content(encode_content(content)).call == signal


@pytest.mark.parametrize(
    ("signal", "problem"),
    [
        (CallSignal(b"\x07" * 15, "hangup"), "16 bytes"),
        (CallSignal(CALL_ID, "dance"), "unknown"),
        (CallSignal(CALL_ID, "offer", audio=True), "carries an SDP"),
        (CallSignal(CALL_ID, "hangup", sdp=SDP), "carries an SDP"),
        (CallSignal(CALL_ID, "offer", sdp=SDP), "audio, video or both"),
        (CallSignal(CALL_ID, "ice"), "1 to 32 candidates"),
        (CallSignal(CALL_ID, "ringing", candidates=("candidate:1",)), "1 to 32 candidates"),
        (CallSignal(CALL_ID, "ice", candidates=("a\nb",)), "one line"),
        (CallSignal(CALL_ID, "ice", candidates=("c",) * 33), "1 to 32 candidates"),
        (CallSignal(CALL_ID, "answer", sdp="x" * 40_000), "32 KiB"),
        (CallSignal(CALL_ID, "hangup", reason="Bad Reason"), "a reason"),
        (CallSignal(CALL_ID, "answered"), "answered names the device"),
        (CallSignal(CALL_ID, "hangup", device_id=2), "answered names the device"),
    ],
)
def test_invalid_signals_are_refused_both_ways(signal: CallSignal, problem: str) -> None:
    assert problem in (call_problem(signal) or "")
    content = Content(b"\x01" * 16, 9, call=signal)
    with pytest.raises(LocalError, match="invalid content"):
        encode_content(content)
    if signal.kind in KINDS:  # what a hostile peer could send, unchecked
        with pytest.raises(DecodeError):
            decode_content(_encode(content))


def test_the_sdp_stays_out_of_repr() -> None:
    shown = repr(CallSignal(CALL_ID, "offer", sdp=SDP, audio=True))
    assert "fingerprint" not in shown and "127.0.0.1" not in shown


@given(st.binary(max_size=300))
def test_decode_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_call(data)


@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"reject"}))
def test_a_sync_copy_carries_only_a_reject(kind: str) -> None:
    """Our device that declines tells our other devices with a ``reject`` in a sync copy, so
    they stop ringing; no other call signal travels between our own devices."""
    own = Content(b"\x01" * 16, 9, call=CallSignal(CALL_ID, "reject"))
    inner = encode_content(own, for_sync=True)
    assert decode_content(inner, for_sync=True) == own
    other = Content(b"\x01" * 16, 9, call=_valid(kind))
    encode_content(other)  # fine to the peer
    with pytest.raises(LocalError, match="only call signal inside a sync copy"):
        encode_content(other, for_sync=True)
    with pytest.raises(DecodeError, match="only call signal inside a sync copy"):
        decode_content(_encode(other), for_sync=True)


def _valid(kind: str) -> CallSignal:
    return CallSignal(
        CALL_ID,
        kind,
        sdp=SDP if kind in ("offer", "answer") else "",
        candidates=("candidate:1",) if kind == "ice" else (),
        audio=kind == "offer",
        device_id=2 if kind == "answered" else 0,
    )
