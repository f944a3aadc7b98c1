"""Live 1:1 interop between Veil and libsignal 0.90.0 (WIRE.md §3; harness README).

Every scenario runs for each ordered pair of the ``pair`` fixture: Veil starts and libsignal
responds, libsignal starts and Veil responds, and Veil to Veil (two processes) as a control.
0.90.0 offers SPQR on its first messages and falls back to the classic Double Ratchet when the
peer's messages carry none (WIRE.md §2), so these sessions are classic PQXDH + Double Ratchet.

Each test uses fresh user names, so the peer processes are shared; plaintexts are compared
byte for byte; random choices come from a ``random.Random`` seeded per test.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from .peers import (
    Envelope,
    JsonPeer,
    Pair,
    Party,
    PbField,
    PeerCallError,
    PeerProtocolError,
    fresh_name,
    pb_field,
    pb_fields,
)

pytestmark = pytest.mark.interop

PREKEY, WHISPER = 3, 2
MAC_LEN = 8


# --- helpers ----------------------------------------------------------------------------------


def start(alice: Party, bob: Party, *, one_time_prekey: bool = True) -> dict[str, object]:
    """Create both users; alice processes bob's bundle. Returns the bundle used."""
    alice.create()
    bundle = bob.create()
    if not one_time_prekey:
        bundle = bob.bundle(no_prekey=True)
        assert bundle["prekey_id"] is None
        assert bundle["prekey"] is None
    alice.process_bundle(bob, bundle)
    return bundle


def send(
    sender: Party,
    receiver: Party,
    plaintexts: Sequence[bytes],
    *,
    expect_type: int | None = None,
) -> list[Envelope]:
    """Encrypt ``plaintexts`` and deliver them in order; checks every plaintext exactly."""
    envs = sender.encrypt_many(receiver, plaintexts)
    if expect_type is not None:
        assert [e.type for e in envs] == [expect_type] * len(envs)
    assert receiver.decrypt_many(sender, envs) == list(plaintexts)
    return envs


def handshake(alice: Party, bob: Party) -> None:
    """A full session: alice's PreKey message, bob's reply, and alice's first whisper."""
    send(alice, bob, [b"hello bob"], expect_type=PREKEY)
    send(bob, alice, [b"hello alice"], expect_type=WHISPER)
    send(alice, bob, [b"how are you"], expect_type=WHISPER)


def texts(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix} {i}".encode() for i in range(n)]


def duplicate_error_name(receiver: JsonPeer) -> str:
    return "DuplicateMessageError" if receiver.kind == "veil" else "DuplicatedMessage"


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def signal_message_fields(env: Envelope) -> tuple[bytes, list[PbField]]:
    """The SignalMessage inside ``env`` (whole bytes) and its fields, positioned in ``env``."""
    if env.type == WHISPER:
        inner, base = env.ciphertext, 0
    else:
        field = pb_field(env.ciphertext[1:], 4, offset=1)
        assert field is not None
        assert isinstance(field.value, bytes)
        inner, base = field.value, field.start
    return inner, pb_fields(inner[1:-MAC_LEN], offset=base + 1)


def field_of(fields: list[PbField], number: int) -> PbField:
    found = [f for f in fields if f.number == number]
    assert len(found) == 1, (number, fields)
    return found[0]


def assert_mac_failure(receiver: JsonPeer, response: dict[str, object], env: Envelope) -> None:
    """A tampered message is refused as a MAC failure (by name for Veil)."""
    assert response["ok"] is False, response
    assert response.get("error"), response
    if receiver.kind == "veil":
        _, fields = signal_message_fields(env)
        # A message with SPQR data (libsignal 0.90's first messages carry it) may be reported
        # as SpqrRequiredError, a BadMacError subclass; without it, plainly BadMacError.
        allowed = {"BadMacError"}
        if any(f.number == 5 and f.value for f in fields):
            allowed.add("SpqrRequiredError")
        assert response.get("error_name") in allowed, response


