"""Session records (``veil.core.signal.record``): lossless, versioned, strict (§6.8).

* real records (archived states, several chains, skipped keys, a pending prekey) round-trip
  byte for byte and field for field, and a reloaded record carries on the conversation;
* Hypothesis round trip of arbitrary well-formed records;
* an unknown format version is refused;
* the limits the session code relies on (40 archived states, 5 chains, 2000 skipped keys,
  32-byte keys, uint32 counters) are enforced on decode, as are required fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signal_helpers import Party, establish, make_pair, make_party
from veil.core import protobuf as pb
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import DecodeError, VeilError
from veil.core.rng import seeded_rng
from veil.core.signal.record import RECORD_FORMAT, deserialize_record, serialize_record
from veil.core.signal.session import CiphertextMessage
from veil.core.signal.state import (
    MAX_ARCHIVED_STATES,
    MAX_RECEIVER_CHAINS,
    MAX_SKIPPED_PER_CHAIN,
    PendingPreKey,
    ReceiverChain,
    SessionRecord,
    SessionState,
)

# --- describing records field by field ------------------------------------------------------


def describe_pending(p: PendingPreKey) -> tuple[object, ...]:
    return (
        p.pre_key_id,
        p.signed_pre_key_id,
        p.kyber_pre_key_id,
        p.kyber_ciphertext,
        p.base_key.raw,
        p.timestamp_ms,
    )


def describe_state(s: SessionState) -> tuple[object, ...]:
    """Every field of a state, secrets included, as plain comparable values."""
    return (
        s.version,
        s.local_identity.raw,
        s.remote_identity.raw,
        s.root_key,
        s.sender_ratchet.secret_bytes(),
        s.sender_ratchet.public_key.raw,
        s.sender_chain_key,
        s.sender_index,
        s.previous_counter,
        [
            (c.ratchet_key.raw, c.chain_key, c.index, list(c.skipped.items()))
            for c in s.receiver_chains
        ],
        None if s.pending_prekey is None else describe_pending(s.pending_prekey),
        s.local_registration_id,
        s.remote_registration_id,
        s.alice_base_key.raw,
    )


def describe(record: SessionRecord) -> tuple[object, ...]:
    current = None if record.current is None else describe_state(record.current)
    return current, [describe_state(s) for s in record.previous]


def assert_round_trip(record: SessionRecord) -> bytes:
    data = serialize_record(record)
    again = deserialize_record(data)
    assert describe(again) == describe(record)
    assert serialize_record(again) == data
    return data


# --- real records ---------------------------------------------------------------------------


def _busy_bob() -> tuple[Party, Party, Party, list[CiphertextMessage]]:
    """Bob with 4 archived states, several chains, skipped keys; Carol's pending initiation."""
    alice, bob = establish("record")
    for i in range(3):
        again = make_party(f"alice install {i}", identity=alice.identity)
        again.initiate(bob.bundle(one_time=False))
        assert bob.decrypt(again.encrypt(b"hi")) == b"hi"
    alice.initiate(bob.bundle(one_time=False))
    assert bob.decrypt(alice.encrypt(b"new")) == b"new"
    held = []
    for round_ in range(3):
        held += [alice.encrypt(b"held %d %d" % (round_, i)) for i in range(4)]
        assert bob.decrypt(held.pop()) == b"held %d 3" % round_
        assert alice.decrypt(bob.encrypt(b"pong")) == b"pong"
    carol = make_party("carol")
    carol.initiate(bob.bundle(one_time=False))
    return alice, bob, carol, held


def test_real_records_round_trip() -> None:
    alice, bob, carol, _ = _busy_bob()
    assert len(bob.record.previous) == 4  # establish, 3 other installs; then Alice anew
    state = bob.record.current
    assert state is not None
    assert len(state.receiver_chains) > 1
    assert sum(len(c.skipped) for c in state.receiver_chains) == 9
    assert carol.record.current is not None
    assert carol.record.current.pending_prekey is not None
    for party in (alice, bob, carol):
        assert_round_trip(party.record)


def test_pending_prekey_without_one_time_key_round_trips() -> None:
    alice, bob = make_pair("pending")
    alice.initiate(bob.bundle(one_time=False))
    assert alice.record.current is not None
    pending = alice.record.current.pending_prekey
    assert pending is not None
    assert pending.pre_key_id is None
    assert_round_trip(alice.record)
    alice2, bob2 = make_pair("pending otk")
    alice2.initiate(bob2.bundle())
    assert alice2.record.current is not None
    assert alice2.record.current.pending_prekey is not None
    assert alice2.record.current.pending_prekey.pre_key_id is not None
    assert_round_trip(alice2.record)


