"""Rate limits (issue 3): each limit refuses with a 429 JSON body and ``Retry-After``, and
recovers once the injected clock has moved on; the shared limiter holds one budget across
processes of one PostgreSQL database; client addresses and trusted proxies.

Apps are built with every limit relaxed except the one under test, and a fake clock that
drives both the in-memory limits (``clock``) and the shared ones (``wall_ms``).
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from veil.server.app import Limits, create_app
from veil.server.config import ConfigError, load_config
from veil.server.main import _ws_implementation
from veil.server.postgres_ratelimit import STALE_S, PostgresLimiter
from veil.server.postgres_repo import PostgresRepository
from veil.server.ratelimit import SCOPES, MemoryLimiter, Penalties, RateLimiter
from veil.server.repository import Repository
from veil.server.throttle import CLIENT_KEY, ClientAddress

from .conftest import _drop_postgres_database, _fresh_postgres_database
from .test_api import User, register, upload

RELAXED = dict.fromkeys(SCOPES, (1e6, 1e6))
PEER = "192.0.2.10"


@dataclass
class Clock:
    """Monotonic seconds for the app, and a wall clock that moves with them."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return int((1_700_000_000 + self.now) * 1000)


def build(
    repo: Repository, clock: Clock, proxies: tuple[str, ...] = (), **limits: tuple[float, float]
) -> ASGIApp:
    return create_app(
        repo,
        migrate=False,
        clock=clock,
        wall_ms=clock.wall_ms,
        limits=Limits(**{**RELAXED, **limits}),
        trusted_proxies=proxies,
    )


def client(app: ASGIApp, peer: str = PEER) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 50_000))
    return httpx.AsyncClient(transport=transport, base_url="http://veil.test")


def assert_limited(r: httpx.Response) -> float:
    """A 429 with a JSON ErrorBody and a Retry-After matching ``details.retry_after_s``."""
    assert r.status_code == 429, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == "rate_limited" and body["message"]
    wait = float(body["details"]["retry_after_s"])
    assert wait > 0
    assert int(r.headers["retry-after"]) == max(1, round(wait))
    return wait


def bad_auth(user: User) -> dict[str, str]:
    raw = f"{user.account_id}.{user.device_id}:{'A' * 32}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


# --- per IP (every request, in memory) ---------------------------------------------------------


