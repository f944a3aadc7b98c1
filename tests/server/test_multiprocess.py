"""Several ``veil server`` processes behind one address behave as one server (issue 3).

Two real server processes on different ports share one fresh PostgreSQL database and a NATS
server (``$VEIL_TEST_NATS_URL``, default ``nats://127.0.0.1:4222``). A device connected to
process A must receive, in order and exactly once, envelopes sent through process B (and
through A, interleaved), and promptly: the NATS wake-up, not the delivery loop's periodic
re-read (``IDLE_RECHECK_S``), must bring them. Skipped without NATS or PostgreSQL unless
``VEIL_REQUIRE_NATS=1`` / ``VEIL_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from veil.core.crypto.x25519 import PrivateKey
from veil.server.delivery import IDLE_RECHECK_S
from veil.wire.messages import Ack, Deliver, QueueEmpty

from .conftest import _drop_postgres_database, _fresh_postgres_database, next_frame
from .test_server_cli import free_port, veil_env

pytestmark = pytest.mark.postgres

NATS_URL = os.environ.get("VEIL_TEST_NATS_URL", "nats://127.0.0.1:4222")
N = 500
FIRST_WAKE_LIMIT_S = 2.0


_encoder = msgspec.msgpack.Encoder()


def _nats_reachable() -> None:
    parts = urlsplit(NATS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), 2):
            return
    except OSError as exc:
        reason = f"NATS not reachable at {NATS_URL}: {exc}"
    if os.environ.get("VEIL_REQUIRE_NATS") == "1":
        pytest.fail(f"{reason} (VEIL_REQUIRE_NATS=1)")
    pytest.skip(reason)


@pytest.fixture
def database_url() -> Iterator[str]:
    _nats_reachable()
    dsn, name = asyncio.run(_fresh_postgres_database())
    try:
        yield dsn
    finally:
        asyncio.run(_drop_postgres_database(name))


@dataclass
class Proc:
    port: int
    popen: subprocess.Popen[str]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/websocket"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def servers(database_url: str, tmp_path: Path, count: int) -> Iterator[list[Proc]]:
    """``count`` ``veil server`` processes on one database and NATS, healthy; stopped after."""
    env = veil_env(VEIL_DATABASE_URL=database_url, VEIL_NATS_URL=NATS_URL, VEIL_LOG_LEVEL="warning")
    procs: list[Proc] = []
    files: list[IO[str]] = []
    try:
        for i in range(count):
            port = free_port()
            log = tmp_path / f"server-{i}.log"
            file = log.open("w")
            files.append(file)
            popen = subprocess.Popen(
                [sys.executable, "-m", "veil", "server", "--port", str(port)],
                stdout=file,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            procs.append(Proc(port, popen, log))
        deadline = time.monotonic() + 20
        for proc in procs:
            while True:
                assert proc.popen.poll() is None, f"server exited early:\n{proc.output()}"
                assert time.monotonic() < deadline, f"no /v1/health in 20 s:\n{proc.output()}"
                try:
                    if httpx.get(f"{proc.base}/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        yield procs
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.terminate()
        for proc in procs:
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)
        for file in files:
            file.close()


@dataclass
class Device:
    account_id: str
    credential: str

    @property
    def auth(self) -> dict[str, str]:
        raw = f"{self.account_id}.1:{self.credential}".encode()
        return {"authorization": "Basic " + base64.b64encode(raw).decode()}


async def register(http: httpx.AsyncClient, base: str, name: str) -> Device:
    key = base64.b64encode(PrivateKey.generate(os.urandom).public_key.serialize()).decode()
    r = await http.post(
        f"{base}/v1/accounts", json={"username": name, "identity_key": key, "registration_id": 7}
    )
    assert r.status_code == 201, r.text
    return Device(r.json()["account_id"], r.json()["credential"])


async def send(http: httpx.AsyncClient, base: str, sender: Device, to: Device, i: int) -> None:
    envelope = {
        "device_id": 1,
        "registration_id": 7,
        "type": 2,
        "content": base64.b64encode(i.to_bytes(4, "big")).decode(),
    }
    r = await http.put(
        f"{base}/v1/messages/{to.account_id}", json={"envelopes": [envelope]}, headers=sender.auth
    )
    assert r.status_code == 200, r.text


@contextlib.asynccontextmanager
async def websocket(url: str, device: Device) -> AsyncIterator[ClientConnection]:
    async with connect(url, additional_headers=device.auth, open_timeout=10) as ws:
        frame = await next_frame(ws, 10)
        assert isinstance(frame, QueueEmpty)  # nothing waiting yet
        yield ws


async def receive(ws: ClientConnection, count: int, arrived: dict[int, float]) -> list[int]:
    """The next ``count`` envelopes (acked as they come), noting when each arrived."""
    got: list[int] = []
    while len(got) < count:
        frame = await next_frame(ws, 10)
        if isinstance(frame, Deliver):
            now = time.monotonic()
            for e in frame.envelopes:
                n = int.from_bytes(e.content, "big")
                got.append(n)
                arrived.setdefault(n, now)
            await ws.send(_encoder.encode(Ack([e.envelope_id for e in frame.envelopes])))
    return got


async def nothing_more(ws: ClientConnection, wait: float = 0.5) -> None:
    with contextlib.suppress(TimeoutError):
        while True:
            frame = await next_frame(ws, wait)
            assert isinstance(frame, QueueEmpty), f"unexpected extra delivery {frame!r}"


async def _scenario(a: Proc, b: Proc) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as http:
        alice = await register(http, b.base, "alice")
        bob = await register(http, a.base, "bob")
        carol = await register(http, a.base, "carol")
        sent: dict[int, float] = {}
        stored: dict[int, float] = {}
        arrived: dict[int, float] = {}

        async with websocket(a.ws_url, bob) as ws:
            # One envelope through B: the wake-up over NATS must bring it, not the re-read.
            sent[0] = time.monotonic()
            await send(http, b.base, alice, bob, 0)
            assert await receive(ws, 1, arrived) == [0]
            first = arrived[0] - sent[0]
            assert first < FIRST_WAKE_LIMIT_S < IDLE_RECHECK_S

            # N more, mostly through B, every fifth through A, while bob reads and acks.
            async def send_all() -> None:
                for i in range(1, N + 1):
                    sent[i] = time.monotonic()
                    await send(http, a.base if i % 5 == 0 else b.base, alice, bob, i)
                    stored[i] = time.monotonic()

            sender = asyncio.create_task(send_all())
            try:
                got = await asyncio.wait_for(receive(ws, N, arrived), 120)
            finally:
                await asyncio.wait_for(sender, 120)
            assert got == list(range(1, N + 1))  # in order, exactly once
            await nothing_more(ws)

        async with websocket(a.ws_url, bob):  # all acked: nothing is delivered again
            pass

        # The other direction: carol on B, sends through A.
        async with websocket(b.ws_url, carol) as ws:
            t0 = time.monotonic()
            for i in range(3):
                await send(http, a.base, bob, carol, i)
            assert await receive(ws, 3, {}) == [0, 1, 2]
            back = time.monotonic() - t0
            await nothing_more(ws)

    latencies = [arrived[i] - sent[i] for i in range(1, N + 1)]
    return {
        "first": first,
        "send": statistics.median(stored[i] - sent[i] for i in range(1, N + 1)),
        "after_store": statistics.median(arrived[i] - stored[i] for i in range(1, N + 1)),
        "median": statistics.median(latencies),
        "max": max(latencies),
        "back": back,
    }


def test_two_processes_behave_as_one_server(database_url: str, tmp_path: Path) -> None:
    with servers(database_url, tmp_path, 2) as (a, b):
        stats = asyncio.run(asyncio.wait_for(_scenario(a, b), 180))
        for proc in (a, b):
            assert proc.popen.poll() is None, proc.output()
    print(
        f"\nwake-up latency: first {stats['first'] * 1000:.1f} ms, over {N}: median"
        f" {stats['median'] * 1000:.1f} ms, max {stats['max'] * 1000:.1f} ms (PUT alone: median"
        f" {stats['send'] * 1000:.1f} ms; after its answer: median"
        f" {stats['after_store'] * 1000:.1f} ms);"
        f" A->B, 3 sends {stats['back'] * 1000:.1f} ms"
    )
    # A lost wake-up would wait for the periodic re-read (IDLE_RECHECK_S).
    assert stats["max"] < min(5.0, IDLE_RECHECK_S / 2)
    for proc in (a, b):
        assert proc.popen.returncode == 0, proc.output()
        assert "Traceback" not in proc.output(), proc.output()


def test_unreachable_nats_stops_the_start(database_url: str) -> None:
    port = free_port()
    env = veil_env(VEIL_DATABASE_URL=database_url, VEIL_NATS_URL=f"nats://127.0.0.1:{port}")
    result = subprocess.run(
        [sys.executable, "-m", "veil", "server", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"veil server: cannot connect to NATS at nats://127.0.0.1:{port}" in result.stderr
