"""Fixtures for the server's storage tests: each test gets a fresh, migrated repository.

``repo`` is parametrised over the two implementations: SQLite in a temporary folder, and
PostgreSQL in a database created for the test and dropped after it. PostgreSQL is found at
``$VEIL_TEST_POSTGRES_DSN`` (default ``postgresql://root@127.0.0.1:5432/postgres``, an admin
connection used only to create and drop test databases). Without a reachable server the
PostgreSQL cases skip -- unless ``VEIL_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from veil.server.postgres_repo import PostgresRepository
from veil.server.repository import Repository
from veil.server.sqlite_repo import SqliteRepository

ADMIN_DSN = os.environ.get("VEIL_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/postgres")


def _require_or_skip(reason: str) -> None:
    if os.environ.get("VEIL_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (VEIL_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


async def _fresh_postgres_database() -> tuple[str, str]:
    """Create an empty database; return (its DSN, its name)."""
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _require_or_skip(f"PostgreSQL not reachable at {ADMIN_DSN}: {exc}")
    name = f"veil_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{name}", name


async def _drop_postgres_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    """A fresh, migrated repository of each kind."""
    if request.param == "sqlite":
        sqlite_repo = SqliteRepository(tmp_path / "veil.db")
        await sqlite_repo.migrate()
        yield sqlite_repo
        await sqlite_repo.close()
        return
    dsn, name = await _fresh_postgres_database()
    pg_repo = await PostgresRepository.connect(dsn)
    try:
        await pg_repo.migrate()
        yield pg_repo
    finally:
        await pg_repo.close()
        await _drop_postgres_database(name)