def test_empty_record_round_trips() -> None:
    data = assert_round_trip(SessionRecord())
    assert data == pb.field_varint(1, RECORD_FORMAT)
    record = deserialize_record(data)
    assert record.current is None
    assert record.previous == []


def test_reloaded_record_carries_on_identically() -> None:
    """Two reloads of the same bytes, fed the same messages and RNG, end in the same bytes."""
    alice, bob, _, held = _busy_bob()
    data = bob.record_bytes()
    a = dataclasses.replace(bob, record=deserialize_record(data), rng=seeded_rng(1))
    b = dataclasses.replace(bob, record=deserialize_record(data), rng=seeded_rng(1))
    later = alice.encrypt(b"later")
    for m in [*held, later]:
        assert a.decrypt(m) == b.decrypt(m)
    assert a.record_bytes() == b.record_bytes()
    assert alice.decrypt(a.encrypt(b"reply")) == b"reply"


# --- arbitrary well-formed records ----------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
key32 = st.binary(min_size=32, max_size=32)
public_keys = key32.map(PublicKey)


@st.composite
def chains(draw: st.DrawFn) -> ReceiverChain:
    index = draw(st.integers(0, 2**32 - 1))
    counters = draw(st.lists(st.integers(0, max(index - 1, 0)), max_size=12, unique=True))
    skipped = {c: draw(key32) for c in counters if c < index}
    return ReceiverChain(draw(public_keys), draw(key32), index, skipped)


pendings = st.builds(
    PendingPreKey,
    pre_key_id=st.none() | u32,
    signed_pre_key_id=u32,
    kyber_pre_key_id=u32,
    kyber_ciphertext=st.binary(max_size=40),
    base_key=public_keys,
    timestamp_ms=st.integers(0, 2**64 - 1),
)

states = st.builds(
    SessionState,
    version=u32,
    local_identity=public_keys,
    remote_identity=public_keys,
    root_key=key32,
    sender_ratchet=key32.map(PrivateKey),
    sender_chain_key=key32,
    sender_index=u32,
    previous_counter=u32,
    receiver_chains=st.lists(chains(), max_size=MAX_RECEIVER_CHAINS),
    pending_prekey=st.none() | pendings,
    local_registration_id=u32,
    remote_registration_id=u32,
    alice_base_key=public_keys,
)


@settings(max_examples=60, deadline=None)
@given(st.none() | states, st.lists(states, max_size=3))
def test_arbitrary_records_round_trip(current: SessionState | None, previous: list) -> None:
    assert_round_trip(SessionRecord(current, previous))


# --- format version -------------------------------------------------------------------------


def _state_bytes() -> bytes:
    alice, _ = establish("format")
    fields = _fields(alice.record_bytes())
    return next(v for n, _, v in fields if n == 2)  # type: ignore[return-value]


@pytest.mark.parametrize("version", [0, 2, 3, 255, 2**32 - 1, 2**32, 2**64 - 1])
def test_unknown_format_version_refused(version: int) -> None:
    state = _state_bytes()
    with pytest.raises(DecodeError):
        deserialize_record(pb.field_varint(1, version) + pb.field_bytes(2, state))
    with pytest.raises(DecodeError):
        deserialize_record(pb.field_varint(1, version))


def test_missing_or_mistyped_format_version_refused() -> None:
    state = _state_bytes()
    assert deserialize_record(pb.field_varint(1, 1) + pb.field_bytes(2, state)).current
    for data in (
        b"",
        pb.field_bytes(2, state),
        pb.field_bytes(1, b"\x01") + pb.field_bytes(2, state),
    ):
        with pytest.raises(DecodeError):
            deserialize_record(data)


# --- editing records at the protobuf level --------------------------------------------------

Field = tuple[int, int, int | bytes]


def _fields(data: bytes) -> list[Field]:
    """All (number, wire type, value) of a message, in order (varint and bytes fields only)."""
    out: list[Field] = []
    pos = 0
    while pos < len(data):
        key, pos = pb.read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == pb.VARINT:
            value, pos = pb.read_varint(data, pos)
        else:
            assert wire_type == pb.LEN
            length, pos = pb.read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        out.append((number, wire_type, value))
    return out


def _encode(fields: list[Field]) -> bytes:
    return b"".join(
        pb.field_varint(n, v) if isinstance(v, int) else pb.field_bytes(n, v) for n, _, v in fields
    )


Edit = Callable[[list[Field]], list[Field]]


