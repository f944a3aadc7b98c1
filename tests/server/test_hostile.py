"""Hostile input and cross-device access over both repositories (issue 3).

Every hostile request must be refused with a 4xx carrying a JSON ``{"error", "message"}``
body -- never a 5xx -- and must leave nothing behind: the accounts, devices, key counts and
queue depths of the test world are snapshotted before and compared after. A device must not be
able to read, ack or delete another device's data through any route (HTTP or WebSocket).

The tests at the end of the file are regressions for bugs this file found (now fixed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from starlette.types import ASGIApp, Message

from veil.core.crypto import xeddsa
from veil.core.crypto.kyber import KyberKeyPair
from veil.core.crypto.x25519 import PrivateKey
from veil.server.app import MAX_BODY, Limits, create_app
from veil.server.credentials import hash_credential, new_credential
from veil.server.model import NewDevice
from veil.server.repository import Repository
from veil.wire.keys import MAX_KEYS_PER_UPLOAD
from veil.wire.messages import MAX_CONTENT, MAX_ENVELOPES, Ack, Deliver, QueueEmpty, ServerFrame

_ws_decoder = msgspec.msgpack.Decoder(ServerFrame)
_ws_encoder = msgspec.msgpack.Encoder()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def basic(account_id: str, device_id: int | str, credential: str) -> dict[str, str]:
    raw = f"{account_id}.{device_id}:{credential}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


@dataclass
class Dev:
    account_id: str
    device_id: int
    credential: str
    identity: PrivateKey
    registration_id: int

    @property
    def auth(self) -> dict[str, str]:
        return basic(self.account_id, self.device_id, self.credential)


@dataclass
class World:
    """alice (primary + linked device 2 + linked device 3), bob, carol; keys and queues."""

    client: httpx.AsyncClient
    repo: Repository
    app: ASGIApp
    alice: Dev
    alice2: Dev
    alice3: Dev
    bob: Dev
    carol: Dev

    @property
    def devices(self) -> list[Dev]:
        return [self.alice, self.alice2, self.alice3, self.bob, self.carol]


# Usernames whose lookups must stay "not found" (some are attempted as registrations).
PROBE_NAMES = ["carl", "dave", "eve", "mallory", "trent", "aalice", "alice\x00", "alice2"]


async def snapshot(w: World) -> dict[str, Any]:
    """Everything a hostile request might have changed, as plain data."""
    state: dict[str, Any] = {}
    for acct in {d.account_id for d in w.devices}:
        account = await w.repo.get_account(acct)
        devices = await w.repo.list_devices(acct)
        state[acct] = (
            account,
            [(d.device_id, d.registration_id, d.name, d.credential_hash) for d in devices],
        )
    for d in w.devices:
        counts = await w.repo.prekey_counts(d.account_id, d.device_id)
        depth = await w.repo.queue_depth(d.account_id, d.device_id)
        state[f"{d.account_id}.{d.device_id}"] = (counts, depth)
    for name in PROBE_NAMES:
        if "\x00" not in name:  # (PostgreSQL text cannot hold NUL; such names never reach it)
            state[f"name:{name}"] = await w.repo.find_account(name)
    return state


def assert_refused(r: httpx.Response, what: object, *statuses: int) -> None:
    """A 4xx (one of ``statuses`` if given) with a JSON error body."""
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
    if statuses:
        assert r.status_code in statuses, (what, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), what
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], (what, body)
    assert isinstance(body.get("message"), str) and body["message"], (what, body)


# --- fixtures ---------------------------------------------------------------------------------


def _app(repo: Repository) -> ASGIApp:
    return create_app(
        repo,
        migrate=False,
        limits=Limits(
            register_per_ip=(1000.0, 10_000.0),
            bundles_per_device=(1000.0, 10_000.0),
            auth_failures_per_ip=(1000.0, 10_000.0),  # bad credentials are the point here
        ),
    )


async def _register(client: httpx.AsyncClient, name: str, registration_id: int = 77) -> Dev:
    identity = PrivateKey.generate(os.urandom)
    body = {
        "username": name,
        "identity_key": b64(identity.public_key.serialize()),
        "registration_id": registration_id,
    }
    r = await client.post("/v1/accounts", json=body)
    assert r.status_code == 201, r.text
    return Dev(r.json()["account_id"], 1, r.json()["credential"], identity, registration_id)


async def _link(repo: Repository, primary: Dev, registration_id: int) -> Dev:
    credential = new_credential()
    device = await repo.add_device(
        primary.account_id, NewDevice(registration_id, hash_credential(credential), "linked"), 1
    )
    return Dev(primary.account_id, device.device_id, credential, primary.identity, registration_id)


_KYBER = KyberKeyPair.generate(os.urandom).public_key.serialize()


def signed_prekey(identity: PrivateKey, key_id: int) -> dict[str, Any]:
    key = PrivateKey.generate(os.urandom).public_key.serialize()
    signature = xeddsa.sign(identity, key, os.urandom)
    return {"key_id": key_id, "public_key": b64(key), "signature": b64(signature)}


def kyber_prekeys(identity: PrivateKey, ids: range) -> list[dict[str, Any]]:
    """Signed Kyber prekeys (one key, one signature, many ids: the server checks each)."""
    signature = b64(xeddsa.sign(identity, _KYBER, os.urandom))
    return [{"key_id": i, "public_key": b64(_KYBER), "signature": signature} for i in ids]


def one_time_prekeys(ids: range) -> list[dict[str, Any]]:
    key = b64(PrivateKey.generate(os.urandom).public_key.serialize())
    return [{"key_id": i, "public_key": key} for i in ids]


def key_upload(dev: Dev, n: int = 3) -> dict[str, Any]:
    return {
        "signed_prekey": signed_prekey(dev.identity, 1),
        "last_resort_kyber": kyber_prekeys(dev.identity, range(1000, 1001))[0],
        "one_time_prekeys": one_time_prekeys(range(1, n + 1)),
        "kyber_prekeys": kyber_prekeys(dev.identity, range(1, n + 1)),
    }


def envelope(to: Dev, content: bytes = b"x", **extra: Any) -> dict[str, Any]:
    return {
        "device_id": to.device_id,
        "registration_id": to.registration_id,
        "type": 2,
        "content": b64(content),
        **extra,
    }


@pytest.fixture
async def world(repo: Repository) -> AsyncIterator[World]:
    app = _app(repo)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veil.test") as client:
        alice = await _register(client, "alice", 11)
        bob = await _register(client, "bob", 22)
        carol = await _register(client, "carol", 33)
        alice2 = await _link(repo, alice, 12)
        alice3 = await _link(repo, alice, 13)
        w = World(client, repo, app, alice, alice2, alice3, bob, carol)
        for dev in w.devices:
            r = await client.put("/v1/keys", json=key_upload(dev), headers=dev.auth)
            assert r.status_code == 200, r.text
        # one queued envelope for every device (bob sends to alice's three, alice to bob/carol)
        r = await client.put(
            f"/v1/messages/{alice.account_id}",
            json={"envelopes": [envelope(alice), envelope(alice2), envelope(alice3)]},
            headers=bob.auth,
        )
        assert r.status_code == 200, r.text
        for to in (bob, carol):
            r = await client.put(
                f"/v1/messages/{to.account_id}",
                json={
                    "envelopes": [
                        envelope(to),
                        envelope(alice2, account_id=alice.account_id),
                        envelope(alice3, account_id=alice.account_id),
                    ]
                },
                headers=alice.auth,
            )
            assert r.status_code == 200, r.text
        yield w


Call = tuple[str, str, dict[str, Any]]


async def assert_all_refused(w: World, calls: list[Call], *statuses: int) -> None:
    """Each call is a 4xx with a JSON error body, and the world is unchanged afterwards."""
    before = await snapshot(w)
    for method, path, kwargs in calls:
        r = await w.client.request(method, path, **kwargs)
        assert_refused(r, (method, path, str(kwargs)[:200]), *statuses)
    assert await snapshot(w) == before


def _body_routes(w: World) -> list[tuple[str, str, dict[str, str]]]:
    """The routes that take a JSON body, with the headers that authenticate them."""
    return [
        ("POST", "/v1/accounts", {}),
        ("PUT", "/v1/keys", w.alice.auth),
        ("PUT", f"/v1/messages/{w.bob.account_id}", w.alice.auth),
    ]


def _valid_register(name: str = "dave") -> dict[str, Any]:
    key = b64(PrivateKey.generate(os.urandom).public_key.serialize())
    return {"username": name, "identity_key": key, "registration_id": 5, "device_name": "d"}


# --- malformed and hostile bodies ---------------------------------------------------------------


async def test_deeply_nested_json_is_a_400(world: World) -> None:
    depth = 200_000
    bodies = [
        b"[" * depth,
        b"{" * depth,
        b'{"a":' * depth,
        b'{"envelopes":' + b"[" * depth,
        b'{"envelopes":[{"device_id":1,"registration_id":22,"type":2,"content":"",'
        b'"account_id":' + b"[" * depth,
        b'{"username":"dave","device_name":' + b'{"x":' * depth,
        b"[" * depth + b"]" * depth,
    ]
    calls = [
        (m, p, {"content": body, "headers": h})
        for m, p, h in _body_routes(world)
        for body in bodies
    ]
    await assert_all_refused(world, calls, 400)


async def test_very_long_strings_in_every_string_field(world: World) -> None:
    w = world
    long = "A" * (MAX_BODY // 2)
    reg_fields = ["username", "identity_key", "device_name"]
    calls: list[Call] = [
        ("POST", "/v1/accounts", {"json": {**_valid_register(), f: long}}) for f in reg_fields
    ]
    up = key_upload(w.alice)
    for part in ("signed_prekey", "last_resort_kyber"):
        for field in ("public_key", "signature"):
            body = {**up, part: {**up[part], field: long}}
            calls.append(("PUT", "/v1/keys", {"json": body, "headers": w.alice.auth}))
    for part in ("one_time_prekeys", "kyber_prekeys"):
        body = {**up, part: [{**up[part][0], "public_key": long}]}
        calls.append(("PUT", "/v1/keys", {"json": body, "headers": w.alice.auth}))
    send = f"/v1/messages/{w.bob.account_id}"
    for env in (
        envelope(w.bob, content=b"x" * (MAX_CONTENT * 2)),
        envelope(w.bob, account_id=long),
        {**envelope(w.bob), "content": long + "!"},
    ):
        calls.append(("PUT", send, {"json": {"envelopes": [env]}, "headers": w.alice.auth}))
    calls.append(
        (
            "PUT",
            send,
            {
                "json": {"envelopes": [envelope(w.bob)], "idempotency_key": long},
                "headers": w.alice.auth,
            },
        )
    )
    # the same in path parameters and the credential (10k characters: URLs stay sane)
    path_long = "a" * 10_000
    calls += [
        ("GET", f"/v1/accounts/by-username/{path_long}", {"headers": w.alice.auth}),
        ("GET", f"/v1/accounts/{path_long}", {"headers": w.alice.auth}),
        ("GET", f"/v1/keys/{path_long}", {"headers": w.alice.auth}),
        ("GET", f"/v1/keys/{w.bob.account_id}/{'9' * 4000}", {"headers": w.alice.auth}),
        ("DELETE", f"/v1/devices/{'9' * 4000}", {"headers": w.alice.auth}),
        ("PUT", f"/v1/messages/{path_long}", {"json": {"envelopes": []}, "headers": w.alice.auth}),
        ("GET", "/v1/devices", {"headers": basic(w.alice.account_id, 1, long)}),
        ("GET", "/v1/devices", {"headers": basic(long, 1, w.alice.credential)}),
        ("GET", "/v1/devices", {"headers": basic(w.alice.account_id, "1" * 5000, "x")}),
    ]
    await assert_all_refused(w, calls)


async def test_oversized_bodies_are_a_413(world: World) -> None:
    w = world
    huge = b'{"username":"' + b"a" * MAX_BODY + b'"}'
    calls = [(m, p, {"content": huge, "headers": h}) for m, p, h in _body_routes(w)]

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted while streaming
        for _ in range(5):
            yield b" " * (MAX_BODY // 4)

    await assert_all_refused(w, calls, 413)
    before = await snapshot(w)
    for method, path, headers in _body_routes(w):
        r = await w.client.request(method, path, content=chunks(), headers=headers)
        assert_refused(r, (method, path, "streamed"), 413)
        bad_length = {**headers, "content-length": "-1"}
        r = await w.client.request(method, path, content=b"{}", headers=bad_length)
        assert_refused(r, (method, path, "content-length -1"))
    assert await snapshot(w) == before


async def test_non_utf8_bodies_are_a_400(world: World) -> None:
    reg = _valid_register()
    bodies = [
        b"\xff\xfe\x00\x00",
        b"\xc3\x28",
        json.dumps(reg).encode("utf-16"),
        json.dumps(reg).encode("utf-32"),
        b'{"username": "dave", "device_name": "\\ud800"}',  # an escaped lone surrogate
        b"\x00" * 64,
    ]
    calls = [
        (m, p, {"content": body, "headers": h})
        for m, p, h in _body_routes(world)
        for body in bodies
    ]
    await assert_all_refused(world, calls, 400)


async def test_wrong_content_types(world: World) -> None:
    w = world
    form_types = ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    calls: list[Call] = []
    for method, path, headers in _body_routes(w):
        calls += [
            (method, path, {"data": {"username": "dave"}, "headers": headers}),
            (method, path, {"files": {"f": b"dave"}, "headers": headers}),
            (method, path, {"content": b"<xml/>", "headers": {**headers, "content-type": "x/y"}}),
        ]
        for ct in [*form_types, "text/plain", "application/msgpack"]:
            body = msgspec.msgpack.encode(_valid_register())
            calls.append(
                (method, path, {"content": body, "headers": {**headers, "content-type": ct}})
            )
    await assert_all_refused(w, calls, 400)
    # A valid JSON body under another content type is read as JSON (the type is not checked);
    # what matters here is that it is not a 5xx.
    r = await w.client.post(
        "/v1/accounts",
        content=json.dumps(_valid_register("mallory")),
        headers={"content-type": "text/plain"},
    )
    assert r.status_code < 500


OUT_OF_RANGE: list[Any] = [2**63, 2**64, -(2**63) - 1, -1, 1.5, 1.0, 1e400, "1", True, [1], {}]


async def test_numbers_out_of_range(world: World) -> None:
    w = world
    send = f"/v1/messages/{w.bob.account_id}"
    up = key_upload(w.alice)
    calls: list[Call] = []
    for value in [*OUT_OF_RANGE, None]:
        calls.append(
            ("POST", "/v1/accounts", {"json": {**_valid_register(), "registration_id": value}})
        )
        for part in ("signed_prekey", "last_resort_kyber"):
            body = {**up, part: {**up[part], "key_id": value}}
            calls.append(("PUT", "/v1/keys", {"json": body}))
        for part in ("one_time_prekeys", "kyber_prekeys"):
            calls.append(
                ("PUT", "/v1/keys", {"json": {**up, part: [{**up[part][0], "key_id": value}]}})
            )
        for field in ("device_id", "registration_id", "type"):
            env = {**envelope(w.bob), field: value}
            calls.append(("PUT", send, {"json": {"envelopes": [env]}}))
        calls.append(("PUT", send, {"json": {"envelopes": value}}))
        if not isinstance(value, str) and value is not None:  # both are valid idempotency keys
            idem = {"envelopes": [envelope(w.bob)], "idempotency_key": value}
            calls.append(("PUT", send, {"json": idem}))
    for _, _, kwargs in calls:
        kwargs["headers"] = w.alice.auth
        # json.dumps writes 1e400 as Infinity (not JSON); send it as the literal
        kwargs["content"] = json.dumps(kwargs.pop("json")).replace("Infinity", "1e400")
    await assert_all_refused(w, calls, 400)


async def test_ids_just_outside_their_ranges(world: World) -> None:
    w = world
    send = f"/v1/messages/{w.bob.account_id}"
    calls: list[Call] = [
        ("POST", "/v1/accounts", {"json": {**_valid_register(), "registration_id": 2**32}}),
        ("PUT", send, {"json": {"envelopes": [{**envelope(w.bob), "device_id": 0}]}}),
        ("PUT", send, {"json": {"envelopes": [{**envelope(w.bob), "device_id": 128}]}}),
        ("PUT", send, {"json": {"envelopes": [{**envelope(w.bob), "type": 0}]}}),
        ("PUT", send, {"json": {"envelopes": [{**envelope(w.bob), "type": 256}]}}),
        ("PUT", send, {"json": {"envelopes": [{**envelope(w.bob), "registration_id": 2**32}]}}),
        (
            "PUT",
            "/v1/keys",
            {"json": {"one_time_prekeys": one_time_prekeys(range(2**32, 2**32 + 1))}},
        ),
        ("DELETE", "/v1/devices/0", {}),
        ("DELETE", "/v1/devices/128", {}),
        ("DELETE", "/v1/devices/-1", {}),
        ("DELETE", "/v1/devices/1.0", {}),
        ("DELETE", "/v1/devices/%2B2", {}),
        ("DELETE", "/v1/devices/%202", {}),
        ("GET", f"/v1/keys/{w.bob.account_id}/0", {}),
        ("GET", f"/v1/keys/{w.bob.account_id}/128", {}),
        ("GET", f"/v1/keys/{w.bob.account_id}/{2**63}", {}),
    ]
    for _, _, kwargs in calls:
        kwargs["headers"] = w.alice.auth
    await assert_all_refused(w, calls, 400)


BASE64_GARBAGE = [
    "!!!!",
    "=" * 44,
    "A" * 43 + "!",
    "A" * 43,  # no padding
    b64(b"\x05" + bytes(32)).replace("A", "-"),
    b64(b"\x05" + bytes(32))[:20] + "\n" + b64(b"\x05" + bytes(32))[20:],
    b64(b"\x06" + bytes(32)),  # right length, wrong key type
    b64(b"\x05" + bytes(31)),
    b64(b"\x05" + bytes(33)),
    "\u0410" * 44,
    "",
]


async def test_base64_garbage(world: World) -> None:
    w = world
    up = key_upload(w.alice)
    calls: list[Call] = []
    for garbage in BASE64_GARBAGE:
        reg = {**_valid_register(), "identity_key": garbage}
        calls.append(("POST", "/v1/accounts", {"json": reg}))
        for part in ("signed_prekey", "last_resort_kyber"):
            for field in ("public_key", "signature"):
                body = {part: {**up[part], field: garbage}}
                calls.append(("PUT", "/v1/keys", {"json": body, "headers": w.alice.auth}))
        for part in ("one_time_prekeys", "kyber_prekeys"):
            body = {part: [{**up[part][0], "public_key": garbage}]}
            calls.append(("PUT", "/v1/keys", {"json": body, "headers": w.alice.auth}))
        env = {**envelope(w.bob), "content": garbage + "!"}
        calls.append(
            (
                "PUT",
                f"/v1/messages/{w.bob.account_id}",
                {"json": {"envelopes": [env]}, "headers": w.alice.auth},
            )
        )
    await assert_all_refused(w, calls, 400)


async def test_duplicate_keys_in_json_objects_store_one_consistent_value(world: World) -> None:
    w = world
    key = _valid_register()["identity_key"]
    body = '{"username": "dave", "identity_key": "KEY", "registration_id": 1, "username": "eve"}'
    body = body.replace("KEY", key)
    r = await w.client.post("/v1/accounts", content=body)
    assert r.status_code < 500, r.text
    dave, eve = await w.repo.find_account("dave"), await w.repo.find_account("eve")
    if r.status_code == 201:  # accepted: exactly one of the two names was registered
        assert (dave is None) != (eve is None)
        assert (dave or eve).account_id == r.json()["account_id"]  # type: ignore[union-attr]
    else:
        assert dave is None and eve is None
    # duplicate "envelopes": whichever wins, the send is all or nothing
    before = await snapshot(w)
    env = json.dumps([envelope(w.bob, b"one")])
    r = await w.client.put(
        f"/v1/messages/{w.bob.account_id}",
        content='{"envelopes": ENV, "envelopes": []}'.replace("ENV", env),
        headers=w.alice.auth,
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert_refused(r, "duplicate envelopes")
        assert await snapshot(w) == before


# --- usernames, ids and paths -----------------------------------------------------------------

HOMOGLYPHS = [
    "\u0430lice",  # Cyrillic a
    "\uff41lice",  # fullwidth a
    "alic\u0435",  # Cyrillic e
    "al\u0131ce",  # dotless i
    "AL\u0130CE",  # Turkish dotted capital I (lower() is two characters)
    "alice\u200b",  # zero-width space
    "\u202ealice",  # right-to-left override
    "alice\u00a0",
    "ali\u0307ce",  # combining dot
]


async def test_unicode_and_homoglyph_usernames_are_refused(world: World) -> None:
    w = world
    names = [*HOMOGLYPHS, "al", "a" * 33, "1alice", "_alice", "alice bob", "alice/x", "ali%ce"]
    calls: list[Call] = [("POST", "/v1/accounts", {"json": _valid_register(n)}) for n in names]
    await assert_all_refused(w, calls, 400)
    before = await snapshot(w)
    for name in HOMOGLYPHS:
        r = await w.client.get(f"/v1/accounts/by-username/{name}", headers=w.bob.auth)
        assert_refused(r, name, 400, 404)
    r = await w.client.get("/v1/accounts/by-username/ALICE", headers=w.bob.auth)
    assert r.status_code == 200 and r.json()["account_id"] == w.alice.account_id
    assert await snapshot(w) == before


async def test_path_traversal_and_odd_ids(world: World) -> None:
    w = world
    real = w.bob.account_id
    odd = [
        "..",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e",
        "..%5C..%5Cwindows",
        real.upper(),
        real[:-1],
        real + "0",
        real + "%0A",
        real + "%20",
        f"{real[:-1]}g",
        "' OR '1'='1",
        "%25",
        "*",
        "%",
        "%ff%fe",
        "%C0%AE%C0%AE",
        f"{real};{w.carol.account_id}",
    ]
    calls: list[Call] = []
    for ident in odd:
        calls += [
            ("GET", f"/v1/accounts/{ident}", {"headers": w.alice.auth}),
            ("GET", f"/v1/keys/{ident}", {"headers": w.alice.auth}),
            ("GET", f"/v1/keys/{ident}/1", {"headers": w.alice.auth}),
            ("GET", f"/v1/keys/{real}/{ident}", {"headers": w.alice.auth}),
            ("DELETE", f"/v1/devices/{ident}", {"headers": w.alice.auth}),
            ("GET", f"/v1/accounts/by-username/{ident}", {"headers": w.alice.auth}),
            (
                "PUT",
                f"/v1/messages/{ident}",
                {"json": {"envelopes": [envelope(w.bob)]}, "headers": w.alice.auth},
            ),
        ]
    await assert_all_refused(w, calls)


async def test_send_to_nonexistent_or_malformed_account_ids(world: World) -> None:
    w = world
    calls: list[Call] = []
    for ident in ["0" * 32, "f" * 32, os.urandom(16).hex(), "bob", "0" * 31, "0" * 33, "Z" * 32]:
        for body in (
            {"envelopes": [envelope(w.bob)]},
            {"envelopes": []},
            {"envelopes": [envelope(w.bob, account_id="0" * 32)]},
        ):
            calls.append(("PUT", f"/v1/messages/{ident}", {"json": body, "headers": w.alice.auth}))
    # an envelope naming a malformed account id, or a third account, with a real recipient
    for third in ["0" * 31, "Z" * 32, w.carol.account_id, "0" * 32]:
        body = {"envelopes": [envelope(w.bob), envelope(w.carol, account_id=third)]}
        calls.append(
            ("PUT", f"/v1/messages/{w.bob.account_id}", {"json": body, "headers": w.alice.auth})
        )
    await assert_all_refused(w, calls)


# --- sizes at the limits ----------------------------------------------------------------------


async def test_envelope_count_limit(world: World) -> None:
    w = world
    send = f"/v1/messages/{w.bob.account_id}"

    def many(n: int) -> list[dict[str, Any]]:  # distinct (account, device) targets
        accounts = [w.bob.account_id, w.carol.account_id] + [f"{i:032x}" for i in range(8)]
        return [
            {**envelope(w.bob, b""), "account_id": accounts[i // 127], "device_id": i % 127 + 1}
            for i in range(n)
        ]

    calls: list[Call] = [
        ("PUT", send, {"json": {"envelopes": many(MAX_ENVELOPES + 1)}, "headers": w.alice.auth}),
        ("PUT", send, {"json": {"envelopes": many(1000)}, "headers": w.alice.auth}),
    ]
    await assert_all_refused(w, calls, 400)
    # exactly the maximum passes validation and is refused only by the device check
    before = await snapshot(w)
    r = await w.client.put(send, json={"envelopes": many(MAX_ENVELOPES)}, headers=w.alice.auth)
    assert_refused(r, "256 envelopes", 409)
    assert r.json()["error"] == "device_mismatch"
    assert await snapshot(w) == before


async def test_content_at_the_maximum_and_one_byte_over(world: World) -> None:
    w = world
    send = f"/v1/messages/{w.bob.account_id}"
    over = {"envelopes": [envelope(w.bob, b"\xab" * (MAX_CONTENT + 1))]}
    await assert_all_refused(w, [("PUT", send, {"json": over, "headers": w.alice.auth})], 400)
    depth = await w.repo.queue_depth(w.bob.account_id, 1)
    exact = {"envelopes": [envelope(w.bob, b"\xab" * MAX_CONTENT)]}
    r = await w.client.put(send, json=exact, headers=w.alice.auth)
    assert r.status_code == 200, r.text
    assert await w.repo.queue_depth(w.bob.account_id, 1) == depth + 1
    [*_, stored] = await w.repo.fetch_envelopes(w.bob.account_id, 1, 0, 100)
    assert stored.content == b"\xab" * MAX_CONTENT


async def test_key_upload_at_the_maximum_and_one_over(world: World) -> None:
    w = world
    dev = w.alice2
    n = MAX_KEYS_PER_UPLOAD
    calls: list[Call] = [
        ("PUT", "/v1/keys", {"json": {"one_time_prekeys": one_time_prekeys(range(n + 1))}}),
        ("PUT", "/v1/keys", {"json": {"kyber_prekeys": kyber_prekeys(dev.identity, range(n + 1))}}),
        (
            "PUT",
            "/v1/keys",
            {
                "json": {
                    "one_time_prekeys": one_time_prekeys(range(n)),
                    "kyber_prekeys": kyber_prekeys(dev.identity, range(n + 1)),
                }
            },
        ),
        # all-or-nothing: one bad key among 200 stores none of them
        (
            "PUT",
            "/v1/keys",
            {
                "json": {
                    "one_time_prekeys": one_time_prekeys(range(n)),
                    "kyber_prekeys": kyber_prekeys(dev.identity, range(n - 1))
                    + kyber_prekeys(PrivateKey.generate(os.urandom), range(n - 1, n)),
                }
            },
        ),
        # duplicate ids in one upload
        ("PUT", "/v1/keys", {"json": {"one_time_prekeys": one_time_prekeys(range(2)) * 2}}),
    ]
    for _, _, kwargs in calls:
        kwargs["headers"] = dev.auth
    await assert_all_refused(w, calls, 400)
    body = {
        "one_time_prekeys": one_time_prekeys(range(100, 100 + n)),
        "kyber_prekeys": kyber_prekeys(dev.identity, range(100, 100 + n)),
    }
    r = await w.client.put("/v1/keys", json=body, headers=dev.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"one_time_prekeys": n + 3, "kyber_prekeys": n + 3, "low": False}


async def test_idempotency_key_of_64_and_65_characters(world: World) -> None:
    w = world
    send = f"/v1/messages/{w.bob.account_id}"
    calls: list[Call] = [
        ("PUT", send, {"json": {"envelopes": [envelope(w.bob)], "idempotency_key": k}})
        for k in ["k" * 65, "", "\U0001f600" * 65, "\U0001f600", "with space", "nul\x00"]
    ]
    for _, _, kwargs in calls:
        kwargs["headers"] = w.alice.auth
    await assert_all_refused(w, calls, 400)
    depth = await w.repo.queue_depth(w.bob.account_id, 1)
    for key in ["k" * 64, "!~" * 32]:
        body = {"envelopes": [envelope(w.bob)], "idempotency_key": key}
        first = await w.client.put(send, json=body, headers=w.alice.auth)
        again = await w.client.put(send, json=body, headers=w.alice.auth)
        assert first.status_code == again.status_code == 200, first.text
        assert again.json()["duplicate"] is True
    assert await w.repo.queue_depth(w.bob.account_id, 1) == depth + 2


# --- authentication and cross-device access ---------------------------------------------------


def _authenticated_calls(w: World) -> list[Call]:
    """Every authenticated HTTP route, with a body where it takes one."""
    return [
        ("GET", f"/v1/accounts/{w.alice.account_id}", {}),
        ("GET", "/v1/accounts/by-username/alice", {}),
        ("DELETE", "/v1/accounts/me", {}),
        ("GET", "/v1/devices", {}),
        ("DELETE", "/v1/devices/2", {}),
        ("DELETE", "/v1/devices/3", {}),
        ("PUT", "/v1/keys", {"json": key_upload(w.alice)}),
        ("GET", "/v1/keys/status", {}),
        ("GET", f"/v1/keys/{w.bob.account_id}", {}),
        ("GET", f"/v1/keys/{w.bob.account_id}/1", {}),
        (
            "PUT",
            f"/v1/messages/{w.bob.account_id}",
            {"json": {"envelopes": [envelope(w.bob)]}},
        ),
    ]


async def test_every_route_refuses_unauthenticated_and_wrong_account_requests(
    world: World,
) -> None:
    w = world
    a, a2, b = w.alice, w.alice2, w.bob
    bad_headers = [
        {},
        {"authorization": ""},
        {"authorization": "Basic"},
        {"authorization": "Basic "},
        {"authorization": "Bearer " + a.credential},
        {"authorization": "basic " + a.auth["authorization"][6:]},
        {"authorization": "Basic !!!"},
        {"authorization": "Basic " + b64(b"\xff\xfe:\xff")},
        {"authorization": "Basic " + b64(f"{a.account_id}:{a.credential}".encode())},
        {"authorization": "Basic " + b64(f"{a.account_id}.1".encode())},
        basic(a.account_id, 1, ""),
        basic(a.account_id, 1, a.credential[:-1]),
        basic(a.account_id, 1, a.credential + "x"),
        basic(a.account_id, 1, a2.credential),  # another device's credential
        basic(a.account_id, 2, a.credential),
        basic(b.account_id, 1, a.credential),  # another account's
        basic(a.account_id.upper(), 1, a.credential),
        basic(a.account_id, 0, a.credential),
        basic(a.account_id, 128, a.credential),
        basic(a.account_id, -1, a.credential),
        basic(a.account_id, 99, a.credential),
        basic(a.account_id, "", a.credential),
        basic(a.account_id + ".1", 1, a.credential),
        basic("0" * 32, 1, a.credential),
        basic(a.account_id, 1, a.credential.upper()),
    ]
    calls = [
        (m, p, {**kwargs, "headers": h})
        for h in bad_headers
        for m, p, kwargs in _authenticated_calls(w)
    ]
    await assert_all_refused(w, calls, 401)
    r = await w.client.get("/v1/devices", headers={})
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_linked_device_cannot_delete_the_account_or_other_devices(world: World) -> None:
    w = world
    calls: list[Call] = [
        ("DELETE", "/v1/accounts/me", {"headers": w.alice2.auth}),
        ("DELETE", "/v1/devices/1", {"headers": w.alice2.auth}),
        ("DELETE", "/v1/devices/3", {"headers": w.alice2.auth}),
        ("DELETE", "/v1/devices/1", {"headers": w.alice.auth}),
        ("DELETE", "/v1/devices/2", {"headers": w.bob.auth}),  # bob has no device 2
        ("DELETE", "/v1/devices/1", {"headers": w.bob.auth}),
    ]
    await assert_all_refused(w, calls, 403, 404)
    # a linked device may remove itself; afterwards its credential is dead, its queue gone
    r = await w.client.delete("/v1/devices/3", headers=w.alice3.auth)
    assert r.status_code == 204
    assert (await w.client.get("/v1/devices", headers=w.alice3.auth)).status_code == 401
    assert await w.repo.queue_depth(w.alice.account_id, 3) == 0
    assert await w.repo.queue_depth(w.alice.account_id, 2) == 3


async def test_key_routes_touch_only_the_callers_device(world: World) -> None:
    w = world
    before = await snapshot(w)
    r = await w.client.put("/v1/keys", json=key_upload(w.alice2, n=20), headers=w.alice2.auth)
    assert r.status_code == 200 and r.json()["one_time_prekeys"] == 20
    after = await snapshot(w)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {f"{w.alice.account_id}.2"}
    r = await w.client.get("/v1/keys/status", headers=w.bob.auth)
    assert r.json()["one_time_prekeys"] == 3  # bob's own, not anyone else's
    # bundles are public, but fetching one only consumes the fetched device's keys
    r = await w.client.get(f"/v1/keys/{w.alice.account_id}/2", headers=w.bob.auth)
    assert r.status_code == 200
    final = await snapshot(w)
    assert {k for k in after if after[k] != final[k]} == {f"{w.alice.account_id}.2"}


async def test_sends_cannot_target_a_third_account_or_the_sending_device(world: World) -> None:
    w = world
    send = f"/v1/messages/{w.bob.account_id}"
    calls: list[Call] = [
        # a copy for carol smuggled into a send to bob
        (
            "PUT",
            send,
            {
                "json": {
                    "envelopes": [envelope(w.bob), envelope(w.carol, account_id=w.carol.account_id)]
                }
            },
        ),
        # a "sync" copy for the sending device itself
        (
            "PUT",
            send,
            {
                "json": {
                    "envelopes": [
                        envelope(w.bob),
                        envelope(w.alice2, account_id=w.alice.account_id),
                        envelope(w.alice3, account_id=w.alice.account_id),
                        envelope(w.alice, account_id=w.alice.account_id),
                    ]
                }
            },
        ),
        # the same device twice, once implicitly and once by account id
        (
            "PUT",
            send,
            {
                "json": {
                    "envelopes": [envelope(w.bob), envelope(w.bob, account_id=w.bob.account_id)]
                }
            },
        ),
    ]
    for _, _, kwargs in calls:
        kwargs["headers"] = w.alice.auth
    await assert_all_refused(w, calls, 400, 409)


class _AsgiWebSocket:
    """A WebSocket session driven directly over ASGI, in the test's own event loop."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": "/v1/websocket",
            "raw_path": b"/v1/websocket",
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1234),
            "server": ("veil.test", 80),
            "subprotocols": [],
        }
        self.task = asyncio.ensure_future(app(scope, self.inbox.get, self.outbox.put))

    async def open(self) -> bool:
        await self.inbox.put({"type": "websocket.connect"})
        first = await asyncio.wait_for(self.outbox.get(), 10)
        return first["type"] == "websocket.accept"

    async def frames_until_empty(self) -> list[Any]:
        out: list[Any] = []
        while True:
            message = await asyncio.wait_for(self.outbox.get(), 10)
            assert message["type"] == "websocket.send", message
            frame = _ws_decoder.decode(message["bytes"])
            if isinstance(frame, QueueEmpty):
                return out
            if isinstance(frame, Deliver):
                out.extend(frame.envelopes)

    async def ack(self, ids: list[int]) -> None:
        await self.inbox.put({"type": "websocket.receive", "bytes": _ws_encoder.encode(Ack(ids))})

    async def close(self) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 10)  # every message before it has been handled


