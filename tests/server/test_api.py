"""The HTTP API over both repositories: registration, auth, devices, keys, bundles, errors."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from veil.core.crypto import xeddsa
from veil.core.crypto.kyber import KyberKeyPair
from veil.core.crypto.x25519 import PrivateKey
from veil.server.app import Limits, create_app
from veil.server.repository import Repository


@dataclass
class User:
    account_id: str
    device_id: int
    credential: str
    identity: PrivateKey

    @property
    def auth(self) -> dict[str, str]:
        token = base64.b64encode(
            f"{self.account_id}.{self.device_id}:{self.credential}".encode()
        ).decode()
        return {"authorization": f"Basic {token}"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def register(client: httpx.AsyncClient, name: str = "alice") -> User:
    identity = PrivateKey.generate(os.urandom)
    body = {
        "username": name,
        "identity_key": b64(identity.public_key.serialize()),
        "registration_id": 4242,
        "device_name": "laptop",
    }
    r = await client.post("/v1/accounts", json=body)
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["device_id"] == 1
    return User(data["account_id"], 1, data["credential"], identity)


def signed_prekey(identity: PrivateKey, key_id: int) -> dict[str, Any]:
    key = PrivateKey.generate(os.urandom).public_key.serialize()
    return {
        "key_id": key_id,
        "public_key": b64(key),
        "signature": b64(xeddsa.sign(identity, key, os.urandom)),
    }


def kyber_prekey(identity: PrivateKey, key_id: int) -> dict[str, Any]:
    key = KyberKeyPair.generate(os.urandom).public_key.serialize()
    return {
        "key_id": key_id,
        "public_key": b64(key),
        "signature": b64(xeddsa.sign(identity, key, os.urandom)),
    }


def one_time(key_id: int) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "public_key": b64(PrivateKey.generate(os.urandom).public_key.serialize()),
    }


async def upload(client: httpx.AsyncClient, user: User, *, n: int = 3) -> httpx.Response:
    body = {
        "signed_prekey": signed_prekey(user.identity, 1),
        "last_resort_kyber": kyber_prekey(user.identity, 1000),
        "one_time_prekeys": [one_time(i) for i in range(1, n + 1)],
        "kyber_prekeys": [kyber_prekey(user.identity, i) for i in range(1, n + 1)],
    }
    return await client.put("/v1/keys", json=body, headers=user.auth)


async def test_register_and_lookup(client: httpx.AsyncClient) -> None:
    alice = await register(client, "Alice")
    bob = await register(client, "bob")
    r = await client.get("/v1/accounts/by-username/ALICE", headers=bob.auth)
    assert r.status_code == 200
    assert r.json() == {
        "account_id": alice.account_id,
        "username": "Alice",
        "identity_key": b64(alice.identity.public_key.serialize()),
    }
    r = await client.get(f"/v1/accounts/{alice.account_id}", headers=bob.auth)
    assert r.json()["username"] == "Alice"
    r = await client.get("/v1/accounts/by-username/nobody", headers=bob.auth)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_username_rules(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    key = b64(PrivateKey.generate(os.urandom).public_key.serialize())
    for name, status, code in [
        ("ALICE", 409, "username_taken"),
        ("al", 400, "bad_request"),
        ("1alice", 400, "bad_request"),
        ("alice bob", 400, "bad_request"),
        ("a" * 33, 400, "bad_request"),
    ]:
        r = await client.post(
            "/v1/accounts", json={"username": name, "identity_key": key, "registration_id": 1}
        )
        assert (r.status_code, r.json()["error"]) == (status, code), name


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'{"username": "carol"}',
        b'{"username": "carol", "identity_key": "AAAA", "registration_id": 1}',
        b'{"username": "carol", "identity_key": 5, "registration_id": 1}',
        b'{"username": "carol", "identity_key": "'
        + base64.b64encode(b"\x06" + bytes(32))
        + b'", "registration_id": 1}',
        b'{"username": "carol", "identity_key": "'
        + base64.b64encode(b"\x05" + bytes(32))
        + b'", "registration_id": -1}',
        b'{"username": "carol", "identity_key": "'
        + base64.b64encode(b"\x05" + bytes(32))
        + b'", "registration_id": 1, "extra": 1}',
    ],
)
async def test_malformed_registration_is_a_400(client: httpx.AsyncClient, body: bytes) -> None:
    r = await client.post("/v1/accounts", content=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    r = await client.get(
        "/v1/accounts/by-username/carol", headers=(await register(client, "zed")).auth
    )
    assert r.status_code == 404  # nothing half-written


async def test_every_authenticated_route_refuses_bad_credentials(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    wrong = User(alice.account_id, 1, "x" * 32, alice.identity)
    other_device = User(alice.account_id, 2, alice.credential, alice.identity)
    garbage = {"authorization": "Basic !!!"}
    calls = [
        ("GET", f"/v1/accounts/{alice.account_id}"),
        ("GET", "/v1/accounts/by-username/alice"),
        ("DELETE", "/v1/accounts/me"),
        ("GET", "/v1/devices"),
        ("DELETE", "/v1/devices/2"),
        ("PUT", "/v1/keys"),
        ("GET", "/v1/keys/status"),
        ("GET", f"/v1/keys/{alice.account_id}"),
        ("GET", f"/v1/keys/{alice.account_id}/1"),
    ]
    for headers in [{}, wrong.auth, other_device.auth, garbage]:
        for method, path in calls:
            r = await client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"] == "unauthorized"
    assert (await client.get("/v1/devices", headers=alice.auth)).status_code == 200


async def test_keys_and_bundles(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client, "bob")
    r = await upload(client, alice, n=2)
    assert r.status_code == 200, r.text
    assert r.json() == {"one_time_prekeys": 2, "kyber_prekeys": 2, "low": True}
    r = await client.get(f"/v1/keys/{alice.account_id}/1", headers=bob.auth)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["identity_key"] == b64(alice.identity.public_key.serialize())
    [dev] = data["devices"]
    assert dev["device_id"] == 1 and dev["registration_id"] == 4242
    assert dev["one_time_prekey"]["key_id"] == 1 and dev["kyber_prekey"]["key_id"] == 1
    assert not dev["kyber_last_resort"]
    status = (await client.get("/v1/keys/status", headers=alice.auth)).json()
    assert status == {"one_time_prekeys": 1, "kyber_prekeys": 1, "low": True}
    for _ in range(2):
        r = await client.get(f"/v1/keys/{alice.account_id}", headers=bob.auth)
    dev = r.json()["devices"][0]
    assert dev["one_time_prekey"] is None and dev["kyber_last_resort"]
    assert dev["kyber_prekey"]["key_id"] == 1000


async def test_bad_signatures_store_nothing(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    mallory = PrivateKey.generate(os.urandom)
    body = {
        "one_time_prekeys": [one_time(1)],
        "kyber_prekeys": [kyber_prekey(alice.identity, 1), kyber_prekey(mallory, 2)],
    }
    r = await client.put("/v1/keys", json=body, headers=alice.auth)
    assert r.status_code == 400 and "signature" in r.json()["message"]
    status = (await client.get("/v1/keys/status", headers=alice.auth)).json()
    assert status["one_time_prekeys"] == 0 and status["kyber_prekeys"] == 0
    bad_signed = {"signed_prekey": signed_prekey(mallory, 1)}
    r = await client.put("/v1/keys", json=bad_signed, headers=alice.auth)
    assert r.status_code == 400


async def test_devices_list_and_removal_rules(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    r = await client.get("/v1/devices", headers=alice.auth)
    assert [d["device_id"] for d in r.json()["devices"]] == [1]
    assert r.json()["devices"][0]["name"] == "laptop"
    r = await client.delete("/v1/devices/1", headers=alice.auth)
    assert r.status_code == 403
    r = await client.delete("/v1/devices/5", headers=alice.auth)
    assert r.status_code == 404
    r = await client.delete("/v1/devices/500", headers=alice.auth)
    assert r.status_code == 400


async def test_delete_account(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client, "bob")
    await upload(client, alice)
    assert (await client.delete("/v1/accounts/me", headers=alice.auth)).status_code == 204
    assert (await client.get("/v1/devices", headers=alice.auth)).status_code == 401
    r = await client.get(f"/v1/keys/{alice.account_id}", headers=bob.auth)
    assert r.status_code == 404
    await register(client, "alice")  # the name is free again


async def test_bundle_fetches_are_rate_limited(repo: Repository) -> None:
    app = create_app(repo, migrate=False, limits=Limits(bundles_per_device=(0.001, 3.0)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        alice = await register(c)
        bob = await register(c, "bob")
        await upload(c, alice, n=5)
        codes = [
            (await c.get(f"/v1/keys/{alice.account_id}/1", headers=bob.auth)).status_code
            for _ in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        r = await c.get(f"/v1/keys/{alice.account_id}/1", headers=bob.auth)
        assert r.json()["error"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        # the limit is per requester: alice herself is not limited by bob's fetches
        assert (
            await c.get(f"/v1/keys/{alice.account_id}/1", headers=alice.auth)
        ).status_code == 200


async def test_unknown_routes_and_oversized_bodies_are_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await client.patch("/v1/accounts")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = await client.post("/v1/accounts", content=b"x" * (2 << 20))
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert (await client.get("/v1/health")).json() == {"ok": True}
