"""Fixtures for the server's storage tests: each test gets a fresh, migrated repository.

``repo`` is parametrised over the two implementations: SQLite in a temporary folder, and
PostgreSQL in a database created for the test and dropped after it. PostgreSQL is found at
``$VEIL_TEST_POSTGRES_DSN`` (default ``postgresql://root@127.0.0.1:5432/postgres``, an admin
connection used only to create and drop test databases). Without a reachable server the
PostgreSQL cases skip -- unless ``VEIL_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn

from veil.server.app import Limits, create_app
from veil.server.postgres_repo import PostgresRepository
from veil.server.repository import Repository
from veil.server.sqlite_repo import SqliteRepository
from veil.wire.messages import KeysLow, ServerFrame

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A real uvicorn server over ``repo`` on a loopback port, with an HTTP client for it."""

    base: str
    http: httpx.AsyncClient
    repo: Repository

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/v1/websocket"


@pytest.fixture
async def server(repo: Repository) -> AsyncIterator[Server]:
    """The app served by uvicorn in this event loop (registration limit raised for tests)."""
    port = _free_port()
    app = create_app(repo, migrate=False, limits=Limits(register_per_ip=(100.0, 1000.0)))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    for _ in range(200):
        if uv.started:
            break
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield Server(base, http, repo)
    uv.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def client(repo: Repository) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in process (ASGI transport)."""
    app = create_app(repo, migrate=False, limits=Limits(register_per_ip=(100.0, 1000.0)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veil.test") as c:
        yield c


_frames = msgspec.msgpack.Decoder(ServerFrame)


async def next_frame(ws: Any, timeout: float) -> ServerFrame:
    """The next server frame on a ``websockets`` client connection, other than a "prekeys
    low" notice (most test devices upload no keys, so they get one on connecting)."""
    while True:
        frame = _frames.decode(await asyncio.wait_for(ws.recv(), timeout))
        if not isinstance(frame, KeysLow):
            return frame
