"""Fuzz PublicKey / KyberPublicKey deserialization and scannable fingerprints.

Contract: parse or raise DecodeError (``compare`` may also raise the version-mismatch
RemoteError).

    .venv/bin/python fuzz/fuzz_keys_and_fingerprints.py -max_total_time=300
"""

from __future__ import annotations

import contextlib

from _harness import instrumented, run

with instrumented():
    from veil.core.crypto.kyber import KyberPublicKey
    from veil.core.crypto.x25519 import PrivateKey, PublicKey
    from veil.core.errors import DecodeError, RemoteError
    from veil.core.signal import fingerprint

_OURS = fingerprint.fingerprint(
    2, 2, b"a", PrivateKey(bytes(32)).public_key, b"b", PrivateKey(bytes(31) + b"\x01").public_key
).scannable


def test_one_input(data: bytes) -> None:
    for parse in (PublicKey.deserialize, KyberPublicKey.deserialize, fingerprint.parse_scannable):
        with contextlib.suppress(DecodeError):
            parse(data)
    # Kyber keys are 1569 bytes: also try the input as the body of a type-8 key.
    with contextlib.suppress(DecodeError):
        KyberPublicKey.deserialize(b"\x08" + (data * (1568 // max(len(data), 1) + 1))[:1568])
    with contextlib.suppress(RemoteError):
        fingerprint.compare(_OURS, data)


if __name__ == "__main__":
    run(test_one_input)
