"""One SQLite connection on one thread, driven from asyncio (the embedded default's engine).

:class:`SqliteExecutor` runs callables on a dedicated thread that owns the connection (WAL,
``synchronous=FULL`` so a committed write survives power loss, foreign keys on), in submission
order; :func:`transaction` wraps one callable in ``BEGIN [IMMEDIATE] ... COMMIT``. The
repository and (later) the message queue's group commit share one executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from veil.server.repository import RepositoryError

_T = TypeVar("_T")
Work = Callable[[sqlite3.Connection], _T]


@dataclass(slots=True)
class _Job:
    work: Callable[[sqlite3.Connection], Any] | None  # None: close the connection and stop
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class SqliteExecutor:
    """Runs callables on one connection in one thread, in submission order.

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
        while True:
            job = self._jobs.get()
            if job.work is None:
                if conn is not None:
                    conn.close()
                _settle(job, None, None)
                return
            if job.future.cancelled():
                continue
            if conn is None:
                error = RepositoryError(f"cannot open the SQLite database {self._path!r}")
                error.__cause__ = failure
                _settle(job, None, error)
                continue
            try:
                result = job.work(conn)
            except Exception as exc:
                _settle(job, None, exc)
            else:
                _settle(job, result, None)


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
