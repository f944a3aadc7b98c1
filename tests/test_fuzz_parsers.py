"""Property fuzzing of every Signal parser, and codec round trips (ARCHITECTURE.md §6.6-6.7).

Contract: a parser fed any bytes returns or raises :class:`DecodeError`, nothing else
(no ``IndexError``, ``ValueError``, ``KeyError``...). Inputs are random bytes and mutations of
real values (bit flips, byte sets, truncation, insertion, deletion, duplication and splices
of two valid values). ``decrypt_signal`` / ``decrypt_prekey`` fed mutated real messages raise
only :class:`RemoteError` subclasses and leave the record byte-identical; if a mutant does
decrypt (the PreKey header is not MAC'd), it gives back one of the real plaintexts.

The coverage-guided versions of these harnesses are in ``fuzz/`` (atheris).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from signal_helpers import MemoryPreKeys, Party, establish, make_party
from veil.core import protobuf as pb
from veil.core.crypto.kyber import KyberKeyPair, KyberPublicKey
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import DecodeError, RemoteError
from veil.core.rng import seeded_rng
from veil.core.signal import fingerprint as fp
from veil.core.signal import record as rec
from veil.core.signal import session, wire
from veil.core.signal.record import deserialize_record, serialize_record
from veil.core.signal.session import LocalIdentity
from veil.core.signal.wire import PreKeySignalMessage, SignalMessage

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- a corpus of real values ----------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Real messages and records, made once per process (Kyber encapsulation is not seeded)."""

    whisper: tuple[bytes, ...]
    prekey: tuple[bytes, ...]
    plaintexts: frozenset[bytes]
    bob_local: LocalIdentity
    bob_prekeys: MemoryPreKeys
    bob_record: bytes
    records: tuple[bytes, ...]
    public_keys: tuple[bytes, ...]
    kyber_keys: tuple[bytes, ...]
    scannable: tuple[bytes, ...]


@functools.cache
def corpus() -> Corpus:
    alice, bob = establish("fuzz corpus")
    whisper_msgs, prekey_msgs, plaintexts = [], [], set()

    def keep(party: Party, text: bytes) -> bytes:
        plaintexts.add(text)
        return party.encrypt(text).serialized

    # On a chain Bob knows: one behind (a skipped key), one ahead; then one on a new chain.
    held = [keep(alice, b"on a known chain %d" % i) for i in range(3)]
    assert bob.decrypt(session.CiphertextMessage(2, held[1])) == b"on a known chain 1"
    assert alice.decrypt(bob.encrypt(b"pong")) == b"pong"
    whisper_msgs += [held[0], held[2], keep(alice, b"on a new chain")]
    # A second session from a new install of Alice: PreKey messages with and without OTK.
    for one_time, name in ((True, "alice 2"), (False, "alice 3")):
        other = make_party(name, identity=alice.identity)
        if one_time:
            bob.prekeys.one_time[99] = PrivateKey.generate(bob.rng)
        other.initiate(bob.bundle(one_time=one_time, one_time_id=99))
        prekey_msgs += [keep(other, b"prekey %s" % name.encode()) for _ in range(2)]
    record_bytes = [bob.record_bytes(), alice.record_bytes(), serialize_record(rec.SessionRecord())]
    a2 = make_party("alice 4")
    a2.initiate(bob.bundle(one_time=False))
    record_bytes.append(a2.record_bytes())  # with a pending prekey
    f = fp.fingerprint(2, 3, b"alice", alice.public_identity, b"bob", bob.public_identity)
    return Corpus(
        whisper=tuple(whisper_msgs),
        prekey=tuple(prekey_msgs),
        plaintexts=frozenset(plaintexts),
        bob_local=bob.local,
        bob_prekeys=bob.prekeys.copy(),
        bob_record=bob.record_bytes(),
        records=tuple(record_bytes),
        public_keys=(alice.public_identity.serialize(), bob.public_identity.serialize()),
        kyber_keys=tuple(k.public_key.serialize() for k in bob.prekeys.kyber.values()),
        scannable=(f.scannable,),
    )


# --- mutation strategies --------------------------------------------------------------------