# --- session start ----------------------------------------------------------------------------


@pytest.mark.parametrize("prekey_mode", ["one-time", "bundle-without", "user-without"])
def test_first_messages_prekey_then_whisper(pair: Pair, prekey_mode: str) -> None:
    """Type 3 until the responder replies, type 2 after; with or without a one-time prekey."""
    alice, bob = pair.parties()
    alice.create()
    bundle = bob.create(one_time_prekey=prekey_mode != "user-without")
    if prekey_mode == "bundle-without":
        bundle = bob.bundle(no_prekey=True)
    has_otp = prekey_mode == "one-time"
    assert (bundle["prekey_id"] is not None) == has_otp
    assert (bundle["prekey"] is not None) == has_otp
    alice.process_bundle(bob, bundle)

    first = send(alice, bob, texts("before reply", 3), expect_type=PREKEY)
    pre_key_id = pb_field(first[0].ciphertext[1:], 1)
    if has_otp:
        assert pre_key_id is not None
        assert pre_key_id.value == bundle["prekey_id"]
    else:
        assert pre_key_id is None
    send(bob, alice, texts("reply", 2), expect_type=WHISPER)
    send(alice, bob, texts("after reply", 2), expect_type=WHISPER)
    send(bob, alice, [b"done"], expect_type=WHISPER)


def test_one_time_prekey_is_used_once(pair: Pair) -> None:
    """A second initiator with the same (already used) one-time prekey is refused."""
    alice, bob = pair.parties()
    bundle = start(alice, bob)
    send(alice, bob, [b"first"], expect_type=PREKEY)
    carol = Party(pair.initiator, fresh_name("carol"))
    carol.create()
    carol.process_bundle(bob, bundle)
    env = carol.encrypt(bob, b"reusing your one-time prekey")
    assert env.type == PREKEY
    res = bob.try_decrypt(carol, env)
    assert res["ok"] is False, res
    if pair.responder.kind == "veil":
        assert res["error_name"] == "InvalidPreKeyError", res
    else:
        assert "prekey" in str(res["error"]).lower(), res
    # bob's session with alice is untouched
    send(bob, alice, [b"still here"], expect_type=WHISPER)


def test_identity_keys_seen_by_each_side(pair: Pair) -> None:
    alice, bob = pair.parties()
    bundle = start(alice, bob)
    handshake(alice, bob)
    a, b = alice.identity(bob), bob.identity(alice)
    assert a["peer_identity_key"] == b["identity_key"] == bundle["identity_key"]
    assert b["peer_identity_key"] == a["identity_key"]
    assert len(bytes.fromhex(a["identity_key"])) == 33
    assert a["identity_key"].startswith("05")


@pytest.mark.parametrize(("alice_device", "bob_device"), [(3, 127), (127, 2)])
def test_registration_and_device_ids(pair: Pair, alice_device: int, bob_device: int) -> None:
    """Non-default device ids and registration ids (14-bit maximum) reach the other side."""
    alice = Party(pair.initiator, fresh_name("alice"), alice_device)
    bob = Party(pair.responder, fresh_name("bob"), bob_device)
    alice.create(registration_id=0x3FFF)
    bundle = bob.create(registration_id=4321)
    assert (bundle["device_id"], bundle["registration_id"]) == (bob_device, 4321)
    alice.process_bundle(bob, bundle)
    first = send(alice, bob, [b"hello device"], expect_type=PREKEY)[0]
    registration = pb_field(first.ciphertext[1:], 5)
    assert registration is not None
    assert registration.value == 0x3FFF
    send(bob, alice, [b"hello to you"], expect_type=WHISPER)
    a, b = alice.session_info(bob), bob.session_info(alice)
    assert (a["local_registration_id"], a["remote_registration_id"]) == (0x3FFF, 4321)
    assert (b["local_registration_id"], b["remote_registration_id"]) == (4321, 0x3FFF)
    # another device of the same name is another address: no session with it
    other_device = {"name": alice.name, "device_id": 1 if alice_device != 1 else 2}
    assert (
        bob.peer.call("session_info", user=bob.name, device_id=bob_device, peer=other_device)[
            "has_session"
        ]
        is False
    )