async def test_websocket_acks_cannot_touch_another_devices_queue(world: World) -> None:
    w = world
    queued = {
        d.device_id if d.account_id == w.alice.account_id else d.account_id: [
            e.envelope_id for e in await w.repo.fetch_envelopes(d.account_id, d.device_id, 0, 50)
        ]
        for d in w.devices
    }
    others = queued[w.bob.account_id] + queued[w.carol.account_id] + queued[2] + queued[3]
    before = await snapshot(w)
    for dev in (w.alice, w.alice2):  # a primary, then a linked device of the same account
        ws = _AsgiWebSocket(w.app, dev.auth)
        assert await ws.open()
        mine = await ws.frames_until_empty()
        own = queued[dev.device_id]
        assert [e.envelope_id for e in mine] == own  # only its own queue is delivered
        foreign = [i for i in others if i not in own] + [i for i in queued[1] if i not in own]
        await ws.ack([*foreign, -1, 0, 2**63 - 1])
        await ws.close()
        for d in w.devices:
            if d is not dev:
                key = f"{d.account_id}.{d.device_id}"
                assert (await snapshot(w))[key] == before[key], (dev, d)
    # a refused handshake never reaches the queue
    for headers in ({}, basic(w.bob.account_id, 1, w.alice.credential)):
        ws = _AsgiWebSocket(w.app, headers)
        assert not await ws.open()
        await asyncio.wait_for(ws.task, 10)