@st.composite
def mutate(draw: st.DrawFn, samples: tuple[bytes, ...]) -> bytes:
    """A valid sample with 1-4 random edits (or a splice of two samples)."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "dup", "splice"]))
        n = len(data)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip" and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[pos] = draw(
                st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))])
            )
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
        elif op == "splice":
            other = draw(st.sampled_from(samples))
            cut = draw(st.integers(0, len(other)))
            data = data[:pos] + bytearray(other[cut:])
    return bytes(data)


def inputs(samples: Callable[[Corpus], tuple[bytes, ...]]) -> st.SearchStrategy[bytes]:
    """Random bytes, or mutations of the chosen real samples."""
    return st.one_of(
        st.binary(max_size=200),
        st.builds(lambda: samples(corpus())).flatmap(mutate),
    )


def only_decode_error(parse: Callable[[bytes], object], data: object) -> None:
    with contextlib.suppress(DecodeError):
        parse(data)  # type: ignore[arg-type]


# --- parsers raise only DecodeError ---------------------------------------------------------


@FUZZ
@given(inputs(lambda c: c.whisper))
def test_signal_message_parse(data: bytes) -> None:
    only_decode_error(SignalMessage.parse, data)


@FUZZ
@given(inputs(lambda c: c.prekey + c.whisper))
def test_prekey_message_parse(data: bytes) -> None:
    only_decode_error(PreKeySignalMessage.parse, data)


SCHEMAS: dict[str, pb.Schema] = {
    "SignalMessage": wire._SIGNAL_SCHEMA,
    "PreKeySignalMessage": wire._PREKEY_SCHEMA,
    "Record": rec._RECORD,
    "State": rec._STATE,
    "Chain": rec._CHAIN,
    "Pending": rec._PENDING,
    "CombinedFingerprints": fp._COMBINED,
    "LogicalFingerprint": fp._LOGICAL,
}


@pytest.mark.parametrize("name", list(SCHEMAS))
@FUZZ
@given(data=inputs(lambda c: tuple(m[1:] for m in c.whisper + c.prekey) + c.records))
def test_protobuf_parse_each_schema(name: str, data: bytes) -> None:
    schema = SCHEMAS[name]
    try:
        fields = pb.parse(data, schema)
    except DecodeError:
        return
    for number, value in fields.items():
        wire_type, repeated = schema[number]
        items = value if repeated else [value]
        assert isinstance(items, list)
        for item in items:
            assert isinstance(item, bytes if wire_type == pb.LEN else int)
    for number in range(10):  # the typed getters raise only DecodeError too
        for getter in (
            lambda n: pb.get_uint32(fields, n, "x"),
            lambda n: pb.opt_uint32(fields, n, "x"),
            lambda n: pb.get_bytes(fields, n, "x"),
            lambda n: pb.opt_bytes(fields, n),
            lambda n: pb.repeated_bytes(fields, n),
        ):
            only_decode_error(getter, number)  # type: ignore[arg-type]


@FUZZ
@given(inputs(lambda c: c.public_keys))
def test_public_key_deserialize(data: bytes) -> None:
    only_decode_error(PublicKey.deserialize, data)


@settings(FUZZ, max_examples=100)
@given(
    st.one_of(
        inputs(lambda c: c.kyber_keys),
        st.binary(min_size=1568, max_size=1568).map(lambda b: b"\x08" + b),
    )
)
def test_kyber_public_key_deserialize(data: bytes) -> None:
    only_decode_error(KyberPublicKey.deserialize, data)


@FUZZ
@given(inputs(lambda c: c.records))
def test_deserialize_record(data: bytes) -> None:
    try:
        record = deserialize_record(data)
    except DecodeError:
        return
    again = serialize_record(record)  # whatever decodes must encode again, and stably
    assert serialize_record(deserialize_record(again)) == again


@FUZZ
@given(inputs(lambda c: c.scannable))
def test_scannable_fingerprint_parse(data: bytes) -> None:
    only_decode_error(fp.parse_scannable, data)
    with contextlib.suppress(RemoteError):  # DecodeError or FingerprintVersionMismatchError
        fp.compare(corpus().scannable[0], data)


# --- decrypt fed mutants --------------------------------------------------------------------


def _bob() -> tuple[rec.SessionRecord, MemoryPreKeys]:
    c = corpus()
    return deserialize_record(c.bob_record), c.bob_prekeys.copy()


def _decrypt_mutant(data: bytes, as_prekey: bool) -> None:
    c = corpus()
    record, prekeys = _bob()
    before = serialize_record(record)
    rng = seeded_rng(data)
    try:
        if as_prekey:
            result = session.decrypt_prekey(
                record, data, c.bob_local, prekeys, rng=rng, trust=lambda _k: True
            )
            plaintext = result.plaintext
        else:
            plaintext = session.decrypt_signal(record, data, rng=rng, trust=lambda _k: True)
    except RemoteError as exc:
        event(f"{'prekey' if as_prekey else 'signal'}: {type(exc).__name__}")
        assert serialize_record(record) == before
        return
    event(f"{'prekey' if as_prekey else 'signal'}: decrypted")
    assert plaintext in c.plaintexts
    # Only the header of a PreKey message is not MAC'd: what decrypts is an original message.
    originals = c.whisper + tuple(PreKeySignalMessage.parse(m).message.serialized for m in c.prekey)
    assert (PreKeySignalMessage.parse(data).message.serialized if as_prekey else data) in originals


@st.composite
def mutated_messages(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A mutant of a real message, usually handed to the decrypt function of its type."""
    c = corpus()
    as_prekey = draw(st.booleans())
    samples = c.prekey if as_prekey else c.whisper
    if draw(st.integers(0, 9)) == 0:
        samples = c.whisper + c.prekey
    return draw(mutate(samples)), as_prekey