def _edit(data: bytes, path: tuple[int, ...], edit: Edit) -> bytes:
    """Apply ``edit`` to the fields of the first sub-message reached by field numbers ``path``."""
    fields = _fields(data)
    if not path:
        return _encode(edit(fields))
    i = next(i for i, (n, _, _) in enumerate(fields) if n == path[0])
    number, wire_type, value = fields[i]
    assert isinstance(value, bytes)
    fields[i] = (number, wire_type, _edit(value, path[1:], edit))
    return _encode(fields)


def _drop(number: int) -> Edit:
    return lambda fs: [f for f in fs if f[0] != number]


def _set(number: int, value: int | bytes) -> Edit:
    return lambda fs: [(n, w, value if n == number else v) for n, w, v in fs]


def _append(number: int, value: int | bytes) -> Edit:
    return lambda fs: [*fs, (number, pb.VARINT if isinstance(value, int) else pb.LEN, value)]


def _busy_record_bytes() -> bytes:
    """Bob's record: its first chain has skipped keys (0 and 1) and index 3."""
    alice, bob = make_pair("edit")
    alice.initiate(bob.bundle())
    messages = [alice.encrypt(b"m%d" % i) for i in range(3)]
    assert bob.decrypt(messages[2]) == b"m2"
    assert alice.decrypt(bob.encrypt(b"r")) == b"r"
    alice.encrypt(b"x")  # sending index > 0
    return bob.record_bytes()


STATE = (2,)
CHAIN = (2, 10)


def test_edits_of_a_valid_record_are_accepted_as_a_baseline() -> None:
    data = _busy_record_bytes()
    assert _edit(data, STATE, lambda fs: fs) == data
    assert deserialize_record(_edit(data, CHAIN, lambda fs: fs)).current is not None


@pytest.mark.parametrize(
    ("path", "edit"),
    [
        # required fields
        *[
            pytest.param(STATE, _drop(n), id=f"state without field {n}")
            for n in (1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 14)
        ],
        *[pytest.param(CHAIN, _drop(n), id=f"chain without field {n}") for n in (1, 2, 3)],
        # 32-byte keys
        *[
            pytest.param(STATE, _set(n, bytes(31)), id=f"state field {n} 31 bytes")
            for n in (4, 5, 7)
        ],
        *[
            pytest.param(STATE, _set(n, bytes(33)), id=f"state field {n} 33 bytes")
            for n in (4, 5, 7)
        ],
        pytest.param(CHAIN, _set(2, bytes(31)), id="chain key 31 bytes"),
        # public keys
        *[
            pytest.param(STATE, _set(n, b"\x06" + bytes(32)), id=f"state field {n} key type 6")
            for n in (2, 3, 14)
        ],
        *[
            pytest.param(STATE, _set(n, b"\x05" + bytes(31)), id=f"state field {n} short key")
            for n in (2, 3, 14)
        ],
        pytest.param(CHAIN, _set(1, b"\x05" + bytes(33)), id="chain ratchet key long"),
        # uint32 fields
        *[
            pytest.param(STATE, _set(n, 2**32), id=f"state field {n} = 2^32")
            for n in (1, 8, 9, 12, 13)
        ],
        pytest.param(CHAIN, _set(3, 2**32), id="chain index = 2^32"),
        # wrong wire types
        pytest.param(STATE, _set(8, b"\x01"), id="sending index as bytes"),
        pytest.param(STATE, _set(4, 7), id="root key as varint"),
        pytest.param((), _set(2, 7), id="current state as varint"),
        pytest.param(STATE, _append(10, 5), id="chain as varint"),
        # skipped-key list
        pytest.param(CHAIN, _set(4, bytes(35)), id="skipped list 35 bytes"),
        pytest.param(CHAIN, _set(4, bytes(37)), id="skipped list 37 bytes"),
        pytest.param(
            CHAIN,
            _set(4, (2**32 - 1).to_bytes(4, "big") + bytes(32)),
            id="skipped counter beyond index",
        ),
        pytest.param(CHAIN, _set(4, 2 * (bytes(4) + bytes(32))), id="skipped counter twice"),
    ],
)
def test_malformed_record_refused(path: tuple[int, ...], edit: Edit) -> None:
    data = _busy_record_bytes()
    with pytest.raises(DecodeError):
        deserialize_record(_edit(data, path, edit))


def test_pending_prekey_fields_checked() -> None:
    alice, bob = make_pair("pending edit")
    alice.initiate(bob.bundle())
    data = alice.record_bytes()
    assert deserialize_record(data).current is not None
    pending = (2, 11)
    for edit in (
        _drop(2),
        _drop(3),
        _drop(4),
        _drop(5),
        _drop(6),
        _set(1, 2**32),
        _set(5, bytes(33)),
        _set(6, b"x"),
    ):
        with pytest.raises(DecodeError):
            deserialize_record(_edit(data, pending, edit))
    record = deserialize_record(_edit(data, pending, _drop(1)))  # the one-time prekey is optional
    assert record.current is not None
    assert record.current.pending_prekey is not None
    assert record.current.pending_prekey.pre_key_id is None


