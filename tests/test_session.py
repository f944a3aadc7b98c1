"""libsignal's session rules in ``veil.core.signal.session`` (WIRE.md §3.5-3.7).

Each test states one rule and can fail on its own: PQXDH set-up and PreKey message framing,
bundle signature checks, non-canonical base keys, unknown prekeys, identity trust, missing and
expired sessions, duplicates, the receiving-chain / skipped-key / forward-jump / archived-state
limits, base-key reuse, SPQR detection, "a failure changes nothing", and secret-free ``repr``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import nacl.bindings as sodium
import pytest

from signal_helpers import (
    KYBER_PREKEY_ID,
    ONE_TIME_PREKEY_ID,
    SIGNED_PREKEY_ID,
    T0_MS,
    Party,
    establish,
    make_pair,
    make_party,
    trust_none,
)
from veil.core import protobuf as pb
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import (
    BadMacError,
    DecodeError,
    DecryptionError,
    DuplicateMessageError,
    InvalidKeyError,
    InvalidPreKeyError,
    InvalidSignatureError,
    NoSessionError,
    RemoteError,
    SessionExpiredError,
    SpqrRequiredError,
    TooFarAheadError,
    UnsupportedVersionError,
    UntrustedIdentityError,
)
from veil.core.signal import ratchet
from veil.core.signal.record import deserialize_record, serialize_record
from veil.core.signal.session import CiphertextMessage
from veil.core.signal.state import (
    MAX_ARCHIVED_STATES,
    MAX_FORWARD_JUMP,
    MAX_RECEIVER_CHAINS,
    MAX_SKIPPED_PER_CHAIN,
    MAX_UNACKNOWLEDGED_MS,
    SessionRecord,
)
from veil.core.signal.wire import (
    MAC_LEN,
    PREKEY_TYPE,
    WHISPER_TYPE,
    PreKeySignalMessage,
    SignalMessage,
    compute_mac,
)

_P = 2**255 - 19

# --- helpers --------------------------------------------------------------------------------


def whisper(data: bytes) -> CiphertextMessage:
    return CiphertextMessage(WHISPER_TYPE, data)


def prekey(data: bytes) -> CiphertextMessage:
    return CiphertextMessage(PREKEY_TYPE, data)


def ping_pong(alice: Party, bob: Party, tag: str = "") -> None:
    """Alice -> Bob -> Alice, so both sides take a DH ratchet step."""
    assert bob.decrypt(alice.encrypt(f"ping {tag}".encode())) == f"ping {tag}".encode()
    assert alice.decrypt(bob.encrypt(f"pong {tag}".encode())) == f"pong {tag}".encode()


def assert_fails_unchanged(
    party: Party, message: CiphertextMessage, error: type[BaseException]
) -> BaseException:
    """Decrypting ``message`` raises ``error`` and leaves the party's record byte-identical."""
    before = party.record_bytes()
    prekeys_before = (dict(party.prekeys.one_time), dict(party.prekeys.signed))
    with pytest.raises(error) as info:
        party.decrypt(message)
    assert party.record_bytes() == before
    assert (dict(party.prekeys.one_time), dict(party.prekeys.signed)) == prekeys_before
    return info.value


def rebuild_prekey(data: bytes, **changes: object) -> bytes:
    """Re-encode a PreKeySignalMessage with some header fields replaced (they carry no MAC)."""
    m = PreKeySignalMessage.parse(data)
    fields: dict[str, object] = {
        "registration_id": m.registration_id,
        "pre_key_id": m.pre_key_id,
        "signed_pre_key_id": m.signed_pre_key_id,
        "kyber_pre_key_id": m.kyber_pre_key_id,
        "kyber_ciphertext": m.kyber_ciphertext,
        "base_key": m.base_key,
        "identity_key": m.identity_key,
        "message": m.message,
    }
    fields.update(changes)
    return PreKeySignalMessage.build(**fields).serialized  # type: ignore[arg-type]


def add_pq_ratchet(
    signal_bytes: bytes,
    pq: bytes,
    mac_key: bytes | None = None,
    ids: tuple[PublicKey, PublicKey] | None = None,
) -> bytes:
    """Append protobuf field 5 (``pq_ratchet``); keep the old MAC unless a MAC key is given."""
    body = signal_bytes[:-MAC_LEN] + pb.field_bytes(5, pq)
    if mac_key is None:
        return body + signal_bytes[-MAC_LEN:]
    assert ids is not None
    return body + compute_mac(mac_key, ids[0], ids[1], body)


def next_message_keys(party: Party) -> ratchet.MessageKeys:
    """The keys the party's next :func:`session.encrypt` will use (read before encrypting)."""
    state = party.record.current
    assert state is not None
    return ratchet.message_keys(ratchet.message_seed(state.sender_chain_key))


def advance_sender(party: Party, steps: int) -> None:
    """Move the party's sending chain ``steps`` positions on without sending anything.

    Equivalent to encrypting and dropping ``steps`` messages; the next encrypt is a real one.
    """
    state = party.record.current
    assert state is not None
    chain_key = state.sender_chain_key
    for _ in range(steps):
        chain_key = ratchet.next_chain_key(chain_key)
    state.sender_chain_key = chain_key
    state.sender_index += steps


