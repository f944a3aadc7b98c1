"""Fuzz deserialize_record: raise DecodeError only; what decodes re-encodes stably.

.venv/bin/python fuzz/fuzz_record.py -max_total_time=300 fuzz/corpus/records
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented():
    from veil.core.errors import DecodeError
    from veil.core.signal.record import deserialize_record, serialize_record


def test_one_input(data: bytes) -> None:
    try:
        record = deserialize_record(data)
    except DecodeError:
        return
    again = serialize_record(record)
    assert serialize_record(deserialize_record(again)) == again


if __name__ == "__main__":
    run(test_one_input)
