"""Fixtures for the client transport tests: a real uvicorn server over SQLite, restartable.

``live`` serves the app in the test's event loop on a loopback port (like the server tests'
``server`` fixture) and can be stopped and started again on the same port, with the same
database, to test reconnection. ``tests/`` is not a package, so the server tests' helpers
are imported as the top-level ``server`` package pytest puts on the path.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
import uvicorn

from server.conftest import _free_port
from server.test_api import kyber_prekey, one_time, signed_prekey
from veil.client.credentials import Credentials
from veil.client.http import HttpApi
from veil.core.crypto.x25519 import PrivateKey
from veil.server.app import Limits, create_app
from veil.server.sqlite_repo import SqliteRepository
from veil.wire.accounts import RegisterRequest
from veil.wire.keys import KeyUpload
from veil.wire.messages import OutgoingEnvelopeIn

TEST_LIMITS = Limits(register_per_ip=(100.0, 1000.0))


@dataclass
class LiveServer:
    """uvicorn serving Veil over ``repo`` on ``port``; :meth:`stop` and :meth:`start` again."""

    repo: SqliteRepository
    port: int = field(default_factory=_free_port)
    limits: Limits = TEST_LIMITS
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = create_app(self.repo, migrate=False, limits=self.limits)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(250):
            if self._server.started:
                return
            if self._task.done():
                self._task.result()  # the bind failed: say why
            await asyncio.sleep(0.02)
        raise RuntimeError("uvicorn did not start")

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await asyncio.wait_for(self._task, 15)
        self._server = self._task = None


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """A running server over a fresh SQLite database."""
    repo = SqliteRepository(tmp_path / "veil.db")
    await repo.migrate()
    server = LiveServer(repo)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await repo.close()


@dataclass
class Device:
    """A registered primary device and its identity key."""

    credentials: Credentials
    registration_id: int
    identity: PrivateKey

    @property
    def account_id(self) -> str:
        return self.credentials.account_id

    def envelope(self, content: bytes, device_id: int = 1) -> OutgoingEnvelopeIn:
        """A copy of a message for one of this device's account's devices."""
        return OutgoingEnvelopeIn(device_id, self.registration_id, 1, content)


async def register(base: str, username: str, registration_id: int = 4242) -> Device:
    """Register ``username`` through :class:`HttpApi`."""
    identity = PrivateKey.generate(os.urandom)
    async with HttpApi(base) as api:
        answer = await api.register(
            RegisterRequest(username, identity.public_key.serialize(), registration_id, "test")
        )
    return Device(Credentials.of(answer), registration_id, identity)


def key_upload(identity: PrivateKey, n: int = 3) -> KeyUpload:
    """A full prekey upload signed by ``identity`` (built with the server tests' helpers)."""
    body = {
        "signed_prekey": signed_prekey(identity, 1),
        "last_resort_kyber": kyber_prekey(identity, 1000),
        "one_time_prekeys": [one_time(i) for i in range(1, n + 1)],
        "kyber_prekeys": [kyber_prekey(identity, i) for i in range(1, n + 1)],
    }
    return msgspec.convert(body, KeyUpload, strict=False)