# --- found by this file, fixed since: regression tests ---------------------------------------

# PostgreSQL text cannot hold NUL: a NUL in a path id, username, idempotency key, device name
# or Basic user used to reach asyncpg and become a 500. They are refused at the edge now.


def _nul_calls(w: World) -> list[Call]:
    nul_id = "%00" * 32
    return [
        ("GET", "/v1/accounts/by-username/alice%00", {"headers": w.bob.auth}),
        ("GET", f"/v1/accounts/{nul_id}", {"headers": w.bob.auth}),
        ("GET", f"/v1/keys/{nul_id}", {"headers": w.bob.auth}),
        ("GET", f"/v1/keys/{nul_id}/1", {"headers": w.bob.auth}),
        ("PUT", f"/v1/messages/{nul_id}", {"json": {"envelopes": []}, "headers": w.bob.auth}),
    ]


async def test_nul_bytes_in_path_ids_are_refused(world: World) -> None:
    await assert_all_refused(world, _nul_calls(world), 404)


async def test_nul_in_basic_auth_user(world: World) -> None:
    calls = [
        (m, p, {**kwargs, "headers": basic("\x00" * 32, 1, "x")})
        for m, p, kwargs in _authenticated_calls(world)
    ]
    await assert_all_refused(world, calls, 401)


