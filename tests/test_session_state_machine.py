"""A model-based test of two Signal parties (ARCHITECTURE.md §6.6; WIRE.md §3.7).

Hypothesis drives Alice and Bob, from the moment Alice has processed Bob's bundle, through
random sends (either direction), deliveries of any in-flight message (so any order), drops,
repeated deliveries, reloads from the serialized record, and snapshot / restore of *both*
parties together (as a device restored from backup with its peer restored too: messages sent
after the snapshot are discarded, messages delivered after it are in flight again).

The model predicts every outcome:

* a message delivered for the first time decrypts to exactly what was sent, unless its
  sender's ratchet key is one the receiver has already dropped (it keeps the newest
  :data:`MAX_RECEIVER_CHAINS`; chains appear in the order the peer created its keys), in which
  case decryption fails with :class:`BadMacError`;
* a repeat raises :class:`DuplicateMessageError` (or :class:`BadMacError` once the chain is gone);
* a copy of an in-flight SignalMessage with one bit flipped is refused (a :class:`RemoteError`);
* Alice sends PreKey messages (type 3) until she has decrypted something from Bob;
* Bob cannot send before he has a session;
* a failure changes neither party's serialized record, and every record survives a
  serialize / deserialize round trip byte for byte;
* a twin of each party that decrypts on the general receive path only (never the in-order
  fast path) decrypts or fails exactly alike and holds byte-identical records throughout.

Kyber encapsulation cannot be seeded, so the set-up (up to Alice's ``initiate``) is done once per
process and cached; every example starts from those bytes with RNGs seeded by Hypothesis.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from signal_helpers import MemoryPreKeys, Party, make_pair
from veil.core.errors import BadMacError, DuplicateMessageError, NoSessionError, RemoteError
from veil.core.rng import seeded_rng
from veil.core.signal import receive
from veil.core.signal.record import deserialize_record, serialize_record
from veil.core.signal.session import CiphertextMessage, LocalIdentity
from veil.core.signal.state import MAX_RECEIVER_CHAINS
from veil.core.signal.wire import (
    MAC_LEN,
    PREKEY_TYPE,
    WHISPER_TYPE,
    PreKeySignalMessage,
    SignalMessage,
)

ALICE, BOB = "alice", "bob"
OTHER = {ALICE: BOB, BOB: ALICE}


@dataclass(frozen=True)
class _Start:
    alice_local: LocalIdentity
    bob_local: LocalIdentity
    bob_prekeys: MemoryPreKeys
    alice_record: bytes
    bob_signed_prekey: bytes


@functools.cache
def _start(one_time: bool) -> _Start:
    alice, bob = make_pair("state machine")
    alice.initiate(bob.bundle(one_time=one_time))
    spk = next(iter(bob.prekeys.signed.values())).public_key.raw
    return _Start(alice.local, bob.local, bob.prekeys, alice.record_bytes(), spk)


@dataclass
class Sent:
    """One message on the wire, as the model sees it."""

    sender: str
    message: CiphertextMessage
    plaintext: bytes
    ratchet_key: bytes
    delivered: bool = False
    lost: bool = False


@dataclass
class Model:
    """What the parties should know. Copied whole for a snapshot."""

    sent: list[Sent] = field(default_factory=list)
    seen_keys: dict[str, list[bytes]] = field(default_factory=dict)
    """Per receiver, the sender's ratchet keys in the order first decrypted."""
    alice_acknowledged: bool = False
    bob_has_session: bool = False

    def kept(self, receiver: str, key: bytes) -> bool | None:
        """True if the receiver keeps this chain, False if it dropped it, None if unseen."""
        seen = self.seen_keys[receiver]
        if key not in seen:
            return None
        return key in seen[-MAX_RECEIVER_CHAINS:]


def _ratchet_key(message: CiphertextMessage) -> bytes:
    if message.type == PREKEY_TYPE:
        return PreKeySignalMessage.parse(message.serialized).message.ratchet_key.raw
    return SignalMessage.parse(message.serialized).ratchet_key.raw


