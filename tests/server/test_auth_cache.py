"""The per-process authentication cache: reuse, expiry, invalidation on removal."""

from __future__ import annotations

import base64
import os

import httpx

from veil.core.crypto.x25519 import PrivateKey
from veil.server.accounts import AccountService, AuthCache
from veil.server.app import Limits, create_app
from veil.server.credentials import hash_credential, new_credential
from veil.server.errors import ApiError
from veil.server.model import NewDevice
from veil.server.repository import Repository
from veil.wire.accounts import RegisterRequest


def _basic(account_id: str, device_id: int, credential: str) -> str:
    raw = f"{account_id}.{device_id}:{credential}".encode()
    return "Basic " + base64.b64encode(raw).decode()


async def _account(repo: Repository, svc: AccountService) -> tuple[str, str]:
    identity = PrivateKey.generate(os.urandom).public_key.serialize()
    answer = await svc.register(RegisterRequest("alice", identity, 7, "laptop"))
    return answer.account_id, answer.credential


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _unauthorized(svc: AccountService, header: str) -> bool:
    try:
        await svc.authenticate(header)
    except ApiError as exc:
        return exc.status == 401
    return False


async def test_cached_hash_still_checks_credential_and_expires(repo: Repository) -> None:
    clock = _Clock()
    svc = AccountService(repo, lambda: 0, AuthCache(ttl_s=10.0, clock=clock))
    account_id, credential = await _account(repo, svc)
    await svc.authenticate(_basic(account_id, 1, credential))
    assert len(svc.auth_cache) == 1
    assert svc.auth_cache.get(account_id, 1) == hash_credential(credential)
    # A wrong credential is refused even though the device's hash is cached.
    assert await _unauthorized(svc, _basic(account_id, 1, new_credential()))
    clock.now += 11.0
    assert svc.auth_cache.get(account_id, 1) is None  # expired
    await svc.authenticate(_basic(account_id, 1, credential))


async def test_failed_authentication_is_not_cached(repo: Repository) -> None:
    svc = AccountService(repo, lambda: 0)
    account_id, _ = await _account(repo, svc)
    assert await _unauthorized(svc, _basic(account_id, 1, new_credential()))
    assert len(svc.auth_cache) == 0


async def test_removed_device_is_refused_at_once(repo: Repository) -> None:
    svc = AccountService(repo, lambda: 0)
    account_id, primary = await _account(repo, svc)
    linked = new_credential()
    await repo.add_device(account_id, NewDevice(8, hash_credential(linked), "phone"), 0)
    await svc.authenticate(_basic(account_id, 2, linked))
    assert svc.auth_cache.get(account_id, 2) is not None
    who = await svc.authenticate(_basic(account_id, 1, primary))
    await svc.remove_device(who, 2)
    assert svc.auth_cache.get(account_id, 2) is None
    assert await _unauthorized(svc, _basic(account_id, 2, linked))
    # The id is reused by a new device: the old credential must not pass for it.
    fresh = new_credential()
    await repo.add_device(account_id, NewDevice(9, hash_credential(fresh), "tablet"), 0)
    assert await _unauthorized(svc, _basic(account_id, 2, linked))
    await svc.authenticate(_basic(account_id, 2, fresh))


async def test_deleted_account_is_refused_at_once(repo: Repository) -> None:
    svc = AccountService(repo, lambda: 0)
    account_id, credential = await _account(repo, svc)
    who = await svc.authenticate(_basic(account_id, 1, credential))
    await svc.delete(who)
    assert len(svc.auth_cache) == 0
    assert await _unauthorized(svc, _basic(account_id, 1, credential))


async def test_read_started_before_a_removal_is_not_cached() -> None:
    cache = AuthCache()
    generation = cache.generation
    cache.forget_device("a" * 32, 2)  # a removal lands while the read is in flight
    cache.put("a" * 32, 2, b"h" * 32, generation)
    assert cache.get("a" * 32, 2) is None
    cache.put("a" * 32, 2, b"h" * 32, cache.generation)
    assert cache.get("a" * 32, 2) == b"h" * 32


async def test_device_removal_over_http_revokes_cached_auth(repo: Repository) -> None:
    app = create_app(repo, migrate=False, limits=Limits(register_per_ip=(100.0, 1000.0)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veil.test") as c:
        identity = PrivateKey.generate(os.urandom).public_key.serialize()
        body = {
            "username": "bob",
            "identity_key": base64.b64encode(identity).decode(),
            "registration_id": 5,
            "device_name": "laptop",
        }
        r = await c.post("/v1/accounts", json=body)
        account_id, credential = r.json()["account_id"], r.json()["credential"]
        linked = new_credential()
        await repo.add_device(account_id, NewDevice(6, hash_credential(linked), "phone"), 0)
        phone = {"authorization": _basic(account_id, 2, linked)}
        assert (await c.get("/v1/devices", headers=phone)).status_code == 200  # now cached
        primary = {"authorization": _basic(account_id, 1, credential)}
        assert (await c.delete("/v1/devices/2", headers=primary)).status_code == 204
        assert (await c.get("/v1/devices", headers=phone)).status_code == 401