def u_key(u: int) -> PublicKey:
    return PublicKey((u % 2**256).to_bytes(32, "little"))


def mixed_order_key(valid: PublicKey) -> PublicKey:
    """``valid`` plus a point of order 8: on the curve, but not in the prime-order subgroup."""
    u = int.from_bytes(valid.raw, "little")
    y = (u - 1) * pow(u + 1, _P - 2, _P) % _P
    order8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
    mixed = sodium.crypto_core_ed25519_add(y.to_bytes(32, "little"), order8)
    ym = int.from_bytes(mixed, "little") & ((1 << 255) - 1)
    return u_key((1 + ym) * pow(1 - ym, _P - 2, _P) % _P)


# --- set-up and message types ---------------------------------------------------------------


@pytest.mark.parametrize("one_time", [True, False], ids=["with-one-time", "no-one-time"])
def test_full_setup_and_prekey_framing(one_time: bool) -> None:
    alice, bob = make_pair(f"setup {one_time}")
    alice.initiate(bob.bundle(one_time=one_time))
    m1 = alice.encrypt(b"m1")
    m2 = alice.encrypt(b"m2")
    assert (m1.type, m2.type) == (PREKEY_TYPE, PREKEY_TYPE)

    assert bob.decrypt(m1) == b"m1"
    result = bob.last_prekey_result
    assert result is not None
    assert result.used_one_time_prekey_id == (ONE_TIME_PREKEY_ID if one_time else None)
    assert result.used_kyber_prekey_id == KYBER_PREKEY_ID
    assert result.used_signed_prekey_id == SIGNED_PREKEY_ID
    assert result.remote_identity == alice.public_identity
    looked_up = {kind for kind, _ in bob.prekeys.lookups}
    assert ("one-time" in looked_up) == one_time

    # Bob decrypted, but Alice has not heard back: she keeps sending PreKey messages.
    m3 = alice.encrypt(b"m3")
    assert m3.type == PREKEY_TYPE
    headers = [PreKeySignalMessage.parse(m.serialized) for m in (m1, m2, m3)]
    for h in headers:
        assert h.base_key == headers[0].base_key
        assert h.kyber_ciphertext == headers[0].kyber_ciphertext
        assert h.pre_key_id == (ONE_TIME_PREKEY_ID if one_time else None)
        assert (h.signed_pre_key_id, h.kyber_pre_key_id) == (SIGNED_PREKEY_ID, KYBER_PREKEY_ID)
        assert h.registration_id == alice.local.registration_id
    assert [h.message.counter for h in headers] == [0, 1, 2]

    reply = bob.encrypt(b"r1")
    assert reply.type == WHISPER_TYPE  # the responder never sends PreKey messages
    assert alice.encrypt(b"m4").type == PREKEY_TYPE  # reply not yet decrypted
    assert alice.decrypt(reply) == b"r1"
    m5 = alice.encrypt(b"m5")
    assert m5.type == WHISPER_TYPE

    assert bob.decrypt(m2) == b"m2"
    assert bob.last_prekey_result is not None
    assert bob.last_prekey_result.used_one_time_prekey_id is None  # session reused
    assert bob.decrypt(m3) == b"m3"
    assert bob.decrypt(m5) == b"m5"
    ping_pong(alice, bob)
    assert alice.record.current is not None
    assert alice.record.current.pending_prekey is None


def test_responder_cannot_send_first() -> None:
    _, bob = make_pair("bob first")
    with pytest.raises(NoSessionError):
        bob.encrypt(b"x")


# --- bundle signatures ----------------------------------------------------------------------


def _flip(sig: bytes, i: int) -> bytes:
    return sig[:i] + bytes((sig[i] ^ 0x01,)) + sig[i + 1 :]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(
            lambda b, _m: dataclasses.replace(
                b, signed_prekey_signature=_flip(b.signed_prekey_signature, 0)
            ),
            id="signed-R",
        ),
        pytest.param(
            lambda b, _m: dataclasses.replace(
                b, signed_prekey_signature=_flip(b.signed_prekey_signature, 40)
            ),
            id="signed-s",
        ),
        pytest.param(
            lambda b, _m: dataclasses.replace(
                b, kyber_prekey_signature=_flip(b.kyber_prekey_signature, 0)
            ),
            id="kyber-R",
        ),
        pytest.param(
            lambda b, _m: dataclasses.replace(
                b, kyber_prekey_signature=_flip(b.kyber_prekey_signature, 40)
            ),
            id="kyber-s",
        ),
        pytest.param(
            lambda b, _m: dataclasses.replace(
                b,
                signed_prekey_signature=b.kyber_prekey_signature,
                kyber_prekey_signature=b.signed_prekey_signature,
            ),
            id="swapped",
        ),
        pytest.param(lambda b, _m: dataclasses.replace(b, signed_prekey_signature=b""), id="empty"),
        pytest.param(
            lambda b, m: dataclasses.replace(b, identity_key=m.public_identity),
            id="other-identity",
        ),
        pytest.param(
            lambda b, m: dataclasses.replace(
                b, signed_prekey=m.prekeys.signed[SIGNED_PREKEY_ID].public_key
            ),
            id="other-signed-prekey",
        ),
        pytest.param(
            lambda b, m: dataclasses.replace(
                b, kyber_prekey=m.prekeys.kyber[KYBER_PREKEY_ID].public_key
            ),
            id="other-kyber-prekey",
        ),
    ],
)
def test_bad_bundle_signature_refused_record_unchanged(spoil: Callable[..., object]) -> None:
    alice, bob = establish("bad signature")
    mallory = make_party("mallory")
    before = alice.record_bytes()
    bad = spoil(bob.bundle(one_time=False), mallory)
    with pytest.raises(InvalidSignatureError):
        alice.initiate(bad)  # type: ignore[arg-type]
    assert alice.record_bytes() == before
    fresh = make_party("alice2")
    with pytest.raises(InvalidSignatureError):
        fresh.initiate(bad)  # type: ignore[arg-type]
    assert fresh.record.current is None
    assert fresh.record.previous == []


