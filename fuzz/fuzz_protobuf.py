"""Fuzz the protobuf codec with every schema Veil uses: parse or raise DecodeError only.

.venv/bin/python fuzz/fuzz_protobuf.py -max_total_time=300
"""

from __future__ import annotations

import contextlib

from _harness import instrumented, run

with instrumented():
    from veil.core import protobuf as pb
    from veil.core.errors import DecodeError
    from veil.core.signal import fingerprint, record, wire

SCHEMAS = [
    wire._SIGNAL_SCHEMA,
    wire._PREKEY_SCHEMA,
    record._RECORD,
    record._STATE,
    record._CHAIN,
    record._PENDING,
    fingerprint._COMBINED,
    fingerprint._LOGICAL,
]


def test_one_input(data: bytes) -> None:
    for schema in SCHEMAS:
        try:
            fields = pb.parse(data, schema)
        except DecodeError:
            continue
        for number, value in fields.items():
            _wire_type, repeated = schema[number]
            assert isinstance(value, list) == repeated
    with contextlib.suppress(DecodeError):
        pb.read_varint(data, 0)


if __name__ == "__main__":
    run(test_one_input)