def test_strict_identity_refuses_changed_key(pair: Pair) -> None:
    """A responder that pins identities refuses a new session under a changed identity key."""
    alice, bob = pair.parties()
    alice.create()
    bob.create(strict_identity=True)
    alice.process_bundle(bob, bob.bundle())
    handshake(alice, bob)
    old_key = bob.identity(alice)["peer_identity_key"]
    new_key = alice.create(replace=True)["identity_key"]
    assert new_key != old_key
    alice.process_bundle(bob, bob.bundle(new_prekey=True))
    env = alice.encrypt(bob, b"new identity, same name")
    assert env.type == PREKEY
    res = bob.try_decrypt(alice, env)
    assert res["ok"] is False, res
    expected = "UntrustedIdentityError" if pair.responder.kind == "veil" else "UntrustedIdentity"
    assert res["error_name"] == expected, res
    assert bob.identity(alice)["peer_identity_key"] == old_key


# --- volume and ratchet steps -----------------------------------------------------------------


def test_burst_then_reply(pair: Pair) -> None:
    """200 messages one way (all PreKey), 200 back delivered in reverse, then more."""
    alice, bob = pair.parties()
    start(alice, bob)
    send(alice, bob, texts("burst a->b", 200), expect_type=PREKEY)
    back = bob.encrypt_many(alice, texts("burst b->a", 200))
    assert {e.type for e in back} == {WHISPER}
    assert alice.decrypt_many(bob, back[::-1]) == texts("burst b->a", 200)[::-1]
    send(alice, bob, texts("after", 3), expect_type=WHISPER)
    send(bob, alice, texts("after", 3), expect_type=WHISPER)


@pytest.mark.parametrize("style", ["ascii", "uuid"])
def test_ping_pong_many_ratchet_steps(pair: Pair, style: str) -> None:
    """60 alternating messages: every one starts a new DH ratchet step."""
    alice, bob = pair.parties(style)
    start(alice, bob)
    rnd = random.Random(f"ping-pong {style}")
    for i in range(60):
        sender, receiver = (alice, bob) if i % 2 == 0 else (bob, alice)
        payload = f"#{i} ".encode() + rnd.randbytes(rnd.randrange(0, 64))
        send(sender, receiver, [payload], expect_type=PREKEY if i == 0 else WHISPER)


def test_out_of_order_across_ratchet_steps(pair: Pair) -> None:
    """Several chains per side; one message per chain drives the ratchet, the rest arrive late.

    Alice's chain 1 (PreKey messages), bob's chain 1, alice's chain 2, bob's chain 2, alice's
    chain 3: of each only one message is delivered at first; then the newest chain arrives
    shuffled, then all the late messages of every older chain, shuffled together.
    """
    alice, bob = pair.parties()
    start(alice, bob)
    rnd = random.Random("out of order")
    late: dict[str, list[tuple[Envelope, bytes]]] = {"to bob": [], "to alice": []}

    def chain(sender: Party, receiver: Party, key: str, label: str, n: int, kind: int) -> None:
        plaintexts = texts(label, n)
        envs = sender.encrypt_many(receiver, plaintexts)
        assert [e.type for e in envs] == [kind] * n
        first = rnd.randrange(n)  # deliver one, from the middle of the chain if it falls so
        assert receiver.decrypt(sender, envs[first]) == plaintexts[first]
        late[key] += [
            (e, p) for i, (e, p) in enumerate(zip(envs, plaintexts, strict=True)) if i != first
        ]

    chain(alice, bob, "to bob", "alice chain 1", 5, PREKEY)
    chain(bob, alice, "to alice", "bob chain 1", 4, WHISPER)
    chain(alice, bob, "to bob", "alice chain 2", 5, WHISPER)
    chain(bob, alice, "to alice", "bob chain 2", 4, WHISPER)

    newest = texts("alice chain 3", 6)
    envs = alice.encrypt_many(bob, newest)
    order = list(range(6))
    rnd.shuffle(order)
    assert bob.decrypt_many(alice, [envs[i] for i in order]) == [newest[i] for i in order]

    for key, (sender, receiver) in {"to bob": (alice, bob), "to alice": (bob, alice)}.items():
        pending = late[key]
        rnd.shuffle(pending)
        got = receiver.decrypt_many(sender, [e for e, _ in pending])
        assert got == [p for _, p in pending]

    send(bob, alice, [b"all caught up"], expect_type=WHISPER)
    send(alice, bob, [b"me too"], expect_type=WHISPER)


