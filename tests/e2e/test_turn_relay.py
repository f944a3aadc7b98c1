"""TURN credentials from a real ``veil server`` against a real coturn relay.

coturn runs with ``use-auth-secret`` and the server's ``turn_secret``: it has no user
database and accepts exactly the credentials the server issues, until they expire. The TURN
client is aioice's (the one aiortc uses for relayed calls). Needs ``turnserver`` (Debian
package coturn; ``.ci/run`` installs it); without it the tests skip, unless
``VEIL_REQUIRE_TURN=1``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import stun, turn

from veil.client import Client

from .conftest import VeilServer, _free_port, _start, _stop

SECRET = "the-relay-and-the-server-share-this"


@dataclass
class Relay:
    port: int
    log: Path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    """``turnserver`` on a free loopback port, with the shared secret and no user database."""
    binary = shutil.which("turnserver")
    if binary is None:
        reason = "turnserver (Debian package coturn) is not installed"
        if os.environ.get("VEIL_REQUIRE_TURN") == "1":
            pytest.fail(f"{reason} (VEIL_REQUIRE_TURN=1)")
        pytest.skip(reason)
    port = _free_udp_port()
    log = tmp_path / "turnserver.log"
    args = [
        binary,
        "-n",  # no configuration file
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        "--use-auth-secret",
        f"--static-auth-secret={SECRET}",
        "--realm=veil.test",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--fingerprint",
        "--allow-loopback-peers",
        f"--userdb={tmp_path / 'turndb'}",
        f"--pidfile={tmp_path / 'turnserver.pid'}",
        "--simple-log",
        f"--log-file={log}",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and "Total General servers" in log.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield Relay(port, log)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def turn_server(
    relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[VeilServer]:
    """A ``veil server`` configured with the relay (credentials live 2 s, to see expiry)."""
    monkeypatch.setenv("VEIL_TURN_URLS", f"turn:127.0.0.1:{relay.port}?transport=udp")
    monkeypatch.setenv("VEIL_TURN_SECRET", SECRET)
    monkeypatch.setenv("VEIL_TURN_TTL_S", "2")
    port = _free_port()
    data, log = tmp_path / "server", tmp_path / "server.log"
    server = VeilServer(f"http://127.0.0.1:{port}", data, log, _start(port, data, log))
    try:
        yield server
    finally:
        _stop(server.proc)


async def _allocate(port: int, username: str, password: str) -> tuple[str, int]:
    """A TURN allocation on the relay; the relayed address."""
    transport, _ = await asyncio.wait_for(
        turn.create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", port), username, password
        ),
        10,
    )
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


async def test_the_relay_accepts_what_the_server_issues_until_it_expires(
    turn_server: VeilServer, relay: Relay, tmp_path: Path
) -> None:
    async with await Client.register(tmp_path / "alice", turn_server.url, "alice") as alice:
        issued = await alice._api().turn()
        assert issued.urls == [f"turn:127.0.0.1:{relay.port}?transport=udp"]
        assert issued.username.endswith(":" + alice.account.account_id)
        host, relayed_port = await _allocate(relay.port, issued.username, issued.credential)
        assert host == "127.0.0.1" and relayed_port > 0

        with pytest.raises(stun.TransactionFailed, match="401"):  # a wrong credential
            await _allocate(relay.port, issued.username, issued.credential[:-4] + "AAA=")
        forged_user = issued.username.replace(alice.account.account_id, "f" * 32)
        with pytest.raises(stun.TransactionFailed, match="401"):  # someone else's name
            await _allocate(relay.port, forged_user, issued.credential)

        await asyncio.sleep(3)  # the credential lived 2 s
        with pytest.raises(stun.TransactionFailed, match="401"):
            await _allocate(relay.port, issued.username, issued.credential)
        fresh = await alice._api().turn()
        assert fresh.username != issued.username
        await _allocate(relay.port, fresh.username, fresh.credential)
    assert SECRET not in turn_server.log_text()
