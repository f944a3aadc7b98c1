"""Linking a new device (provisioning) over the HTTP API, on SQLite and PostgreSQL.

The new device opens a mailbox, the primary gets a single-use code and puts an opaque message
into the mailbox, the new device takes it (once) and links itself with the code.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from veil.server.app import Limits, create_app
from veil.server.provisioning import CODE_TTL_MS, MAILBOX_TTL_MS
from veil.server.repository import Repository
from veil.server.sweeper import SweepResult

from .test_api import User, b64, register, upload

T0 = 1_700_000_000_000


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def _app(repo: Repository, wall_ms: Callable[[], int] | None = None, **limits: Any) -> Starlette:
    rates = {"register_per_ip": (100.0, 1000.0), **limits}
    if wall_ms is None:
        return create_app(repo, migrate=False, limits=Limits(**rates))
    return create_app(repo, migrate=False, limits=Limits(**rates), wall_ms=wall_ms)


@pytest.fixture
async def clock_client(
    repo: Repository,
) -> AsyncIterator[tuple[httpx.AsyncClient, Clock, Starlette]]:
    """A client of an app whose wall clock the test sets."""
    clock = Clock()
    app = _app(repo, clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, clock, app


async def open_mailbox(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    r = await client.post("/v1/provisioning")
    assert r.status_code == 201, r.text
    data = r.json()
    assert len(data["provisioning_id"]) == 32 and int(data["provisioning_id"], 16) >= 0
    assert len(data["token"]) >= 32
    return data["provisioning_id"], {"authorization": f"Bearer {data['token']}"}


async def new_code(client: httpx.AsyncClient, user: User) -> str:
    r = await client.post("/v1/devices/provisioning-code", headers=user.auth)
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    assert len(code) >= 22
    return code


def link_body(user: User, code: str, name: str = "phone") -> dict[str, Any]:
    return {
        "account_id": user.account_id,
        "code": code,
        "registration_id": 777,
        "device_name": name,
    }


async def test_happy_path(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    box, bearer = await open_mailbox(client)
    r = await client.get(f"/v1/provisioning/{box}", headers=bearer)
    assert r.status_code == 204  # nothing yet

    code = await new_code(client, alice)
    secret = os.urandom(5000)  # ciphertext to the new device's key: opaque to the server
    r = await client.put(
        f"/v1/provisioning/{box}", json={"message": b64(secret)}, headers=alice.auth
    )
    assert r.status_code == 204, r.text
    r = await client.put(f"/v1/provisioning/{box}", json={"message": b64(b"x")}, headers=alice.auth)
    assert r.status_code == 409 and r.json()["error"] == "message_present"

    r = await client.get(f"/v1/provisioning/{box}", params={"wait": 5}, headers=bearer)
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["message"]) == secret
    r = await client.get(f"/v1/provisioning/{box}", headers=bearer)
    assert r.status_code == 404  # delivered once, then gone

    r = await client.post("/v1/devices/link", json=link_body(alice, code))
    assert r.status_code == 201, r.text
    linked = r.json()
    assert (linked["account_id"], linked["device_id"]) == (alice.account_id, 2)
    phone = User(alice.account_id, 2, linked["credential"], alice.identity)
    r = await client.get("/v1/devices", headers=phone.auth)
    assert r.status_code == 200
    devices = {d["device_id"]: d for d in r.json()["devices"]}
    assert set(devices) == {1, 2}
    assert (devices[2]["name"], devices[2]["registration_id"]) == ("phone", 777)
    assert (await upload(client, phone)).status_code == 200  # its own prekeys
    status = (await client.get("/v1/keys/status", headers=phone.auth)).json()
    assert status["one_time_prekeys"] == 3

    r = await client.post("/v1/devices/link", json=link_body(alice, code, "again"))
    assert r.status_code == 403 and r.json()["error"] == "invalid_code"  # single use
    r = await client.get("/v1/devices", headers=alice.auth)
    assert [d["device_id"] for d in r.json()["devices"]] == [1, 2]


async def test_long_poll_wakes_on_put_here_and_in_another_process(repo: Repository) -> None:
    """A waiting GET returns when the message arrives, through this app or another one on
    the same database (which it can only find by polling)."""
    here, there = _app(repo), _app(repo)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=here), base_url="http://a") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=there), base_url="http://b") as b,
    ):
        alice = await register(a)
        for putter in (a, b):
            box, bearer = await open_mailbox(a)
            waiting = asyncio.create_task(
                a.get(f"/v1/provisioning/{box}", params={"wait": 20}, headers=bearer)
            )
            await asyncio.sleep(0.3)
            assert not waiting.done()
            started = asyncio.get_running_loop().time()
            r = await putter.put(
                f"/v1/provisioning/{box}", json={"message": b64(b"hello")}, headers=alice.auth
            )
            assert r.status_code == 204
            r = await asyncio.wait_for(waiting, 5)
            assert r.status_code == 200 and r.json()["message"] == b64(b"hello")
            assert asyncio.get_running_loop().time() - started < 2


async def test_wait_times_out_with_204(client: httpx.AsyncClient) -> None:
    box, bearer = await open_mailbox(client)
    started = asyncio.get_running_loop().time()
    r = await client.get(f"/v1/provisioning/{box}", params={"wait": 1}, headers=bearer)
    assert r.status_code == 204
    assert 0.9 <= asyncio.get_running_loop().time() - started < 3
    for wait in ("31", "-1", "x", "１"):
        r = await client.get(f"/v1/provisioning/{box}", params={"wait": wait}, headers=bearer)
        assert r.status_code == 400, wait


async def test_expired_mailbox_and_code_are_refused_and_swept(
    clock_client: tuple[httpx.AsyncClient, Clock, Starlette],
) -> None:
    client, clock, app = clock_client
    alice = await register(client)
    box, bearer = await open_mailbox(client)
    code = await new_code(client, alice)
    clock.ms += min(MAILBOX_TTL_MS, CODE_TTL_MS)  # expiry is inclusive
    r = await client.put(f"/v1/provisioning/{box}", json={"message": b64(b"m")}, headers=alice.auth)
    assert r.status_code == 404
    r = await client.get(f"/v1/provisioning/{box}", headers=bearer)
    assert r.status_code == 404
    r = await client.post("/v1/devices/link", json=link_body(alice, code))
    assert r.status_code == 403 and r.json()["error"] == "invalid_code"

    # a message put in time but not taken in time is not delivered either
    box, bearer = await open_mailbox(client)
    r = await client.put(f"/v1/provisioning/{box}", json={"message": b64(b"m")}, headers=alice.auth)
    assert r.status_code == 204
    clock.ms += MAILBOX_TTL_MS
    assert (await client.get(f"/v1/provisioning/{box}", headers=bearer)).status_code == 404

    # the periodic sweep removes what nobody touched again
    await open_mailbox(client)
    await new_code(client, alice)
    await new_code(client, alice)
    assert await app.state.sweeper.sweep_once() == SweepResult(0, 0)  # all still live
    clock.ms += MAILBOX_TTL_MS + 1
    assert await app.state.sweeper.sweep_once() == SweepResult(3, 0)
    assert await app.state.sweeper.sweep_once() == SweepResult(0, 0)


async def test_concurrent_links_with_one_code_link_one_device(repo: Repository) -> None:
    app = _app(repo, link_per_ip=(100.0, 100.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        alice = await register(c)
        code = await new_code(c, alice)
        answers = await asyncio.gather(
            *[c.post("/v1/devices/link", json=link_body(alice, code, f"d{i}")) for i in range(8)]
        )
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [201] + [403] * 7, [r.text for r in answers]
        r = await c.get("/v1/devices", headers=alice.auth)
        assert [d["device_id"] for d in r.json()["devices"]] == [1, 2]


async def test_wrong_account_or_code_is_403_and_keeps_the_code(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client, "bob")
    code = await new_code(client, alice)
    nobody = User("0" * 32, 1, "", alice.identity)
    for who, guess in [(bob, code), (nobody, code), (alice, "A" * 22), (nobody, "A" * 22)]:
        r = await client.post("/v1/devices/link", json=link_body(who, guess))
        assert r.status_code == 403, r.text
        assert r.json() == {
            "error": "invalid_code",
            "message": "the linking code is wrong, expired or already used",
            "details": {},
        }  # the same answer whether the account exists or not
    r = await client.post("/v1/devices/link", json=link_body(alice, code))
    assert r.status_code == 201 and r.json()["device_id"] == 2
    for bad in ["", "has space", "x" * 65]:
        r = await client.post("/v1/devices/link", json=link_body(alice, bad))
        assert r.status_code == 400, bad


async def test_link_attempts_are_rate_limited_per_address(repo: Repository) -> None:
    app = _app(repo, link_per_ip=(0.001, 3.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        alice = await register(c)
        codes = [
            (await c.post("/v1/devices/link", json=link_body(alice, "B" * 22))).status_code
            for _ in range(4)
        ]
        assert codes == [403, 403, 403, 429]


async def test_mailbox_access_is_refused_without_the_right_credentials(
    client: httpx.AsyncClient,
) -> None:
    alice = await register(client)
    box, bearer = await open_mailbox(client)
    other_box, other_bearer = await open_mailbox(client)
    body = {"message": b64(b"m")}
    r = await client.put(f"/v1/provisioning/{box}", json=body)
    assert r.status_code == 401
    r = await client.put(f"/v1/provisioning/{box}", json=body, headers=bearer)
    assert r.status_code == 401  # the new device's token is not a device credential
    for headers in [{}, other_bearer, {"authorization": "Bearer "}, alice.auth]:
        r = await client.get(f"/v1/provisioning/{box}", headers=headers)
        assert r.status_code == 401, headers
    for unknown in ["0" * 32, "nothex", "A" * 32]:
        r = await client.get(f"/v1/provisioning/{unknown}", headers=bearer)
        assert r.status_code == 404
        r = await client.put(f"/v1/provisioning/{unknown}", json=body, headers=alice.auth)
        assert r.status_code == 404
    r = await client.post("/v1/devices/provisioning-code")
    assert r.status_code == 401
    assert (
        await client.get(f"/v1/provisioning/{other_box}", headers=other_bearer)
    ).status_code == 204


async def test_provisioning_message_size(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    box, bearer = await open_mailbox(client)
    big = {"message": b64(bytes(64 * 1024 + 1))}
    r = await client.put(f"/v1/provisioning/{box}", json=big, headers=alice.auth)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    fits = bytes(64 * 1024)
    r = await client.put(f"/v1/provisioning/{box}", json={"message": b64(fits)}, headers=alice.auth)
    assert r.status_code == 204
    r = await client.get(f"/v1/provisioning/{box}", headers=bearer)
    assert base64.b64decode(r.json()["message"]) == fits


async def test_mailboxes_are_rate_limited_per_address(repo: Repository) -> None:
    app = _app(repo, provisioning_per_ip=(0.001, 2.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        codes = [(await c.post("/v1/provisioning")).status_code for _ in range(3)]
        assert codes == [201, 201, 429]


async def test_too_many_devices_keeps_the_code(repo: Repository) -> None:
    app = _app(repo, link_per_ip=(1e6, 1e6))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        alice = await register(c)
        ids = []
        for i in range(126):
            r = await c.post(
                "/v1/devices/link", json=link_body(alice, await new_code(c, alice), f"{i}")
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["device_id"])
        assert ids == list(range(2, 128))
        code = await new_code(c, alice)
        r = await c.post("/v1/devices/link", json=link_body(alice, code))
        assert r.status_code == 409 and r.json()["error"] == "too_many_devices"
        assert (await c.delete("/v1/devices/50", headers=alice.auth)).status_code == 204
        r = await c.post("/v1/devices/link", json=link_body(alice, code))  # the code still works
        assert r.status_code == 201 and r.json()["device_id"] == 50