def test_late_prekey_message_after_reply(pair: Pair) -> None:
    """A PreKey message delivered after bob replied reuses the session of its base key."""
    alice, bob = pair.parties()
    start(alice, bob)
    p1, p2, p3 = alice.encrypt_many(bob, [b"p1", b"p2", b"p3"])
    assert (p1.type, p2.type, p3.type) == (PREKEY, PREKEY, PREKEY)
    assert bob.decrypt(alice, p1) == b"p1"
    send(bob, alice, [b"reply"], expect_type=WHISPER)
    w = alice.encrypt(bob, b"w1")
    assert w.type == WHISPER
    assert bob.decrypt(alice, w) == b"w1"
    assert bob.decrypt(alice, p3) == b"p3"
    assert bob.decrypt(alice, p2) == b"p2"
    res = bob.try_decrypt(alice, p1)
    assert res["ok"] is False
    assert res["error_name"] == duplicate_error_name(pair.responder), res
    send(bob, alice, [b"reply 2"], expect_type=WHISPER)
    send(alice, bob, [b"w2"], expect_type=WHISPER)


def test_new_session_keeps_old_one_for_late_messages(pair: Pair) -> None:
    """Alice starts over from a fresh bundle; messages of the old session still decrypt."""
    alice, bob = pair.parties()
    start(alice, bob)
    handshake(alice, bob)
    old_to_bob = alice.encrypt(bob, b"old session, to bob")
    old_to_alice = bob.encrypt(alice, b"old session, to alice")

    alice.process_bundle(bob, bob.bundle(new_prekey=True))
    send(alice, bob, [b"new session"], expect_type=PREKEY)
    assert bob.decrypt(alice, old_to_bob) == b"old session, to bob"
    send(bob, alice, [b"new session reply"], expect_type=WHISPER)
    assert alice.decrypt(bob, old_to_alice) == b"old session, to alice"
    send(alice, bob, [b"on the new session"], expect_type=WHISPER)
    send(bob, alice, [b"on the new session too"], expect_type=WHISPER)


def test_simultaneous_initiation(pair: Pair) -> None:
    """Both start a session at once; each accepts the other's PreKey message."""
    alice, bob = pair.parties()
    alice_bundle, bob_bundle = alice.create(), bob.create()
    alice.process_bundle(bob, bob_bundle)
    bob.process_bundle(alice, alice_bundle)
    to_bob, to_alice = alice.encrypt(bob, b"from alice"), bob.encrypt(alice, b"from bob")
    assert (to_bob.type, to_alice.type) == (PREKEY, PREKEY)
    assert bob.decrypt(alice, to_bob) == b"from alice"
    assert alice.decrypt(bob, to_alice) == b"from bob"
    for i in range(4):
        send(alice, bob, [f"a{i}".encode()], expect_type=WHISPER)
        send(bob, alice, [f"b{i}".encode()], expect_type=WHISPER)


