"""Randomness as a parameter (ARCHITECTURE.md §6.4).

The core never draws randomness itself. Every function that needs it takes an :data:`Rng`:
a callable that returns ``n`` uniformly random bytes. Production passes the operating
system's CSPRNG (``urandom`` of the ``os`` module); tests pass a seeded generator such as
:func:`seeded_rng`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

Rng = Callable[[int], bytes]
"""A source of randomness: ``rng(n)`` returns ``n`` random bytes."""


def seeded_rng(seed: bytes | int) -> Rng:
    """A deterministic :data:`Rng` for tests: SHAKE-256 over ``seed`` and a counter.

    Never use it for real keys: anyone who knows the seed knows every key it makes.
    """
    if isinstance(seed, int):
        seed = seed.to_bytes(16, "big", signed=True)
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        counter += 1
        return hashlib.shake_256(seed + counter.to_bytes(8, "big")).digest(n)

    return rng
