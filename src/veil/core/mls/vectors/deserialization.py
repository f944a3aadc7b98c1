"""``deserialization.json``: the variable-length integer of RFC 9420 §2.1.2.

Each case: ``vlbytes_header`` (hex of a 1, 2 or 4 byte length prefix) and ``length`` (the
value it encodes). Check: decoding the header gives ``length`` using all its bytes, and the
minimal encoding of ``length`` is the header again.
"""

from __future__ import annotations

from veil.core.mls.codec import Reader, varint_bytes
from veil.core.mls.vectors import Case


def check(case: Case) -> None:
    header = bytes.fromhex(case["vlbytes_header"])
    r = Reader(header)
    value = r.varint("vlbytes header")
    r.finish("vlbytes header")
    assert value == case["length"], f"{value} != {case['length']}"
    assert varint_bytes(value) == header, "re-encoding differs"
