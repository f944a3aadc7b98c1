"""The send rule and the franking columns at the repository level, on SQLite and PostgreSQL
(``Repository.store_message``; the HTTP behaviour is in test_social.py)."""

from __future__ import annotations

from veil.server.model import OutgoingEnvelope, StoredMessage
from veil.server.postgres_repo import PostgresRepository
from veil.server.repository import Repository
from veil.server.sqlite_repo import SqliteRepository

from .test_messages_repo import NOW, account, env, send


async def test_franking_fields_are_stored_and_returned(repo: Repository) -> None:
    alice, bob = await account(repo, "alice"), await account(repo, "bob")
    tag, mac = bytes(range(32)), bytes(range(32, 64))
    tagged = OutgoingEnvelope(
        bob, 1, 100, 2, b"m", franking_tag=tag, reporting_tag=mac, franking_key_id=7
    )
    result = await send(repo, alice, bob, [tagged])
    assert isinstance(result, StoredMessage) and result.request is True
    assert result.dropped == frozenset()
    assert isinstance(await send(repo, alice, bob, [env(bob, 1, b"plain")]), StoredMessage)
    first, second = await repo.fetch_envelopes(bob, 1, 0, 10)
    assert (first.franking_tag, first.reporting_tag, first.franking_key_id) == (tag, mac, 7)
    assert (second.franking_tag, second.reporting_tag, second.franking_key_id) == (b"", b"", 0)
    assert (first.request, second.request) == (True, True)


async def test_request_flag_follows_chats_and_follows(repo: Repository) -> None:
    alice, bob = await account(repo, "alice"), await account(repo, "bob")
    result = await send(repo, alice, bob, [env(bob, 1)])
    assert isinstance(result, StoredMessage) and result.request is True
    relation = await repo.relation(alice, bob)
    assert relation is not None and relation.accepted and not relation.accepted_by
    result = await send(repo, bob, alice, [env(alice, 1)])  # alice accepted bob by writing
    assert isinstance(result, StoredMessage) and result.request is False
    carol = await account(repo, "carol")
    assert await repo.follow(carol, alice, NOW) and await repo.follow(alice, carol, NOW)
    result = await send(repo, carol, alice, [env(alice, 1)])
    assert isinstance(result, StoredMessage) and result.request is False
    assert await repo.relation(alice, "0" * 32) is None


async def test_a_first_send_that_is_blocked_reserves_its_ids(repo: Repository) -> None:
    """On a fresh database too (no id handed out yet): the dropped id is never reused."""
    alice, bob = await account(repo, "alice"), await account(repo, "bob", linked=1)
    assert await repo.block(bob, alice, NOW) == 0
    result = await send(repo, alice, bob, [env(bob, 1), env(bob, 2)])
    assert isinstance(result, StoredMessage)
    assert result.dropped == {(bob, 1), (bob, 2)} and result.request is False
    dropped_ids = sorted(result.envelope_ids.values())
    assert len(set(dropped_ids)) == 2 and dropped_ids[1] == dropped_ids[0] + 1
    assert await repo.fetch_envelopes(bob, 1, 0, 10) == []
    carol = await account(repo, "carol")
    later = await send(repo, carol, bob, [env(bob, 1), env(bob, 2)])
    assert isinstance(later, StoredMessage) and later.dropped == frozenset()
    assert min(later.envelope_ids.values()) > dropped_ids[1]
    assert await repo.queue_depth(bob, 1) == 1


async def test_blocked_ids_follow_submission_order(repo: Repository) -> None:
    """The sender cannot tell from the ids which copies were dropped: ids follow the order
    of the submitted envelopes, as in any send."""
    alice = await account(repo, "alice", linked=1)
    bob = await account(repo, "bob")
    assert await repo.block(bob, alice, NOW) == 0
    result = await send(repo, alice, bob, [env(bob, 1), env(alice, 2)])
    assert isinstance(result, StoredMessage)
    assert result.envelope_ids[bob, 1] + 1 == result.envelope_ids[alice, 2]
    [synced] = await repo.fetch_envelopes(alice, 2, 0, 10)
    assert synced.envelope_id == result.envelope_ids[alice, 2] and not synced.request


async def test_block_counts_the_envelopes_it_drops(repo: Repository) -> None:
    alice, bob = await account(repo, "alice"), await account(repo, "bob", linked=1)
    for _ in range(3):
        assert isinstance(await send(repo, alice, bob, [env(bob, 1), env(bob, 2)]), StoredMessage)
    assert await repo.block(bob, alice, NOW) == 6
    assert await repo.queue_depth(bob, 1) == await repo.queue_depth(bob, 2) == 0
    assert await repo.block(bob, alice, NOW) == 0  # again: nothing more
    assert await repo.block(bob, "0" * 32, NOW) is None
    assert await repo.is_blocked(bob, alice) and not await repo.is_blocked(alice, bob)
    assert await repo.unblock(bob, alice) and not await repo.unblock(bob, alice)


async def test_deleting_an_account_removes_its_chats_both_ways(repo: Repository) -> None:
    """Whatever removes them (a trigger on SQLite, foreign keys on PostgreSQL), a deleted
    account leaves no chat row behind, in either column."""
    alice, bob = await account(repo, "alice"), await account(repo, "bob")
    carol = await account(repo, "carol")
    await send(repo, alice, bob, [env(bob, 1)])  # chats(alice, bob)
    await send(repo, bob, alice, [env(alice, 1)])  # chats(bob, alice)
    await send(repo, carol, alice, [env(alice, 1)])  # chats(carol, alice)
    assert await _chats(repo) == 3
    assert await repo.delete_account(bob)
    assert await _chats(repo) == 1
    relation = await repo.relation(alice, carol)
    assert relation is not None and relation.accepted_by and not relation.accepted


async def _chats(repo: Repository) -> int:
    sql = "SELECT count(*) FROM chats"
    if isinstance(repo, SqliteRepository):
        return int(await repo.executor.run(lambda c: c.execute(sql).fetchone()[0]))
    assert isinstance(repo, PostgresRepository)
    return int(await repo.pool.fetchval(sql))
