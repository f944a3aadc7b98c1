"""Message franking on the server, through the HTTP app on both repositories.

* a send with a franking tag is stored and delivered with a reporting tag that verifies
  (bound to sender, recipient device and the stored server time), over the WebSocket too;
* ``POST /v1/reports``: a valid report is recorded with its text and attachment summary
  (never the attachment key); forged tag, altered content, altered sender device or time,
  someone else's message, unknown key id, undecodable content -> 422 and nothing recorded;
  a replay -> 409; unknown reported account -> 404;
* rotation: messages tagged before a rotation still verify after it; new ones use the new key;
* ``veil admin reports --json`` and ``veil admin rotate-reporting-key`` on a SQLite data dir.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from veil.cli.main import main as veil_main
from veil.core.content import AttachmentPointer, Content, Typing, encode_content
from veil.core.crypto.x25519 import PrivateKey
from veil.core.franking import ReportingContext, check_report, frank, reporting_tag
from veil.core.rng import seeded_rng
from veil.server.app import Limits, create_app
from veil.server.model import Envelope
from veil.server.report_store import report_store
from veil.server.reporting import ReportingKeys
from veil.server.repository import Repository
from veil.server.sqlite_repo import SqliteRepository

from .conftest import Server
from .test_delivery import frames_until_empty, websocket
from .test_delivery import register as register_device

ATTACHMENT_KEY = bytes(range(200, 232))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class User:
    account_id: str
    credential: str
    device_id: int = 1

    @property
    def auth(self) -> dict[str, str]:
        raw = f"{self.account_id}.{self.device_id}:{self.credential}".encode()
        return {"authorization": "Basic " + base64.b64encode(raw).decode()}


@dataclass
class Sent:
    """A franked message as its recipient holds it after decrypting."""

    content: bytes
    franking_key: bytes
    franking_tag: bytes
    server_ms: int


@dataclass
class Api:
    app: Starlette
    http: httpx.AsyncClient
    repo: Repository


@pytest.fixture
async def api(repo: Repository) -> AsyncIterator[Api]:
    app = create_app(repo, migrate=False, limits=Limits(register_per_ip=(100.0, 1000.0)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veil.test") as http:
        yield Api(app, http, repo)


async def register(http: httpx.AsyncClient, name: str) -> User:
    key = b64(PrivateKey.generate(os.urandom).public_key.serialize())
    r = await http.post(
        "/v1/accounts", json={"username": name, "identity_key": key, "registration_id": 77}
    )
    assert r.status_code == 201, r.text
    return User(r.json()["account_id"], r.json()["credential"])


def message(text: str | None = "hello", *, attachment: bool = False, sent_ms: int = 1234) -> bytes:
    pointer = None
    if attachment:
        pointer = AttachmentPointer(
            "f" * 32, ATTACHMENT_KEY, b"\x11" * 32, 4096, "cat.png", "image/png"
        )
    return encode_content(
        Content(message_id=os.urandom(16), sent_ms=sent_ms, text=text, attachment=pointer)
    )


async def send(
    http: httpx.AsyncClient, sender: User, to: User, content: bytes, *, franked: bool = True
) -> Sent:
    f = frank(content, os.urandom)
    envelope: dict[str, Any] = {
        "device_id": 1,
        "registration_id": 77,
        "type": 2,
        "content": b64(b"ciphertext:" + os.urandom(16)),  # opaque to the server
    }
    if franked:
        envelope["franking_tag"] = b64(f.tag)
    r = await http.put(
        f"/v1/messages/{to.account_id}", json={"envelopes": [envelope]}, headers=sender.auth
    )
    assert r.status_code == 200, r.text
    return Sent(content, f.plaintext[-32:], f.tag, r.json()["server_ms"])


async def delivered(repo: Repository, user: User) -> list[Envelope]:
    return await repo.fetch_envelopes(user.account_id, 1, 0, 100)


def revealed(sent: Sent, env: Envelope, **changes: Any) -> dict[str, Any]:
    item = {
        "content": b64(sent.content),
        "franking_key": b64(sent.franking_key),
        "reporting_tag": b64(env.reporting_tag),
        "key_id": env.franking_key_id,
        "sender_device_id": env.sender_device_id,
        "recipient_device_id": env.device_id,
        "server_ms": env.server_ms,
    }
    item.update(changes)
    return item


async def report(
    http: httpx.AsyncClient, reporter: User, reported: str, items: list[dict[str, Any]]
) -> httpx.Response:
    body = {"reported_account_id": reported, "messages": items, "reason": "spam"}
    return await http.post("/v1/reports", json=body, headers=reporter.auth)


async def stored_reports(repo: Repository) -> list[Any]:
    return await report_store(repo).list_reports(100)


async def test_franked_send_is_delivered_with_a_reporting_tag_that_verifies(api: Api) -> None:
    alice, bob = await register(api.http, "alice"), await register(api.http, "bob")
    sent = await send(api.http, alice, bob, message("hi bob"))
    await send(api.http, alice, bob, message("unfranked"), franked=False)
    [env, plain] = await delivered(api.repo, bob)
    assert env.franking_tag == sent.franking_tag
    assert env.server_ms == sent.server_ms
    assert env.franking_key_id == 1
    secret = await report_store(api.repo).reporting_key(1)
    assert secret is not None and len(secret) == 32
    context = ReportingContext(
        sent.franking_tag, alice.account_id, 1, bob.account_id, 1, env.server_ms
    )
    assert env.reporting_tag == reporting_tag(secret, 1, context)
    problem = check_report(secret, 1, sent.content, sent.franking_key, env.reporting_tag, context)
    assert problem is None
    assert (plain.franking_tag, plain.reporting_tag, plain.franking_key_id) == (b"", b"", 0)


async def test_delivered_over_the_websocket_with_its_reporting_tag(server: Server) -> None:
    alice = await register_device(server, "alice")
    bob = await register_device(server, "bob")
    a, b = User(alice.account_id, alice.credential), User(bob.account_id, bob.credential)
    sent = await send(server.http, a, b, message("over the socket"))
    async with websocket(server, bob) as ws:
        [env] = await frames_until_empty(ws)
    assert env.franking_tag == sent.franking_tag and env.franking_key_id == 1
    assert len(env.reporting_tag) == 32
    item = {
        "content": b64(sent.content),
        "franking_key": b64(sent.franking_key),
        "reporting_tag": b64(env.reporting_tag),
        "key_id": env.franking_key_id,
        "sender_device_id": env.sender_device_id,
        "recipient_device_id": 1,  # what an EnvelopeOut does not say: the receiving device
        "server_ms": env.server_ms,
    }
    r = await report(server.http, b, a.account_id, [item])
    assert r.status_code == 201, r.text
    assert r.json()["messages"] == 1


async def test_valid_report_is_recorded(api: Api) -> None:
    alice, bob = await register(api.http, "Alice"), await register(api.http, "bob")
    one = await send(api.http, alice, bob, message("you will regret this", sent_ms=111))
    two = await send(api.http, alice, bob, message("look", attachment=True, sent_ms=222))
    envs = await delivered(api.repo, bob)
    r = await report(
        api.http, bob, alice.account_id, [revealed(one, envs[0]), revealed(two, envs[1])]
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["messages"] == 2 and len(answer["report_id"]) == 32
    [stored] = await stored_reports(api.repo)
    assert stored.report_id == answer["report_id"]
    assert (stored.reporter_account_id, stored.reporter_username) == (bob.account_id, "bob")
    assert (stored.reported_account_id, stored.reported_username) == (alice.account_id, "Alice")
    assert stored.reason == "spam"
    first, second = stored.messages
    assert (first.text, first.sent_ms, first.attachment) == ("you will regret this", 111, None)
    assert first.message_id == one.content[4:20].hex()  # field 2 of the encoded content
    assert (first.server_ms, first.key_id, first.sender_device_id) == (envs[0].server_ms, 1, 1)
    assert second.text == "look" and second.sent_ms == 222
    assert second.attachment is not None
    a = second.attachment
    assert (a.file_name, a.size, a.content_type, a.digest) == (
        "cat.png",
        4096,
        "image/png",
        b"\x11" * 32,
    )
    assert ATTACHMENT_KEY not in repr(stored).encode()
    if isinstance(api.repo, SqliteRepository):  # the key is nowhere in the database file
        await api.repo.close()
        assert ATTACHMENT_KEY not in api.repo.path.read_bytes()
        wal = api.repo.path.with_name(api.repo.path.name + "-wal")
        assert not wal.exists() or ATTACHMENT_KEY not in wal.read_bytes()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged_tag", "the reporting tag does not match"),
        ("altered_content", "the reporting tag does not match"),
        ("altered_sender_device", "the reporting tag does not match"),
        ("altered_time", "the reporting tag does not match"),
        ("altered_recipient_device", "the reporting tag does not match"),
        ("unknown_key_id", "unknown reporting key id"),
        ("wrong_key_id", "the reporting tag does not match"),
        ("wrong_franking_key", "the reporting tag does not match"),
    ],
)
async def test_invalid_report_is_refused_and_nothing_recorded(
    api: Api, case: str, reason: str
) -> None:
    alice, bob = await register(api.http, "alice"), await register(api.http, "bob")
    good = await send(api.http, alice, bob, message("first"))
    sent = await send(api.http, alice, bob, message("second"))
    [env_good, env] = await delivered(api.repo, bob)
    await api.app.state.reporting.rotate()  # key 2 exists: "wrong key id" names a real key
    tag = env.reporting_tag
    changes: dict[str, Any] = {
        "forged_tag": {"reporting_tag": b64(bytes([tag[0] ^ 1]) + tag[1:])},
        "altered_content": {"content": b64(message("second"))},
        "altered_sender_device": {"sender_device_id": 2},
        "altered_time": {"server_ms": env.server_ms + 1},
        "altered_recipient_device": {"recipient_device_id": 2},
        "unknown_key_id": {"key_id": 99},
        "wrong_key_id": {"key_id": 2},
        "wrong_franking_key": {"franking_key": b64(os.urandom(32))},
    }[case]
    # All or nothing: a valid first message does not get recorded with an invalid second.
    r = await report(
        api.http, bob, alice.account_id, [revealed(good, env_good), revealed(sent, env, **changes)]
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "report_invalid"
    assert body["details"]["index"] == 1
    assert body["details"]["reason"].startswith(reason)
    assert await stored_reports(api.repo) == []
    # Nothing was recorded, not even the replay guard of the valid message.
    r = await report(api.http, bob, alice.account_id, [revealed(good, env_good)])
    assert r.status_code == 201, r.text


async def test_someone_elses_message_cannot_be_reported(api: Api) -> None:
    alice, bob = await register(api.http, "alice"), await register(api.http, "bob")
    carol = await register(api.http, "carol")
    sent = await send(api.http, alice, bob, message("for bob only"))
    [env] = await delivered(api.repo, bob)
    # Carol got hold of everything bob could reveal: still not a message sent to her.
    r = await report(api.http, carol, alice.account_id, [revealed(sent, env)])
    assert r.status_code == 422 and r.json()["details"]["index"] == 0
    # Nor can bob pin alice's message on carol.
    r = await report(api.http, bob, carol.account_id, [revealed(sent, env)])
    assert r.status_code == 422
    assert await stored_reports(api.repo) == []


async def test_undecodable_or_control_content_is_invalid(api: Api) -> None:
    alice, bob = await register(api.http, "alice"), await register(api.http, "bob")
    garbage = await send(api.http, alice, bob, b"\xff\xfe not a content")
    typing = encode_content(Content(message_id=bytes(16), sent_ms=1, typing=Typing(True)))
    receipt_like = await send(api.http, alice, bob, typing)
    envs = await delivered(api.repo, bob)
    r = await report(api.http, bob, alice.account_id, [revealed(garbage, envs[0])])
    assert r.status_code == 422
    assert r.json()["details"] == {"index": 0, "reason": "the content cannot be decoded"}
    r = await report(api.http, bob, alice.account_id, [revealed(receipt_like, envs[1])])
    assert r.status_code == 422
    assert r.json()["details"]["reason"] == "only text and attachment messages can be reported"
    assert await stored_reports(api.repo) == []


async def test_replayed_report_is_409(api: Api) -> None:
    alice, bob = await register(api.http, "alice"), await register(api.http, "bob")
    sent = await send(api.http, alice, bob, message("once"))
    other = await send(api.http, alice, bob, message("twice"))
    [env, env2] = await delivered(api.repo, bob)
    assert (await report(api.http, bob, alice.account_id, [revealed(sent, env)])).status_code == 201
    r = await report(api.http, bob, alice.account_id, [revealed(other, env2), revealed(sent, env)])
    assert r.status_code == 409 and r.json()["error"] == "already_reported"
    r = await report(
        api.http, bob, alice.account_id, [revealed(other, env2), revealed(other, env2)]
    )
    assert r.status_code == 422 and r.json()["details"]["index"] == 1
    assert len(await stored_reports(api.repo)) == 1


async def test_unknown_reported_account_and_self_report(api: Api) -> None:
    alice, bob = await register(api.http, "alice"), await register(api.http, "bob")
    sent = await send(api.http, alice, bob, message("x"))
    [env] = await delivered(api.repo, bob)
    r = await report(api.http, bob, "0" * 32, [revealed(sent, env)])
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await report(api.http, bob, bob.account_id, [revealed(sent, env)])
    assert r.status_code == 400
    r = await api.http.post("/v1/reports", json={"reported_account_id": alice.account_id})
    assert r.status_code in (400, 401)
    assert await stored_reports(api.repo) == []


async def test_rotation_keeps_old_messages_verifiable(api: Api) -> None:
    alice, bob = await register(api.http, "alice"), await register(api.http, "bob")
    before = await send(api.http, alice, bob, message("before"))
    # Another process (or the CLI) rotates; this app picks it up at its next refresh.
    other = ReportingKeys(report_store(api.repo), lambda: 0)
    assert await other.rotate() == 2
    keys: ReportingKeys = api.app.state.reporting
    assert keys.current()[0] == 1
    await api.app.state.sweeper.sweep_once()  # the periodic re-read
    assert keys.current()[0] == 2
    after = await send(api.http, alice, bob, message("after"))
    [old, new] = await delivered(api.repo, bob)
    assert (old.franking_key_id, new.franking_key_id) == (1, 2)
    r = await report(api.http, bob, alice.account_id, [revealed(before, old), revealed(after, new)])
    assert r.status_code == 201, r.text
    [stored] = await stored_reports(api.repo)
    assert [m.key_id for m in stored.messages] == [1, 2]
    assert [m.text for m in stored.messages] == ["before", "after"]
    assert "secret" not in repr(keys) and str(await other.secret(2)) not in repr(keys)


async def test_secret_is_read_from_the_database_when_not_cached(api: Api) -> None:
    store = report_store(api.repo)
    keys = ReportingKeys(store, lambda: 0, random=seeded_rng(1))
    key_id, secret = await keys.load()
    assert key_id == 1 and secret == seeded_rng(1)(32)
    rotated = await ReportingKeys(store, lambda: 0).rotate()
    fresh = await store.reporting_key(rotated)
    assert fresh is not None and await keys.secret(rotated) == fresh
    assert await keys.secret(999) is None
    assert keys.current()[0] == 1  # until refreshed


def test_admin_cli_lists_reports_and_rotates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()

    async def setup() -> str:
        repo = SqliteRepository(data / "veil.db")
        await repo.migrate()
        app = create_app(repo, migrate=False, limits=Limits(register_per_ip=(100.0, 1000.0)))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                alice, bob = await register(http, "alice"), await register(http, "bob")
                sent = await send(http, alice, bob, message("abuse", attachment=True, sent_ms=5))
                [env] = await delivered(repo, bob)
                r = await report(http, bob, alice.account_id, [revealed(sent, env)])
                assert r.status_code == 201, r.text
                return str(r.json()["report_id"])
        finally:
            await repo.close()

    report_id = asyncio.run(setup())
    assert veil_main(["admin", "reports", "--data", str(data), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    [entry] = listing["reports"]
    assert entry["report_id"] == report_id
    assert entry["reporter"]["username"] == "bob" and entry["reported"]["username"] == "alice"
    assert entry["reason"] == "spam"
    [m] = entry["messages"]
    assert (m["text"], m["sent_ms"], m["key_id"], m["verified"]) == ("abuse", 5, 1, True)
    assert m["verification"] == "verified with reporting key 1"
    assert m["attachment"] == {
        "file_name": "cat.png",
        "size": 4096,
        "content_type": "image/png",
        "digest": "11" * 32,
    }
    assert ATTACHMENT_KEY.hex() not in json.dumps(listing)

    assert veil_main(["admin", "rotate-reporting-key", "--data", str(data)]) == 0
    assert capsys.readouterr().out == "new reporting key 2\n"
    assert veil_main(["admin", "reports", "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert f"report {report_id}" in text and "'abuse'" in text
    assert "verified with reporting key 1" in text and "'cat.png', 4096 bytes" in text
    assert veil_main(["admin", "reports", "--data", str(tmp_path / "nothing")]) == 3
