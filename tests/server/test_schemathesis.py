"""Schemathesis over ``docs/openapi.json`` against the ASGI app, on SQLite and PostgreSQL.

Cases are generated from the checked-in schema (positive and negative data), sent with the
credentials of a registered account (so the authenticated routes run past authentication; a
share of cases goes without them), with path ids drawn from real accounts as well as random
strings. Every answer must be documented: no 5xx, a documented status, content type and body.

The app runs in this test's own event loop (``httpx.ASGITransport``), so the asyncpg pool and
the SQLite executor stay on the loop that created them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from veil.core.crypto.x25519 import PrivateKey
from veil.server.app import Limits, create_app
from veil.server.postgres_repo import PostgresRepository
from veil.server.ratelimit import SCOPES
from veil.server.repository import Repository
from veil.server.sqlite_repo import SqliteRepository

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
BASE = "http://veil.test"
EXAMPLES = 150
ADMIN_DSN = os.environ.get("VEIL_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/postgres")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Account:
    account_id: str
    credential: str

    @property
    def auth(self) -> dict[str, str]:
        raw = f"{self.account_id}.1:{self.credential}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL not reachable at {ADMIN_DSN}: {exc}"
        if os.environ.get("VEIL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (VEIL_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)


async def _create_database(name: str) -> str:
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{ADMIN_DSN.rpartition('/')[0]}/{name}"


async def _drop_database(name: str) -> None:
    admin = await _admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def runner_and_repo(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[asyncio.Runner, Repository]]:
    with asyncio.Runner() as runner:
        if request.param == "sqlite":
            repo: Repository = SqliteRepository(tmp_path / "veil.db")
            runner.run(repo.migrate())
            yield runner, repo
            runner.run(repo.close())
            return
        name = f"veil_test_{uuid.uuid4().hex[:12]}"
        dsn = runner.run(_create_database(name))
        pg = runner.run(PostgresRepository.connect(dsn))
        try:
            runner.run(pg.migrate())
            yield runner, pg
        finally:
            runner.run(pg.close())
            runner.run(_drop_database(name))


async def _register(client: httpx.AsyncClient) -> Account:
    body = {
        "username": "u" + uuid.uuid4().hex[:20],
        "identity_key": base64.b64encode(
            PrivateKey.generate(os.urandom).public_key.serialize()
        ).decode(),
        "registration_id": 7,
    }
    r = await client.post("/v1/accounts", json=body)
    assert r.status_code == 201, r.text
    return Account(r.json()["account_id"], r.json()["credential"])


def _httpx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """requests-style transport kwargs (what schemathesis serialises) to httpx's."""
    out = {k: kwargs[k] for k in ("method", "url", "headers", "params") if k in kwargs}
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        out["content"] = data
    elif data is not None:
        out["data"] = data
    if kwargs.get("files"):
        out["files"] = kwargs["files"]
    return out


def test_schemathesis_no_server_errors_and_documented_answers(
    runner_and_repo: tuple[asyncio.Runner, Repository],
) -> None:
    runner, repo = runner_and_repo
    schema = schemathesis.openapi.from_path(SCHEMA_PATH)
    limits = Limits(**dict.fromkeys(SCOPES, (1e6, 1e6)))  # fuzzing, not rate limits
    app = create_app(repo, migrate=False, limits=limits)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    me = runner.run(_register(client))
    other = runner.run(_register(client))
    state = {"me": me}

    real_ids = {"account_id": other.account_id}
    strategy = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE),
        schema.as_strategy(GenerationMode.NEGATIVE),
        *[
            op.ok().as_strategy(GenerationMode.POSITIVE, path_parameters=real_ids)
            for op in schema.get_all_operations()
            if "{account_id}" in op.ok().path
        ],
    )
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, authenticated=st.booleans() | st.just(True))
    def run(case: Any, authenticated: bool) -> None:
        headers = state["me"].auth if authenticated else {}
        kwargs = case.as_transport_kwargs(base_url=BASE, headers=headers)
        response = runner.run(client.request(**_httpx_kwargs(kwargs)))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS, headers=headers)
        deleted = case.method.upper() == "DELETE" and case.path == "/v1/accounts/me"
        if deleted and response.status_code == 204:  # keep fuzzing as someone
            state["me"] = runner.run(_register(client))

    try:
        run()
    finally:
        runner.run(client.aclose())
    # the authenticated routes were reached, not only refused at the door
    assert any(200 <= s < 300 for s in statuses), statuses
    assert set(statuses) - {401}, statuses