async def test_nul_in_device_name(world: World) -> None:
    body = {**_valid_register("dave"), "device_name": "lap\x00top"}
    await assert_all_refused(world, [("POST", "/v1/accounts", {"json": body})], 400)


async def test_nul_in_idempotency_key(world: World) -> None:
    w = world
    body = {"envelopes": [envelope(w.bob)], "idempotency_key": "k\x00"}
    calls: list[Call] = [
        ("PUT", f"/v1/messages/{w.bob.account_id}", {"json": body, "headers": w.alice.auth})
    ]
    await assert_all_refused(w, calls, 400)


@pytest.mark.parametrize("device", ["%C2%B2", "1" * 5000], ids=["superscript-2", "5000-digits"])
async def test_non_ascii_or_huge_digit_device_ids_are_a_400(world: World, device: str) -> None:
    w = world
    calls: list[Call] = [
        ("DELETE", f"/v1/devices/{device}", {"headers": w.alice.auth}),
        ("GET", f"/v1/keys/{w.bob.account_id}/{device}", {"headers": w.alice.auth}),
    ]
    await assert_all_refused(w, calls, 400)


async def test_arabic_indic_digit_is_not_device_one(world: World) -> None:
    w = world
    r = await w.client.get(f"/v1/keys/{w.bob.account_id}/\u0661", headers=w.alice.auth)
    assert_refused(r, "arabic-indic 1", 400)