def test_receiving_limits_agree(pair: Pair) -> None:
    """The receiver's limits (WIRE.md §3.7): 2000 skipped keys per chain, 5 receiving chains."""
    alice, bob = pair.parties()
    start(alice, bob)
    handshake(alice, bob)
    dup = duplicate_error_name(pair.responder)

    # 2003 messages, the last delivered first: 2002 keys skipped, only the newest 2000 kept.
    plaintexts = texts("skip", 2003)
    envs = alice.encrypt_many(bob, plaintexts)
    assert bob.decrypt(alice, envs[-1]) == plaintexts[-1]
    for i in (0, 1):
        res = bob.try_decrypt(alice, envs[i])
        assert res["ok"] is False
        assert res["error_name"] == dup, res
    assert bob.decrypt_many(alice, [envs[2], envs[-2], envs[1000]]) == [
        plaintexts[2],
        plaintexts[-2],
        plaintexts[1000],
    ]

    # A message from a chain that is 4 chains old still decrypts; 5 chains old does not.
    for steps, survives in [(4, True), (5, False)]:
        old = alice.encrypt(bob, b"from an old chain")
        send(alice, bob, [b"current"], expect_type=WHISPER)
        for _ in range(steps):
            send(bob, alice, [b"step"], expect_type=WHISPER)
            send(alice, bob, [b"step"], expect_type=WHISPER)
        res = bob.try_decrypt(alice, old)
        if survives:
            assert res["ok"] is True, res
            assert bytes.fromhex(res["plaintext_hex"]) == b"from an old chain"
        else:
            assert res["ok"] is False, res
    send(bob, alice, [b"still fine"], expect_type=WHISPER)


# --- failures that must leave the session intact ----------------------------------------------


def test_replays_are_rejected(pair: Pair) -> None:
    alice, bob = pair.parties()
    start(alice, bob)
    dup_at_bob = duplicate_error_name(pair.responder)
    dup_at_alice = duplicate_error_name(pair.initiator)

    prekey_msgs = send(alice, bob, [b"p0", b"p1"], expect_type=PREKEY)
    for env in prekey_msgs:
        res = bob.try_decrypt(alice, env)
        assert res["ok"] is False
        assert res["error_name"] == dup_at_bob, res
    replies = send(bob, alice, [b"r0", b"r1", b"r2"], expect_type=WHISPER)
    res = alice.try_decrypt(bob, replies[1])
    assert res["ok"] is False
    assert res["error_name"] == dup_at_alice, res
    whispers = send(alice, bob, [b"w0", b"w1"], expect_type=WHISPER)
    for env in [whispers[0], prekey_msgs[1], whispers[1]]:
        res = bob.try_decrypt(alice, env)
        assert res["ok"] is False
        assert res["error_name"] == dup_at_bob, res
    send(bob, alice, [b"still works"], expect_type=WHISPER)
    send(alice, bob, [b"yes"], expect_type=WHISPER)


TAMPER_WHISPER = ["mac", "body", "ratchet-key", "counter", "truncated"]


@pytest.mark.parametrize("where", TAMPER_WHISPER)
def test_tampered_whisper_rejected_session_intact(pair: Pair, where: str) -> None:
    alice, bob = pair.parties()
    start(alice, bob)
    handshake(alice, bob)
    for sender, receiver in [(alice, bob), (bob, alice)]:
        env = sender.encrypt(receiver, b"the genuine message")
        assert env.type == WHISPER
        data = env.ciphertext
        _, fields = signal_message_fields(env)
        if where == "mac":
            bad = flip(data, len(data) - 1)
        elif where == "body":
            bad = flip(data, field_of(fields, 4).end - 1)
        elif where == "ratchet-key":
            bad = flip(data, field_of(fields, 1).start + 10)
        elif where == "counter":
            bad = flip(data, field_of(fields, 2).start)
        else:
            bad = data[:-3]
        res = receiver.try_decrypt(sender, env.with_ciphertext(bad))
        if where in ("mac", "body", "ratchet-key"):
            assert_mac_failure(receiver.peer, res, env)
        else:
            assert res["ok"] is False, res
            assert res.get("error"), res
        assert receiver.decrypt(sender, env) == b"the genuine message"
    send(alice, bob, [b"after tampering"], expect_type=WHISPER)
    send(bob, alice, [b"after tampering too"], expect_type=WHISPER)