# --- base key -------------------------------------------------------------------------------

_NON_CANONICAL = {
    "u=0 (order 2)": lambda k: u_key(0),
    "u=1 (order 1/4)": lambda k: u_key(1),
    "u=p-1": lambda k: u_key(_P - 1),
    "order 8 a": lambda k: u_key(
        325606250916557431795983626356110631294008115727848805560023387167927233504
    ),
    "order 8 b": lambda k: u_key(
        39382357235489614581723060781553021112529911719440698176882885853963445705823
    ),
    "u=p": lambda k: u_key(_P),
    "u=p+1": lambda k: u_key(_P + 1),
    "u=p+9 (base point, unreduced)": lambda k: u_key(_P + 9),
    "u=2^255-1": lambda k: u_key(2**255 - 1),
    "valid key with bit 255 set": lambda k: u_key(int.from_bytes(k.raw, "little") | 1 << 255),
    "mixed order (valid + order-8)": mixed_order_key,
}


@pytest.mark.parametrize("make_key", list(_NON_CANONICAL.values()), ids=list(_NON_CANONICAL))
def test_non_canonical_base_key_refused(make_key: Callable[[PublicKey], PublicKey]) -> None:
    alice, bob = make_pair("base key")
    alice.initiate(bob.bundle())
    real = alice.encrypt(b"x").serialized
    base = PreKeySignalMessage.parse(real).base_key
    bad_key = make_key(base)
    assert not bad_key.is_canonical()
    forged = prekey(rebuild_prekey(real, base_key=bad_key))
    assert_fails_unchanged(bob, forged, InvalidKeyError)
    assert bob.record.current is None
    assert bob.decrypt(prekey(real)) == b"x"  # the genuine message still works


# --- unknown prekeys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("signed_pre_key_id", "signed prekey"),
        ("kyber_pre_key_id", "Kyber prekey"),
        ("pre_key_id", "one-time prekey"),
    ],
)
def test_unknown_prekey_id(field: str, kind: str) -> None:
    alice, bob = make_pair("unknown prekey")
    alice.initiate(bob.bundle())
    real = alice.encrypt(b"x").serialized
    forged = prekey(rebuild_prekey(real, **{field: 999}))
    err = assert_fails_unchanged(bob, forged, InvalidPreKeyError)
    assert isinstance(err, InvalidPreKeyError)
    assert (err.kind, err.key_id) == (kind, 999)
    assert bob.decrypt(prekey(real)) == b"x"


def test_used_one_time_prekey_refused_for_a_new_session() -> None:
    alice, bob = make_pair("reused one-time prekey")
    bundle = bob.bundle()
    alice.initiate(bundle)
    assert bob.decrypt(alice.encrypt(b"first")) == b"first"
    assert ONE_TIME_PREKEY_ID not in bob.prekeys.one_time  # retired
    alice.initiate(bundle)  # a stale bundle, a new base key: needs the one-time prekey again
    err = assert_fails_unchanged(bob, alice.encrypt(b"second"), InvalidPreKeyError)
    assert isinstance(err, InvalidPreKeyError)
    assert (err.kind, err.key_id) == ("one-time prekey", ONE_TIME_PREKEY_ID)


# --- trust ----------------------------------------------------------------------------------


def test_untrusted_identity_on_initiate() -> None:
    alice, bob = make_pair("untrusted initiate")
    alice.trust = trust_none
    with pytest.raises(UntrustedIdentityError):
        alice.initiate(bob.bundle())
    assert alice.record.current is None


def test_untrusted_identity_on_encrypt() -> None:
    alice, _ = establish("untrusted encrypt")
    alice.trust = trust_none
    before = alice.record_bytes()
    with pytest.raises(UntrustedIdentityError):
        alice.encrypt(b"x")
    assert alice.record_bytes() == before


def test_untrusted_identity_on_decrypt_signal() -> None:
    alice, bob = establish("untrusted signal")
    message = alice.encrypt(b"x")
    assert message.type == WHISPER_TYPE
    bob.trust = trust_none
    assert_fails_unchanged(bob, message, UntrustedIdentityError)
    bob.trust = lambda key: key == alice.public_identity
    assert bob.decrypt(message) == b"x"


