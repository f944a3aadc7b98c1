"""Group commit for the PostgreSQL repository: concurrent calls share one transaction.

:class:`GroupCommit` collects the items that callers submit while earlier work is in flight and
hands them to a ``flush`` coroutine as one batch; ``flush`` runs the whole batch in one
transaction (one statement, or a pipeline of statements, ending in one ``COMMIT``) and returns
one outcome per item, a result or an exception. Each caller gets its own outcome, and only
once ``flush`` has returned, i.e. after the ``COMMIT`` (or the failure).

Nothing waits for a batch to fill: when fewer than ``max_in_flight`` batches are running, a new
one starts on the next turn of the event loop with whatever has been submitted by then (so an
idle server sends a lone call at once). Calls submitted while ``max_in_flight`` batches run
form the next batch, which starts as soon as one of them finishes. A batch holds at most
``max_batch`` items. The model is :meth:`veil.server.sqlite_executor.SqliteExecutor.run_grouped`.

A caller cancelled before its item was taken is left out; once taken, the item runs to the end
(its outcome is dropped), exactly like a cancelled single statement already sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

_I = TypeVar("_I")
_R = TypeVar("_R")

Flush = Callable[[list[_I]], Awaitable[Sequence["_R | Exception"]]]


class GroupCommit(Generic[_I, _R]):
    """Batches concurrent :meth:`submit` calls into calls of ``flush``.

    ``flush(items)`` must return one outcome per item, in order: the caller's result, or an
    :class:`Exception` instance to raise in the caller. If ``flush`` itself raises, every
    caller of the batch gets that exception.
    """

    def __init__(
        self, flush: Flush[_I, _R], *, max_batch: int = 64, max_in_flight: int = 1
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._flush = flush
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: deque[tuple[_I, asyncio.Future[_R]]] = deque()
        self._running = 0  # workers started and not finished
        self._workers: set[asyncio.Task[None]] = set()  # references, so tasks are not collected

    @property
    def in_flight(self) -> int:
        """Workers running a batch (or about to start one)."""
        return self._running

    async def submit(self, item: _I) -> _R:
        """Run ``item`` in the next batch; its outcome once the batch has committed."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._running < self._max_in_flight:
            self._running += 1
            worker = asyncio.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return await future

    def _take(self) -> list[tuple[_I, asyncio.Future[_R]]]:
        batch: list[tuple[_I, asyncio.Future[_R]]] = []
        while self._pending and len(batch) < self._max_batch:
            item, future = self._pending.popleft()
            if not future.cancelled():
                batch.append((item, future))
        return batch

    async def _work(self) -> None:
        """Run batches while calls are pending (one batch at a time per worker)."""
        while True:
            batch = self._take()
            if not batch:
                self._running -= 1  # in the same step as the check: no call is stranded
                return
            try:
                outcomes = await self._flush([item for item, _ in batch])
                if len(outcomes) != len(batch):  # pragma: no cover - a flush bug
                    raise RuntimeError("group commit: one outcome per item expected")
            except asyncio.CancelledError:  # shutdown: nobody will run these
                self._running -= 1
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # every caller of the batch gets it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