class SlowParty(Party):
    """A party that decrypts SignalMessages on the general path only (no in-order fast path)."""

    def decrypt(self, message: CiphertextMessage) -> bytes:
        if message.type != WHISPER_TYPE:
            return super().decrypt(message)
        if self.record.current is None and not self.record.previous:
            raise NoSessionError("no session")
        parsed = SignalMessage.parse(message.serialized)
        return receive.decrypt_with_record(self.record, parsed, self.rng, self.trust, "peer")


class TwoParties(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.parties: dict[str, Party] = {}
        self.slow: dict[str, Party] = {}
        self.model = Model()
        self.snapshot: tuple[bytes, bytes, MemoryPreKeys, Model] | None = None

    # --- set-up ---------------------------------------------------------------------------

    @initialize(seed=st.integers(0, 2**32 - 1), one_time=st.booleans())
    def start(self, seed: int, one_time: bool) -> None:
        s = _start(one_time)
        alice = Party(ALICE, s.alice_local, MemoryPreKeys(), seeded_rng(b"alice %d" % seed))
        alice.record = deserialize_record(s.alice_record)
        bob = Party(BOB, s.bob_local, s.bob_prekeys.copy(), seeded_rng(b"bob %d" % seed))
        self.parties = {ALICE: alice, BOB: bob}
        # Twins on the general receive path only, fed the same operations and RNG seeds: the
        # in-order fast path must leave exactly the same records.
        self.slow = {
            name: SlowParty(
                p.name, p.local, p.prekeys.copy(), seeded_rng(b"%s %d" % (name.encode(), seed))
            )
            for name, p in self.parties.items()
        }
        self.slow[ALICE].record = deserialize_record(s.alice_record)
        self.model = Model(seen_keys={ALICE: [s.bob_signed_prekey], BOB: []})

    # --- helpers --------------------------------------------------------------------------

    def _bytes(self) -> tuple[bytes, bytes]:
        return self.parties[ALICE].record_bytes(), self.parties[BOB].record_bytes()

    def _in_flight(self) -> list[Sent]:
        return [m for m in self.model.sent if not m.delivered and not m.lost]

    def _in_flight_whisper(self) -> list[Sent]:
        return [m for m in self._in_flight() if m.message.type == WHISPER_TYPE]

    def _delivered(self) -> list[Sent]:
        return [m for m in self.model.sent if m.delivered]

    def _decrypt(self, receiver: str, message: CiphertextMessage) -> bytes:
        """Decrypt with the party and with its slow twin; both must do the same."""
        try:
            slow: bytes | type[Exception] = self.slow[receiver].decrypt(message)
        except Exception as exc:  # compared below
            slow = type(exc)
        try:
            plaintext = self.parties[receiver].decrypt(message)
        except Exception as exc:
            assert slow is type(exc), "the fast path failed differently"
            raise
        assert slow == plaintext, "the fast path decrypted differently"
        return plaintext

    def _expect_failure(
        self, receiver: str, message: CiphertextMessage, error: type[Exception]
    ) -> None:
        before = self._bytes()
        with pytest.raises(error):
            self._decrypt(receiver, message)
        assert self._bytes() == before, "a failed decrypt changed a record"

    # --- rules ----------------------------------------------------------------------------

    def _send(self, sender: str, payload: bytes) -> Sent | None:
        party = self.parties[sender]
        if sender == BOB and not self.model.bob_has_session:
            before = self._bytes()
            with pytest.raises(NoSessionError):
                party.encrypt(payload)
            assert self._bytes() == before
            return None
        message = party.encrypt(payload)
        assert self.slow[sender].encrypt(payload) == message
        if sender == ALICE and not self.model.alice_acknowledged:
            assert message.type == PREKEY_TYPE
        else:
            assert message.type == WHISPER_TYPE
        sent = Sent(sender, message, payload, _ratchet_key(message))
        self.model.sent.append(sent)
        return sent

    def _deliver(self, sent: Sent) -> None:
        receiver_name = OTHER[sent.sender]
        kept = self.model.kept(receiver_name, sent.ratchet_key)
        if kept is False:  # its chain was dropped: it can never be decrypted now
            event("late message on a dropped chain")
            self._expect_failure(receiver_name, sent.message, BadMacError)
            sent.lost = True
            return
        assert self._decrypt(receiver_name, sent.message) == sent.plaintext
        event(f"delivered type {sent.message.type} to {receiver_name}")
        position = next(i for i, m in enumerate(self.model.sent) if m is sent)
        if any(m.sender == sent.sender and m.lost for m in self.model.sent[:position]):
            event("delivered after a gap")
        if any(m.sender == sent.sender and not m.delivered for m in self.model.sent[:position]):
            event("delivered out of order")
        sent.delivered = True
        if kept is None:
            self.model.seen_keys[receiver_name].append(sent.ratchet_key)
        if receiver_name == ALICE:
            self.model.alice_acknowledged = True
        else:
            self.model.bob_has_session = True

    # --- rules ----------------------------------------------------------------------------

    @rule(sender=st.sampled_from([ALICE, BOB]), payload=st.binary(max_size=48))
    def send(self, sender: str, payload: bytes) -> None:
        self._send(sender, payload)

    @precondition(lambda self: self._in_flight())
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        self._deliver(data.draw(st.sampled_from(self._in_flight()), label="message"))

    @rule(rounds=st.integers(1, MAX_RECEIVER_CHAINS + 1))
    def round_trips(self, rounds: int) -> None:
        """Alice and Bob answer each other at once, ``rounds`` times: new chains each way."""
        for i in range(rounds):
            for sender in (ALICE, BOB):
                sent = self._send(sender, b"round trip %d" % i)
                assert sent is not None
                self._deliver(sent)

    @precondition(lambda self: self._delivered())
    @rule(data=st.data())
    def deliver_again(self, data: st.DataObject) -> None:
        sent = data.draw(st.sampled_from(self._delivered()), label="delivered message")
        receiver_name = OTHER[sent.sender]
        kept = self.model.kept(receiver_name, sent.ratchet_key)
        assert kept is not None
        error = DuplicateMessageError if kept else BadMacError
        event(f"repeat -> {error.__name__}")
        self._expect_failure(receiver_name, sent.message, error)

    @precondition(lambda self: self._in_flight_whisper())
    @rule(data=st.data())
    def deliver_tampered(self, data: st.DataObject) -> None:
        """A copy of an in-flight SignalMessage with one bit flipped (often in the MAC) fails."""
        sent = data.draw(st.sampled_from(self._in_flight_whisper()), label="tampered message")
        raw = sent.message.serialized
        position = data.draw(
            st.integers(len(raw) - MAC_LEN, len(raw) - 1) | st.integers(0, len(raw) - 1),
            label="position",
        )
        flipped = raw[position] ^ (1 << data.draw(st.integers(0, 7), label="bit"))
        forged = raw[:position] + bytes((flipped,)) + raw[position + 1 :]
        event("tampered")
        self._expect_failure(
            OTHER[sent.sender], CiphertextMessage(WHISPER_TYPE, forged), RemoteError
        )

    @precondition(lambda self: self._in_flight())
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self._in_flight()), label="dropped").lost = True

    @rule()
    def reload(self) -> None:
        """Both parties reload their records from bytes (lossless persistence)."""
        for party in [*self.parties.values(), *self.slow.values()]:
            party.reload()

    @rule()
    def take_snapshot(self) -> None:
        alice, bob = self._bytes()
        self.snapshot = (alice, bob, self.parties[BOB].prekeys.copy(), copy.deepcopy(self.model))

    @precondition(lambda self: self.snapshot is not None)
    @rule()
    def restore_snapshot(self) -> None:
        assert self.snapshot is not None
        alice, bob, prekeys, model = self.snapshot
        for parties in (self.parties, self.slow):
            parties[ALICE].record = deserialize_record(alice)
            parties[BOB].record = deserialize_record(bob)
            parties[BOB].prekeys = prekeys.copy()
        self.model = copy.deepcopy(model)
        event("restored")

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def records_round_trip(self) -> None:
        for party in self.parties.values():
            data = party.record_bytes()
            assert serialize_record(deserialize_record(data)) == data

    @invariant()
    def fast_path_agrees_with_general_path(self) -> None:
        for name, party in self.parties.items():
            assert party.record_bytes() == self.slow[name].record_bytes()

    @invariant()
    def one_state_each(self) -> None:
        for party in self.parties.values():
            assert party.record.previous == []
        if self.parties:
            has_session = self.parties[BOB].record.current is not None
            assert has_session == self.model.bob_has_session


TwoParties.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_two_parties = TwoParties.TestCase
