"""Call signalling inside the E2EE payload (ARCHITECTURE.md §5): ``Content`` field 13.

A 1:1 call is set up by end-to-end encrypted messages between the devices, so the DTLS
fingerprints in the session descriptions are authenticated end to end and the server, which
only relays ciphertext, cannot stand in the middle::

    CallSignal {1: call id (16 bytes), 2: kind, 3: sdp (UTF-8), 4: repeated ICE candidate
                (UTF-8, one "candidate:..." line each), 5: audio (0/1), 6: video (0/1),
                7: reason (ASCII), 8: device id (1..127)}

Kinds and what they carry:

* ``offer`` (1): the caller's SDP, ``audio``/``video`` -- sent to every device of the callee;
* ``answer`` (2): the answering device's SDP -- to the caller's device;
* ``ice`` (3): more candidates (1..32) for the SDP already sent;
* ``ringing`` (4): a callee device is ringing;
* ``reject`` (5), ``busy`` (6): a callee device declines; a ``reject`` is also the one call
  signal a device sends its own account's other devices (inside a sync copy naming the caller),
  so that they stop ringing at once;
* ``hangup`` (7): either side ends the call; ``reason`` says why (at most 32 characters of
  ``a-z0-9_``, e.g. ``hangup``, ``timeout``, ``failed``);
* ``answered`` (8): the caller tells every callee device which ``device`` took the call, so the
  others stop ringing.

:func:`call_problem` states every rule; :mod:`veil.core.content` applies it on encode
(``LocalError``) and decode (``DecodeError``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from veil.core import protobuf as pb
from veil.core.errors import DecodeError

CALL_ID_LEN: Final = 16
MAX_SDP_BYTES: Final = 32 * 1024
MAX_CANDIDATES: Final = 32
MAX_CANDIDATE_BYTES: Final = 512
KINDS: Final = {
    "offer": 1,
    "answer": 2,
    "ice": 3,
    "ringing": 4,
    "reject": 5,
    "busy": 6,
    "hangup": 7,
    "answered": 8,
}
KIND_NAMES: Final = {number: name for name, number in KINDS.items()}
_REASON: Final = re.compile(r"[a-z0-9_]{1,32}")
_FIELDS: Final = {
    1: (pb.LEN, False),
    2: (pb.VARINT, False),
    3: (pb.LEN, False),
    4: (pb.LEN, True),
    5: (pb.VARINT, False),
    6: (pb.VARINT, False),
    7: (pb.LEN, False),
    8: (pb.VARINT, False),
}


@dataclass(frozen=True, slots=True)
class CallSignal:
    """One signalling message of the call ``call_id`` (see the module docstring)."""

    call_id: bytes
    kind: str
    sdp: str = ""
    candidates: tuple[str, ...] = ()
    audio: bool = False
    video: bool = False
    reason: str = ""
    device_id: int = 0

    def __repr__(self) -> str:
        # An SDP names addresses and the DTLS fingerprint: not for logs.
        return (
            f"CallSignal({self.call_id.hex()[:12]}…, {self.kind}, sdp=<{len(self.sdp)} chars>,"
            f" candidates={len(self.candidates)}, audio={self.audio}, video={self.video},"
            f" reason={self.reason!r}, device_id={self.device_id})"
        )


def call_problem(s: CallSignal) -> str | None:
    """Why ``s`` is not a valid call signal, or None."""
    return next(_problems(s), None)


def _problems(s: CallSignal) -> Iterator[str]:
    """The rules ``s`` breaks, in order (the caller stops at the first)."""
    if len(s.call_id) != CALL_ID_LEN:
        yield "a call id is 16 bytes"
    if s.kind not in KINDS:
        yield "unknown call signal kind"
    if bool(s.sdp) != (s.kind in ("offer", "answer")):
        yield "an offer or answer carries an SDP, and nothing else does"
    if len(s.sdp.encode()) > MAX_SDP_BYTES:
        yield "SDP longer than 32 KiB"
    if (s.kind == "ice") != bool(s.candidates) or len(s.candidates) > MAX_CANDIDATES:
        yield "an ice signal carries 1 to 32 candidates, and nothing else carries any"
    if any(len(c.encode()) > MAX_CANDIDATE_BYTES or "\n" in c for c in s.candidates):
        yield "an ICE candidate is one line of at most 512 bytes"
    if s.kind == "offer" and not (s.audio or s.video):
        yield "an offer asks for audio, video or both"
    if s.reason and _REASON.fullmatch(s.reason) is None:
        yield "a reason is 1 to 32 characters of a-z, 0-9 and _"
    if (s.kind == "answered") != (1 <= s.device_id <= 127):
        yield "answered names the device (1..127) that took the call, and only it does"


def encode_call(s: CallSignal) -> bytes:
    """The fields of a valid ``s`` (the caller checks :func:`call_problem` first)."""
    parts = [pb.field_bytes(1, s.call_id), pb.field_varint(2, KINDS[s.kind])]
    if s.sdp:
        parts.append(pb.field_bytes(3, s.sdp.encode()))
    parts += [pb.field_bytes(4, c.encode()) for c in s.candidates]
    if s.audio:
        parts.append(pb.field_varint(5, 1))
    if s.video:
        parts.append(pb.field_varint(6, 1))
    if s.reason:
        parts.append(pb.field_bytes(7, s.reason.encode()))
    if s.device_id:
        parts.append(pb.field_varint(8, s.device_id))
    return b"".join(parts)


def decode_call(data: bytes) -> CallSignal:
    """Parse (not validate: :func:`call_problem` does) a call signal; only DecodeError."""
    f = pb.parse(data, _FIELDS)
    kind = f.get(2)
    if not isinstance(kind, int) or kind not in KIND_NAMES:
        raise DecodeError("unknown call signal kind")
    flags = [f.get(n, 0) for n in (5, 6)]
    if any(flag not in (0, 1) for flag in flags):
        raise DecodeError("a media flag is 0 or 1")
    device = f.get(8, 0)
    if not isinstance(device, int):
        raise DecodeError("bad device id")
    try:
        return CallSignal(
            call_id=pb.get_bytes(f, 1, "call id"),
            kind=KIND_NAMES[kind],
            sdp=pb.opt_bytes(f, 3).decode(),
            candidates=tuple(c.decode() for c in pb.repeated_bytes(f, 4)),
            audio=flags[0] == 1,
            video=flags[1] == 1,
            reason=pb.opt_bytes(f, 7).decode("ascii"),
            device_id=device,
        )
    except UnicodeDecodeError:
        raise DecodeError("a call signal string is not valid text") from None
