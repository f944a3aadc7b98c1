"""Reconnection delays: exponential backoff with jitter.

The n-th retry in a row (from 0) waits ``min(max_s, initial_s * factor**n)``, scaled down by a
random share of up to ``jitter`` so that many clients cut off together do not come back in
step. Randomness is a parameter (tests pass a fixed function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays 0.5 s, 1 s, 2 s ... up to 30 s, each shortened by up to half at random."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    healthy_s: float = 10.0
    """A connection that stayed up this long resets the sequence to ``initial_s``."""

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.factor < 1 or not 0 <= self.jitter <= 1 or self.healthy_s < 0:
            raise ValueError("backoff needs factor >= 1, 0 <= jitter <= 1, healthy_s >= 0")

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); ``random()`` in [0, 1)."""
        exponent = min(attempt, 64)  # far past max_s already; keeps the float finite
        base = min(self.max_s, self.initial_s * self.factor**exponent)
        return base * (1.0 - self.jitter * random())
