"""HttpApi against a real server: every route family, errors, and network failures."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from veil.client.credentials import Credentials
from veil.client.errors import ServerError, TooLargeError, TransportError
from veil.client.http import HttpApi
from veil.core.crypto.x25519 import PrivateKey
from veil.server.app import Limits
from veil.wire.accounts import RegisterRequest
from veil.wire.messages import SendRequest
from veil.wire.provisioning import LinkRequest

from .conftest import TEST_LIMITS, LiveServer, key_upload, register


async def test_register_lookup_account_devices(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = await register(live.base, "Alice")
    bob = await register(live.base, "bob")
    async with HttpApi(live.base, bob.credentials) as api:
        info = await api.lookup("ALICE")
        assert info.account_id == alice.account_id
        assert info.username == "Alice"
        assert info.identity_key == alice.identity.public_key.serialize()
        assert (await api.account(alice.account_id)).username == "Alice"
        [device] = (await api.devices()).devices
        assert (device.device_id, device.registration_id, device.name) == (1, 4242, "test")
    assert "HTTP Request" in caplog.text  # httpx logged the calls, without their headers
    for secret in (bob.credentials.credential, bob.credentials.authorization.split()[1]):
        assert secret not in caplog.text


def test_credentials_never_show() -> None:
    creds = Credentials("a" * 32, 1, "s3cret-credential")
    api = HttpApi("http://127.0.0.1:1", creds)
    for text in (repr(creds), str(creds), repr(api)):
        assert "s3cret" not in text
    assert creds.authorization.startswith("Basic ")


async def test_server_error_fields(live: LiveServer) -> None:
    alice = await register(live.base, "alice")
    key = PrivateKey.generate(os.urandom).public_key.serialize()
    async with HttpApi(live.base, alice.credentials) as api:
        with pytest.raises(ServerError) as taken:
            await api.register(RegisterRequest("ALICE", key, 1))
        assert (taken.value.status, taken.value.code) == (409, "username_taken")
        assert taken.value.message and "409 username_taken" in str(taken.value)
        assert taken.value.retry_after_s is None

        with pytest.raises(ServerError) as missing:
            await api.lookup("nobody")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        with pytest.raises(ServerError) as missing:
            await api.lookup("../devices")  # one path segment: cannot reach another route
        assert missing.value.status in (400, 404)

        api.credentials = Credentials(alice.account_id, 1, "wrong")
        with pytest.raises(ServerError) as denied:
            await api.devices()
        assert denied.value.status == 401 and denied.value.is_auth
        assert "wrong" not in str(denied.value)


def test_server_error_without_json_body() -> None:
    error = ServerError.from_body(502, b"<html>bad gateway</html>", "Bad Gateway", "7")
    assert (error.status, error.code, error.message) == (502, "http_502", "HTTP 502 Bad Gateway")
    assert error.retry_after_s == 7.0 and error.details == {}
    assert str(error) == "server refused (502 http_502): HTTP 502 Bad Gateway"


async def test_rate_limit_exposes_retry_after(live: LiveServer) -> None:
    await live.stop()
    live.limits = Limits(register_per_ip=TEST_LIMITS.register_per_ip, link_per_ip=(0.01, 1.0))
    await live.start()
    request = LinkRequest("0" * 32, "nope", 1)
    async with HttpApi(live.base) as api:
        with pytest.raises(ServerError):  # the first attempt is spent (a wrong code)
            await api.link(request)
        with pytest.raises(ServerError) as limited:
            await api.link(request)
    assert (limited.value.status, limited.value.code) == (429, "rate_limited")
    assert limited.value.retry_after_s is not None and limited.value.retry_after_s > 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refused_connection_is_a_transport_error() -> None:
    port = _closed_port()
    creds = Credentials("b" * 32, 1, "top-secret-credential")
    async with HttpApi(f"http://user:hunter2@127.0.0.1:{port}/", creds) as api:
        with pytest.raises(TransportError) as refused:
            await api.devices()
    message = str(refused.value)
    assert message == f"http://127.0.0.1:{port}: connection refused"
    assert "top-secret" not in message and "hunter2" not in message
    assert "top-secret" not in repr(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


async def test_keys_and_bundles(live: LiveServer) -> None:
    alice, bob = await register(live.base, "alice"), await register(live.base, "bob")
    async with HttpApi(live.base, alice.credentials) as a, HttpApi(live.base, bob.credentials) as b:
        counts = await a.upload_keys(key_upload(alice.identity, n=3))
        assert (counts.one_time_prekeys, counts.kyber_prekeys) == (3, 3)
        bundle = await b.bundles(alice.account_id)
        assert bundle.identity_key == alice.identity.public_key.serialize()
        [device] = bundle.devices
        assert device.device_id == 1 and device.one_time_prekey is not None
        assert len((await b.bundles(alice.account_id, 1)).devices) == 1
        status = await a.key_status()
        assert (status.one_time_prekeys, status.kyber_prekeys) == (1, 1)
        sent = await b.send(alice.account_id, SendRequest([alice.envelope(b"hi")], "k1"))
        assert [e.account_id for e in sent.envelopes] == [alice.account_id]
        again = await b.send(alice.account_id, SendRequest([alice.envelope(b"hi")], "k1"))
        assert again.duplicate


async def test_linking_a_device(live: LiveServer) -> None:
    alice = await register(live.base, "alice")
    async with HttpApi(live.base, alice.credentials) as old, HttpApi(live.base) as new:
        box = await new.open_mailbox()
        assert box.token not in repr(box)
        assert await new.wait_mailbox(box.provisioning_id, box.token, wait_s=0) is None
        code = await old.provisioning_code()
        await old.put_mailbox(box.provisioning_id, b"ciphertext " + code.code.encode())
        message = await new.wait_mailbox(box.provisioning_id, box.token, wait_s=5)
        assert message == b"ciphertext " + code.code.encode()
        linked = await new.link(LinkRequest(alice.account_id, code.code, 77, "phone"))
        assert (linked.account_id, linked.device_id) == (alice.account_id, 2)
        new.credentials = Credentials.of(linked)
        assert [d.device_id for d in (await new.devices()).devices] == [1, 2]
        await old.remove_device(2)
        assert [d.device_id for d in (await old.devices()).devices] == [1]
        with pytest.raises(ServerError) as gone:
            await new.devices()
        assert gone.value.is_auth
        await old.delete_account()
        with pytest.raises(ServerError):
            await old.devices()


async def test_attachments_round_trip_and_limit(live: LiveServer) -> None:
    alice, bob = await register(live.base, "alice"), await register(live.base, "bob")
    blob = os.urandom(300_000)
    async with HttpApi(live.base, alice.credentials) as a, HttpApi(live.base, bob.credentials) as b:
        created = await a.upload_attachment(blob)
        assert created.size == len(blob)
        assert await b.download_attachment(created.attachment_id, max_bytes=len(blob)) == blob
        with pytest.raises(TooLargeError) as big:
            await b.download_attachment(created.attachment_id, max_bytes=len(blob) - 1)
        assert big.value.limit == len(blob) - 1
        with pytest.raises(ServerError) as not_owner:
            await b.delete_attachment(created.attachment_id)
        assert not_owner.value.status in (403, 404)
        await a.delete_attachment(created.attachment_id)
        with pytest.raises(ServerError) as gone:
            await b.download_attachment(created.attachment_id, max_bytes=len(blob))
        assert gone.value.status == 404
