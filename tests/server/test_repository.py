"""Contract tests of the server's storage (repository.py), run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from veil.server.model import (
    KyberPreKey,
    NewDevice,
    OneTimePreKey,
    PreKeyCounts,
    SignedPreKey,
)
from veil.server.repository import (
    NotFoundError,
    Repository,
    TooManyDevicesError,
    UsernameTakenError,
)

NOW = 1_700_000_000_000


def new_device(n: int = 0) -> NewDevice:
    return NewDevice(registration_id=1000 + n, credential_hash=bytes([n % 256]) * 32, name=f"d{n}")


def ec_key(n: int) -> bytes:
    return b"\x05" + n.to_bytes(32, "big")


def kyber_key(n: int) -> bytes:
    return b"\x08" + n.to_bytes(4, "big") * 392


def sig(n: int) -> bytes:
    return n.to_bytes(64, "big")


async def make_account(repo: Repository, name: str = "alice") -> str:
    account_id = uuid.uuid4().hex
    await repo.create_account(account_id, name.lower(), name, ec_key(1), new_device(), NOW)
    return account_id


async def give_keys(
    repo: Repository, account_id: str, device_id: int, *, one_time: int = 3, kyber: int = 2
) -> None:
    await repo.set_signed_prekey(account_id, device_id, SignedPreKey(7, ec_key(70), sig(70)))
    await repo.set_last_resort_kyber(account_id, device_id, KyberPreKey(99, kyber_key(99), sig(99)))
    await repo.add_one_time_prekeys(
        account_id, device_id, [OneTimePreKey(i, ec_key(100 + i)) for i in range(1, one_time + 1)]
    )
    await repo.add_kyber_prekeys(
        account_id,
        device_id,
        [KyberPreKey(i, kyber_key(200 + i), sig(200 + i)) for i in range(1, kyber + 1)],
    )


async def test_migrate_is_idempotent(repo: Repository) -> None:
    first = await repo.migrate()
    assert first >= 1
    assert await repo.migrate() == first


async def test_account_round_trip(repo: Repository) -> None:
    account_id = uuid.uuid4().hex
    created = await repo.create_account(account_id, "alice", "Alice", ec_key(1), new_device(), NOW)
    assert (created.account_id, created.username, created.display_username) == (
        account_id,
        "alice",
        "Alice",
    )
    assert created.identity_key == ec_key(1)
    assert await repo.get_account(account_id) == created
    assert await repo.find_account("alice") == created
    assert await repo.find_account("bob") is None
    devices = await repo.list_devices(account_id)
    assert [(d.device_id, d.registration_id, d.credential_hash) for d in devices] == [
        (1, 1000, bytes(32))
    ]


async def test_username_taken(repo: Repository) -> None:
    await make_account(repo, "Alice")
    with pytest.raises(UsernameTakenError):
        await repo.create_account(uuid.uuid4().hex, "alice", "ALICE", ec_key(2), new_device(), NOW)
    existing = await repo.find_account("alice")
    assert existing is not None and existing.display_username == "Alice"
    assert len(await repo.list_devices(existing.account_id)) == 1


async def test_linked_devices_take_lowest_free_id(repo: Repository) -> None:
    account_id = await make_account(repo)
    ids = [(await repo.add_device(account_id, new_device(i), NOW)).device_id for i in range(3)]
    assert ids == [2, 3, 4]
    assert await repo.remove_device(account_id, 3)
    assert not await repo.remove_device(account_id, 3)
    assert (await repo.add_device(account_id, new_device(9), NOW)).device_id == 3
    assert [d.device_id for d in await repo.list_devices(account_id)] == [1, 2, 3, 4]
    got = await repo.get_device(account_id, 2)
    assert got is not None and got.registration_id == 1000 and got.name == "d0"
    assert await repo.get_device(account_id, 50) is None


async def test_at_most_127_devices(repo: Repository) -> None:
    account_id = await make_account(repo)
    for i in range(126):
        await repo.add_device(account_id, new_device(i), NOW)
    with pytest.raises(TooManyDevicesError):
        await repo.add_device(account_id, new_device(500), NOW)
    assert len(await repo.list_devices(account_id)) == 127


async def test_missing_account_or_device(repo: Repository) -> None:
    with pytest.raises(NotFoundError):
        await repo.add_device("nobody", new_device(), NOW)
    account_id = await make_account(repo)
    with pytest.raises(NotFoundError):
        await repo.set_signed_prekey(account_id, 5, SignedPreKey(1, ec_key(1), sig(1)))
    with pytest.raises(NotFoundError):
        await repo.add_one_time_prekeys(account_id, 5, [OneTimePreKey(1, ec_key(1))])
    assert await repo.take_bundle(account_id, 5) is None
    assert await repo.take_bundle("nobody", 1) is None


async def test_bundle_consumes_one_time_keys_then_last_resort(repo: Repository) -> None:
    account_id = await make_account(repo)
    await give_keys(repo, account_id, 1, one_time=2, kyber=1)
    assert await repo.prekey_counts(account_id, 1) == PreKeyCounts(2, 1)

    first = await repo.take_bundle(account_id, 1)
    assert first is not None
    assert (first.device_id, first.registration_id, first.identity_key) == (1, 1000, ec_key(1))
    assert first.signed_prekey == SignedPreKey(7, ec_key(70), sig(70))
    assert first.one_time_prekey == OneTimePreKey(1, ec_key(101))
    assert first.kyber_prekey == KyberPreKey(1, kyber_key(201), sig(201))
    assert not first.kyber_last_resort

    second = await repo.take_bundle(account_id, 1)
    assert second is not None and second.one_time_prekey == OneTimePreKey(2, ec_key(102))
    assert second.kyber_prekey == KyberPreKey(99, kyber_key(99), sig(99))
    assert second.kyber_last_resort
    assert await repo.prekey_counts(account_id, 1) == PreKeyCounts(0, 0)

    third = await repo.take_bundle(account_id, 1)
    assert third is not None and third.one_time_prekey is None
    assert third.kyber_last_resort and third.kyber_prekey.key_id == 99  # last resort is kept


async def test_bundle_needs_signed_and_kyber_keys(repo: Repository) -> None:
    account_id = await make_account(repo)
    assert await repo.take_bundle(account_id, 1) is None
    await repo.set_signed_prekey(account_id, 1, SignedPreKey(7, ec_key(70), sig(70)))
    await repo.add_one_time_prekeys(account_id, 1, [OneTimePreKey(1, ec_key(101))])
    assert await repo.take_bundle(account_id, 1) is None  # no Kyber key at all
    assert await repo.prekey_counts(account_id, 1) == PreKeyCounts(1, 0)  # nothing consumed
    await repo.add_kyber_prekeys(account_id, 1, [KyberPreKey(1, kyber_key(1), sig(1))])
    bundle = await repo.take_bundle(account_id, 1)
    assert bundle is not None and bundle.one_time_prekey == OneTimePreKey(1, ec_key(101))


async def test_replacing_keys(repo: Repository) -> None:
    account_id = await make_account(repo)
    await give_keys(repo, account_id, 1, one_time=1, kyber=0)
    await repo.set_signed_prekey(account_id, 1, SignedPreKey(8, ec_key(80), sig(80)))
    await repo.set_last_resort_kyber(account_id, 1, KyberPreKey(98, kyber_key(98), sig(98)))
    await repo.add_one_time_prekeys(account_id, 1, [OneTimePreKey(1, ec_key(555))])
    bundle = await repo.take_bundle(account_id, 1)
    assert bundle is not None
    assert bundle.signed_prekey.key_id == 8
    assert bundle.kyber_prekey.key_id == 98 and bundle.kyber_last_resort
    assert bundle.one_time_prekey == OneTimePreKey(1, ec_key(555))


async def test_concurrent_fetches_never_share_a_one_time_key(repo: Repository) -> None:
    account_id = await make_account(repo)
    await give_keys(repo, account_id, 1, one_time=30, kyber=20)
    bundles = await asyncio.gather(*(repo.take_bundle(account_id, 1) for _ in range(40)))
    assert all(b is not None for b in bundles)
    ec = [b.one_time_prekey.key_id for b in bundles if b and b.one_time_prekey]
    kyber = [b.kyber_prekey.key_id for b in bundles if b and not b.kyber_last_resort]
    assert sorted(ec) == list(range(1, 31))
    assert sorted(kyber) == list(range(1, 21))
    assert sum(1 for b in bundles if b and b.kyber_last_resort) == 20
    assert await repo.prekey_counts(account_id, 1) == PreKeyCounts(0, 0)


async def test_removing_a_device_removes_its_keys(repo: Repository) -> None:
    account_id = await make_account(repo)
    device = await repo.add_device(account_id, new_device(1), NOW)
    await give_keys(repo, account_id, device.device_id)
    assert await repo.remove_device(account_id, device.device_id)
    again = await repo.add_device(account_id, new_device(2), NOW)
    assert again.device_id == device.device_id
    assert await repo.take_bundle(account_id, again.device_id) is None
    assert await repo.prekey_counts(account_id, again.device_id) == PreKeyCounts(0, 0)


async def test_delete_account_cascades(repo: Repository) -> None:
    account_id = await make_account(repo)
    await repo.add_device(account_id, new_device(1), NOW)
    await give_keys(repo, account_id, 1)
    assert await repo.delete_account(account_id)
    assert not await repo.delete_account(account_id)
    assert await repo.get_account(account_id) is None
    assert await repo.find_account("alice") is None
    assert await repo.list_devices(account_id) == []
    assert await repo.take_bundle(account_id, 1) is None
    # the username is free again
    await make_account(repo, "alice")


async def test_accounts_are_isolated(repo: Repository) -> None:
    alice = await make_account(repo, "alice")
    bob = await make_account(repo, "bob")
    await give_keys(repo, alice, 1, one_time=2)
    assert await repo.take_bundle(bob, 1) is None
    assert await repo.prekey_counts(bob, 1) == PreKeyCounts(0, 0)
    assert await repo.prekey_counts(alice, 1) == PreKeyCounts(2, 2)


def test_device_repr_hides_credential_hash() -> None:
    d = new_device(7)
    assert d.credential_hash.hex() not in repr(d)


async def test_counts_of_an_unknown_device_are_zero(repo: Repository) -> None:
    account_id = await make_account(repo)
    assert await repo.prekey_counts(account_id, 9) == PreKeyCounts(0, 0)
    assert await repo.prekey_counts("nobody", 1) == PreKeyCounts(0, 0)
    with pytest.raises(NotFoundError):
        await repo.add_kyber_prekeys(account_id, 9, [])
