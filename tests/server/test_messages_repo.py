"""Contract tests of the message store (repository.py, "messages"), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from veil.server.model import DeviceMismatch, NewDevice, OutgoingEnvelope, StoredMessage
from veil.server.repository import NotFoundError, QueueFullError, Repository

NOW = 1_700_000_000_000
MAX_QUEUE = 1000


def device(n: int) -> NewDevice:
    return NewDevice(registration_id=100 + n, credential_hash=bytes(32), name=f"d{n}")


async def account(repo: Repository, name: str, linked: int = 0) -> str:
    """An account with a primary device (registration id 100) and ``linked`` more (101...)."""
    account_id = uuid.uuid4().hex
    await repo.create_account(account_id, name, name, b"\x05" + bytes(32), device(0), NOW)
    for i in range(1, linked + 1):
        await repo.add_device(account_id, device(i), NOW)
    return account_id


def env(
    account_id: str, device_id: int, content: bytes = b"x", reg: int | None = None
) -> OutgoingEnvelope:
    registration = 100 + device_id - 1 if reg is None else reg
    return OutgoingEnvelope(account_id, device_id, registration, 2, content)


async def send(
    repo: Repository,
    sender: str,
    recipient: str,
    envelopes: list[OutgoingEnvelope],
    key: str | None = None,
    sender_device: int = 1,
    max_queue: int = MAX_QUEUE,
) -> StoredMessage | list[DeviceMismatch]:
    return await repo.store_message(
        sender, sender_device, recipient, envelopes, key, NOW, max_queue
    )


async def test_store_fetch_ack(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob", linked=1)
    result = await send(repo, alice, bob, [env(bob, 1, b"one"), env(bob, 2, b"two")])
    assert isinstance(result, StoredMessage) and not result.duplicate
    assert result.server_ms == NOW
    assert set(result.envelope_ids) == {(bob, 1), (bob, 2)}
    got = await repo.fetch_envelopes(bob, 1, 0, 100)
    assert [(e.content, e.sender_account_id, e.sender_device_id, e.type) for e in got] == [
        (b"one", alice, 1, 2)
    ]
    assert got[0].envelope_id == result.envelope_ids[(bob, 1)]
    assert await repo.queue_depth(bob, 2) == 1
    assert await repo.ack_envelopes(bob, 1, [got[0].envelope_id]) == 1
    assert await repo.ack_envelopes(bob, 1, [got[0].envelope_id]) == 0
    assert await repo.fetch_envelopes(bob, 1, 0, 100) == []
    assert await repo.queue_depth(bob, 2) == 1


async def test_queue_order_and_paging(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob")
    for i in range(25):
        assert isinstance(await send(repo, alice, bob, [env(bob, 1, bytes([i]))]), StoredMessage)
    first = await repo.fetch_envelopes(bob, 1, 0, 10)
    rest = await repo.fetch_envelopes(bob, 1, first[-1].envelope_id, 100)
    contents = [e.content for e in first + rest]
    assert contents == [bytes([i]) for i in range(25)]
    ids = [e.envelope_id for e in first + rest]
    assert ids == sorted(ids) and len(set(ids)) == 25


async def test_device_mismatch_missing_extra_stale(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob", linked=2)  # devices 1, 2, 3
    result = await send(repo, alice, bob, [env(bob, 1), env(bob, 3, reg=999), env(bob, 7)])
    assert result == [DeviceMismatch(bob, missing=(2,), extra=(7,), stale=(3,))]
    for d in (1, 2, 3):
        assert await repo.queue_depth(bob, d) == 0  # nothing stored


async def test_sync_copies_to_the_senders_other_devices(repo: Repository) -> None:
    alice = await account(repo, "alice", linked=1)  # 1, 2
    bob = await account(repo, "bob")
    ok = await send(repo, alice, bob, [env(bob, 1), env(alice, 2)])
    assert isinstance(ok, StoredMessage)
    assert await repo.queue_depth(alice, 2) == 1 and await repo.queue_depth(alice, 1) == 0
    # no sync copy at all is allowed
    assert isinstance(await send(repo, alice, bob, [env(bob, 1)]), StoredMessage)
    # a copy to the sending device itself is extra
    bad = await send(repo, alice, bob, [env(bob, 1), env(alice, 1), env(alice, 2)])
    assert bad == [DeviceMismatch(alice, missing=(), extra=(1,), stale=())]
    # once one sync copy is sent, every other device of the sender is expected
    await repo.add_device(alice, device(5), NOW)  # device 3, registration 105
    bad = await send(repo, alice, bob, [env(bob, 1), env(alice, 2)])
    assert bad == [DeviceMismatch(alice, missing=(3,), extra=(), stale=())]


async def test_note_to_self(repo: Repository) -> None:
    alice = await account(repo, "alice", linked=1)
    ok = await send(repo, alice, alice, [env(alice, 2)])
    assert isinstance(ok, StoredMessage)
    assert await repo.queue_depth(alice, 2) == 1
    bad = await send(repo, alice, alice, [])
    assert bad == [DeviceMismatch(alice, missing=(2,), extra=(), stale=())]


async def test_envelope_for_a_third_account_is_extra(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob")
    carol = await account(repo, "carol")
    bad = await send(repo, alice, bob, [env(bob, 1), env(carol, 1)])
    assert bad == [DeviceMismatch(carol, missing=(), extra=(1,), stale=())]
    assert await repo.queue_depth(bob, 1) == 0


async def test_unknown_recipient(repo: Repository) -> None:
    alice = await account(repo, "alice")
    with pytest.raises(NotFoundError):
        await send(repo, alice, uuid.uuid4().hex, [])


async def test_idempotent_send_is_stored_once(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob")
    first = await send(repo, alice, bob, [env(bob, 1, b"a")], key="k1")
    again = await send(repo, alice, bob, [env(bob, 1, b"a")], key="k1")
    assert isinstance(first, StoredMessage) and isinstance(again, StoredMessage)
    assert again.duplicate and not first.duplicate
    assert again.envelope_ids == first.envelope_ids and again.server_ms == first.server_ms
    assert await repo.queue_depth(bob, 1) == 1
    # keys are per sender
    carol = await account(repo, "carol")
    other = await send(repo, carol, bob, [env(bob, 1, b"c")], key="k1")
    assert isinstance(other, StoredMessage) and not other.duplicate
    assert await repo.queue_depth(bob, 1) == 2


async def test_concurrent_sends_with_one_key_store_one_copy(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob")
    results = await asyncio.gather(
        *(send(repo, alice, bob, [env(bob, 1, b"same")], key="retry") for _ in range(20))
    )
    stored = [r for r in results if isinstance(r, StoredMessage)]
    assert len(stored) == 20
    assert sum(1 for r in stored if not r.duplicate) == 1
    assert len({tuple(r.envelope_ids.items()) for r in stored}) == 1
    assert await repo.queue_depth(bob, 1) == 1


async def test_purge_idempotency(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob")
    await send(repo, alice, bob, [env(bob, 1)], key="old")
    assert await repo.purge_idempotency(NOW + 1) == 1
    again = await send(repo, alice, bob, [env(bob, 1)], key="old")
    assert isinstance(again, StoredMessage) and not again.duplicate


async def test_queue_limit_refuses_the_whole_send(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob", linked=1)
    for _ in range(3):
        await send(repo, alice, bob, [env(bob, 1), env(bob, 2)], max_queue=3)
    await repo.ack_envelopes(
        bob, 2, [e.envelope_id for e in await repo.fetch_envelopes(bob, 2, 0, 10)]
    )
    with pytest.raises(QueueFullError) as info:
        await send(repo, alice, bob, [env(bob, 1), env(bob, 2)], max_queue=3)
    assert (info.value.account_id, info.value.device_id) == (bob, 1)
    assert await repo.queue_depth(bob, 2) == 0  # the other copy was not stored either


async def test_a_device_cannot_ack_another_devices_queue(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob", linked=1)
    result = await send(repo, alice, bob, [env(bob, 1), env(bob, 2)])
    assert isinstance(result, StoredMessage)
    theirs = result.envelope_ids[(bob, 1)]
    assert await repo.ack_envelopes(bob, 2, [theirs]) == 0
    assert await repo.ack_envelopes(alice, 1, [theirs]) == 0
    assert await repo.queue_depth(bob, 1) == 1


async def test_removing_a_device_drops_its_queue(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob", linked=1)
    await send(repo, alice, bob, [env(bob, 1), env(bob, 2)])
    assert await repo.remove_device(bob, 2)
    assert await repo.queue_depth(bob, 2) == 0
    assert await repo.delete_account(bob)
    assert await repo.queue_depth(bob, 1) == 0


async def test_large_ack_batch(repo: Repository) -> None:
    alice = await account(repo, "alice")
    bob = await account(repo, "bob")
    for _ in range(3):
        await send(repo, alice, bob, [env(bob, 1)])
    ids = [e.envelope_id for e in await repo.fetch_envelopes(bob, 1, 0, 10)]
    assert await repo.ack_envelopes(bob, 1, ids + list(range(10**6, 10**6 + 2000))) == 3
