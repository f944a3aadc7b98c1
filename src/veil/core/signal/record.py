"""Serialized session records: versioned, strict, and lossless (ARCHITECTURE.md §6.8).

Layout (protobuf wire format, :mod:`veil.core.protobuf`)::

    Record   {1: format version (=1), 2: current State, 3: repeated archived State}
    State    {1: session version, 2: local IK, 3: remote IK, 4: root key,
              5: sending ratchet private, 7: sending chain key,
              8: sending index, 9: previous counter, 10: repeated Chain, 11: Pending,
              12: local registration id, 13: remote registration id, 14: Alice's base key}
    Chain    {1: ratchet key, 2: chain key, 3: index, 4: skipped = (u32 BE index ‖ 32-byte seed)*}
    Pending  {1: one-time prekey id, 2: signed prekey id, 3: Kyber prekey id,
              4: Kyber ciphertext, 5: base key, 6: timestamp (ms)}

Field 6 (the sending ratchet public key) is not stored: it is derived from field 5 when first
needed, so a record cannot hold a mismatched pair. The record holds secrets: callers store it
encrypted at rest where the platform allows.
:func:`deserialize_record` raises only :class:`DecodeError`.
"""

from __future__ import annotations

from typing import Final

from veil.core import protobuf as pb
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import DecodeError, VeilError
from veil.core.signal.state import (
    MAX_ARCHIVED_STATES,
    MAX_RECEIVER_CHAINS,
    MAX_SKIPPED_PER_CHAIN,
    PendingPreKey,
    ReceiverChain,
    SessionRecord,
    SessionState,
)

RECORD_FORMAT: Final = 1
_SKIPPED_ENTRY: Final = 36

_RECORD: Final = {1: (pb.VARINT, False), 2: (pb.LEN, False), 3: (pb.LEN, True)}
_STATE: Final = {
    **{n: (pb.VARINT, False) for n in (1, 8, 9, 12, 13)},
    **{n: (pb.LEN, False) for n in (2, 3, 4, 5, 7, 11, 14)},
    10: (pb.LEN, True),
}
_CHAIN: Final = {1: (pb.LEN, False), 2: (pb.LEN, False), 3: (pb.VARINT, False), 4: (pb.LEN, False)}
_PENDING: Final = {
    **{n: (pb.VARINT, False) for n in (1, 2, 3, 6)},
    4: (pb.LEN, False),
    5: (pb.LEN, False),
}


def serialize_record(record: SessionRecord) -> bytes:
    """Encode ``record`` (current state and archived states)."""
    parts = [pb.field_varint(1, RECORD_FORMAT)]
    if record.current is not None:
        parts.append(pb.field_bytes(2, _encode_state(record.current)))
    parts += [pb.field_bytes(3, _encode_state(s)) for s in record.previous]
    return b"".join(parts)


def deserialize_record(data: bytes) -> SessionRecord:
    """Decode a record made by :func:`serialize_record`; :class:`DecodeError` otherwise."""
    try:
        fields = pb.parse(data, _RECORD)
        if pb.get_uint32(fields, 1, "record format") != RECORD_FORMAT:
            raise DecodeError("unknown session record format")
        current = _decode_state(pb.get_bytes(fields, 2, "state")) if 2 in fields else None
        archived = pb.repeated_bytes(fields, 3)
        if len(archived) > MAX_ARCHIVED_STATES:
            raise DecodeError("too many archived session states")
        previous = [_decode_state(s) for s in archived]
    except DecodeError:
        raise
    except (VeilError, ValueError, TypeError, KeyError) as exc:
        raise DecodeError(f"invalid session record: {type(exc).__name__}") from None
    return SessionRecord(current, previous)


def _encode_state(s: SessionState) -> bytes:
    parts = [
        pb.field_varint(1, s.version),
        pb.field_bytes(2, s.local_identity.serialize()),
        pb.field_bytes(3, s.remote_identity.serialize()),
        pb.field_bytes(4, s.root_key),
        pb.field_bytes(5, s.sender_ratchet.secret_bytes()),
        pb.field_bytes(7, s.sender_chain_key),
        pb.field_varint(8, s.sender_index),
        pb.field_varint(9, s.previous_counter),
    ]
    parts += [pb.field_bytes(10, _encode_chain(c)) for c in s.receiver_chains]
    if s.pending_prekey is not None:
        parts.append(pb.field_bytes(11, _encode_pending(s.pending_prekey)))
    parts += [
        pb.field_varint(12, s.local_registration_id),
        pb.field_varint(13, s.remote_registration_id),
        pb.field_bytes(14, s.alice_base_key.serialize()),
    ]
    return b"".join(parts)