def test_untrusted_identity_on_the_next_message_of_a_known_chain() -> None:
    """The in-order receive path (the next message of a chain Bob knows) checks trust too."""
    alice, bob = establish("untrusted in order")
    assert bob.decrypt(alice.encrypt(b"first")) == b"first"  # Bob now knows the chain
    message = alice.encrypt(b"second")
    bob.trust = trust_none
    assert_fails_unchanged(bob, message, UntrustedIdentityError)
    bob.trust = lambda key: key == alice.public_identity
    assert bob.decrypt(message) == b"second"


def test_untrusted_reply_leaves_pending_session_unacknowledged() -> None:
    """An authentic reply from an untrusted identity must not acknowledge the session."""
    alice, bob = make_pair("untrusted reply")
    alice.initiate(bob.bundle())
    assert bob.decrypt(alice.encrypt(b"hi")) == b"hi"
    reply = bob.encrypt(b"reply")
    alice.trust = trust_none
    assert_fails_unchanged(alice, reply, UntrustedIdentityError)
    assert alice.record.current is not None
    assert alice.record.current.pending_prekey is not None
    alice.trust = lambda key: True
    assert alice.encrypt(b"still a PreKey message").type == PREKEY_TYPE


def test_untrusted_identity_on_decrypt_prekey() -> None:
    alice, bob = make_pair("untrusted prekey")
    alice.initiate(bob.bundle())
    message = alice.encrypt(b"x")
    bob.trust = trust_none
    assert_fails_unchanged(bob, message, UntrustedIdentityError)
    assert bob.prekeys.lookups == []  # refused before any prekey is touched
    seen: list[PublicKey] = []
    bob.trust = lambda key: seen.append(key) or key == alice.public_identity
    assert bob.decrypt(message) == b"x"
    assert seen
    assert all(key == alice.public_identity for key in seen)


# --- no session, expiry ---------------------------------------------------------------------


def test_no_session() -> None:
    alice, _ = establish("no session")
    message = alice.encrypt(b"x")
    stranger = make_party("stranger")
    with pytest.raises(NoSessionError):
        stranger.encrypt(b"x")
    assert_fails_unchanged(stranger, message, NoSessionError)
    assert stranger.record.current is None


def test_unacknowledged_session_expires_after_30_days() -> None:
    alice, bob = make_pair("expiry")
    alice.initiate(bob.bundle(), now_ms=T0_MS)
    assert alice.encrypt(b"a", now_ms=T0_MS + MAX_UNACKNOWLEDGED_MS).type == PREKEY_TYPE
    before = alice.record_bytes()
    with pytest.raises(SessionExpiredError):
        alice.encrypt(b"b", now_ms=T0_MS + MAX_UNACKNOWLEDGED_MS + 1)
    assert alice.record_bytes() == before


def test_acknowledged_session_never_expires() -> None:
    alice, _ = establish("no expiry")
    assert alice.encrypt(b"a", now_ms=T0_MS + 100 * MAX_UNACKNOWLEDGED_MS).type == WHISPER_TYPE


# --- duplicates -----------------------------------------------------------------------------


def test_duplicate_whisper_message() -> None:
    alice, bob = establish("dup")
    m = alice.encrypt(b"x")
    assert bob.decrypt(m) == b"x"
    err = assert_fails_unchanged(bob, m, DuplicateMessageError)
    assert isinstance(err, DuplicateMessageError)
    assert (err.counter, err.chain_index) == (0, 1)


def test_duplicate_after_skipped_key_used() -> None:
    alice, bob = establish("dup skipped")
    m = [alice.encrypt(f"m{i}".encode()) for i in range(4)]
    assert bob.decrypt(m[3]) == b"m3"
    assert bob.decrypt(m[1]) == b"m1"  # a skipped key, used once
    for i in (1, 3):
        assert_fails_unchanged(bob, m[i], DuplicateMessageError)
    assert bob.decrypt(m[0]) == b"m0"
    assert bob.decrypt(m[2]) == b"m2"
    for i in range(4):
        assert_fails_unchanged(bob, m[i], DuplicateMessageError)


def test_duplicate_prekey_message() -> None:
    alice, bob = make_pair("dup prekey")
    alice.initiate(bob.bundle())
    m = alice.encrypt(b"x")
    assert bob.decrypt(m) == b"x"
    # Not InvalidPreKeyError (the one-time key is gone), but a duplicate of a known session.
    assert_fails_unchanged(bob, m, DuplicateMessageError)


def test_duplicate_on_an_older_chain() -> None:
    alice, bob = establish("dup old chain")
    m = alice.encrypt(b"old")
    assert bob.decrypt(m) == b"old"
    ping_pong(alice, bob, "1")
    ping_pong(alice, bob, "2")
    assert_fails_unchanged(bob, m, DuplicateMessageError)


def test_duplicate_on_an_archived_state() -> None:
    alice, bob = establish("dup archived")
    m = alice.encrypt(b"old session")
    assert bob.decrypt(m) == b"old session"
    alice.initiate(bob.bundle(one_time=False))
    assert bob.decrypt(alice.encrypt(b"new session")) == b"new session"
    assert len(bob.record.previous) == 1
    assert_fails_unchanged(bob, m, DuplicateMessageError)


