"""Operations: Prometheus metrics, readiness, and logs that never hold a secret or a body."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from veil.server.logs import JsonFormatter, configure_logging
from veil.server.repository import Repository
from veil.wire.messages import Ack

from .conftest import Server
from .test_api import register as api_register
from .test_api import (
    upload,
)
from .test_delivery import (
    _encoder,
    frames_until_empty,
    register,
    send,
)
from .test_delivery import websocket as open_websocket

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> Samples:
    r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def test_envelope_counters_follow_send_deliver_ack(server: Server) -> None:
    alice, bob = await register(server, "alice"), await register(server, "bob")
    for i in range(3):
        assert (await send(server, alice, bob, f"m{i}".encode())).status_code == 200
    dup = [await send(server, alice, bob, b"once", idempotency_key="k") for _ in range(2)]
    assert dup[1].json()["duplicate"] is True  # a duplicate stores nothing new
    m = await scrape(server.http)
    assert value(m, "veil_envelopes_stored_total") == 4
    assert value(m, "veil_queue_depth") == 4
    assert value(m, "veil_connected_devices") == 0
    async with open_websocket(server, bob) as ws:
        got = await frames_until_empty(ws)
        assert len(got) == 4
        await ws.send(_encoder.encode(Ack([e.envelope_id for e in got[:3]])))
        for _ in range(200):
            m = await scrape(server.http)
            if value(m, "veil_envelopes_acked_total") == 3:
                break
            await asyncio.sleep(0.02)
        assert value(m, "veil_connected_devices") == 1
        assert value(m, "veil_envelopes_delivered_total") == 4
        assert value(m, "veil_envelopes_acked_total") == 3
        assert value(m, "veil_queue_depth") == 1
        assert value(m, "veil_send_to_delivery_seconds_count") == 4
        assert value(m, "veil_send_to_delivery_seconds_bucket", le="+Inf") == 4
        # acking the same envelopes again (or another device's) counts nothing
        await ws.send(_encoder.encode(Ack([e.envelope_id for e in got[:3]])))
        await asyncio.sleep(0.2)
    for _ in range(200):
        m = await scrape(server.http)
        if value(m, "veil_connected_devices") == 0:
            break
        await asyncio.sleep(0.02)
    assert value(m, "veil_connected_devices") == 0
    assert value(m, "veil_envelopes_acked_total") == 3
    route = "/v1/messages/{account_id}"
    assert value(m, "veil_http_requests_total", route=route, method="PUT", status="200") == 5
    assert value(m, "veil_http_request_seconds_count", route=route) == 5
    assert value(m, "veil_http_requests_total", route="/v1/accounts", method="POST", status="201")
    text = (await server.http.get("/metrics")).text
    assert bob.account_id not in text and alice.account_id not in text  # templates, not paths


async def test_http_metrics_use_route_templates(client: httpx.AsyncClient) -> None:
    alice = await api_register(client, "alice")
    await client.get(f"/v1/keys/{alice.account_id}/1", headers=alice.auth)
    await client.get("/v1/devices")  # 401
    await client.get(f"/v1/nothing/{alice.account_id}")  # 404
    await client.patch("/v1/accounts")  # 405
    m = await scrape(client)
    assert value(m, "veil_http_requests_total", route="/v1/devices", method="GET", status="401")
    keys = "/v1/keys/{account_id}/{device_id}"
    assert value(m, "veil_http_requests_total", route=keys, method="GET", status="404") == 1
    assert value(m, "veil_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert value(m, "veil_http_requests_total", route="/v1/accounts", method="PATCH", status="405")
    assert alice.account_id not in (await client.get("/metrics")).text


async def test_ready_then_not_ready_after_the_repository_closes(
    client: httpx.AsyncClient, repo: Repository
) -> None:
    r = await client.get("/v1/ready")
    assert (r.status_code, r.json()) == (200, {"ok": True})
    await repo.close()
    r = await client.get("/v1/ready")
    assert r.status_code == 503 and r.json()["error"] == "not_ready"
    assert (await client.get("/v1/health")).status_code == 200  # liveness does not need the db
    m = await scrape(client)
    assert value(m, "veil_http_requests_total", route="/v1/ready", method="GET", status="503")


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


async def test_logs_hold_no_credential_no_ciphertext_no_body(
    client: httpx.AsyncClient, all_logs: pytest.LogCaptureFixture
) -> None:
    alice = await api_register(client, "alice")
    bob = await api_register(client, "bob")
    assert (await upload(client, alice)).status_code == 200
    content = b"CIPHERTEXT-\x00\xff-do-not-log-" + bytes(range(32))
    content_b64 = base64.b64encode(content).decode()
    envelope = {"device_id": 1, "registration_id": 4242, "type": 2, "content": content_b64}
    r = await client.put(
        f"/v1/messages/{bob.account_id}", json={"envelopes": [envelope]}, headers=alice.auth
    )
    assert r.status_code == 200, r.text
    bad = {"envelopes": [{**envelope, "type": "x"}]}  # refused body: still not logged
    r = await client.put(f"/v1/messages/{bob.account_id}", json=bad, headers=alice.auth)
    assert r.status_code == 400
    wrong = {"authorization": "Basic " + base64.b64encode(b"x.1:WRONG-credential-xyz").decode()}
    assert (await client.get("/v1/devices", headers=wrong)).status_code == 401
    await client.get(f"/v1/keys/{alice.account_id}/1", headers=bob.auth)

    records = all_logs.records
    assert records, "no log records captured"
    formatter = JsonFormatter()
    lines = [formatter.format(rec) for rec in records]
    for line in lines:
        json.loads(line)  # every line is one JSON object
    secrets = [
        alice.credential,
        bob.credential,
        alice.auth["authorization"].split()[1],
        bob.auth["authorization"].split()[1],
        "WRONG-credential-xyz",
        content_b64,
        content.hex(),
        "CIPHERTEXT",
    ]
    everything = "\n".join([*lines, *(repr(vars(rec)) for rec in records)])
    for secret in secrets:
        assert secret not in everything, secret

    access = [json.loads(x) for x in lines if json.loads(x)["logger"] == "veil.server.access"]
    sends = [a for a in access if a["route"] == "/v1/messages/{account_id}"]
    assert [(a["method"], a["status"]) for a in sends] == [("PUT", 200), ("PUT", 400)]
    assert all(a["device"] == f"{alice.account_id}.1" for a in sends)
    assert all(isinstance(a["duration_ms"], float) for a in sends)
    assert bob.account_id not in json.dumps(sends)  # the template, not the concrete path
    [refused] = [a for a in access if a["route"] == "/v1/devices"]
    assert refused["status"] == 401 and refused["device"] is None


def test_json_lines_keep_only_safe_fields() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    uvicorn_saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate)
        for n in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    }
    access_disabled = logging.getLogger("uvicorn.access").disabled
    out = io.StringIO()
    try:
        configure_logging("info", stream=out)
        configure_logging("info", stream=out)  # idempotent: one handler, not two
        log = logging.getLogger("veil.test")
        log.info("hello %s", "world", extra={"route": "/v1/x", "body": "SECRET", "status": 7})
        log.debug("not at info")
        try:
            raise ValueError("SECRET in a message")
        except ValueError:
            log.exception("failed")
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
        root.setLevel(saved[1])
        for name, (handlers, propagate) in uvicorn_saved.items():
            logging.getLogger(name).handlers = handlers
            logging.getLogger(name).propagate = propagate
        logging.getLogger("uvicorn.access").disabled = access_disabled
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["msg"] == "hello world" and first["level"] == "info"
    assert first["logger"] == "veil.test" and first["route"] == "/v1/x" and first["status"] == 7
    assert "body" not in first and first["ts"].endswith("+00:00")
    assert second["exc_type"] == "ValueError" and "SECRET" not in json.dumps(second)
