"""Safety numbers: libsignal's displayable and scannable fingerprints (WIRE.md §3.8).

Byte-compatible with libsignal's ``rust/protocol/src/fingerprint.rs`` (the format Signal apps
show and put in the verification QR code):

* per party, ``H = SHA-512(0x0000 ‖ IK ‖ stable_id ‖ IK)`` then ``iterations - 1`` more times
  ``H = SHA-512(H ‖ IK)``, where ``IK`` is the 33-byte serialized identity key
  (``0x05 ‖ u``). Version 2 (today's Signal apps, 5200 iterations) uses the 16 raw ACI (UUID)
  bytes as ``stable_id``; version 1 used the E.164 phone number string. Both are plain bytes
  here; libsignal accepts 2..1,000,000 iterations.
* displayable: the first 30 bytes of each ``H`` read as six 5-byte big-endian integers, each
  mod 100000 and written as 5 digits; the two 30-digit strings joined smaller first (so both
  parties see the same 60 digits).
* scannable: the protobuf ``CombinedFingerprints {1: version, 2: LogicalFingerprint{1: own
  H[:32]}, 3: LogicalFingerprint{1: peer's H[:32]}}``. Comparing a scanned payload with ours
  needs equal versions (else :class:`FingerprintVersionMismatchError`) and the payload's
  local/remote halves equal to our remote/local halves, compared in constant time.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from veil.core import protobuf as pb
from veil.core.crypto.kdf import constant_time_equal
from veil.core.crypto.x25519 import PublicKey
from veil.core.errors import DecodeError, LocalError, RemoteError

DEFAULT_ITERATIONS: Final = 5200
MIN_ITERATIONS: Final = 2
MAX_ITERATIONS: Final = 1_000_000
CURRENT_VERSION: Final = 2
"""Version 2: stable ids are the 16 raw ACI bytes (version 1 used the E.164 string)."""
SCANNABLE_LEN: Final = 32
"""Bytes of each party's hash carried in the scannable payload."""

_MAX_VERSION: Final = 0xFFFFFFFF  # a protobuf uint32, as in libsignal
_DISPLAY_CHUNKS: Final = 6
_CHUNK_LEN: Final = 5

_COMBINED: Final[pb.Schema] = {1: (pb.VARINT, False), 2: (pb.LEN, False), 3: (pb.LEN, False)}
_LOGICAL: Final[pb.Schema] = {1: (pb.LEN, False)}


class FingerprintVersionMismatchError(RemoteError):
    """A scanned safety-number payload has a different fingerprint version from ours."""

    def __init__(self, theirs: int, ours: int) -> None:
        super().__init__(f"fingerprint version mismatch: scanned {theirs}, ours {ours}")
        self.theirs = theirs
        self.ours = ours


@dataclass(frozen=True, slots=True)
class ScannableFingerprint:
    """The QR-code payload: a version and the first 32 bytes of each party's hash."""

    version: int
    local: bytes
    remote: bytes

    def serialize(self) -> bytes:
        """The ``CombinedFingerprints`` protobuf, fields in number order (as prost writes)."""
        return (
            pb.field_varint(1, self.version)
            + pb.field_bytes(2, pb.field_bytes(1, self.local))
            + pb.field_bytes(3, pb.field_bytes(1, self.remote))
        )


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A safety number: 60 digits to read aloud and the protobuf payload for the QR code."""

    displayable: str
    scannable: bytes

    def compare(self, scanned: bytes) -> bool:
        """True if ``scanned`` (the peer's QR payload) matches ours; see :func:`compare`."""
        return compare(self.scannable, scanned)


def fingerprint(
    version: int,
    iterations: int,
    local_id: bytes,
    local_key: PublicKey,
    remote_id: bytes,
    remote_key: PublicKey,
) -> Fingerprint:
    """The safety number between us (``local_*``) and a peer (``remote_*``).

    :class:`LocalError` if ``iterations`` is outside 2..1,000,000 or ``version`` is not a
    uint32.
    """
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise LocalError(
            f"fingerprint iterations must be {MIN_ITERATIONS}..{MAX_ITERATIONS}, got {iterations}"
        )
    if not 0 <= version <= _MAX_VERSION:
        raise LocalError(f"fingerprint version must be a uint32, got {version}")
    local = _party_hash(iterations, local_id, local_key)
    remote = _party_hash(iterations, remote_id, remote_key)
    displayable = "".join(sorted((_digits(local), _digits(remote))))
    scannable = ScannableFingerprint(version, local[:SCANNABLE_LEN], remote[:SCANNABLE_LEN])
    return Fingerprint(displayable, scannable.serialize())


def parse_scannable(data: bytes) -> ScannableFingerprint:
    """Parse a ``CombinedFingerprints`` payload; only :class:`DecodeError` on bad input.

    Stricter than libsignal in one way: each half must be exactly 32 bytes (libsignal accepts
    any length and then simply fails to match).
    """
    fields = pb.parse(data, _COMBINED)
    version = pb.get_uint32(fields, 1, "fingerprint version")
    return ScannableFingerprint(version, *_halves(fields))


def compare(ours: bytes, scanned: bytes) -> bool:
    """libsignal's ``ScannableFingerprint::compare``: does ``scanned`` match ``ours``?

    The peer's local half must equal our remote half and vice versa (constant time; both
    comparisons always run). A missing version counts as 0, as in libsignal, and any
    version other than ours raises :class:`FingerprintVersionMismatchError` before the
    halves are looked at. Malformed payloads raise :class:`DecodeError`.
    """
    mine = parse_scannable(ours)
    fields = pb.parse(scanned, _COMBINED)
    theirs = pb.opt_uint32(fields, 1, "fingerprint version") or 0
    if theirs != mine.version:
        raise FingerprintVersionMismatchError(theirs, mine.version)
    their_local, their_remote = _halves(fields)
    same_1 = constant_time_equal(their_local, mine.remote)
    same_2 = constant_time_equal(their_remote, mine.local)
    return same_1 & same_2


def _party_hash(iterations: int, stable_id: bytes, key: PublicKey) -> bytes:
    key_bytes = key.serialize()
    h = hashlib.sha512(b"\x00\x00" + key_bytes + stable_id + key_bytes).digest()
    for _ in range(iterations - 1):
        h = hashlib.sha512(h + key_bytes).digest()
    return h


def _digits(h: bytes) -> str:
    return "".join(
        f"{int.from_bytes(h[i : i + _CHUNK_LEN], 'big') % 100_000:05d}"
        for i in range(0, _DISPLAY_CHUNKS * _CHUNK_LEN, _CHUNK_LEN)
    )


def _halves(fields: dict[int, pb.FieldValue]) -> tuple[bytes, bytes]:
    local = _logical(pb.get_bytes(fields, 2, "local fingerprint"), "local")
    remote = _logical(pb.get_bytes(fields, 3, "remote fingerprint"), "remote")
    return local, remote


def _logical(data: bytes, which: str) -> bytes:
    content = pb.get_bytes(pb.parse(data, _LOGICAL), 1, f"{which} fingerprint content")
    if len(content) != SCANNABLE_LEN:
        raise DecodeError(f"{which} fingerprint must be {SCANNABLE_LEN} bytes")
    return content