# --- receiving-chain limit ------------------------------------------------------------------


def test_five_receiving_chains_kept() -> None:
    alice, bob = establish("chains")
    rounds = MAX_RECEIVER_CHAINS + 2
    held = []
    for i in range(rounds):
        held.append(alice.encrypt(f"held {i}".encode()))
        ping_pong(alice, bob, str(i))
    keys = [SignalMessage.parse(m.serialized).ratchet_key for m in held]
    assert len(set(keys)) == rounds  # one held message per chain
    bob_state = bob.record.current
    assert bob_state is not None
    assert len(bob_state.receiver_chains) == MAX_RECEIVER_CHAINS
    # The chains Bob keeps are the 5 newest; held[-5:] are on them, held[-6] is not.
    sixth_newest = held[-MAX_RECEIVER_CHAINS - 1]
    assert_fails_unchanged(bob, sixth_newest, BadMacError)
    for m in held[-MAX_RECEIVER_CHAINS:]:
        assert bob.decrypt(m).startswith(b"held ")
    assert_fails_unchanged(bob, held[0], BadMacError)


# --- skipped-key limit ----------------------------------------------------------------------


def test_skipped_keys_capped_per_chain() -> None:
    alice, bob = establish("skipped cap")
    n = MAX_SKIPPED_PER_CHAIN + 2
    m = [alice.encrypt(i.to_bytes(4, "big")) for i in range(n)]
    assert bob.decrypt(m[n - 1]) == (n - 1).to_bytes(4, "big")  # skips 2001 keys
    state = bob.record.current
    assert state is not None
    chain = state.find_chain(SignalMessage.parse(m[0].serialized).ratchet_key)
    assert chain is not None
    assert len(chain.skipped) == MAX_SKIPPED_PER_CHAIN
    assert_fails_unchanged(bob, m[0], DuplicateMessageError)  # the oldest was dropped
    assert bob.decrypt(m[1]) == (1).to_bytes(4, "big")  # the next oldest kept
    assert bob.decrypt(m[n - 2]) == (n - 2).to_bytes(4, "big")


def test_skipped_keys_evicted_oldest_first_across_jumps() -> None:
    alice, bob = establish("skipped evict")
    m = [alice.encrypt(i.to_bytes(4, "big")) for i in range(2501)]
    assert bob.decrypt(m[1000]) == (1000).to_bytes(4, "big")  # 0..999 skipped
    assert bob.decrypt(m[2500]) == (2500).to_bytes(4, "big")  # + 1001..2499: 2499 > 2000
    assert_fails_unchanged(bob, m[498], DuplicateMessageError)
    for i in (499, 999, 1001, 2499):
        assert bob.decrypt(m[i]) == i.to_bytes(4, "big")


# --- forward-jump limit ---------------------------------------------------------------------


def _clone(party: Party, name: str) -> Party:
    twin = dataclasses.replace(party, name=name, prekeys=party.prekeys.copy())
    twin.record = deserialize_record(serialize_record(party.record))
    return twin


@pytest.mark.parametrize("fresh_chain", [True, False], ids=["new-chain", "known-chain"])
def test_forward_jump_limit(fresh_chain: bool) -> None:
    alice, bob = establish(f"jump {fresh_chain}")
    if not fresh_chain:
        assert bob.decrypt(alice.encrypt(b"first")) == b"first"  # Bob's chain index is 1
    start = 0 if fresh_chain else 1
    for jump, ok in ((MAX_FORWARD_JUMP, True), (MAX_FORWARD_JUMP + 1, False)):
        a, b = _clone(alice, "a"), _clone(bob, "b")
        advance_sender(a, jump)
        message = a.encrypt(b"far")
        assert SignalMessage.parse(message.serialized).counter == start + jump
        if ok:
            assert b.decrypt(message) == b"far"
        else:
            err = assert_fails_unchanged(b, message, TooFarAheadError)
            assert isinstance(err, TooFarAheadError)
            assert (err.chain_index, err.counter, err.limit) == (
                start,
                start + jump,
                MAX_FORWARD_JUMP,
            )


def test_no_forward_jump_limit_with_oneself() -> None:
    me = make_party("me")
    other_device = make_party("me, device 2", identity=me.identity)
    me.initiate(other_device.bundle())
    ping_pong(me, other_device)
    advance_sender(me, MAX_FORWARD_JUMP + 10)
    assert other_device.decrypt(me.encrypt(b"far")) == b"far"


# --- archived states ------------------------------------------------------------------------


