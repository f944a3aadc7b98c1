"""The connection and transaction discipline shared by every part of the device store.

One :class:`sqlite3.Connection` in autocommit mode; the store issues ``BEGIN``/``COMMIT``
itself. :meth:`StoreBase.transaction` is ``BEGIN IMMEDIATE`` (the write lock up front, so a
step never fails half-way on a lock) ... ``COMMIT``, or ``ROLLBACK`` if the body raises. A
store method called inside it joins it; called outside, it runs in a transaction of its own
(``BEGIN IMMEDIATE`` for writes, a deferred ``BEGIN`` for reads, so a read is one snapshot).

Transactions do not nest: ``transaction()`` inside ``transaction()`` on the same thread raises
:class:`StoreError`. The connection may be used from several threads; a lock serialises
them, and a thread that calls the store while another holds a transaction waits for it.
SQLite errors surface as :class:`StoreError` naming the file (SQLite's messages name tables and
columns, never values).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from veil.store.errors import StoreError
from veil.store.schema import DB_NAME, private_dir

_T = TypeVar("_T")
Row = tuple[Any, ...]
Params = Sequence[object]


class StoreBase:
    """Connection, transactions and small query helpers; the store's parts extend it."""

    def __init__(self, conn: sqlite3.Connection, profile: Path) -> None:
        """Wrap an open, migrated connection (use :meth:`veil.store.DeviceStore.open`)."""
        self._conn: sqlite3.Connection | None = conn
        self.profile = profile
        """The profile folder (``0700``) holding ``device.db`` and ``attachments/``."""
        self._lock = threading.RLock()
        self._tx_owner: int | None = None

    @property
    def path(self) -> Path:
        """The database file."""
        return self.profile / DB_NAME

    @property
    def attachments_dir(self) -> Path:
        """``profile/attachments`` (``0700``), created on first use."""
        return private_dir(self.profile / "attachments")

    def __repr__(self) -> str:
        """The class and the profile folder."""
        return f"{type(self).__name__}(profile={str(self.profile)!r})"

    # --- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database; further calls raise :class:`StoreError`. Idempotent."""
        with self._lock:
            if self._tx_owner is not None:
                raise StoreError(f"{self.path}: close() inside a transaction")
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._conn is None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    # --- transactions -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` if the body raises.

        Every store method called in the body is part of this transaction. Nesting raises
        :class:`StoreError` (and leaves the outer transaction to its own outcome).
        """
        with self._begin(write=True):
            yield

    def in_transaction(self) -> bool:
        """Whether the calling thread is inside :meth:`transaction`."""
        return self._tx_owner == threading.get_ident()

    @contextmanager
    def _begin(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if self.in_transaction():
            raise StoreError(f"{self.path}: transactions do not nest")
        with self._lock:
            conn = self._connection()
            self._sql(conn, "BEGIN IMMEDIATE" if write else "BEGIN")
            self._tx_owner = threading.get_ident()
            try:
                yield conn
            except BaseException:
                self._tx_owner = None
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._tx_owner = None
            try:
                self._sql(conn, "COMMIT")
            finally:
                if conn.in_transaction:  # COMMIT failed: leave nothing half-done
                    conn.execute("ROLLBACK")

    def _sql(self, conn: sqlite3.Connection, sql: str, params: Params = ()) -> sqlite3.Cursor:
        """Execute one statement, turning SQLite errors into :class:`StoreError`."""
        try:
            return conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def _run(self, work: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        """Run ``work`` in the caller's transaction, or in one of its own."""
        if self.in_transaction():
            return work(self._connection())
        with self._begin(write=write) as conn:
            return work(conn)

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._run(work, write=True)

    # --- one-statement helpers ----------------------------------------------------------------
    def _one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""
        row: Row | None = self._run(lambda c: self._sql(c, sql, params).fetchone(), write=False)
        return row

    def _all(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""
        rows: list[Row] = self._run(lambda c: self._sql(c, sql, params).fetchall(), write=False)
        return rows

    def _scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row (the query must return a row)."""
        row = self._one(sql, params)
        if row is None:
            raise StoreError(f"{self.path}: expected a row from the database")
        return row[0]

    def _exec(self, sql: str, params: Params = ()) -> int:
        """Run one write; return how many rows it changed."""
        count: int = self._write(lambda c: self._sql(c, sql, params).rowcount)
        return count

    def _exec_many(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one write for each parameter row, all in one transaction."""

        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

        self._write(work)