async def test_per_ip_limit_covers_every_request_and_recovers(repo: Repository) -> None:
    clock = Clock()
    app = build(repo, clock, per_ip=(2.0, 3.0))
    async with client(app) as c, client(app, "198.51.100.7") as other:
        assert [(await c.get("/v1/health")).status_code for _ in range(3)] == [200] * 3
        wait = assert_limited(await c.get("/v1/health"))
        assert wait == pytest.approx(0.5)
        # refused before routing and authentication: unknown routes and bad credentials too
        assert_limited(await c.get("/v1/nothing"))
        assert_limited(await c.get("/v1/devices", headers={"authorization": "Basic !!"}))
        assert_limited(await c.post("/v1/accounts", content=b"not json"))
        assert (await other.get("/v1/health")).status_code == 200  # another address
        clock.now += 0.5
        assert (await c.get("/v1/health")).status_code == 200
        assert_limited(await c.get("/v1/health"))


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` under uvicorn (the production WebSocket implementation) on a loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        ws=_ws_implementation(),
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_per_ip_limit_refuses_the_websocket_handshake_with_a_429(repo: Repository) -> None:
    clock = Clock()
    async with (
        serve(build(repo, clock, per_ip=(1.0, 2.0))) as host,
        httpx.AsyncClient(base_url=f"http://{host}") as http,
    ):
        alice = await register(http)
        assert (await http.get("/v1/health")).status_code == 200
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{host}/v1/websocket", additional_headers=alice.auth)
        response = refused.value.response
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert b'"rate_limited"' in response.body
        clock.now += 1.0
        async with connect(f"ws://{host}/v1/websocket", additional_headers=alice.auth) as ws:
            assert await asyncio.wait_for(ws.recv(), 10)  # QueueEmpty: the device is in


async def test_websocket_bad_credentials_count_as_failed_authentications(
    repo: Repository,
) -> None:
    clock = Clock()
    async with (
        serve(build(repo, clock, auth_failures_per_ip=(1.0, 2.0))) as host,
        httpx.AsyncClient(base_url=f"http://{host}") as http,
    ):
        alice = await register(http)
        for _ in range(2):
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"ws://{host}/v1/websocket", additional_headers=bad_auth(alice))
            assert refused.value.response.status_code == 403  # closed before the accept
        assert_limited(await http.get("/v1/devices", headers=bad_auth(alice)))
        assert_limited(await http.get("/v1/devices", headers=alice.auth))  # not answered
        with pytest.raises(InvalidStatus):
            await connect(f"ws://{host}/v1/websocket", additional_headers=alice.auth)
        clock.now += 1.0
        assert (await http.get("/v1/devices", headers=alice.auth)).status_code == 200


# --- per account (after authentication, in memory) --------------------------------------------


async def test_per_account_limit_spares_other_accounts_and_bad_credentials(
    repo: Repository,
) -> None:
    clock = Clock()
    app = build(repo, clock, per_account=(1.0, 3.0))
    async with client(app) as c:
        alice, bob = await register(c, "alice"), await register(c, "bob")
        for _ in range(10):  # a wrong credential for alice's account spends nothing of hers
            assert (await c.get("/v1/devices", headers=bad_auth(alice))).status_code == 401
        codes = [(await c.get("/v1/devices", headers=alice.auth)).status_code for _ in range(3)]
        assert codes == [200] * 3
        assert assert_limited(await c.get("/v1/keys/status", headers=alice.auth)) == 1.0
        assert (await c.get("/v1/devices", headers=bob.auth)).status_code == 200
        clock.now += 1.0
        assert (await c.get("/v1/devices", headers=alice.auth)).status_code == 200
        assert_limited(await c.get("/v1/devices", headers=alice.auth))


# --- the specific, shared limits ---------------------------------------------------------------


async def test_registration_limit_per_ip(repo: Repository) -> None:
    clock = Clock()
    app = build(repo, clock, register_per_ip=(0.5, 2.0))
    async with client(app) as c, client(app, "198.51.100.7") as other:
        await register(c, "alice")
        await register(c, "bob")
        body = {"username": "carol", "identity_key": "", "registration_id": 1}
        assert assert_limited(await c.post("/v1/accounts", json=body)) == pytest.approx(2.0)
        await register(other, "carol")  # another address has its own budget
        clock.now += 2.0
        await register(c, "dave")


async def test_bundle_limit_per_requesting_device_recovers(repo: Repository) -> None:
    clock = Clock()
    app = build(repo, clock, bundles_per_device=(1.0, 2.0))
    async with client(app) as c:
        alice, bob = await register(c, "alice"), await register(c, "bob")
        assert (await upload(c, alice, n=5)).status_code == 200
        path = f"/v1/keys/{alice.account_id}/1"
        assert [(await c.get(path, headers=bob.auth)).status_code for _ in range(2)] == [200] * 2
        assert_limited(await c.get(path, headers=bob.auth))
        assert (await c.get(path, headers=alice.auth)).status_code == 200  # her own budget
        clock.now += 1.0
        assert (await c.get(path, headers=bob.auth)).status_code == 200


async def test_failed_authentications_are_counted_per_ip(repo: Repository) -> None:
    clock = Clock()
    app = build(repo, clock, auth_failures_per_ip=(0.25, 3.0))
    async with client(app) as c, client(app, "198.51.100.7") as other:
        alice = await register(c)
        for _ in range(3):
            assert (await c.get("/v1/devices", headers=bad_auth(alice))).status_code == 401
        wait = assert_limited(await c.get("/v1/devices", headers=bad_auth(alice)))
        assert wait == pytest.approx(4.0)
        # while refused, this address gets no answer to any credential, right or wrong
        assert_limited(await c.get("/v1/devices", headers=alice.auth))
        assert_limited(await c.put("/v1/keys", json={}, headers=alice.auth))
        # requests without credentials are not guesses and public routes are open
        assert (await c.get("/v1/health")).status_code == 200
        # another address has its own budget
        assert (await other.get("/v1/devices", headers=alice.auth)).status_code == 200
        assert (await other.get("/v1/devices", headers=bad_auth(alice))).status_code == 401
        clock.now += wait
        assert (await c.get("/v1/devices", headers=alice.auth)).status_code == 200
        assert (await c.get("/v1/devices", headers=bad_auth(alice))).status_code == 401
        assert_limited(await c.get("/v1/devices", headers=bad_auth(alice)))


# --- client addresses ---------------------------------------------------------------------------


async def test_x_forwarded_for_is_believed_only_from_trusted_proxies(repo: Repository) -> None:
    clock = Clock()
    app = build(repo, clock, ("10.0.0.1", "10.1.0.0/16"), per_ip=(0.001, 2.0))

    def xff(value: str) -> dict[str, str]:
        return {"x-forwarded-for": value}

    async with client(app, "203.0.113.9") as untrusted, client(app, "10.0.0.1") as proxy:
        # an untrusted peer cannot pick its own key: all three count against 203.0.113.9
        for i in range(2):
            r = await untrusted.get("/v1/health", headers=xff(f"198.51.100.{i}"))
            assert r.status_code == 200
        assert_limited(await untrusted.get("/v1/health", headers=xff("198.51.100.99")))
        # through the proxy, the client is the rightmost address that is not a proxy
        for value in ("198.51.100.1", "6.6.6.6, 198.51.100.1, 10.1.2.3"):
            assert (await proxy.get("/v1/health", headers=xff(value))).status_code == 200
        assert_limited(await proxy.get("/v1/health", headers=xff("7.7.7.7, 198.51.100.1")))
        assert (await proxy.get("/v1/health", headers=xff("198.51.100.2"))).status_code == 200
        # the proxy's own requests (no header) are keyed on the proxy
        assert (await proxy.get("/v1/health")).status_code == 200


def test_client_address_keys() -> None:
    addresses = ClientAddress(["10.0.0.1", "2001:db8:ffff::/48"])

    def key(peer: str, forwarded: str | None = None) -> str:
        headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
        return addresses.of({"type": "http", "client": (peer, 1), "headers": headers})

    assert key("192.0.2.1", "198.51.100.1") == "192.0.2.1"
    assert key("10.0.0.1", "198.51.100.1") == "198.51.100.1"
    assert key("10.0.0.1", "not-an-address, 10.0.0.1") == "10.0.0.1"  # garbage stops the walk
    assert key("10.0.0.1", "garbage") == "10.0.0.1"
    # IPv6 by /64; IPv4-mapped IPv6 as IPv4; a trusted IPv6 network
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:192.0.2.1") == "192.0.2.1"
    assert key("2001:db8:ffff:1::5", "2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert key("unix-socket-name") == "unix-socket-name"
    scope: dict[str, Any] = {"type": "http", "client": None, "headers": []}
    assert addresses.of(scope) == "unknown" and scope[CLIENT_KEY] == "unknown"
    with pytest.raises(ValueError, match="not-an-ip"):
        ClientAddress(["not-an-ip"])


# --- the limiters themselves --------------------------------------------------------------------


async def test_memory_limiter_is_bounded_and_refills() -> None:
    clock = Clock()
    bucket = RateLimiter(2.0, 4.0, clock, max_keys=3)
    assert [bucket.take("a") for _ in range(5)] == [0.0] * 4 + [0.5]
    for key in "bcde":
        bucket.take(key)
    assert len(bucket) == 3  # "a" was forgotten first (a full bucket again)
    assert bucket.take("a", 4.0) == 0.0
    clock.now += 1.0
    assert bucket.take("a", 2.0) == 0.0 and bucket.take("a") == 0.5
    limiter = MemoryLimiter({"x": (1.0, 1.0)}, clock)
    assert await limiter.take("x", "k") == 0.0 and await limiter.take("x", "k") == 1.0
    with pytest.raises(ValueError, match="burst"):
        MemoryLimiter({"x": (1.0, 0.5)}, clock)
    penalties = Penalties(clock, max_keys=2)
    penalties.impose("a", 3.0)
    penalties.impose("b", 1.0)
    penalties.impose("c", 1.0)
    assert penalties.remaining("a") == 0.0  # evicted: memory stays bounded
    assert penalties.remaining("b") == 1.0
    clock.now += 1.0
    assert penalties.remaining("b") == 0.0


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database (dropped afterwards)."""
    dsn, name = await _fresh_postgres_database()
    repo = await PostgresRepository.connect(dsn)
    try:
        await repo.migrate()
        await repo.close()
        yield dsn
    finally:
        await repo.close()
        await _drop_postgres_database(name)


@pytest.mark.postgres
async def test_postgres_limiter_parallel_takes_never_exceed_the_burst(pg_dsn: str) -> None:
    clock = Clock()
    pools = [await asyncpg.create_pool(pg_dsn, min_size=8, max_size=8) for _ in range(2)]
    try:
        limiters = [PostgresLimiter(lambda p=p: p, {"s": (1e-6, 10.0)}, clock) for p in pools]
        for cost, burst in ((1.0, 10), (3.0, 3)):  # 10 takes of 1; 3 takes of 3 (9 of 10)
            key = f"k{cost}"
            waits = await asyncio.gather(*(limiters[i % 2].take("s", key, cost) for i in range(60)))
            assert sum(1 for w in waits if w == 0.0) == burst
            assert all(w > 0 for w in waits if w)
        await asyncio.gather(*(limiter.close() for limiter in limiters))
    finally:
        for pool in pools:
            await pool.close()


@pytest.mark.postgres
async def test_postgres_limiter_refills_and_cleans_idle_rows(pg_dsn: str) -> None:
    clock = Clock()
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        persistence = await pool.fetchval(
            "SELECT relpersistence FROM pg_class WHERE relname = 'rate_limits'"
        )
        assert persistence == b"u"  # UNLOGGED
        limiter = PostgresLimiter(
            lambda: pool, {"s": (2.0, 4.0), "t": (1.0, 100.0)}, clock, cleanup_every_s=10.0
        )
        assert [await limiter.take("s", "a") for _ in range(5)] == [0.0] * 4 + [0.5]
        assert await limiter.take("s", "a", 5.0) == 2.5  # more than the burst: never now
        clock.now += 0.5
        assert await limiter.take("s", "a") == 0.0
        assert await limiter.take("t", "b") == 0.0
        await pool.execute(
            "INSERT INTO rate_limits VALUES ('gone', 'x', 0, $1, true)", clock.now - STALE_S - 1
        )
        clock.now += 3.0  # "s" refills in 2 s: its row is idle; "t" needs 100 s
        assert await limiter.clean() == 2
        keys = await pool.fetch("SELECT scope, key FROM rate_limits ORDER BY scope")
        assert [(r["scope"], r["key"]) for r in keys] == [("t", "b")]
        # opportunistic: a take past the interval starts the cleanup in the background
        clock.now += 200.0
        assert await limiter.take("s", "c") == 0.0
        await limiter.close()
        keys = await pool.fetch("SELECT scope, key FROM rate_limits ORDER BY scope")
        assert [(r["scope"], r["key"]) for r in keys] == [("s", "c")]
    finally:
        await pool.close()


@pytest.mark.postgres
async def test_two_apps_on_one_database_share_one_budget(pg_dsn: str) -> None:
    clock = Clock()
    repos = [await PostgresRepository.connect(pg_dsn) for _ in range(2)]
    try:
        limits = {"register_per_ip": (0.5, 3.0), "auth_failures_per_ip": (0.5, 2.0)}
        a, b = (build(repo, clock, **limits) for repo in repos)
        async with client(a) as ca, client(b) as cb:
            alice = await register(ca, "alice")
            await register(cb, "bob")
            await register(ca, "carol")
            body = {"username": "dave", "identity_key": "", "registration_id": 1}
            assert_limited(await cb.post("/v1/accounts", json=body))
            assert_limited(await ca.post("/v1/accounts", json=body))
            # failed authentications, too: one through each process spends the budget
            assert (await ca.get("/v1/devices", headers=bad_auth(alice))).status_code == 401
            assert (await cb.get("/v1/devices", headers=bad_auth(alice))).status_code == 401
            assert_limited(await ca.get("/v1/devices", headers=bad_auth(alice)))
            assert_limited(await cb.get("/v1/devices", headers=bad_auth(alice)))
            clock.now += 2.0
            await register(cb, "dave")
    finally:
        for repo in repos:
            await repo.close()


@pytest.mark.postgres
async def test_linking_code_guesses_share_one_budget_across_processes(pg_dsn: str) -> None:
    clock = Clock()
    repos = [await PostgresRepository.connect(pg_dsn) for _ in range(2)]
    try:
        a, b = (build(repo, clock, link_per_ip=(0.5, 2.0)) for repo in repos)
        guess = {"account_id": "a" * 32, "code": "x" * 22, "registration_id": 1}
        async with client(a) as ca, client(b) as cb:
            assert (await ca.post("/v1/devices/link", json=guess)).status_code == 403
            assert (await cb.post("/v1/devices/link", json=guess)).status_code == 403
            assert_limited(await ca.post("/v1/devices/link", json=guess))
            assert_limited(await cb.post("/v1/devices/link", json=guess))
            clock.now += 2.0
            assert (await cb.post("/v1/devices/link", json=guess)).status_code == 403
    finally:
        for repo in repos:
            await repo.close()


# --- configuration ------------------------------------------------------------------------------


def test_every_limit_is_configurable() -> None:
    assert {f.name for f in fields(Limits)} == set(SCOPES)


def test_limits_from_toml_and_environment(tmp_path: Path) -> None:
    file = tmp_path / "veil.toml"
    file.write_text(
        'trusted_proxies = ["10.0.0.1", "fd00::/8"]\n'
        "[rate_limits]\nper_ip = [200, 1000]\nper_account = [10.5, 20]\n"
    )
    config = load_config(config_file=file, env={"HOME": str(tmp_path)})
    assert config.trusted_proxies == ("10.0.0.1", "fd00::/8")
    limits = Limits(**config.rate_limits)
    assert limits.per_ip == (200, 1000) and limits.per_account == (10.5, 20)
    assert limits.register_per_ip == Limits().register_per_ip  # unnamed: the default
    env = {
        "HOME": str(tmp_path),
        "VEIL_RATE_LIMITS": "per_ip=1e6/1e6, auth_failures_per_ip=0.5/10",
        "VEIL_TRUSTED_PROXIES": "192.0.2.1,192.0.2.2",
    }
    config = load_config(config_file=file, env=env)  # the environment wins
    assert config.rate_limits == {"per_ip": (1e6, 1e6), "auth_failures_per_ip": (0.5, 10.0)}
    assert config.trusted_proxies == ("192.0.2.1", "192.0.2.2")
    assert "rate_limits" in repr(config)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[rate_limits]\nper_ip = [0, 10]\n", {}, "per_ip: the rate must be a positive"),
        ("[rate_limits]\nper_ip = [1, 0.5]\n", {}, "per_ip: the burst must be a number >= 1"),
        ("[rate_limits]\nper_ip = [1]\n", {}, "per_ip must be a pair"),
        ('[rate_limits]\nper_ip = "fast"\n', {}, "per_ip must be a pair"),
        ("[rate_limits]\nper_nothing = [1, 2]\n", {}, "unknown limit 'per_nothing'"),
        ("rate_limits = 5\n", {}, "rate_limits must be a table"),
        ('trusted_proxies = "10.0.0.1"\n', {}, "trusted_proxies must be an array"),
        ('trusted_proxies = ["10.0.0.300"]\n', {}, "'10.0.0.300' is not an IP address"),
        ("", {"VEIL_RATE_LIMITS": "per_ip=100"}, "VEIL_RATE_LIMITS: 'per_ip=100' is not"),
        ("", {"VEIL_RATE_LIMITS": "per_ip=x/1"}, "VEIL_RATE_LIMITS: 'per_ip=x/1' is not"),
        ("", {"VEIL_RATE_LIMITS": "per_ip=inf/1"}, "per_ip: the rate must be a positive"),
        ("", {"VEIL_TRUSTED_PROXIES": "proxy.example"}, "'proxy.example' is not an IP"),
    ],
)
def test_bad_limit_settings_are_config_errors(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    file = tmp_path / "veil.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(config_file=file, env={"HOME": str(tmp_path), **env})


def test_default_limits() -> None:
    rates = Limits().rates()
    assert {name: rates[name] for name in SCOPES[:5]} == {
        "per_ip": (100.0, 500.0),
        "per_account": (50.0, 500.0),
        "register_per_ip": (1.0, 20.0),
        "bundles_per_device": (5.0, 100.0),
        "auth_failures_per_ip": (1.0, 50.0),
    }
    with pytest.raises(ValueError, match="per_account: the rate"):
        Limits(per_account=(0.0, 1.0))
