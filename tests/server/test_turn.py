"""TURN credentials for calls: ``GET /v1/calls/turn`` and the settings behind it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator

import httpx
import pytest

from veil.server.app import Limits, create_app
from veil.server.calls import TurnService, TurnSettings, turn_password
from veil.server.config import ConfigError, load_config
from veil.server.repository import Repository

from .test_api import register
from .test_linking import T0, Clock

SECRET = "a-long-shared-turn-secret"
URLS = ("turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp")


@pytest.fixture
async def http(repo: Repository) -> AsyncIterator[httpx.AsyncClient]:
    clock = Clock()
    app = create_app(
        repo,
        wall_ms=clock,
        limits=Limits(register_per_ip=(100.0, 1000.0)),
        turn=TurnSettings(URLS, SECRET, 600),
    )
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://veil")
    async with app.router.lifespan_context(app), client:
        yield client


async def test_credentials_follow_the_turn_rest_scheme(http: httpx.AsyncClient) -> None:
    alice = await register(http, "alice")
    answer = await http.get("/v1/calls/turn", headers=alice.auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["urls"] == list(URLS) and body["ttl_s"] == 600
    expiry, _, who = body["username"].partition(":")
    assert int(expiry) == T0 // 1000 + 600 and who == alice.account_id
    expected = hmac.new(SECRET.encode(), body["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(body["credential"]) == expected
    assert SECRET not in answer.text


async def test_credentials_need_an_account(http: httpx.AsyncClient) -> None:
    answer = await http.get("/v1/calls/turn")
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"


def test_no_relay_configured_means_no_ice_servers() -> None:
    credentials = TurnService(TurnSettings(), lambda: T0).credentials("a" * 32)
    assert (credentials.urls, credentials.username, credentials.credential) == ([], "", "")
    stun = TurnService(TurnSettings(("stun:127.0.0.1:3478",)), lambda: T0).credentials("a" * 32)
    assert stun.urls == ["stun:127.0.0.1:3478"] and stun.credential == ""


def test_a_credential_differs_per_account_and_expiry() -> None:
    assert turn_password(SECRET, "1:a") != turn_password(SECRET, "2:a")
    assert turn_password(SECRET, "1:a") != turn_password(SECRET + "x", "1:a")


def test_settings_are_checked() -> None:
    env = {"VEIL_TURN_URLS": "turn:relay.example:3478", "VEIL_TURN_SECRET": SECRET}
    config = load_config(env=env)
    assert config.turn_urls == ("turn:relay.example:3478",)
    assert SECRET not in repr(config)
    with pytest.raises(ConfigError, match="turn_secret"):
        load_config(env={"VEIL_TURN_URLS": "turn:relay.example:3478"})
    with pytest.raises(ConfigError, match="not a turn:"):
        load_config(env={"VEIL_TURN_URLS": "http://relay.example"})
    with pytest.raises(ConfigError, match="turn_ttl_s"):
        load_config(env={"VEIL_TURN_TTL_S": "0"})
    assert load_config(env={"VEIL_TURN_URLS": "stun:relay.example:3478"}).turn_secret == ""
