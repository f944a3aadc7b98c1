"""Fuzz the client-side payload parsers: the E2EE content (top level and inside a sync copy),
the franked plaintext wrapper, and the stored report evidence. Parse or raise DecodeError.

.venv/bin/python fuzz/fuzz_payloads.py -max_total_time=300
"""

from __future__ import annotations

import contextlib

from _harness import instrumented, run

with instrumented():
    from veil.core import content, franking
    from veil.core.errors import DecodeError
    from veil.engine.evidence import Evidence


def test_one_input(data: bytes) -> None:
    for for_sync in (False, True):
        with contextlib.suppress(DecodeError):
            decoded = content.decode_content(data, for_sync=for_sync)
            # what decodes re-encodes under the same rules
            content.encode_content(decoded, for_sync=for_sync)
    with contextlib.suppress(DecodeError):
        opened = franking.open_franked(data)
        assert len(opened.key) == franking.KEY_LEN
    with contextlib.suppress(DecodeError):
        content.unpad(data)
    with contextlib.suppress(DecodeError):
        Evidence.decode(data)


if __name__ == "__main__":
    run(test_one_input)
