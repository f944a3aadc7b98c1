"""Attachments over the HTTP API, on SQLite (files) and PostgreSQL (chunk rows).

Checks that bytes round-trip exactly, that refused uploads leave nothing behind (no file, no
chunk, no row), that expired blobs are never served and are swept, and who may do what.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from veil.server.app import Limits, create_app
from veil.server.attachments import DEFAULT_TTL_S, AttachmentSettings
from veil.server.config import ConfigError, load_config
from veil.server.postgres_repo import PostgresRepository
from veil.server.repository import Repository
from veil.server.sqlite_repo import SqliteRepository
from veil.server.sweeper import SweepResult

from .conftest import Server
from .test_api import register

T0 = 1_700_000_000_000
MIB = 1 << 20


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


async def stored(repo: Repository) -> tuple[int, int]:
    """(metadata rows, stored pieces: files in the attachments folder or chunk rows)."""
    if isinstance(repo, SqliteRepository):
        rows = await repo.executor.run(
            lambda conn: conn.execute("SELECT count(*) FROM attachments").fetchone()[0]
        )
        folder = repo.path.parent / "attachments"
        files = len(list(folder.iterdir())) if folder.exists() else 0
        return int(rows), files
    assert isinstance(repo, PostgresRepository)
    rows = await repo.pool.fetchval("SELECT count(*) FROM attachments")
    chunks = await repo.pool.fetchval("SELECT count(*) FROM attachment_chunks")
    return int(rows), int(chunks)


def _app(
    repo: Repository, wall_ms: Callable[[], int] | None = None, max_bytes: int = 100 * MIB
) -> Starlette:
    limits = Limits(register_per_ip=(100.0, 1000.0))
    settings = AttachmentSettings(max_bytes=max_bytes)
    if wall_ms is None:
        return create_app(repo, migrate=False, limits=limits, attachments=settings)
    return create_app(repo, migrate=False, limits=limits, attachments=settings, wall_ms=wall_ms)


@pytest.fixture
async def small(repo: Repository) -> AsyncIterator[tuple[httpx.AsyncClient, Clock, Starlette]]:
    """A client of an app with a 1 MiB attachment limit and a wall clock the test sets."""
    clock = Clock()
    app = _app(repo, clock, max_bytes=MIB)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, clock, app


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """``total`` zero bytes in pieces, without a Content-Length (chunked upload)."""
    for start in range(0, total, size):
        yield bytes(min(size, total - start))


async def test_round_trip_of_a_multi_mib_blob(server: Server) -> None:
    http = server.http
    alice = await register(http)
    bob = await register(http, "bob")
    blob = os.urandom(5 * MIB + 12345)  # more than a few chunks, not a multiple of one
    r = await http.post("/v1/attachments", content=blob, headers=alice.auth)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["size"] == len(blob)
    assert made["sha256"] == hashlib.sha256(blob).hexdigest()
    assert len(made["attachment_id"]) == 32 and int(made["attachment_id"], 16) >= 0
    for reader in (bob, alice):  # any account holding the id
        async with http.stream(
            "GET", f"/v1/attachments/{made['attachment_id']}", headers=reader.auth
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-length"] == str(len(blob))
            assert r.headers["content-type"] == "application/octet-stream"
            assert await r.aread() == blob
    assert await stored(server.repo) == (1, 1 if isinstance(server.repo, SqliteRepository) else 6)

    streamed = await http.post("/v1/attachments", content=chunks(3 * MIB), headers=alice.auth)
    assert streamed.status_code == 201 and streamed.json()["size"] == 3 * MIB
    r = await http.get(f"/v1/attachments/{streamed.json()['attachment_id']}", headers=bob.auth)
    assert r.content == bytes(3 * MIB)


async def test_over_the_limit_is_413_and_leaves_nothing(
    small: tuple[httpx.AsyncClient, Clock, Starlette], repo: Repository
) -> None:
    client, _, _ = small
    alice = await register(client)
    r = await client.post("/v1/attachments", content=chunks(3 * MIB), headers=alice.auth)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert await stored(repo) == (0, 0)
    r = await client.post("/v1/attachments", content=chunks(MIB + 1), headers=alice.auth)
    assert r.status_code == 413
    assert await stored(repo) == (0, 0)

    async def refuse_early() -> AsyncIterator[bytes]:  # must not be read at all
        raise AssertionError("the body was read although Content-Length was too big")
        yield b""  # pragma: no cover

    headers = {**alice.auth, "content-length": str(100 * MIB)}
    r = await client.post("/v1/attachments", content=refuse_early(), headers=headers)
    assert r.status_code == 413
    assert await stored(repo) == (0, 0)

    r = await client.post("/v1/attachments", content=chunks(MIB), headers=alice.auth)
    assert r.status_code == 201 and r.json()["size"] == MIB  # exactly the limit fits
    r = await client.post("/v1/attachments", content=b"", headers=alice.auth)
    assert r.status_code == 400
    assert (await stored(repo))[0] == 1


async def test_authentication_and_unknown_ids(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    r = await client.post("/v1/attachments", content=b"data")
    assert r.status_code == 401
    made = (await client.post("/v1/attachments", content=b"data", headers=alice.auth)).json()
    r = await client.get(f"/v1/attachments/{made['attachment_id']}")
    assert r.status_code == 401
    r = await client.delete(f"/v1/attachments/{made['attachment_id']}")
    assert r.status_code == 401
    for unknown in ["0" * 32, "f" * 31, "../../veil.db", "F" * 32]:
        r = await client.get(f"/v1/attachments/{unknown}", headers=alice.auth)
        assert r.status_code == 404 and r.json()["error"] == "not_found", unknown
        r = await client.delete(f"/v1/attachments/{unknown}", headers=alice.auth)
        assert r.status_code == 404, unknown


async def test_expired_blobs_are_not_served_and_are_swept(
    small: tuple[httpx.AsyncClient, Clock, Starlette], repo: Repository
) -> None:
    client, clock, app = small
    alice = await register(client)
    old = (await client.post("/v1/attachments", content=b"old", headers=alice.auth)).json()
    assert old["expires_ms"] == T0 + DEFAULT_TTL_S * 1000
    clock.ms += 1000
    new = (await client.post("/v1/attachments", content=b"new", headers=alice.auth)).json()
    clock.ms = old["expires_ms"]
    r = await client.get(f"/v1/attachments/{old['attachment_id']}", headers=alice.auth)
    assert r.status_code == 404  # expired: never served, even before the sweep
    assert await stored(repo) == (2, 2)
    assert await app.state.sweeper.sweep_once() == SweepResult(0, 1)
    assert await stored(repo) == (1, 1)
    r = await client.get(f"/v1/attachments/{new['attachment_id']}", headers=alice.auth)
    assert r.status_code == 200 and r.content == b"new"


async def test_only_the_uploaders_account_deletes(
    client: httpx.AsyncClient, repo: Repository
) -> None:
    alice = await register(client)
    bob = await register(client, "bob")
    made = (await client.post("/v1/attachments", content=b"secret", headers=alice.auth)).json()
    path = f"/v1/attachments/{made['attachment_id']}"
    r = await client.delete(path, headers=bob.auth)
    assert r.status_code == 404  # not revealed as someone else's
    assert (await client.get(path, headers=bob.auth)).content == b"secret"
    assert (await client.delete(path, headers=alice.auth)).status_code == 204
    assert (await client.get(path, headers=bob.auth)).status_code == 404
    assert (await client.delete(path, headers=alice.auth)).status_code == 404
    assert await stored(repo) == (0, 0)


async def test_files_are_written_durably_under_the_data_folder(tmp_path: Path) -> None:
    """SQLite deployments keep one file per blob in ``attachments/`` next to the database,
    readable by the server's user only; no ``.part`` file is left after an upload."""
    repo = SqliteRepository(tmp_path / "veil.db")
    await repo.migrate()
    try:
        app = _app(repo)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            alice = await register(c)
            made = (await c.post("/v1/attachments", content=b"x" * 10, headers=alice.auth)).json()
        folder = tmp_path / "attachments"
        assert [p.name for p in folder.iterdir()] == [made["attachment_id"]]
        assert (folder / made["attachment_id"]).read_bytes() == b"x" * 10
        assert folder.stat().st_mode & 0o777 == 0o700
        assert (folder / made["attachment_id"]).stat().st_mode & 0o777 == 0o600
    finally:
        await repo.close()