def test_archived_states_tried_and_capped() -> None:
    alice, bob = make_pair("archived")
    sessions = MAX_ARCHIVED_STATES + 2
    held, base_keys = [], []
    for i in range(sessions):
        alice.initiate(bob.bundle(one_time=False))
        first = alice.encrypt(f"hello {i}".encode())
        base_keys.append(PreKeySignalMessage.parse(first.serialized).base_key)
        assert bob.decrypt(first) == f"hello {i}".encode()
        assert alice.decrypt(bob.encrypt(b"ack")) == b"ack"
        held.append(alice.encrypt(f"held {i}".encode()))
        assert held[-1].type == WHISPER_TYPE
    assert len(bob.record.previous) == MAX_ARCHIVED_STATES
    # held[0]'s state is the 42nd newest: gone. held[1]'s is the oldest archived one.
    assert_fails_unchanged(bob, held[0], BadMacError)
    assert bob.decrypt(held[1]) == b"held 1"
    assert bob.record.current is not None
    assert bob.record.current.alice_base_key == base_keys[1]  # promoted
    assert len(bob.record.previous) == MAX_ARCHIVED_STATES
    assert bob.record.previous[0].alice_base_key == base_keys[-1]
    assert bob.decrypt(held[-1]) == f"held {sessions - 1}".encode()
    assert bob.record.current.alice_base_key == base_keys[-1]
    assert bob.decrypt(held[20]) == b"held 20"
    # Replies go out on the promoted state and Alice finds it among her own archived states.
    assert alice.decrypt(bob.encrypt(b"on session 20")) == b"on session 20"


# --- base-key reuse -------------------------------------------------------------------------


def test_prekey_message_reuses_session_out_of_order() -> None:
    alice, bob = make_pair("reuse")
    alice.initiate(bob.bundle())
    p0, p1 = alice.encrypt(b"p0"), alice.encrypt(b"p1")
    assert bob.decrypt(p1) == b"p1"
    assert bob.last_prekey_result is not None
    assert bob.last_prekey_result.used_one_time_prekey_id == ONE_TIME_PREKEY_ID
    assert ONE_TIME_PREKEY_ID not in bob.prekeys.one_time
    bob.prekeys.lookups.clear()
    assert bob.decrypt(p0) == b"p0"
    result = bob.last_prekey_result
    assert result is not None
    assert (result.used_one_time_prekey_id, result.used_kyber_prekey_id) == (None, None)
    assert result.used_signed_prekey_id is None
    assert bob.prekeys.lookups == []
    assert bob.record.previous == []


def test_prekey_message_reuses_archived_session() -> None:
    alice, bob = make_pair("reuse archived")
    alice.initiate(bob.bundle())
    p0, p1 = alice.encrypt(b"p0"), alice.encrypt(b"p1")
    assert bob.decrypt(p0) == b"p0"
    first_base = PreKeySignalMessage.parse(p1.serialized).base_key
    second = make_party("alice, reinstalled", "x", identity=alice.identity)
    second.initiate(bob.bundle(one_time=False))
    assert bob.decrypt(second.encrypt(b"q0")) == b"q0"
    assert len(bob.record.previous) == 1
    bob.prekeys.lookups.clear()
    assert bob.decrypt(p1) == b"p1"  # the one-time prekey is gone, so only reuse works
    assert bob.prekeys.lookups == []
    assert len(bob.record.previous) == 1
    assert bob.record.current is not None
    assert bob.record.current.alice_base_key == first_base


# --- failures change nothing ----------------------------------------------------------------


def _busy_pair() -> tuple[Party, Party, list[CiphertextMessage]]:
    """Bob with an archived state, several chains and skipped keys; unsent Alice messages."""
    alice, bob = establish("busy")
    old = alice.encrypt(b"old")
    alice.initiate(bob.bundle(one_time=False))
    assert bob.decrypt(alice.encrypt(b"new")) == b"new"
    assert alice.decrypt(bob.encrypt(b"ack")) == b"ack"
    ping_pong(alice, bob)
    held = [alice.encrypt(f"h{i}".encode()) for i in range(3)]
    assert bob.decrypt(held[2]) == b"h2"
    ping_pong(alice, bob)
    return alice, bob, [old, *held]


def _set_byte(data: bytes, i: int, value: int) -> bytes:
    i %= len(data)
    return data[:i] + bytes((value,)) + data[i + 1 :]


