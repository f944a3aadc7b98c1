"""Token buckets shared by every server process of one PostgreSQL database.

Each :meth:`PostgresLimiter.take` is ONE statement, hence one round trip and one atomic
transaction: an ``INSERT ... ON CONFLICT DO UPDATE`` on ``rate_limits`` (migration
``0005_rate_limits.sql``) that refills the bucket for the time since its last use, spends
``cost`` if it holds that much, and returns the tokens left and whether it spent. Concurrent
takes on one bucket queue on its row lock and each sees the previous one's result, so N
parallel takes on a bucket of burst B allow at most B, whichever processes they come from.

Time is the servers' wall clock (seconds since the epoch), passed with each take: processes
must keep their clocks synchronised (NTP); a clock ``s`` seconds ahead can grant at most
``s x rate`` extra tokens, and a bucket's time never goes backwards.

Idle rows are deleted opportunistically: at most once per ``cleanup_every_s`` per process,
a take starts (in the background) a delete of every row idle for longer than its scope's
refill time (``burst / rate``), when the bucket is full again and the row means nothing;
rows of scopes this process does not know are deleted after :data:`STALE_S`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from veil.server.postgres_repo import PostgresRepository
from veil.server.ratelimit import Limiter, MemoryLimiter, Rate, check_rate
from veil.server.repository import Repository

log = logging.getLogger("veil.server.ratelimit")

CLEANUP_EVERY_S: Final = 60.0
"""Each process deletes idle rows at most this often."""
STALE_S: Final = 86_400.0
"""Rows of a scope unknown to this process are deleted after this long idle."""

_TAKE: Final = """
INSERT INTO rate_limits AS b (scope, key, tokens, updated, granted)
SELECT $1, $2, CASE WHEN p.cost <= p.burst THEN p.burst - p.cost ELSE p.burst END, p.now,
       p.cost <= p.burst
FROM (SELECT $3::float8 AS cost, $4::float8 AS now, $6::float8 AS burst) AS p
ON CONFLICT (scope, key) DO UPDATE SET (tokens, updated, granted) = (
    SELECT CASE WHEN r.t >= $3::float8 THEN r.t - $3::float8 ELSE r.t END,
           greatest(b.updated, $4::float8), r.t >= $3::float8
    FROM (SELECT least($6::float8, b.tokens + greatest(0, $4::float8 - b.updated) * $5::float8)
          AS t) AS r
)
RETURNING tokens, granted"""

_CLEANUP: Final = """
DELETE FROM rate_limits AS r
WHERE r.updated < $3::float8 - coalesce(
    (SELECT s.idle FROM unnest($1::text[], $2::float8[]) AS s (scope, idle)
     WHERE s.scope = r.scope),
    $4::float8)"""


class PostgresLimiter:
    """A :class:`~veil.server.ratelimit.Limiter` in PostgreSQL, shared by processes.

    ``db`` returns what to run the statements on (an asyncpg pool or connection); it is called
    at each take, so the repository's pool may be opened after the limiter is built.
    ``clock`` is the wall clock in seconds.
    """

    def __init__(
        self,
        db: Callable[[], Any],
        rates: Mapping[str, Rate],
        clock: Callable[[], float],
        *,
        cleanup_every_s: float = CLEANUP_EVERY_S,
    ) -> None:
        self._db = db
        self.rates = {scope: check_rate(scope, rate) for scope, rate in rates.items()}
        self._clock = clock
        self.cleanup_every_s = cleanup_every_s
        self._next_cleanup: float | None = None
        self._cleanup: asyncio.Task[int] | None = None

    async def take(self, scope: str, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens: 0 if allowed, else the seconds to wait (nothing spent)."""
        per_s, burst = self.rates[scope]
        now = self._clock()
        row = await self._db().fetchrow(_TAKE, scope, key, float(cost), now, per_s, burst)
        self._maybe_clean(now)
        if row["granted"]:
            return 0.0
        return max(0.0, (cost - float(row["tokens"])) / per_s)

    async def clean(self, now: float | None = None) -> int:
        """Delete the rows idle past their refill time; return how many went."""
        now = self._clock() if now is None else now
        scopes = list(self.rates)
        idle = [burst / per_s for per_s, burst in self.rates.values()]
        status: str = await self._db().execute(_CLEANUP, scopes, idle, now, STALE_S)
        return int(status.rpartition(" ")[2])

    def _maybe_clean(self, now: float) -> None:
        if self._next_cleanup is None:
            self._next_cleanup = now + self.cleanup_every_s  # not at once: let the pool warm
            return
        if now < self._next_cleanup or (self._cleanup is not None and not self._cleanup.done()):
            return
        self._next_cleanup = now + self.cleanup_every_s
        self._cleanup = asyncio.create_task(self.clean(now))
        self._cleanup.add_done_callback(_log_failure)

    async def close(self) -> None:
        """Wait for a cleanup under way (call before closing the pool)."""
        if self._cleanup is not None:
            await asyncio.gather(self._cleanup, return_exceptions=True)


def _log_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("rate-limit cleanup failed: %s", type(task.exception()).__name__)


def shared_limiter(
    repo: Repository,
    rates: Mapping[str, Rate],
    *,
    clock: Callable[[], float],
    wall_clock: Callable[[], float],
) -> Limiter:
    """The limiter every process of ``repo``'s database shares.

    PostgreSQL: a :class:`PostgresLimiter` on the repository's pool (``wall_clock``). SQLite
    is served by one process, so its buckets are in memory (``clock``).
    """
    if isinstance(repo, PostgresRepository):
        return PostgresLimiter(lambda: repo.pool, rates, wall_clock)
    return MemoryLimiter(rates, clock)