async def test_kelvin_sign_homoglyph_does_not_resolve(world: World) -> None:
    w = world
    kate = await _register(w.client, "kate")
    r = await w.client.get("/v1/accounts/by-username/\u212aate", headers=w.bob.auth)
    assert r.status_code in (400, 404), (r.status_code, r.json(), kate.account_id)


async def test_non_ascii_digit_content_length_is_a_4xx(world: World) -> None:
    w = world
    sent: list[Message] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/accounts",
        "raw_path": b"/v1/accounts",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-length", b"\xb2"), (b"host", b"veil.test")],
        "client": ("127.0.0.1", 1234),
        "server": ("veil.test", 80),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await w.app(scope, receive, send)
    assert 400 <= sent[0]["status"] < 500, sent[0]


async def test_invalid_utf8_inside_json_strings_is_a_400(world: World) -> None:
    reg = _valid_register()
    reg["device_name"] = "caf\u00e9"
    bodies = [
        json.dumps(reg, ensure_ascii=False).encode("latin-1"),
        b'{"username": "d\xe9ve"}',
        b'{"usern\xe9me": 1}',
        b'{"username": "dave", "device_name": "\xed\xa0\x80"}',  # an encoded lone surrogate
    ]
    calls = [
        (m, p, {"content": body, "headers": h})
        for m, p, h in _body_routes(world)
        for body in bodies
    ]
    await assert_all_refused(world, calls, 400)
