"""Write a seed corpus of real messages and records to fuzz/corpus/ (run once before fuzzing).

.venv/bin/python fuzz/make_corpus.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from _harness import TESTS

sys.path.insert(0, str(TESTS))

from signal_helpers import establish, make_party

OUT = Path(__file__).resolve().parent / "corpus"


def _write(kind: str, data: bytes) -> None:
    folder = OUT / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)


def main() -> None:
    alice, bob = establish("corpus")
    for i in range(3):
        _write("messages", alice.encrypt(b"message %d" % i).serialized)
        _write("messages", bob.encrypt(b"reply %d" % i).serialized)
    carol = make_party("carol")
    carol.initiate(bob.bundle(one_time=False))
    _write("messages", carol.encrypt(b"prekey").serialized)
    for party in (alice, bob, carol):
        _write("records", party.record_bytes())
    print(f"corpus written to {OUT}")


if __name__ == "__main__":
    main()
