"""Fuzz SignalMessage.parse and PreKeySignalMessage.parse: parse or raise DecodeError only.

.venv/bin/python fuzz/fuzz_signal_message.py -max_total_time=300 fuzz/corpus/messages
"""

from __future__ import annotations

from _harness import instrumented, run

with instrumented():
    from veil.core.errors import DecodeError
    from veil.core.signal.wire import PreKeySignalMessage, SignalMessage


def test_one_input(data: bytes) -> None:
    try:
        message = SignalMessage.parse(data)
    except DecodeError:
        pass
    else:
        assert message.serialized == data
        assert 0 <= message.counter <= 0xFFFFFFFF
    try:
        prekey = PreKeySignalMessage.parse(data)
    except DecodeError:
        pass
    else:
        assert prekey.serialized == data
        assert prekey.message.version == prekey.version


if __name__ == "__main__":
    run(test_one_input)
