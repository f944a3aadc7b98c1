"""Fuzz decrypt_signal / decrypt_prekey against a fixed responder with a live session.

Contract: raise only RemoteError subclasses and leave the record byte-identical when they do;
whatever decrypts is one of the real plaintexts (only the PreKey header is not MAC'd).

Input layout: byte 0 picks the mode -- 0/1: the rest is a SignalMessage / PreKeySignalMessage
as is; 2/3: a real SignalMessage / PreKeySignalMessage of this process's session (byte 1 picks
which) XOR-patched with bytes 3.. at the offset byte 2 scales to. Modes 2/3 reach the ratchet
even though the session (Kyber encapsulation is not seeded) differs on every run.

    .venv/bin/python fuzz/fuzz_decrypt.py -max_total_time=300
"""

from __future__ import annotations

import sys

from _harness import TESTS, instrumented, run

sys.path.insert(0, str(TESTS))

with instrumented():
    from veil.core.errors import RemoteError
    from veil.core.rng import seeded_rng
    from veil.core.signal import session
    from veil.core.signal.record import deserialize_record, serialize_record

from signal_helpers import establish, make_party

_ALICE, _BOB = establish("fuzz_decrypt")
_TEXTS = [b"m0", b"m1", b"m2", b"m3", b"new session"]
_held = [_ALICE.encrypt(t) for t in _TEXTS[:4]]
assert _BOB.decrypt(_held[0]) == b"m0"
assert _BOB.decrypt(_held[2]) == b"m2"
# the next in order (fast path), a skipped key, one ahead
_WHISPER = [_held[3].serialized, _held[1].serialized, _ALICE.encrypt(b"m0").serialized]
_NEWCOMER = make_party("fuzz_decrypt newcomer", identity=_ALICE.identity)
_NEWCOMER.initiate(_BOB.bundle(one_time=False))
_PREKEY = [_NEWCOMER.encrypt(b"new session").serialized]
_BOB_RECORD = _BOB.record_bytes()


def _patched(samples: list[bytes], data: bytes) -> bytes:
    base = samples[data[1] % len(samples)] if len(data) > 1 else samples[0]
    offset = (data[2] * len(base)) // 256 if len(data) > 2 else 0
    patch = data[3:]
    middle = bytes(a ^ b for a, b in zip(base[offset : offset + len(patch)], patch, strict=False))
    return base[:offset] + middle + base[offset + len(middle) :]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode = data[0] & 3
    message = data[1:] if mode < 2 else _patched(_PREKEY if mode == 3 else _WHISPER, data)
    record = deserialize_record(_BOB_RECORD)
    rng = seeded_rng(data)
    try:
        if mode & 1:
            plaintext = session.decrypt_prekey(
                record, message, _BOB.local, _BOB.prekeys.copy(), rng=rng, trust=lambda _k: True
            ).plaintext
        else:
            plaintext = session.decrypt_signal(record, message, rng=rng, trust=lambda _k: True)
    except RemoteError:
        assert serialize_record(record) == _BOB_RECORD
        return
    assert plaintext in _TEXTS


if __name__ == "__main__":
    run(test_one_input)
