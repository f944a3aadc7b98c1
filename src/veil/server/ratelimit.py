"""Token-bucket rate limits: the :class:`Limiter` interface and its in-memory implementation.

A limit is a *scope* (what is limited: ``per_ip``, ``register_per_ip``, ...) with a rate in
tokens per second and a burst; each *key* (an address, an account, a device) in a scope has its
own bucket, full (``burst`` tokens) when first seen. :meth:`Limiter.take` spends ``cost``
tokens and answers 0 (allowed) or the seconds until the bucket would hold ``cost`` (refused,
nothing spent).

:class:`MemoryLimiter` keeps its buckets in this process, bounded (least recently used keys
are forgotten first): it costs no I/O, so it serves the hot paths, but with several server
processes each has its own buckets and the effective limit is ``processes x rate``.
:class:`veil.server.postgres_ratelimit.PostgresLimiter` is the shared one, for the limits that
must hold across processes. :class:`Penalties` remembers, in process, who is refused for a
while, so that a refusal decided by the shared limiter can be repeated without asking it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

PER_IP: Final = "per_ip"
"""Every request (HTTP and WebSocket handshake), per client address; in memory."""
PER_ACCOUNT: Final = "per_account"
"""Every authenticated request, per account (after authentication); in memory."""
REGISTER_PER_IP: Final = "register_per_ip"
"""Registrations, per client address; shared."""
BUNDLES_PER_DEVICE: Final = "bundles_per_device"
"""Bundle fetches, per requesting account and device; shared."""
AUTH_FAILURES_PER_IP: Final = "auth_failures_per_ip"
"""Requests with wrong credentials, per client address; shared."""
PROVISIONING_PER_IP: Final = "provisioning_per_ip"
"""Provisioning mailboxes opened, per client address; in memory (set up in ``app``)."""
LINK_PER_IP: Final = "link_per_ip"
"""Device-linking attempts (guesses of linking codes), per client address; shared."""
SCOPES: Final = (
    PER_IP,
    PER_ACCOUNT,
    REGISTER_PER_IP,
    BUNDLES_PER_DEVICE,
    AUTH_FAILURES_PER_IP,
    PROVISIONING_PER_IP,
    LINK_PER_IP,
)
"""Every limit, named as the :class:`veil.server.app.Limits` field that sets it (the names
the configuration accepts; a test keeps the two lists equal)."""

MAX_KEYS: Final = 100_000
"""Keys remembered per scope by the in-memory limiter (and by :class:`Penalties`)."""

Rate = tuple[float, float]
"""``(tokens per second, burst)``."""


class Limiter(Protocol):
    """Token buckets per ``(scope, key)``."""

    async def take(self, scope: str, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens: 0 if allowed, else the seconds to wait (nothing spent)."""
        ...

    async def close(self) -> None:
        """Finish background work (before the database is closed)."""
        ...


def check_rate(name: str, rate: object) -> Rate:
    """``rate`` as a valid ``(per second, burst)`` pair, else :class:`ValueError` naming it."""
    if (
        not isinstance(rate, tuple | list)
        or len(rate) != 2
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in rate)
    ):
        raise ValueError(f"{name} must be a pair [per_second, burst] of numbers, not {rate!r}")
    per_s, burst = float(rate[0]), float(rate[1])
    if not (math.isfinite(per_s) and per_s > 0):
        raise ValueError(f"{name}: the rate must be a positive number per second, not {rate[0]!r}")
    if not (math.isfinite(burst) and burst >= 1):
        raise ValueError(f"{name}: the burst must be a number >= 1, not {rate[1]!r}")
    return per_s, burst


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """One scope: ``rate`` tokens per second, bursts up to ``burst``; at most ``max_keys`` keys.

    Synchronous and allocation-light, for the hot paths (no await, no I/O).
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float], max_keys: int = MAX_KEYS
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens; return 0 if allowed, else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


class MemoryLimiter:
    """A :class:`Limiter` in process memory: one :class:`RateLimiter` per scope."""

    def __init__(
        self,
        rates: Mapping[str, Rate],
        clock: Callable[[], float],
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.scopes = {
            scope: RateLimiter(*check_rate(scope, rate), clock, max_keys)
            for scope, rate in rates.items()
        }

    def take_now(self, scope: str, key: str, cost: float = 1.0) -> float:
        """:meth:`take` without the coroutine, for synchronous callers."""
        return self.scopes[scope].take(key, cost)

    async def take(self, scope: str, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens: 0 if allowed, else the seconds to wait (nothing spent)."""
        return self.scopes[scope].take(key, cost)

    async def close(self) -> None:
        """Nothing to finish."""


class Penalties:
    """Keys refused until some time, remembered in process (at most ``max_keys`` of them)."""

    def __init__(self, clock: Callable[[], float], max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._until: OrderedDict[str, float] = OrderedDict()

    def impose(self, key: str, seconds: float) -> None:
        """Refuse ``key`` for the next ``seconds``."""
        self._until[key] = self._clock() + seconds
        self._until.move_to_end(key)
        if len(self._until) > self._max_keys:
            self._until.popitem(last=False)

    def remaining(self, key: str) -> float:
        """Seconds ``key`` is still refused for (0: not refused)."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left