FAILURES: dict[str, tuple[Callable[[Party, Party, list[CiphertextMessage]], bytes], type]] = {
    "bad MAC": (
        lambda a, b, h: _set_byte(h[1].serialized, -1, h[1].serialized[-1] ^ 1),
        BadMacError,
    ),
    "bad MAC, new ratchet key": (
        lambda a, b, h: (m := a.encrypt(b"z").serialized)[:-1] + bytes((m[-1] ^ 1,)),
        BadMacError,
    ),
    "bad MAC, archived state": (
        lambda a, b, h: _set_byte(h[0].serialized, -2, h[0].serialized[-2] ^ 0x80),
        BadMacError,
    ),
    "duplicate": (lambda a, b, h: h[3].serialized, DuplicateMessageError),
    "too far ahead": (
        lambda a, b, h: (advance_sender(a, MAX_FORWARD_JUMP + 1), a.encrypt(b"f"))[1].serialized,
        TooFarAheadError,
    ),
    "version 3": (lambda a, b, h: _set_byte(h[1].serialized, 0, 0x33), DecodeError),
    "version 5": (lambda a, b, h: _set_byte(h[1].serialized, 0, 0x54), UnsupportedVersionError),
    "legacy version 2": (
        lambda a, b, h: _set_byte(h[1].serialized, 0, 0x22),
        UnsupportedVersionError,
    ),
    "garbage": (lambda a, b, h: b"\x44" + bytes(range(60)), DecodeError),
    "empty": (lambda a, b, h: b"", DecodeError),
    "truncated": (lambda a, b, h: h[1].serialized[:20], DecodeError),
    "small-order ratchet key": (
        lambda a, b, h: (
            SignalMessage.build(
                mac_key=bytes(32),
                ratchet_key=u_key(0),
                counter=0,
                previous_counter=0,
                ciphertext=bytes(16),
                sender_identity=a.public_identity,
                receiver_identity=b.public_identity,
            ).serialized
        ),
        InvalidKeyError,
    ),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_failed_decrypt_leaves_record_identical(name: str) -> None:
    alice, bob, held = _busy_pair()
    make, error = FAILURES[name]
    data = make(alice, bob, held)
    assert_fails_unchanged(bob, whisper(data), error)
    # and the untouched held messages still decrypt afterwards
    assert bob.decrypt(held[2]) == b"h1"
    assert bob.decrypt(held[0]) == b"old"


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("mac", BadMacError),
        ("ciphertext", BadMacError),
        ("counter", DuplicateMessageError),  # 1 -> 0, already decrypted
        ("version", BadMacError),  # 0x44 -> 0x45: same version, the MAC covers the byte
    ],
)
def test_tampered_next_message_of_a_known_chain_refused(where: str, error: type) -> None:
    """The in-order receive path authenticates like the general one."""
    alice, bob = establish(f"tamper in order {where}")
    assert bob.decrypt(alice.encrypt(b"first")) == b"first"
    real = alice.encrypt(b"second!").serialized
    position = {"mac": -1, "ciphertext": -MAC_LEN - 1, "counter": 37, "version": 0}[where]
    tampered = _set_byte(real, position, real[position] ^ 0x01)
    assert_fails_unchanged(bob, whisper(tampered), error)
    assert bob.decrypt(whisper(real)) == b"second!"


def test_failed_prekey_decrypt_of_new_session_leaves_record_identical() -> None:
    alice, bob, _ = _busy_pair()
    newcomer = make_party("alice, new install", "n", identity=alice.identity)
    newcomer.initiate(bob.bundle(one_time=False))
    real = newcomer.encrypt(b"x").serialized
    inner = PreKeySignalMessage.parse(real).message.serialized
    bad_inner = SignalMessage.parse(inner[:-1] + bytes((inner[-1] ^ 1,)))
    forged = rebuild_prekey(real, message=bad_inner)
    # The responder state is built, then the MAC fails: nothing of it may stay.
    assert_fails_unchanged(bob, prekey(forged), BadMacError)
    assert_fails_unchanged(bob, prekey(real[:-5]), DecodeError)
    assert bob.decrypt(prekey(real)) == b"x"


# --- SPQR -----------------------------------------------------------------------------------


def test_spqr_required_when_mac_fails_with_pq_ratchet() -> None:
    alice, bob = establish("spqr")
    m = alice.encrypt(b"x").serialized
    forged = whisper(add_pq_ratchet(m, b"\x01" * 40))
    err = assert_fails_unchanged(bob, forged, SpqrRequiredError)
    assert isinstance(err, BadMacError)
    assert isinstance(err, DecryptionError)
    # An empty field 5 is "no SPQR": a plain bad MAC.
    empty = assert_fails_unchanged(bob, whisper(add_pq_ratchet(m, b"")), BadMacError)
    assert not isinstance(empty, SpqrRequiredError)
    assert bob.decrypt(whisper(m)) == b"x"


def test_spqr_required_inside_prekey_message() -> None:
    alice, bob = make_pair("spqr prekey")
    alice.initiate(bob.bundle())
    real = alice.encrypt(b"x").serialized
    inner = PreKeySignalMessage.parse(real).message.serialized
    forged = rebuild_prekey(real, message=SignalMessage.parse(add_pq_ratchet(inner, b"pq")))
    assert_fails_unchanged(bob, prekey(forged), SpqrRequiredError)
    assert bob.decrypt(prekey(real)) == b"x"


def test_pq_ratchet_covered_by_a_valid_mac_is_ignored() -> None:
    alice, bob = establish("spqr valid mac")
    keys = next_message_keys(alice)
    m = alice.encrypt(b"x").serialized
    resigned = add_pq_ratchet(m, b"pq", keys.mac_key, (alice.public_identity, bob.public_identity))
    assert SignalMessage.parse(resigned).pq_ratchet == b"pq"
    assert bob.decrypt(whisper(resigned)) == b"x"


# --- repr hides secrets ---------------------------------------------------------------------


def _secrets(party: Party) -> list[bytes]:
    out = [party.identity.secret_bytes()]
    out += [k.secret_bytes() for k in party.prekeys.signed.values()]
    out += [k.secret_bytes() for k in party.prekeys.one_time.values()]
    out += [k.seed_bytes() for k in party.prekeys.kyber.values()]
    states = [party.record.current, *party.record.previous]
    for s in states:
        assert s is not None
        out += [s.root_key, s.sender_chain_key, s.sender_ratchet.secret_bytes()]
        for c in s.receiver_chains:
            out.append(c.chain_key)
            out += list(c.skipped.values())
    return out