# --- limits ---------------------------------------------------------------------------------


def _synthetic_state(rng_seed: int, chains_: int = 1, skipped: int = 0) -> SessionState:
    rng = seeded_rng(rng_seed)

    def key() -> PublicKey:
        return PrivateKey.generate(rng).public_key

    return SessionState(
        version=4,
        local_identity=key(),
        remote_identity=key(),
        root_key=rng(32),
        sender_ratchet=PrivateKey.generate(rng),
        sender_chain_key=rng(32),
        sender_index=3,
        previous_counter=2,
        receiver_chains=[
            ReceiverChain(key(), rng(32), skipped + 5, {i: rng(32) for i in range(skipped)})
            for _ in range(chains_)
        ],
        pending_prekey=None,
        local_registration_id=1,
        remote_registration_id=2,
        alice_base_key=key(),
    )


@pytest.mark.parametrize("archived", [MAX_ARCHIVED_STATES, MAX_ARCHIVED_STATES + 1])
def test_archived_state_limit(archived: int) -> None:
    state = _synthetic_state(1)
    data = serialize_record(SessionRecord(state, [state] * archived))
    if archived <= MAX_ARCHIVED_STATES:
        assert len(deserialize_record(data).previous) == archived
    else:
        with pytest.raises(DecodeError):
            deserialize_record(data)


@pytest.mark.parametrize("chains_", [MAX_RECEIVER_CHAINS, MAX_RECEIVER_CHAINS + 1])
def test_receiver_chain_limit(chains_: int) -> None:
    data = serialize_record(SessionRecord(_synthetic_state(2, chains_=chains_)))
    if chains_ <= MAX_RECEIVER_CHAINS:
        assert_round_trip(deserialize_record(data))
    else:
        with pytest.raises(DecodeError):
            deserialize_record(data)


@pytest.mark.parametrize("skipped", [MAX_SKIPPED_PER_CHAIN, MAX_SKIPPED_PER_CHAIN + 1])
def test_skipped_key_limit(skipped: int) -> None:
    data = serialize_record(SessionRecord(None, [_synthetic_state(3, skipped=skipped)]))
    if skipped <= MAX_SKIPPED_PER_CHAIN:
        assert_round_trip(deserialize_record(data))
    else:
        with pytest.raises(DecodeError):
            deserialize_record(data)


def test_archived_limit_holds_for_records_the_session_code_makes() -> None:
    alice, bob = make_pair("many sessions")
    for _ in range(MAX_ARCHIVED_STATES + 3):
        alice.initiate(bob.bundle(one_time=False))
        bob.decrypt(alice.encrypt(b"x"))
    for party in (alice, bob):
        assert len(party.record.previous) == MAX_ARCHIVED_STATES
        assert_round_trip(party.record)


# --- regressions of bugs found by these tests ------------------------------------------------


def test_sending_key_pair_cannot_mismatch() -> None:
    """The record once stored the sending ratchet public key (field 6) beside the private key
    (field 5) without checking them; now only field 5 is stored and a stale field 6 in an
    older record is ignored, the public key being derived from the private one."""
    data = _busy_record_bytes()
    state = deserialize_record(data).current
    assert state is not None
    assert all(n != 6 for n, _, _ in _fields(_fields(data)[1][2]))  # type: ignore[arg-type]
    other = PrivateKey(bytes(range(32))).public_key.serialize()
    stale = deserialize_record(_edit(data, STATE, _append(6, other))).current
    assert stale is not None
    assert stale.sender_ratchet.public_key == state.sender_ratchet.public_key
    expected = PrivateKey(state.sender_ratchet.secret_bytes()).public_key
    assert stale.sender_ratchet.public_key == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("registration_id", 2**32),
        ("signed_prekey_id", 2**32),
        ("kyber_prekey_id", 2**32),
        ("prekey_id", 2**32),
        ("registration_id", -1),
        ("signed_prekey_id", -1),
    ],
)
def test_bundle_ids_out_of_range_never_give_an_unloadable_record(field: str, value: int) -> None:
    """A bundle (server input) with ids beyond uint32 once gave a record that serialized but
    never deserialized (or, negative, made ``serialize_record`` raise ``ValueError``)."""
    alice, bob = make_pair("bundle ids")
    try:
        bundle = dataclasses.replace(bob.bundle(one_time=True), **{field: value})
        alice.initiate(bundle)
    except VeilError:
        return  # refused: fine
    alice.encrypt(b"x")
    assert_round_trip(alice.record)
