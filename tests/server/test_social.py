"""Who may start a chat, message requests and blocks, through a real server on both
repositories (``veil/wire/social.py`` states the rule).

Queues are read back from the repository (what a device would be delivered), and once over a
real WebSocket (what the notifier pushes live).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

import httpx

from veil.server.credentials import hash_credential
from veil.server.model import Envelope, NewDevice
from veil.server.postgres_repo import PostgresRepository
from veil.server.repository import Repository
from veil.server.sqlite_repo import SqliteRepository
from veil.wire.messages import Deliver, EnvelopeOut

from .conftest import Server, next_frame
from .test_api import User, upload
from .test_api import register as register_user
from .test_delivery import Device, frames_until_empty, register, websocket


def _envelope(to: Device, content: bytes) -> dict[str, Any]:
    return {
        "device_id": to.device_id,
        "registration_id": to.registration_id,
        "type": 2,
        "content": base64.b64encode(content).decode(),
        "account_id": to.account_id,
    }


async def send(
    server: Server,
    sender: Device,
    to: Device | list[Device],
    content: bytes,
    *,
    sync: Sequence[Device] = (),
    **extra: Any,
) -> httpx.Response:
    """A send to ``to`` (one device, or all of the recipient's) and to the sender's other
    devices ``sync``."""
    targets = to if isinstance(to, list) else [to]
    to = targets[0]
    envelopes = [_envelope(d, content) for d in targets]
    envelopes += [_envelope(d, b"sync:" + content) for d in sync]
    return await server.http.put(
        f"/v1/messages/{to.account_id}",
        json={"envelopes": envelopes, **extra},
        headers=sender.auth,
    )


async def queue(repo: Repository, device: Device) -> list[Envelope]:
    return await repo.fetch_envelopes(device.account_id, device.device_id, 0, 1000)


async def last_from(repo: Repository, device: Device, sender: Device) -> Envelope:
    """The newest envelope in ``device``'s queue that ``sender`` sent."""
    mine = [e for e in await queue(repo, device) if e.sender_account_id == sender.account_id]
    assert mine, "nothing queued from the sender"
    return mine[-1]


async def is_request(server: Server, sender: Device, to: Device, content: bytes) -> bool:
    r = await send(server, sender, to, content)
    assert r.status_code == 200, r.text
    envelope = await last_from(server.repo, to, sender)
    assert envelope.content == content
    return envelope.request


async def call(server: Server, method: str, path: str, who: Device) -> httpx.Response:
    return await server.http.request(method, path, headers=who.auth)


async def second_device(repo: Repository, account: Device) -> Device:
    """A linked device of ``account`` (added in the repository: only its queue matters)."""
    device = await repo.add_device(account.account_id, NewDevice(88, hash_credential("x"), "d2"), 1)
    return Device(account.account_id, device.device_id, "x", 88)


# --- message requests -------------------------------------------------------------------------


async def test_first_message_is_a_request_until_accepted_and_again_after_decline(
    server: Server,
) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    assert await is_request(server, alice, bob, b"hi bob") is True
    assert await is_request(server, alice, bob, b"still a request") is True
    r = await call(server, "PUT", f"/v1/chats/{alice.account_id}", bob)
    assert r.status_code == 204, r.text
    assert await is_request(server, alice, bob, b"accepted now") is False
    # The queued earlier copies keep their flag (the client moves them to the inbox).
    assert [e.request for e in await queue(server.repo, bob)] == [True, True, False]
    r = await call(server, "DELETE", f"/v1/chats/{alice.account_id}", bob)
    assert r.status_code == 204
    assert await is_request(server, alice, bob, b"declined") is True
    # Declining twice, or what was never accepted, is still a 204.
    assert (await call(server, "DELETE", f"/v1/chats/{alice.account_id}", bob)).status_code == 204


async def test_writing_first_accepts_the_other_side(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    # Bob writes first: a request for Alice; Bob now accepts Alice (chats(owner=bob, peer=alice)).
    assert await is_request(server, bob, alice, b"hello alice") is True
    r = await call(server, "GET", f"/v1/relationship/{alice.account_id}", bob)
    assert r.json() == {
        "following": False,
        "followed_by": False,
        "accepted": True,
        "accepted_by": False,
        "blocked": False,
    }
    # So Alice's reply is not a request ...
    assert await is_request(server, alice, bob, b"hi bob") is False
    # ... and replying made Alice accept Bob: his next message is not a request either.
    assert await is_request(server, bob, alice, b"how are you") is False
    r = await call(server, "GET", f"/v1/relationship/{bob.account_id}", alice)
    assert r.json()["accepted"] is True and r.json()["accepted_by"] is True


async def test_mutual_follow_lets_a_chat_start_one_way_does_not(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    assert (await call(server, "PUT", f"/v1/follows/{bob.account_id}", alice)).status_code == 204
    assert await is_request(server, alice, bob, b"one-way follow") is True
    assert (await call(server, "PUT", f"/v1/follows/{alice.account_id}", bob)).status_code == 204
    assert await is_request(server, alice, bob, b"mutual follow") is False
    assert (await call(server, "DELETE", f"/v1/follows/{alice.account_id}", bob)).status_code == 204
    assert await is_request(server, alice, bob, b"no longer mutual") is True


async def test_sync_copies_are_never_requests(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    alice2 = await second_device(server.repo, alice)
    r = await send(server, alice, bob, b"first", sync=[alice2])
    assert r.status_code == 200, r.text
    [to_bob] = await queue(server.repo, bob)
    [synced] = await queue(server.repo, alice2)
    assert (to_bob.request, synced.request) == (True, False)
    assert synced.content == b"sync:first"


async def test_the_request_flag_is_pushed_live(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    async with websocket(server, bob) as ws:
        await frames_until_empty(ws)
        assert (await send(server, alice, bob, b"live")).status_code == 200
        frame = await next_frame(ws, 10)
        assert isinstance(frame, Deliver)
        [pushed] = frame.envelopes
        assert isinstance(pushed, EnvelopeOut)
        assert (pushed.content, pushed.request) == (b"live", True)
        assert (pushed.franking_tag, pushed.reporting_tag) == (b"", b"")


# --- follows --------------------------------------------------------------------------------


async def test_follow_rules_and_lists(server: Server) -> None:
    alice, bob = await register(server, "Alice"), await register(server, "bob")
    carol = await register(server, "carol")
    r = await call(server, "PUT", f"/v1/follows/{alice.account_id}", alice)
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    unknown = await call(server, "PUT", f"/v1/follows/{'0' * 32}", alice)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    r = await call(server, "PUT", "/v1/follows/not-an-id", alice)
    assert r.status_code == 404
    for who in (bob, carol):
        assert (
            await call(server, "PUT", f"/v1/follows/{alice.account_id}", who)
        ).status_code == 204
    # Following again changes nothing.
    assert (await call(server, "PUT", f"/v1/follows/{alice.account_id}", bob)).status_code == 204
    r = await call(server, "GET", "/v1/followers", alice)
    assert r.status_code == 200
    followers = r.json()["accounts"]
    assert [(a["account_id"], a["username"]) for a in followers] == [
        (bob.account_id, "bob"),
        (carol.account_id, "carol"),
    ]
    assert all(isinstance(a["since_ms"], int) and a["since_ms"] > 0 for a in followers)
    r = await call(server, "GET", "/v1/follows", bob)
    assert [(a["account_id"], a["username"]) for a in r.json()["accounts"]] == [
        (alice.account_id, "Alice")
    ]
    assert (await call(server, "GET", "/v1/follows", alice)).json() == {"accounts": []}
    r = await call(server, "GET", f"/v1/relationship/{bob.account_id}", alice)
    assert r.json()["followed_by"] is True and r.json()["following"] is False
    assert (await call(server, "DELETE", f"/v1/follows/{alice.account_id}", bob)).status_code == 204
    r = await call(server, "GET", "/v1/followers", alice)
    assert [a["account_id"] for a in r.json()["accounts"]] == [carol.account_id]
    r = await call(server, "GET", f"/v1/relationship/{'0' * 32}", alice)
    assert r.status_code == 404


async def test_social_routes_need_credentials(server: Server) -> None:
    alice = await register(server, "alice")
    for method, path in [
        ("PUT", f"/v1/follows/{alice.account_id}"),
        ("GET", "/v1/follows"),
        ("GET", "/v1/followers"),
        ("PUT", f"/v1/chats/{alice.account_id}"),
        ("PUT", f"/v1/blocks/{alice.account_id}"),
        ("GET", "/v1/blocks"),
        ("GET", f"/v1/relationship/{alice.account_id}"),
    ]:
        r = await server.http.request(method, path)
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), path


# --- blocks -----------------------------------------------------------------------------------


def _shape(body: dict[str, Any]) -> tuple[object, ...]:
    """What a send answer looks like, without its values."""
    return (
        sorted(body),
        [(e["account_id"], e["device_id"]) for e in body["envelopes"]],
        body["duplicate"],
    )


async def test_a_blocked_send_looks_like_any_other_and_stores_nothing_for_the_blocker(
    server: Server,
) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    alice2 = await second_device(server.repo, alice)
    before = await send(server, alice, bob, b"before the block", sync=[alice2])
    assert before.status_code == 200
    assert (await call(server, "PUT", f"/v1/blocks/{alice.account_id}", bob)).status_code == 204

    blocked = await send(server, alice, bob, b"after the block", sync=[alice2])
    assert blocked.status_code == before.status_code == 200
    assert _shape(blocked.json()) == _shape(before.json())
    old_ids = {e["envelope_id"] for e in before.json()["envelopes"]}
    new_ids = {e["envelope_id"] for e in blocked.json()["envelopes"]}
    assert len(new_ids) == 2 and min(new_ids) > max(old_ids)
    # Nothing for Bob (the earlier message went with the block); Alice's sync copies stay.
    assert await queue(server.repo, bob) == []
    synced = [e.content for e in await queue(server.repo, alice2)]
    assert synced == [b"sync:before the block", b"sync:after the block"]
    # The ids handed out for Bob's dropped copy are never handed out again.
    carol = await register(server, "carol")
    r = await send(server, carol, bob, b"from carol")
    [stored] = r.json()["envelopes"]
    assert stored["envelope_id"] > max(new_ids)
    assert [e.content for e in await queue(server.repo, bob)] == [b"from carol"]


async def test_a_blocked_send_keeps_device_checks(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    assert (await call(server, "PUT", f"/v1/blocks/{alice.account_id}", bob)).status_code == 204
    stale = Device(bob.account_id, 1, bob.credential, 999)
    r = await send(server, alice, stale, b"x")
    assert r.status_code == 409
    assert r.json()["details"]["mismatches"] == [
        {"account_id": bob.account_id, "missing": [], "extra": [], "stale": [1]}
    ]


async def test_a_blocked_send_replays_identically(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    alice2 = await second_device(server.repo, alice)
    assert (await call(server, "PUT", f"/v1/blocks/{alice.account_id}", bob)).status_code == 204
    first = await send(server, alice, bob, b"m", sync=[alice2], idempotency_key="k1")
    again = await send(server, alice, bob, b"m", sync=[alice2], idempotency_key="k1")
    assert first.status_code == again.status_code == 200
    one, two = first.json(), again.json()
    assert (one["duplicate"], two["duplicate"]) == (False, True)
    assert (one["server_ms"], one["envelopes"]) == (two["server_ms"], two["envelopes"])
    assert await queue(server.repo, bob) == []
    assert len(await queue(server.repo, alice2)) == 1


async def test_block_removes_queued_messages_and_follows_and_hides_the_profile(
    server: Server,
) -> None:
    http = server.http
    alice_user: User = await register_user(http, "alice")
    bob_user: User = await register_user(http, "bob")
    assert (await upload(http, bob_user)).status_code == 200
    alice = Device(alice_user.account_id, 1, alice_user.credential, 4242)
    bob = Device(bob_user.account_id, 1, bob_user.credential, 4242)
    carol = await register(server, "carol")
    bob2 = await second_device(server.repo, bob)
    bobs = [bob, bob2]
    for who, whom in ((alice, bob), (bob, alice)):
        assert (await call(server, "PUT", f"/v1/follows/{whom.account_id}", who)).status_code == 204
    for i in range(3):
        assert (await send(server, alice, bobs, b"a%d" % i)).status_code == 200
    assert (await send(server, carol, bobs, b"from carol")).status_code == 200
    assert len(await queue(server.repo, bob)) == len(await queue(server.repo, bob2)) == 4
    assert [e.request for e in await queue(server.repo, bob)] == [False, False, False, True]

    r = await call(server, "PUT", f"/v1/blocks/{alice.account_id}", bob)
    assert r.status_code == 204
    for device in bobs:
        assert [e.content for e in await queue(server.repo, device)] == [b"from carol"]
    r = await call(server, "GET", f"/v1/relationship/{alice.account_id}", bob)
    assert r.json() == {
        "following": False,
        "followed_by": False,
        "accepted": False,
        "accepted_by": True,  # Alice wrote to Bob
        "blocked": True,
    }
    assert (await call(server, "GET", "/v1/follows", bob)).json() == {"accounts": []}
    assert (await call(server, "GET", "/v1/followers", bob)).json() == {"accounts": []}
    r = await call(server, "GET", "/v1/blocks", bob)
    assert [(a["account_id"], a["username"]) for a in r.json()["accounts"]] == [
        (alice.account_id, "alice")
    ]

    # Alice sees no profile, exactly as for an account that does not exist ...
    missing = await call(server, "GET", f"/v1/accounts/{'0' * 32}", alice)
    for path in (f"/v1/accounts/{bob.account_id}", "/v1/accounts/by-username/bob"):
        r = await call(server, "GET", path, alice)
        assert (r.status_code, r.json()) == (404, missing.json()), path
    # ... nor can she follow him (the same 404) ...
    r = await call(server, "PUT", f"/v1/follows/{bob.account_id}", alice)
    unknown = await call(server, "PUT", f"/v1/follows/{'0' * 32}", alice)
    assert (r.status_code, r.json()) == (404, unknown.json())
    # ... but key bundles are still served, and others still see Bob.
    assert (await call(server, "GET", f"/v1/keys/{bob.account_id}", alice)).status_code == 200
    assert (await call(server, "GET", "/v1/accounts/by-username/bob", carol)).status_code == 200
    # Bob still sees Alice.
    assert (await call(server, "GET", f"/v1/accounts/{alice.account_id}", bob)).status_code == 200

    # Unblocking restores delivery (as a request: the follows are gone).
    assert (await call(server, "DELETE", f"/v1/blocks/{alice.account_id}", bob)).status_code == 204
    assert (await call(server, "GET", "/v1/blocks", bob)).json() == {"accounts": []}
    assert (await send(server, alice, bobs, b"after unblock")).status_code == 200
    for device in bobs:
        last = await last_from(server.repo, device, alice)
        assert (last.content, last.request) == (b"after unblock", True)
    assert (await call(server, "GET", f"/v1/accounts/{bob.account_id}", alice)).status_code == 200


async def test_block_rules(server: Server) -> None:
    alice = await register(server, "alice")
    r = await call(server, "PUT", f"/v1/blocks/{alice.account_id}", alice)
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    r = await call(server, "PUT", f"/v1/blocks/{'0' * 32}", alice)
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await call(server, "PUT", f"/v1/chats/{'0' * 32}", alice)
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    assert (await call(server, "DELETE", f"/v1/blocks/{'0' * 32}", alice)).status_code == 204


async def test_a_blocked_send_is_not_pushed(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    carol = await register(server, "carol")
    assert (await call(server, "PUT", f"/v1/blocks/{alice.account_id}", bob)).status_code == 204
    async with websocket(server, bob) as ws:
        await frames_until_empty(ws)
        assert (await send(server, alice, bob, b"blocked")).status_code == 200
        await asyncio.sleep(0.2)
        assert (await send(server, carol, bob, b"from carol")).status_code == 200
        frame = await next_frame(ws, 10)
        assert isinstance(frame, Deliver)
        assert [e.content for e in frame.envelopes] == [b"from carol"]


async def test_deleting_an_account_removes_its_relationships(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    for path in (f"/v1/follows/{bob.account_id}", f"/v1/blocks/{bob.account_id}"):
        assert (await call(server, "PUT", path, alice)).status_code == 204
    assert (await call(server, "DELETE", "/v1/accounts/me", bob)).status_code == 204
    assert (await call(server, "GET", "/v1/blocks", alice)).json() == {"accounts": []}
    sql = "SELECT (SELECT count(*) FROM blocks) + (SELECT count(*) FROM follows)"
    if isinstance(server.repo, SqliteRepository):
        count = await server.repo.executor.run(lambda c: c.execute(sql).fetchone()[0])
    else:
        assert isinstance(server.repo, PostgresRepository)
        count = await server.repo.pool.fetchval(sql)
    assert count == 0
