"""A real ``veil server`` process (SQLite in a temporary data folder) for end-to-end tests,
with what a test needs to look at -- or, playing a malicious operator, change -- its data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from veil.cli.serverproc import free_port, start_server, stop_server
from veil.client import Client
from veil.core.crypto import xeddsa
from veil.core.crypto.kyber import KyberKeyPair
from veil.core.crypto.x25519 import PrivateKey


@dataclass
class VeilServer:
    """The server process, its URL, and its files."""

    url: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def database(self) -> Path:
        return self.data_dir / "veil.db"

    def _sql(self) -> sqlite3.Connection:
        return sqlite3.connect(self.database, timeout=10)

    def database_bytes(self) -> bytes:
        """Every byte of the database files (main file and write-ahead log)."""
        out = b""
        for path in sorted(self.data_dir.glob("veil.db*")):
            out += path.read_bytes()
        return out

    def envelope_contents(self) -> list[bytes]:
        with contextlib.closing(self._sql()) as db:
            return [bytes(r[0]) for r in db.execute("SELECT content FROM envelopes")]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def corrupt_queued_envelopes(self, account_id: str) -> int:
        """Flip one byte in the middle of every envelope queued for the account (a bad network
        or server)."""
        with contextlib.closing(self._sql()) as db, db:
            rows = list(
                db.execute(
                    "SELECT envelope_id, content FROM envelopes WHERE account_id = ?", (account_id,)
                )
            )
            for envelope_id, content in rows:
                data = bytearray(content)
                data[len(data) // 2] ^= 0x40
                db.execute(
                    "UPDATE envelopes SET content = ? WHERE envelope_id = ?",
                    (bytes(data), envelope_id),
                )
        return len(rows)

    def drop_keys(self, account_id: str) -> None:
        """Forget every prekey the server holds for the account's devices."""
        with contextlib.closing(self._sql()) as db, db:
            for table in ("signed_prekeys", "kyber_prekeys", "one_time_prekeys"):
                db.execute(f"DELETE FROM {table} WHERE account_id = ?", (account_id,))

    def stop(self) -> None:
        """Stop the server (SIGTERM), keeping its data."""
        _stop(self.proc)

    def start(self) -> None:
        """Start it again on the same port and data."""
        port = int(self.url.rsplit(":", 1)[1])
        self.proc = _start(port, self.data_dir, self.log)

    def swap_identity(self, account_id: str) -> None:
        """Play a man in the middle: replace the account's identity key and its device 1's
        prekeys with an attacker's own, correctly signed by the attacker's identity."""
        rng = os.urandom
        attacker = PrivateKey.generate(rng)
        signed = PrivateKey.generate(rng).public_key.serialize()
        kyber = KyberKeyPair.generate(rng).public_key.serialize()
        with contextlib.closing(self._sql()) as db, db:
            db.execute(
                "UPDATE accounts SET identity_key = ? WHERE account_id = ?",
                (attacker.public_key.serialize(), account_id),
            )
            db.execute(
                "UPDATE signed_prekeys SET public_key = ?, signature = ? WHERE account_id = ?",
                (signed, xeddsa.sign(attacker, signed, rng), account_id),
            )
            db.execute(
                "UPDATE kyber_prekeys SET public_key = ?, signature = ? WHERE account_id = ?",
                (kyber, xeddsa.sign(attacker, kyber, rng), account_id),
            )
            db.execute("DELETE FROM one_time_prekeys WHERE account_id = ?", (account_id,))


@dataclass
class People:
    """Two registered users (one device each) on the test's server."""

    server: VeilServer
    alice: Client
    bob: Client


@pytest.fixture
async def people(veil_server: VeilServer, tmp_path: Path) -> AsyncIterator[People]:
    """Alice and Bob, who follow each other (so either may start a chat)."""
    alice = await Client.register(tmp_path / "alice", veil_server.url, "alice")
    bob = await Client.register(tmp_path / "bob", veil_server.url, "bob")
    try:
        await alice.follow("bob")
        await bob.follow("alice")
        yield People(veil_server, alice, bob)
    finally:
        await alice.close()
        await bob.close()


async def linked(primary: Client, profile: Path, url: str) -> Client:
    """A new device for ``primary``'s account, linked through the provisioning mailbox."""
    shown: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(
        Client.link(profile, url, device_name="phone", show=shown.put_nowait, timeout_s=30)
    )
    uri = await asyncio.wait_for(shown.get(), 10)
    assert uri.startswith("veil-link:")
    await primary.approve_link(uri)
    return await asyncio.wait_for(task, 30)


def veil_cli(profile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``veil --profile PROFILE ARGS...`` as a separate process; checks exit 0 unless
    ``check`` is false."""
    proc = subprocess.run(
        [sys.executable, "-m", "veil", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _start(port: int, data: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m veil server`` on ``port`` over ``data`` (info log), once it answers."""
    rates = {"VEIL_RATE_LIMITS": "register_per_ip=100/1000"}
    return start_server(port, data, log=log, log_level="info", env=rates)


_stop = stop_server
_free_port = free_port


@pytest.fixture
def veil_server(tmp_path: Path) -> Iterator[VeilServer]:
    """``python -m veil server`` on a free loopback port; stopped (SIGTERM) after the test."""
    data = tmp_path / "server"
    log = tmp_path / "server.log"
    port = _free_port()
    server = VeilServer(f"http://127.0.0.1:{port}", data, log, _start(port, data, log))
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            _stop(server.proc)