def _key32(fields: dict[int, pb.FieldValue], number: int, what: str) -> bytes:
    value = pb.get_bytes(fields, number, what)
    if len(value) != 32:
        raise DecodeError(f"{what} must be 32 bytes")
    return value


def _decode_state(data: bytes) -> SessionState:
    f = pb.parse(data, _STATE)
    chains_raw = pb.repeated_bytes(f, 10)
    if len(chains_raw) > MAX_RECEIVER_CHAINS:
        raise DecodeError("too many receiving chains")
    pending = pb.get_bytes(f, 11, "pending prekey") if 11 in f else None
    return SessionState(
        version=pb.get_uint32(f, 1, "session version"),
        local_identity=PublicKey.deserialize(pb.get_bytes(f, 2, "local identity")),
        remote_identity=PublicKey.deserialize(pb.get_bytes(f, 3, "remote identity")),
        root_key=_key32(f, 4, "root key"),
        sender_ratchet=PrivateKey(_key32(f, 5, "sending ratchet key")),
        sender_chain_key=_key32(f, 7, "sending chain key"),
        sender_index=pb.get_uint32(f, 8, "sending index"),
        previous_counter=pb.get_uint32(f, 9, "previous counter"),
        receiver_chains=[_decode_chain(c) for c in chains_raw],
        pending_prekey=_decode_pending(pending) if pending is not None else None,
        local_registration_id=pb.get_uint32(f, 12, "local registration id"),
        remote_registration_id=pb.get_uint32(f, 13, "remote registration id"),
        alice_base_key=PublicKey.deserialize(pb.get_bytes(f, 14, "base key")),
    )


def _encode_chain(c: ReceiverChain) -> bytes:
    skipped = b"".join(i.to_bytes(4, "big") + seed for i, seed in c.skipped.items())
    return b"".join(
        (
            pb.field_bytes(1, c.ratchet_key.serialize()),
            pb.field_bytes(2, c.chain_key),
            pb.field_varint(3, c.index),
            pb.field_bytes(4, skipped),
        )
    )


def _decode_chain(data: bytes) -> ReceiverChain:
    f = pb.parse(data, _CHAIN)
    raw = pb.opt_bytes(f, 4)
    if len(raw) % _SKIPPED_ENTRY or len(raw) // _SKIPPED_ENTRY > MAX_SKIPPED_PER_CHAIN:
        raise DecodeError("malformed skipped-key list")
    index = pb.get_uint32(f, 3, "chain index")
    skipped: dict[int, bytes] = {}
    for pos in range(0, len(raw), _SKIPPED_ENTRY):
        counter = int.from_bytes(raw[pos : pos + 4], "big")
        if counter >= index or counter in skipped:
            raise DecodeError("skipped key at or beyond the chain index")
        skipped[counter] = raw[pos + 4 : pos + _SKIPPED_ENTRY]
    return ReceiverChain(
        PublicKey.deserialize(pb.get_bytes(f, 1, "chain ratchet key")),
        _key32(f, 2, "chain key"),
        index,
        skipped,
    )


def _encode_pending(p: PendingPreKey) -> bytes:
    parts = [] if p.pre_key_id is None else [pb.field_varint(1, p.pre_key_id)]
    parts += [
        pb.field_varint(2, p.signed_pre_key_id),
        pb.field_varint(3, p.kyber_pre_key_id),
        pb.field_bytes(4, p.kyber_ciphertext),
        pb.field_bytes(5, p.base_key.serialize()),
        pb.field_varint(6, p.timestamp_ms),
    ]
    return b"".join(parts)


def _decode_pending(data: bytes) -> PendingPreKey:
    f = pb.parse(data, _PENDING)
    timestamp = f.get(6)
    if not isinstance(timestamp, int):
        raise DecodeError("missing pending prekey timestamp")
    return PendingPreKey(
        pre_key_id=pb.opt_uint32(f, 1, "prekey id"),
        signed_pre_key_id=pb.get_uint32(f, 2, "signed prekey id"),
        kyber_pre_key_id=pb.get_uint32(f, 3, "Kyber prekey id"),
        kyber_ciphertext=pb.get_bytes(f, 4, "Kyber ciphertext"),
        base_key=PublicKey.deserialize(pb.get_bytes(f, 5, "pending base key")),
        timestamp_ms=timestamp,
    )
