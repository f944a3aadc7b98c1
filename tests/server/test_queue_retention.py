"""Queue retention: envelopes left undelivered for ``queue_retention_days`` are deleted by the
sweeper, counted (``veil_envelopes_expired_total``) and logged; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import pytest

from veil.server import postgres_repo, sqlite_repo
from veil.server.app import Limits, create_app
from veil.server.config import ConfigError, load_config
from veil.server.model import StoredMessage
from veil.server.repository import Repository

from .test_api import User, register
from .test_linking import T0, Clock
from .test_messages_repo import account, env
from .test_server_cli import run_veil

DAY_MS = 24 * 3600 * 1000


async def _send(client: httpx.AsyncClient, sender: User, to: User, content: bytes) -> None:
    envelope = {
        "device_id": 1,
        "registration_id": 4242,
        "type": 2,
        "content": base64.b64encode(content).decode(),
    }
    r = await client.put(
        f"/v1/messages/{to.account_id}", json={"envelopes": [envelope]}, headers=sender.auth
    )
    assert r.status_code == 200, r.text


async def test_the_sweeper_expires_old_envelopes_only(
    repo: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    app = create_app(
        repo,
        migrate=False,
        limits=Limits(register_per_ip=(100.0, 1000.0)),
        wall_ms=clock,
        queue_retention_days=2,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veil.test") as client:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        for i in range(3):
            await _send(client, alice, bob, b"old %d" % i)
        clock.ms += DAY_MS
        await _send(client, alice, bob, b"newer")
        clock.ms += DAY_MS  # the old ones are exactly 2 days old: kept
        assert (await app.state.sweeper.sweep_once()).envelopes == 0
        clock.ms += 1
        with caplog.at_level(logging.INFO, logger="veil.server.sweeper"):
            result = await app.state.sweeper.sweep_once()
        assert result.envelopes == 3
        assert "expired 3 envelopes" in caplog.text
        left = await repo.fetch_envelopes(bob.account_id, 1, 0, 100)
        assert [e.content for e in left] == [b"newer"]
        assert await repo.queue_depth(bob.account_id, 1) == 1
        assert (await app.state.sweeper.sweep_once()).envelopes == 0
        metrics = (await client.get("/metrics")).text
        assert "veil_envelopes_expired_total 3.0" in metrics


async def test_expiry_runs_in_batches(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_repo, "EXPIRE_BATCH", 2)
    monkeypatch.setattr(postgres_repo, "EXPIRE_BATCH", 2)
    alice, bob = await account(repo, "alice"), await account(repo, "bob")
    for i, ms in enumerate([T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 10]):
        result = await repo.store_message(alice, 1, bob, [env(bob, 1, b"%d" % i)], None, ms, 100)
        assert isinstance(result, StoredMessage)
    assert await repo.expire_envelopes(T0 + 5) == 5  # three batches: 2, 2, 1
    [left] = await repo.fetch_envelopes(bob, 1, 0, 10)
    assert left.content == b"5"
    assert await repo.expire_envelopes(T0 + 5) == 0


def test_queue_retention_setting(tmp_path: Path) -> None:
    assert load_config(env={}).queue_retention_days == 30
    file = tmp_path / "veil.toml"
    file.write_text("queue_retention_days = 7\n")
    assert load_config(config_file=file, env={}).queue_retention_days == 7
    env_vars = {"VEIL_QUEUE_RETENTION_DAYS": "9"}
    assert load_config(config_file=file, env=env_vars).queue_retention_days == 9
    flags = {"queue_retention_days": 11}
    assert load_config(config_file=file, env=env_vars, overrides=flags).queue_retention_days == 11
    for bad_env in ({"VEIL_QUEUE_RETENTION_DAYS": "a week"}, {"VEIL_QUEUE_RETENTION_DAYS": "0"}):
        with pytest.raises(ConfigError, match=r"queue_retention_days|VEIL_QUEUE_RETENTION_DAYS"):
            load_config(env=bad_env)


def test_queue_retention_flag() -> None:
    result = run_veil("server", "--queue-retention-days", "0")
    assert result.returncode == 2, result.stderr
    assert "queue_retention_days must be a positive integer, not 0" in result.stderr