@pytest.mark.parametrize("where", ["inner-mac", "inner-body", "kyber-ciphertext", "base-key"])
def test_tampered_prekey_message_rejected(pair: Pair, where: str) -> None:
    """A damaged first message creates no session and uses up no prekey."""
    alice, bob = pair.parties()
    bundle = start(alice, bob)
    env = alice.encrypt(bob, b"the genuine first message")
    assert env.type == PREKEY
    data = env.ciphertext
    outer = pb_fields(data[1:], offset=1)
    inner = field_of(outer, 4)
    _, fields = signal_message_fields(env)
    index = {
        "inner-mac": inner.end - 1,
        "inner-body": field_of(fields, 4).end - 1,
        "kyber-ciphertext": field_of(outer, 8).end - 1,
        "base-key": field_of(outer, 2).start + 5,
    }[where]
    res = bob.try_decrypt(alice, env.with_ciphertext(flip(data, index)))
    if where == "base-key":  # may be refused as a key before any MAC is checked
        assert res["ok"] is False, res
        assert res.get("error"), res
    else:
        assert_mac_failure(bob.peer, res, env)
    assert bob.session_info(alice)["has_session"] is False
    assert bob.bundle()["prekey_id"] == bundle["prekey_id"]
    assert bob.decrypt(alice, env) == b"the genuine first message"
    send(bob, alice, [b"reply"], expect_type=WHISPER)
    send(alice, bob, [b"and on"], expect_type=WHISPER)


# --- payloads ---------------------------------------------------------------------------------

SIZES = [0, 1, 15, 16, 17, 255, 1024, 65536]


