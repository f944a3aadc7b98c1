"""One SQLite connection on one thread, driven from asyncio (the embedded default's engine).

:class:`SqliteExecutor` runs callables on a dedicated thread that owns the connection (WAL,
``synchronous=FULL`` so a committed write survives power loss, foreign keys on), in submission
order; :func:`transaction` wraps one callable in ``BEGIN [IMMEDIATE] ... COMMIT``. The
repository and the message queue's group commit share one executor.

Group commit (:meth:`SqliteExecutor.run_grouped`): write bodies that do no ``BEGIN``/``COMMIT``
of their own. The thread takes every job already queued (up to :data:`MAX_GROUP`); the plain
jobs among them (reads, other writes: each its own transaction) run first, in order, then all
the grouped ones in ONE ``BEGIN IMMEDIATE ... COMMIT``, each body inside its own
``SAVEPOINT``: a body that raises is rolled back alone and gets its exception, the others go
on. Every caller's future is settled only after the ``COMMIT`` succeeded (the data is durable
by then); if the ``COMMIT`` fails, every job of the group gets that error. No read ever sees a
group's uncommitted writes. One ``fsync`` is shared by the whole group instead of paid per
write. Nothing waits for a group to fill: a group is whatever queued up while the previous
work (usually the previous ``COMMIT``'s ``fsync``) ran, so a lone write is committed at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from veil.server.repository import RepositoryError

_T = TypeVar("_T")
Work = Callable[[sqlite3.Connection], _T]

MAX_GROUP: Final = 256
"""Most jobs taken from the queue at once, hence grouped in one transaction (bounds latency)."""


@dataclass(slots=True)
class _Job:
    work: Callable[[sqlite3.Connection], Any] | None  # None: close the connection and stop
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    grouped: bool = False  # a write body to run in a shared transaction (run_grouped)


class SqliteExecutor:
    """Runs callables on one connection in one thread, in submission order.

    (One relaxation, for group commit: of the jobs already queued together, the plain ones
    run first, then the grouped writes in one transaction. No caller can tell: none of
    those writes has returned yet, so nothing may depend on it having happened.)

    ``await run(work)`` calls ``work(connection)`` on the thread and returns its result (or
    raises its exception). A job whose caller was cancelled before it started is skipped; once
    started it runs to the end (its result is then dropped). :meth:`close` runs the jobs
    already submitted, closes the connection and joins the thread.
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self._path = os.fspath(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._stopped: asyncio.Future[Any] | None = None
        self._thread = threading.Thread(target=self._main, name="veil-sqlite", daemon=True)
        self._thread.start()

    async def run(self, work: Work[_T]) -> _T:
        """Run ``work(connection)`` on the database thread."""
        if self._stopped is not None:
            raise RepositoryError("the SQLite executor is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._jobs.put(_Job(work, loop, future))
        return await future

    async def run_grouped(self, work: Work[_T]) -> _T:
        """Run the write body ``work(connection)`` in a transaction shared with queued peers.

        ``work`` must not ``BEGIN``/``COMMIT``; it runs inside ``BEGIN IMMEDIATE`` and a
        ``SAVEPOINT`` of its own (if it raises, only its own writes are undone). The result
        (or exception) is delivered only once the shared transaction has committed; if the
        ``COMMIT`` fails, the ``COMMIT``'s error is raised instead.
        """
        if self._stopped is not None:
            raise RepositoryError("the SQLite executor is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._jobs.put(_Job(work, loop, future, grouped=True))
        return await future

    async def close(self) -> None:
        """Finish the submitted jobs, close the connection, join the thread (idempotent)."""
        if self._stopped is None:
            loop = asyncio.get_running_loop()
            self._stopped = loop.create_future()
            self._jobs.put(_Job(None, loop, self._stopped))
        await asyncio.shield(self._stopped)
        self._thread.join()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, isolation_level=None, timeout=self._busy_timeout_ms / 1000
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        failure: Exception | None = None
        try:
            conn = self._connect()
        except Exception as exc:  # reported to every job: the loop must keep answering
            failure = exc
        held: _Job | None = None  # the close job, once seen while draining
        while True:
            first = held if held is not None else self._jobs.get()
            if first.work is None:
                if conn is not None:
                    conn.close()
                _settle(first, None, None)
                return
            jobs, held = self._drain(first)
            group: list[_Job] = []
            for job in jobs:
                if job.future.cancelled():
                    continue
                if conn is None:
                    error = RepositoryError(f"cannot open the SQLite database {self._path!r}")
                    error.__cause__ = failure
                    _settle(job, None, error)
                elif job.grouped:
                    group.append(job)
                else:
                    _run_single(conn, job)
            if conn is not None and group:
                _settle_all(_run_group(conn, group))

    def _drain(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """``first`` and the jobs queued behind it (never waits for more); the close job.

        The close job ends the batch and is returned apart, to run after it.
        """
        jobs = [first]
        while len(jobs) < MAX_GROUP:
            try:
                queued = self._jobs.get_nowait()
            except queue.Empty:
                break
            if queued.work is None:
                return jobs, queued
            jobs.append(queued)
        return jobs, None


def _run_single(conn: sqlite3.Connection, job: _Job) -> None:
    assert job.work is not None
    try:
        result = job.work(conn)
    except Exception as exc:
        _settle(job, None, exc)
    else:
        _settle(job, result, None)


_Outcome = tuple[_Job, Any, Exception | None]


def _run_group(conn: sqlite3.Connection, group: list[_Job]) -> list[_Outcome]:
    """Run the bodies of ``group`` in one transaction; each job's outcome, in order.

    Each body runs inside ``SAVEPOINT``: its exception rolls back that body only. If the
    transaction itself is lost (``COMMIT`` fails, or a body's error made SQLite roll back the
    whole transaction), every job run in it gets that error, since none of it was stored; the
    jobs not run yet then go on in a new transaction.
    """
    outcomes: list[_Outcome] = []
    pending = collections.deque(group)
    while pending:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            outcomes.extend((job, None, exc) for job in pending)
            return outcomes
        ran: list[_Outcome] = []  # in this transaction
        lost: Exception | None = None
        while pending and lost is None:
            job = pending.popleft()
            result, error, intact = _run_body(conn, job)
            ran.append((job, result, error))
            if not intact:
                lost = error
        if lost is None:
            try:
                conn.execute("COMMIT")
            except Exception as exc:
                lost = exc
        if lost is None:
            outcomes.extend(ran)
            continue
        if conn.in_transaction:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
        outcomes.extend((job, None, lost) for job, _, _ in ran)
    return outcomes


def _run_body(conn: sqlite3.Connection, job: _Job) -> tuple[Any, Exception | None, bool]:
    """``(result, error, transaction still intact)`` of one body run inside a SAVEPOINT."""
    assert job.work is not None
    try:
        conn.execute("SAVEPOINT veil_body")
    except Exception as exc:
        return None, exc, False
    try:
        result = job.work(conn)
    except Exception as exc:
        if not conn.in_transaction:  # SQLite rolled the whole transaction back
            return None, exc, False
        try:
            conn.execute("ROLLBACK TO veil_body")
            conn.execute("RELEASE veil_body")
        except Exception:
            return None, exc, False
        return None, exc, True
    try:
        conn.execute("RELEASE veil_body")
    except Exception as exc:
        return None, exc, False
    return result, None, True


def _settle(job: _Job, result: Any, error: Exception | None) -> None:
    """Complete ``job.future`` on its own loop (from the database thread)."""

    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    # RuntimeError: the caller's loop is closed, so nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(settle)


def transaction(conn: sqlite3.Connection, work: Work[_T], *, write: bool) -> _T:
    """Run ``work`` in one transaction: COMMIT on success, ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _settle_all(outcomes: list[_Outcome]) -> None:
    """Settle many futures with one wake-up per event loop, in order."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)

    def settle(batch: list[_Outcome]) -> None:
        for job, result, error in batch:
            if job.future.done():
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    for loop, batch in by_loop.items():
        # RuntimeError: the caller's loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, batch)