@settings(FUZZ, max_examples=400)
@given(mutated_messages())
def test_decrypt_mutated_messages(case: tuple[bytes, bool]) -> None:
    _decrypt_mutant(*case)


@settings(FUZZ, max_examples=50)
@given(st.binary(max_size=300), st.booleans())
def test_decrypt_random_bytes(data: bytes, as_prekey: bool) -> None:
    _decrypt_mutant(data, as_prekey)


@st.composite
def forged_prekey_messages(draw: st.DrawFn) -> bytes:
    """PreKey headers (not MAC'd) rebuilt with chosen fields around a real inner message."""
    c = corpus()
    real = PreKeySignalMessage.parse(draw(st.sampled_from(c.prekey)))
    ids = st.sampled_from([7, 11, 31, 99, 0, 2**32 - 1])

    def mostly(real_value: object, others: st.SearchStrategy[object]) -> object:
        return real_value if draw(st.integers(0, 3)) else draw(others)

    keys = st.one_of(
        st.binary(min_size=32, max_size=32).map(PublicKey),
        st.sampled_from([0, 1, 2**255 - 20, 2**256 - 1]).map(
            lambda u: PublicKey(u.to_bytes(32, "little"))
        ),
        st.sampled_from([real.base_key, real.identity_key]),
    )
    kyber_ciphertexts = st.binary(min_size=1568, max_size=1568).map(
        lambda b: b"\x08" + b
    ) | st.binary(min_size=1569, max_size=1569)
    return PreKeySignalMessage.build(
        registration_id=draw(uint32),
        pre_key_id=mostly(real.pre_key_id, st.none() | ids),
        signed_pre_key_id=mostly(real.signed_pre_key_id, ids),
        kyber_pre_key_id=mostly(real.kyber_pre_key_id, ids),
        kyber_ciphertext=mostly(real.kyber_ciphertext, kyber_ciphertexts),
        base_key=mostly(real.base_key, keys),
        identity_key=mostly(real.identity_key, keys),
        message=real.message,
    ).serialized


@settings(FUZZ, max_examples=200)
@given(forged_prekey_messages())
def test_decrypt_forged_prekey_messages(data: bytes) -> None:
    _decrypt_mutant(data, as_prekey=True)


@st.composite
def forged_signal_messages(draw: st.DrawFn) -> bytes:
    """Well-formed SignalMessages with chosen fields: known or random ratchet keys, extreme
    counters, random MACs -- they reach the ratchet rather than the parser."""
    c = corpus()
    known = [SignalMessage.parse(m).ratchet_key for m in c.whisper]
    known += [PreKeySignalMessage.parse(m).message.ratchet_key for m in c.prekey]
    ratchet_key = draw(
        st.one_of(
            st.sampled_from(known),
            st.binary(min_size=32, max_size=32).map(PublicKey),
            st.sampled_from([0, 1, 2**255 - 20]).map(lambda u: PublicKey(u.to_bytes(32, "little"))),
        )
    )
    counter = draw(st.one_of(st.integers(0, 40), st.integers(25_001, 2**32 - 1)))
    message = SignalMessage.build(
        mac_key=draw(st.binary(min_size=32, max_size=32)),
        ratchet_key=ratchet_key,
        counter=counter,
        previous_counter=draw(st.integers(0, 2**32 - 1)),
        ciphertext=draw(st.binary(max_size=64)),
        sender_identity=PublicKey(bytes(32)),
        receiver_identity=PublicKey(bytes(32)),
        version=draw(st.sampled_from([4, 4, 4, 3])),
    )
    return message.serialized