def _assert_hidden(text: str, secrets: list[bytes]) -> None:
    for secret in secrets:
        assert secret.hex() not in text
        assert secret[:8].hex() not in text
        assert repr(secret)[2:-1][:24] not in text


def test_repr_hides_secrets() -> None:
    alice, bob = make_pair("repr")
    alice.initiate(bob.bundle())
    held = [alice.encrypt(b"secret plaintext %d" % i) for i in range(3)]
    assert bob.decrypt(held[2]) == b"secret plaintext 2"  # Bob keeps skipped seeds
    result = bob.last_prekey_result
    secrets = _secrets(alice) + _secrets(bob)
    keys = next_message_keys(alice)
    secrets += list(keys)
    texts = [repr(alice.record), repr(bob.record), repr(keys), str(keys), repr(result)]
    for party in (alice, bob):
        texts += [repr(party.local), repr(party.identity), str(party.identity)]
        texts += [repr(k) for k in party.prekeys.kyber.values()]
        for s in [party.record.current, *party.record.previous]:
            assert s is not None
            texts += [repr(s), str(s), repr(s.sender_ratchet)]
            texts += [repr(c) for c in s.receiver_chains]
            texts.append(repr(s.pending_prekey))
    texts += [repr(m) for m in held]
    texts += [repr(PreKeySignalMessage.parse(m.serialized)) for m in held]
    joined = "\n".join(texts)
    _assert_hidden(joined, secrets)
    assert b"secret plaintext".hex() not in joined
    assert "secret plaintext" not in joined


@pytest.mark.parametrize("name", list(FAILURES))
def test_error_messages_hide_secrets(name: str) -> None:
    alice, bob, held = _busy_pair()
    make, _ = FAILURES[name]
    data = make(alice, bob, held)
    secrets = _secrets(alice) + _secrets(bob)
    with pytest.raises(RemoteError) as info:
        bob.decrypt(whisper(data))
    err = info.value
    _assert_hidden("\n".join([str(err), repr(err), *getattr(err, "__notes__", [])]), secrets)


def test_empty_record_repr() -> None:
    assert "archived=0" in repr(SessionRecord())
    assert PrivateKey(bytes(32)).secret_bytes().hex() not in repr(PrivateKey(bytes(32)))


# --- regressions of bugs found by these tests ------------------------------------------------


def test_forged_message_never_raises_untrusted_identity() -> None:
    """Trust is checked only once a state has authenticated the message (as libsignal does).

    It used to be checked first, so a forged message made Veil report an identity change
    whenever the record held a state of a no-longer-trusted identity.
    """
    alice, bob = make_pair("trust order")
    alice.initiate(bob.bundle())
    assert bob.decrypt(alice.encrypt(b"old install")) == b"old install"
    reinstalled = make_party("alice reinstalled")  # a new identity key
    reinstalled.initiate(bob.bundle(one_time=False))
    assert bob.decrypt(reinstalled.encrypt(b"new install")) == b"new install"
    bob.trust = lambda key: key == reinstalled.public_identity  # the user accepted the new key
    forged = SignalMessage.build(
        mac_key=bytes(32),
        ratchet_key=PrivateKey(bytes(range(32))).public_key,
        counter=0,
        previous_counter=0,
        ciphertext=bytes(16),
        sender_identity=reinstalled.public_identity,
        receiver_identity=bob.public_identity,
    )
    assert_fails_unchanged(bob, whisper(forged.serialized), BadMacError)


def test_records_can_be_deep_copied() -> None:
    """Keys forbid ``__setattr__``; they once broke ``copy``/``deepcopy`` of whole records."""
    alice, _ = establish("deepcopy")
    twin = copy.deepcopy(alice.record)
    assert serialize_record(twin) == alice.record_bytes()


def test_limits_are_libsignals() -> None:
    """The other tests read the limits from ``state``; pin their values to WIRE.md §3.6-3.7."""
    assert MAX_RECEIVER_CHAINS == 5
    assert MAX_SKIPPED_PER_CHAIN == 2000
    assert MAX_FORWARD_JUMP == 25_000
    assert MAX_ARCHIVED_STATES == 40
    assert MAX_UNACKNOWLEDGED_MS == 30 * 24 * 60 * 60 * 1000


def test_reused_session_refuses_a_header_with_another_identity() -> None:
    """A PreKey message whose base key names a known session but whose (unauthenticated)
    header carries another identity key is refused, and the record is unchanged."""
    alice, bob = make_pair("forged header identity")
    alice.initiate(bob.bundle())
    first = alice.encrypt(b"one")
    second = alice.encrypt(b"two")
    assert bob.decrypt(first) == b"one"
    stranger = PrivateKey.generate(bob.rng).public_key
    forged = prekey(rebuild_prekey(second.serialized, identity_key=stranger))
    assert_fails_unchanged(bob, forged, BadMacError)
    assert bob.decrypt(second) == b"two"
    assert bob.last_prekey_result is not None
    assert bob.last_prekey_result.remote_identity == alice.public_identity
