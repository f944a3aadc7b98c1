"""Veil against the newest libsignal (``LIBSIGNAL_PKG=libsignal-latest``, 0.103.0): a clean refusal.

Why these sessions cannot work (WIRE.md §2): from libsignal 0.92.0 on ("Force SPQR v1"),
every new session requires the Sparse Post-Quantum Ratchet with minimum version V1.

* Such a libsignal salts the message keys of its very first message with an SPQR key, and
  marks this in SignalMessage field 5 (``pq_ratchet``: 0x01 = SPQR v1, epoch, index, ...).
  Veil has no SPQR yet, derives unsalted keys, so the MAC cannot verify. Veil sees the SPQR
  data in field 5 and says so: ``SpqrRequiredError`` (a ``BadMacError``) naming SPQR.
* In the other direction, Veil's PreKey message carries no field 5. libsignal >= 0.92 treats
  an empty field 5 as an error ("post-quantum ratchet error: Minimum version") and its caller
  sees ``invalid PreKey message: decryption failed``.

0.90.0 (the pinned build in ``test_libsignal_interop.py``) still accepts the classic fallback.
These tests assert the expected behaviour of the current combination, not a wish: both sides
fail the one message cleanly, keep no half-made session, use up no prekey, and go on answering.
When Veil implements SPQR (its own milestone) these tests are to be replaced by the full
scenario suite against this build.
"""

from __future__ import annotations

import pytest

from .peers import JsonPeer, Party, fresh_name, pb_field, pb_fields

pytestmark = pytest.mark.interop

PREKEY = 3
MAC_LEN = 8
SPQR_MANDATORY_FROM = (0, 92)


def version_tuple(version: object) -> tuple[int, ...]:
    assert isinstance(version, str), version
    return tuple(int(part) for part in version.split("."))


def inner_signal_message_fields(prekey_message: bytes) -> dict[int, object]:
    """Fields of the SignalMessage inside a PreKeySignalMessage, by number."""
    inner = pb_field(prekey_message[1:], 4)
    assert inner is not None
    assert isinstance(inner.value, bytes)
    return {f.number: f.value for f in pb_fields(inner.value[1:-MAC_LEN])}


def test_latest_build_requires_spqr(libsignal_latest_peer: JsonPeer) -> None:
    hello = libsignal_latest_peer.call("hello")
    assert version_tuple(hello["libsignal_version"]) >= SPQR_MANDATORY_FROM, hello


def test_veil_starts_libsignal_latest_refuses_cleanly(
    veil_peer: JsonPeer, libsignal_latest_peer: JsonPeer
) -> None:
    """Veil's classic PreKey message is refused with an error; the harness keeps answering."""
    alice = Party(veil_peer, fresh_name("alice"))
    bob = Party(libsignal_latest_peer, fresh_name("bob"))
    alice.create()
    bundle = bob.create()
    alice.process_bundle(bob, bundle)
    env = alice.encrypt(bob, b"hello from a classic peer")
    assert env.type == PREKEY
    fields = inner_signal_message_fields(env.ciphertext)
    assert not fields.get(5), "Veil sends no SPQR data (field 5)"

    for _ in range(2):  # a retry fails the same way
        res = bob.try_decrypt(alice, env)
        assert res["ok"] is False, res
        assert "decryption failed" in str(res["error"]), res
    assert libsignal_latest_peer.alive
    hello = libsignal_latest_peer.call("hello")
    assert hello["libsignal_version"] == libsignal_latest_peer.ready["libsignal_version"]
    assert bob.session_info(alice)["has_session"] is False
    assert bob.bundle()["prekey_id"] == bundle["prekey_id"]  # the one-time prekey is kept


def test_libsignal_latest_starts_veil_refuses_with_spqr_error(
    veil_peer: JsonPeer, libsignal_latest_peer: JsonPeer
) -> None:
    """libsignal's SPQR-salted PreKey message: Veil names SPQR as the reason; no state kept."""
    alice = Party(libsignal_latest_peer, fresh_name("alice"))
    bob = Party(veil_peer, fresh_name("bob"))
    alice.create()
    bundle = bob.create()
    alice.process_bundle(bob, bundle)
    envs = alice.encrypt_many(bob, [b"hello from SPQR", b"second"])
    assert [e.type for e in envs] == [PREKEY, PREKEY]
    spqr = inner_signal_message_fields(envs[0].ciphertext).get(5)
    assert isinstance(spqr, bytes)
    assert spqr[:1] == b"\x01", "field 5 starts with SPQR version 1"

    for env in [envs[0], envs[1], envs[0]]:
        res = bob.try_decrypt(alice, env)
        assert res["ok"] is False, res
        assert res["error_name"] == "SpqrRequiredError", res
        assert "SPQR" in str(res["error"]), res
        assert "post-quantum" in str(res["error"]), res
    assert veil_peer.alive
    assert veil_peer.call("hello")["protocol"] == 1
    assert bob.session_info(alice)["has_session"] is False
    assert bob.bundle()["prekey_id"] == bundle["prekey_id"]  # the one-time prekey is kept