def test_payload_sizes(pair: Pair) -> None:
    alice, bob = pair.parties()
    start(alice, bob)
    rnd = random.Random("payload sizes")
    first = [rnd.randbytes(n) for n in SIZES]
    envs = send(alice, bob, first, expect_type=PREKEY)
    replies = [rnd.randbytes(n) for n in SIZES]
    back = send(bob, alice, replies, expect_type=WHISPER)
    more = [rnd.randbytes(n) for n in SIZES]
    send(alice, bob, more, expect_type=WHISPER)
    # AES-256-CBC with PKCS#7: the body is the plaintext padded to the next multiple of 16.
    for env, n in zip(back, SIZES, strict=True):
        _, fields = signal_message_fields(env)
        body = field_of(fields, 4).value
        assert isinstance(body, bytes)
        assert len(body) == (n // 16 + 1) * 16
    for env, n in zip(envs, SIZES, strict=True):
        _, fields = signal_message_fields(env)
        body = field_of(fields, 4).value
        assert isinstance(body, bytes)
        assert len(body) == (n // 16 + 1) * 16


# --- safety numbers ---------------------------------------------------------------------------


def scannable_parts(hex_payload: str) -> tuple[int, bytes, bytes]:
    """(version, own fingerprint, peer's fingerprint) from a scannable payload (WIRE.md §3.8)."""
    fields = {f.number: f for f in pb_fields(bytes.fromhex(hex_payload))}
    assert set(fields) == {1, 2, 3}
    version = fields[1].value
    assert isinstance(version, int)
    parts = []
    for number in (2, 3):
        raw = fields[number].value
        assert isinstance(raw, bytes)
        inner = pb_fields(raw)
        assert [f.number for f in inner] == [1]
        assert isinstance(inner[0].value, bytes)
        assert len(inner[0].value) == 32
        parts.append(inner[0].value)
    return version, parts[0], parts[1]


@pytest.mark.parametrize(("style", "version"), [("ascii", 2), ("uuid", 2), ("ascii", 1)])
def test_safety_numbers_agree(pair: Pair, style: str, version: int) -> None:
    alice, bob = pair.parties(style)
    start(alice, bob)
    handshake(alice, bob)
    a = alice.safety_number(bob, version=version)
    b = bob.safety_number(alice, version=version)
    assert len(a["displayable"]) == 60
    assert a["displayable"].isdigit()
    assert a["displayable"] == b["displayable"]
    a_version, a_own, a_peer = scannable_parts(a["scannable"])
    b_version, b_own, b_peer = scannable_parts(b["scannable"])
    assert a_version == b_version == version
    assert a_own == b_peer
    assert a_peer == b_own
    assert a_own != a_peer


def test_safety_number_with_explicit_ids_and_keys(pair: Pair) -> None:
    """No session needed: ids and the peer key given explicitly, as an app would."""
    alice, bob = pair.parties()
    a_key = alice.create()["identity_key"]
    b_key = bob.create()["identity_key"]
    a_id, b_id = fresh_name("a", "uuid"), fresh_name("b", "uuid")
    a = alice.safety_number(bob, peer_identity_key=b_key, local_id=a_id, remote_id=b_id)
    b = bob.safety_number(alice, peer_identity_key=a_key, local_id=b_id, remote_id=a_id)
    assert a["displayable"] == b["displayable"]
    _, a_own, a_peer = scannable_parts(a["scannable"])
    _, b_own, b_peer = scannable_parts(b["scannable"])
    assert (a_own, a_peer) == (b_peer, b_own)
    # The UUID ids are used as their 16 bytes, not as text: the text form gives another number.
    c = alice.safety_number(
        bob, peer_identity_key=b_key, local_id=f"hex:{a_id.encode().hex()}", remote_id=b_id
    )
    assert c["displayable"] != a["displayable"]
    d = alice.safety_number(
        bob, peer_identity_key=b_key, local_id=f"hex:{a_id.replace('-', '')}", remote_id=b_id
    )
    assert d == {**a, "id": d["id"]}


# --- the driver itself ------------------------------------------------------------------------

_READY = 'print(\'{"id": null, "ok": true, "ready": true}\', flush=True)'


def test_hung_peer_times_out() -> None:
    peer = JsonPeer(
        "hung",
        "fake",
        [sys.executable, "-c", f"{_READY}\nimport time\ntime.sleep(60)"],
        timeout=1.0,
    )
    began = time.monotonic()
    with pytest.raises(PeerProtocolError, match="no answer within 1 s"):
        peer.call("hello")
    assert time.monotonic() - began < 10
    assert not peer.alive


def test_dead_peer_is_reported() -> None:
    peer = JsonPeer("dead", "fake", [sys.executable, "-c", f"{_READY}\nraise SystemExit(3)"])
    # Depending on timing the dead peer is noticed on write (broken pipe) or on read.
    with pytest.raises(PeerProtocolError, match=r"closed stdout|cannot write"):
        peer.call("hello")
    assert peer.close() == 3


@pytest.mark.parametrize("which", ["veil_peer", "libsignal_peer"])
def test_call_errors_carry_the_response(request: pytest.FixtureRequest, which: str) -> None:
    peer: JsonPeer = request.getfixturevalue(which)
    nobody = fresh_name("nobody")
    with pytest.raises(PeerCallError) as info:
        peer.call("get_bundle", user=nobody)
    assert info.value.response["ok"] is False
    assert nobody in info.value.error
    res = peer.try_call("no_such_op")
    assert res["ok"] is False
    assert "unknown op" in res["error"]
    assert peer.call("hello")["protocol"] == 1


def test_close_quits(libsignal_folder: Path) -> None:
    for peer in [JsonPeer.veil("veil-close"), JsonPeer.libsignal(libsignal_folder)]:
        assert peer.call("hello")["ok"] is True
        assert peer.close() == 0
        assert not peer.alive
