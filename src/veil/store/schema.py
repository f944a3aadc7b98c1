"""Opening the SQLite file of a device profile and bringing its schema up to date.

The file is created ``0600`` (and its folder ``0700``) with an explicit ``chmod`` after
creation, so the result does not depend on the process umask; SQLite gives its ``-wal`` and
``-shm`` companions the permissions of the database file. Each connection runs in WAL mode with
``synchronous=FULL`` (a committed transaction survives power loss) and foreign keys on.

The schema version is ``PRAGMA user_version``; ``PRAGMA application_id`` marks the file as a
Veil device store. Migrations (:mod:`veil.store.migrations`) run one per transaction, each
under ``BEGIN IMMEDIATE`` and re-checking the version first, so two processes opening the same
profile at once apply each step exactly once. A file whose version is higher than the newest
migration this code knows was written by a newer Veil and is refused untouched.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Final

from veil.store import migrations
from veil.store.errors import StoreError

APPLICATION_ID: Final = 0x5645494C
"""``PRAGMA application_id`` of a Veil device store (ASCII "VEIL")."""

DB_NAME: Final = "device.db"
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
BUSY_TIMEOUT_S: Final = 5.0


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) if needed and make it ``0700``."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)
    except OSError as exc:
        raise StoreError(f"cannot create private folder {path}: {exc.strerror}") from None
    return path


def _private_file(path: Path) -> None:
    """Create ``path`` empty if missing and make it (and SQLite's companions) ``0600``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path.with_name(path.name + suffix), FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot create database file {path}: {exc.strerror}") from None


def connect(profile: Path) -> sqlite3.Connection:
    """Open (creating if needed) the profile's database, configured and migrated."""
    private_dir(profile)
    path = profile / DB_NAME
    _private_file(path)
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    try:
        _configure(conn, path)
        migrate(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"{path} is not a usable Veil device store: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: cannot switch to WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    value = conn.execute(f"PRAGMA {name}").fetchone()[0]
    return int(value)


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version of the open database (0: empty, never migrated)."""
    return _pragma_int(conn, "user_version")


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply the missing migrations, one transaction each; return the resulting version.

    Raises :class:`StoreError` if the file belongs to something else than Veil or was
    written by a newer Veil (nothing is changed then).
    """
    known = migrations.load()
    for step in known[_check(conn, path, len(known)) :]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            applied = _apply(conn, path, step, newest=len(known))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT" if applied else "ROLLBACK")
    return _check(conn, path, len(known))


def _check(conn: sqlite3.Connection, path: Path, newest: int) -> int:
    version = schema_version(conn)
    app = _pragma_int(conn, "application_id")
    if version > 0 and app != APPLICATION_ID:
        raise StoreError(f"{path} is not a Veil device store (application_id {app:#x})")
    if version > newest:
        raise StoreError(
            f"{path} was created by a newer Veil (schema version {version},"
            f" this version knows up to {newest}); upgrade Veil to open it"
        )
    return version


def _apply(conn: sqlite3.Connection, path: Path, step: migrations.Migration, newest: int) -> bool:
    """Run one migration unless the database already has it; True if it ran."""
    if _check(conn, path, newest) >= step.version:
        return False
    if step.version == 1:
        if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
            raise StoreError(f"{path} is not a Veil device store (it has other tables)")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for statement in statements(step.sql):
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {int(step.version)}")
    return True


def statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would COMMIT on its own)."""
    found: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):  # a ';' inside a string or trigger is no end
            found.append(buffer)
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
    return found