async def test_the_lifespan_runs_the_sweeper(repo: Repository) -> None:
    clock = Clock()
    app = _app(repo, clock)
    app.state.sweeper.interval_s = 0.05
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        alice = await register(client)
        r = await client.post("/v1/attachments", content=b"short-lived", headers=alice.auth)
        assert r.status_code == 201
        async with app.router.lifespan_context(app):  # migrate=False: starts the sweeper only
            assert await stored(repo) == (1, 1)
            clock.ms = r.json()["expires_ms"]
            for _ in range(100):
                if await stored(repo) == (0, 0):
                    break
                await asyncio.sleep(0.05)
            assert await stored(repo) == (0, 0)


def test_attachment_settings_in_the_config(tmp_path: Path) -> None:
    file = tmp_path / "veil.toml"
    file.write_text("max_attachment_bytes = 5000\nattachment_ttl_s = 60\n")
    config = load_config(config_file=file, env={"HOME": str(tmp_path)})
    assert (config.max_attachment_bytes, config.attachment_ttl_s) == (5000, 60)
    assert load_config(env={"HOME": str(tmp_path)}).max_attachment_bytes == 100 * MIB
    for bad in ("max_attachment_bytes = 0\n", 'attachment_ttl_s = "1d"\n'):
        file.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(config_file=file, env={"HOME": str(tmp_path)})