@settings(FUZZ, max_examples=200)
@given(forged_signal_messages())
def test_decrypt_forged_messages(data: bytes) -> None:
    record, _ = _bob()
    before = serialize_record(record)
    with pytest.raises(RemoteError) as info:
        session.decrypt_signal(record, data, rng=seeded_rng(data), trust=lambda _k: True)
    event(type(info.value).__name__)
    assert serialize_record(record) == before


# --- protobuf codec round trips -------------------------------------------------------------

uint64 = st.integers(0, 2**64 - 1)
uint32 = st.integers(0, 2**32 - 1)


@given(uint64, st.binary(max_size=8), st.binary(max_size=8))
def test_varint_round_trip(n: int, prefix: bytes, suffix: bytes) -> None:
    encoded = pb.varint(n)
    assert len(encoded) == max(1, -(-n.bit_length() // 7))
    assert pb.read_varint(prefix + encoded + suffix, len(prefix)) == (
        n,
        len(prefix) + len(encoded),
    )


@given(st.integers(0, 2**63 - 1), st.integers(0, 9))
def test_overlong_varint_accepted_up_to_10_bytes(n: int, padding: int) -> None:
    encoded = bytearray(pb.varint(n))
    for _ in range(padding):  # add redundant 0x80 continuation groups
        encoded[-1] |= 0x80
        encoded.append(0)
    if len(encoded) <= 10:
        assert pb.read_varint(bytes(encoded), 0) == (n, len(encoded))
    else:
        with pytest.raises(DecodeError):
            pb.read_varint(bytes(encoded), 0)


@given(st.integers(2**64, 2**70 - 1))
def test_varint_wider_than_64_bits_refused(n: int) -> None:
    with pytest.raises(DecodeError):
        pb.read_varint(pb.varint(n), 0)


@given(uint64, st.integers(0, 9))
def test_truncated_varint_refused(n: int, cut: int) -> None:
    encoded = pb.varint(n)
    assume(cut < len(encoded))
    with pytest.raises(DecodeError):
        pb.read_varint(encoded[:cut], 0)


@st.composite
def messages_and_schemas(draw: st.DrawFn) -> tuple[list[tuple[int, int | bytes]], pb.Schema]:
    numbers = draw(st.lists(st.integers(1, 2**29 - 3), min_size=1, max_size=6, unique=True))
    schema = {n: (draw(st.sampled_from([pb.VARINT, pb.LEN])), draw(st.booleans())) for n in numbers}
    fields: list[tuple[int, int | bytes]] = []
    for _ in range(draw(st.integers(0, 12))):
        n = draw(st.sampled_from(numbers))
        value = draw(uint64 if schema[n][0] == pb.VARINT else st.binary(max_size=300))
        fields.append((n, value))
    return fields, schema


def _encode(fields: list[tuple[int, int | bytes]]) -> bytes:
    return b"".join(
        pb.field_varint(n, v) if isinstance(v, int) else pb.field_bytes(n, v) for n, v in fields
    )


@given(messages_and_schemas(), st.data())
def test_protobuf_fields_round_trip(case: tuple[list, pb.Schema], data: st.DataObject) -> None:
    fields, schema = case
    expected: dict[int, object] = {}
    for n, v in fields:
        if schema[n][1]:
            expected.setdefault(n, []).append(v)  # type: ignore[union-attr]
        else:
            expected[n] = v  # the last value of a scalar wins
    encoded = _encode(fields)
    assert pb.parse(encoded, schema) == expected
    # a reader that knows only some fields skips the rest, fixed-width unknowns included
    known = data.draw(st.sets(st.sampled_from(sorted(schema))), label="known fields")
    sub = {n: schema[n] for n in known}
    unknown_fixed = pb.varint((2**29 - 1) << 3 | pb.I32) + b"\x01\x02\x03\x04"
    unknown_fixed += pb.varint((2**29 - 2) << 3 | pb.I64) + bytes(8)
    assert pb.parse(unknown_fixed + encoded, sub) == {
        n: expected[n] for n in known if n in expected
    }


@given(st.integers(1, 2**29 - 1), st.sampled_from([3, 4, 6, 7]))
def test_protobuf_group_and_reserved_wire_types_refused(number: int, wire_type: int) -> None:
    with pytest.raises(DecodeError):
        pb.parse(pb.varint(number << 3 | wire_type) + bytes(8), {})


# --- wire message round trips ---------------------------------------------------------------


def signal_fields(m: SignalMessage) -> tuple[object, ...]:
    return (
        m.version,
        m.ratchet_key,
        m.counter,
        m.previous_counter,
        m.ciphertext,
        m.pq_ratchet,
        m.serialized,
    )


def prekey_fields(m: PreKeySignalMessage) -> tuple[object, ...]:
    return (
        m.version,
        m.registration_id,
        m.pre_key_id,
        m.signed_pre_key_id,
        m.kyber_pre_key_id,
        m.kyber_ciphertext,
        m.base_key,
        m.identity_key,
        m.message.serialized,
        m.serialized,
    )


def general_signal_parse(data: bytes) -> tuple[object, ...]:
    """SignalMessage parsing by the book (WIRE.md §3.5), with the generic protobuf parser only.

    ``SignalMessage.parse`` has a fast path for the usual layout; it must agree with this on
    every input.
    """
    version = wire._check_version(data, "SignalMessage")
    if len(data) < 1 + wire.MAC_LEN:
        raise DecodeError("too short")
    fields = pb.parse(data[1 : -wire.MAC_LEN], wire._SIGNAL_SCHEMA)
    return (
        version,
        PublicKey.deserialize(pb.get_bytes(fields, 1, "ratchet key")),
        pb.get_uint32(fields, 2, "counter"),
        pb.opt_uint32(fields, 3, "previous counter") or 0,
        pb.get_bytes(fields, 4, "ciphertext"),
        pb.opt_bytes(fields, 5),
        bytes(data),
    )


def _outcome(parse: Callable[[bytes], tuple[object, ...]], data: bytes) -> tuple[object, ...]:
    try:
        return parse(data)
    except DecodeError:
        return ("DecodeError",)


@FUZZ
@given(inputs(lambda c: c.whisper))
def test_signal_message_fast_path_agrees_with_general_parser(data: bytes) -> None:
    fast = _outcome(lambda d: signal_fields(SignalMessage.parse(d)), data)
    assert fast == _outcome(general_signal_parse, data)


@given(
    counter=uint64,
    previous=uint64,
    ciphertext=st.binary(max_size=40),
    mac=st.binary(min_size=8, max_size=8),
    extra=st.sampled_from([b"", pb.field_bytes(5, b"pq"), pb.field_bytes(6, bytes(36))]),
    overlong=st.booleans(),
)
def test_signal_message_fast_path_edge_layouts(
    counter: int, previous: int, ciphertext: bytes, mac: bytes, extra: bytes, overlong: bool
) -> None:
    """Near-canonical layouts: wide counters, over-long varints, trailing SPQR/address fields."""
    counter_bytes = pb.varint(counter)
    if overlong:  # a redundant trailing varint group: same value, one byte longer
        counter_bytes = counter_bytes[:-1] + bytes((counter_bytes[-1] | 0x80, 0))
    body = (
        b"\x44\x0a\x21\x05"
        + bytes(32)
        + b"\x10"
        + counter_bytes
        + b"\x18"
        + pb.varint(previous)
        + pb.field_bytes(4, ciphertext)
        + extra
    )
    data = body + mac
    assert _outcome(lambda d: signal_fields(SignalMessage.parse(d)), data) == _outcome(
        general_signal_parse, data
    )


keys32 = st.binary(min_size=32, max_size=32).map(PublicKey)


@given(
    version=st.sampled_from([3, 4]),
    ratchet_key=keys32,
    counter=uint32,
    previous_counter=uint32,
    ciphertext=st.binary(max_size=200),
    mac_key=st.binary(min_size=32, max_size=32),
    ids=st.tuples(keys32, keys32).filter(lambda t: t[0] != t[1]),
)
def test_signal_message_build_parse(
    version: int,
    ratchet_key: PublicKey,
    counter: int,
    previous_counter: int,
    ciphertext: bytes,
    mac_key: bytes,
    ids: tuple[PublicKey, PublicKey],
) -> None:
    built = SignalMessage.build(
        mac_key=mac_key,
        ratchet_key=ratchet_key,
        counter=counter,
        previous_counter=previous_counter,
        ciphertext=ciphertext,
        sender_identity=ids[0],
        receiver_identity=ids[1],
        version=version,
    )
    parsed = SignalMessage.parse(built.serialized)
    assert signal_fields(parsed) == signal_fields(built)
    assert signal_fields(parsed)[:5] == (
        version,
        ratchet_key,
        counter,
        previous_counter,
        ciphertext,
    )
    assert parsed.serialized[0] == (version << 4) | 4
    assert parsed.verify_mac(mac_key, ids[0], ids[1])
    assert not parsed.verify_mac(mac_key, ids[1], ids[0])
    assert not parsed.verify_mac(bytes(32) if mac_key != bytes(32) else b"\x01" * 32, *ids)


@given(
    registration_id=uint32,
    pre_key_id=st.none() | uint32,
    signed_pre_key_id=uint32,
    kyber_pre_key_id=uint32,
    kyber_ciphertext=st.binary(min_size=1568, max_size=1568).map(lambda b: b"\x08" + b),
    base_key=keys32,
    identity_key=keys32,
    counter=uint32,
    ciphertext=st.binary(max_size=64),
)
def test_prekey_message_build_parse(
    registration_id: int,
    pre_key_id: int | None,
    signed_pre_key_id: int,
    kyber_pre_key_id: int,
    kyber_ciphertext: bytes,
    base_key: PublicKey,
    identity_key: PublicKey,
    counter: int,
    ciphertext: bytes,
) -> None:
    inner = SignalMessage.build(
        mac_key=bytes(32),
        ratchet_key=base_key,
        counter=counter,
        previous_counter=0,
        ciphertext=ciphertext,
        sender_identity=identity_key,
        receiver_identity=base_key,
    )
    built = PreKeySignalMessage.build(
        registration_id=registration_id,
        pre_key_id=pre_key_id,
        signed_pre_key_id=signed_pre_key_id,
        kyber_pre_key_id=kyber_pre_key_id,
        kyber_ciphertext=kyber_ciphertext,
        base_key=base_key,
        identity_key=identity_key,
        message=inner,
    )
    parsed = PreKeySignalMessage.parse(built.serialized)
    assert prekey_fields(parsed) == prekey_fields(built)
    assert prekey_fields(parsed)[:8] == (
        4,
        registration_id,
        pre_key_id,
        signed_pre_key_id,
        kyber_pre_key_id,
        kyber_ciphertext,
        base_key,
        identity_key,
    )
    assert signal_fields(parsed.message) == signal_fields(inner)


@given(st.binary(min_size=32, max_size=32))
def test_public_key_round_trip(raw: bytes) -> None:
    key = PublicKey(raw)
    assert PublicKey.deserialize(key.serialize()) == key


@settings(max_examples=10, deadline=None)
@given(st.binary(min_size=64, max_size=64))
def test_kyber_public_key_round_trip(seed: bytes) -> None:
    public = KyberKeyPair(seed).public_key
    assert KyberPublicKey.deserialize(public.serialize()) == public


# --- the atheris harnesses in fuzz/ stay runnable -------------------------------------------

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = sorted(p.stem for p in FUZZ_DIR.glob("fuzz_*.py"))


@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz_harness_smoke(name: str) -> None:
    """Each harness imports without atheris and accepts real and random inputs."""
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    harness = importlib.import_module(name)
    c = corpus()
    samples = [*c.whisper, *c.prekey, *c.records, *c.public_keys, *c.scannable, b"", b"\x00"]
    samples += [bytes((i,)) + s for i in (0, 1) for s in c.whisper + c.prekey]  # fuzz_decrypt
    samples += [bytes((mode, i, 250, 1)[:n]) for mode in (2, 3) for i in range(3) for n in (2, 4)]
    samples += [seeded_rng(i)(i * 7) for i in range(30)]
    for data in samples:
        harness.test_one_input(data)


# --- strictness the random inputs rarely reach ----------------------------------------------


@given(st.integers(1, 2**29 - 1), uint64 | st.binary(min_size=1, max_size=40), st.data())
def test_truncated_field_refused(number: int, value: int | bytes, data: st.DataObject) -> None:
    encoded = _encode([(number, value)])
    cut = data.draw(st.integers(1, len(encoded) - 1), label="cut")
    schema = {number: (pb.VARINT if isinstance(value, int) else pb.LEN, False)}
    assert pb.parse(encoded, schema) == {number: value}
    with pytest.raises(DecodeError):
        pb.parse(encoded[:cut], schema)
    with pytest.raises(DecodeError):
        pb.parse(encoded[:cut], {})  # unknown fields are skipped, but not when truncated


BAD_RATCHET_KEYS = [bytes(32), b"\x05" + bytes(31), b"\x05" + bytes(33), b"\x06" + bytes(32), b""]


@pytest.mark.parametrize("key", BAD_RATCHET_KEYS, ids=["32", "5+31", "5+33", "type 6", "empty"])
@pytest.mark.parametrize("layout", ["canonical order", "reversed order", "with field 5"])
def test_signal_message_bad_ratchet_key_refused(key: bytes, layout: str) -> None:
    fields = [
        pb.field_bytes(1, key),
        pb.field_varint(2, 3),
        pb.field_varint(3, 0),
        pb.field_bytes(4, bytes(16)),
    ]
    if layout == "reversed order":
        fields.reverse()
    elif layout == "with field 5":
        fields.append(pb.field_bytes(5, b"pq"))
    data = b"\x44" + b"".join(fields) + bytes(wire.MAC_LEN)
    with pytest.raises(DecodeError):
        SignalMessage.parse(data)
    good = data.replace(pb.field_bytes(1, key), pb.field_bytes(1, b"\x05" + bytes(32)))
    assert SignalMessage.parse(good).counter == 3


@pytest.mark.parametrize("length", [0, 1568, 1570, 3000])
def test_prekey_message_kyber_ciphertext_length_refused(length: int) -> None:
    real = PreKeySignalMessage.parse(corpus().prekey[0])
    forged = PreKeySignalMessage.build(
        registration_id=real.registration_id,
        pre_key_id=real.pre_key_id,
        signed_pre_key_id=real.signed_pre_key_id,
        kyber_pre_key_id=real.kyber_pre_key_id,
        kyber_ciphertext=b"\x08" + bytes(max(length - 1, 0)) if length else b"",
        base_key=real.base_key,
        identity_key=real.identity_key,
        message=real.message,
    )
    with pytest.raises(DecodeError):
        PreKeySignalMessage.parse(forged.serialized)


@pytest.mark.parametrize(("local", "remote"), [(31, 32), (32, 31), (33, 32), (32, 0), (64, 64)])
def test_scannable_halves_must_be_32_bytes(local: int, remote: int) -> None:
    good = fp.ScannableFingerprint(2, bytes(32), b"\x01" * 32).serialize()
    assert fp.parse_scannable(good).remote == b"\x01" * 32
    bad = fp.ScannableFingerprint(2, bytes(local), bytes(remote)).serialize()
    with pytest.raises(DecodeError):
        fp.parse_scannable(bad)


# --- MLS (RFC 9420) wire decoders -----------------------------------------------------------


@FUZZ
@given(st.data())
def test_mls_decoders_on_mutated_real_messages(vectors_dir: Path, data: st.DataObject) -> None:
    """Every MLS decoder (fuzz/fuzz_mls.py) fed mutated official messages: parse and
    re-encode to the same bytes, or raise DecodeError."""
    import json  # noqa: PLC0415 - appended test; the import block above is not ours to edit

    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    harness = importlib.import_module("fuzz_mls")
    cases = json.loads((vectors_dir / "mls" / "messages.json").read_text())
    case = cases[data.draw(st.integers(0, 9), label="case")]
    field = data.draw(st.sampled_from(sorted(case)), label="field")
    real = bytearray(bytes.fromhex(case[field]))
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        if not real:
            break
        at = data.draw(st.integers(0, len(real) - 1), label="at")
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]), label="kind")
        if kind == "flip":
            real[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del real[at:]
        elif kind == "insert":
            real[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            del real[at]
    harness.test_one_input(bytes(real))
