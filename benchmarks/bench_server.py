"""Load test of a real ``veil server`` process: throughput, latency, CPU and memory.

The script starts ``python -m veil server`` as a subprocess on a free loopback port (SQLite in
a temporary data folder, or PostgreSQL in a fresh database it creates and drops), provisions
N devices (default 200) straight into the database (registration is rate limited per IP and
is not what is measured), and drives them from several client processes (multiprocessing):
each device holds a WebSocket, acks every ``Deliver`` batch it gets, and sends 300-byte
envelopes to random peers as ``SendFrame``s on its WebSocket (how Veil clients send; answered
by ``Sent`` once stored) -- or, with ``--send http``, with ``PUT /v1/messages/{account}`` over
keep-alive HTTP/1.1.

PostgreSQL runs as production would: ``--pg-processes`` (default 2) server processes on their
own ports sharing the database and NATS (``$VEIL_BENCH_NATS_URL``, default
nats://127.0.0.1:4222), devices spread over them, so about half of all envelopes cross
processes through a NATS wake-up. CPU figures add up all server processes.

Phases, per backend:

1. throughput, CLOSED loop: ``--concurrency`` senders in flight (spread over the client
   processes), each sending again as soon as its PUT answered, for ``--duration`` s. The
   sustained rate is envelopes sent in the window / (window + time until the last one was
   delivered), i.e. stored AND pushed AND acked end to end, not just accepted.
2. latency, OPEN loop at half the sustained rate (fixed schedule, sends not held back by
   slow answers): p50/p99 of send -> receive (a CLOCK_MONOTONIC timestamp inside the
   content, read by the receiving WebSocket), and of the PUT round trip.
3. server CPU per envelope: utime+stime of the server process (/proc/<pid>/stat, all its
   threads) over phase 1 / envelopes; PostgreSQL's own processes are reported separately.
4. idle memory (first backend only unless ``--idle-all``): K more devices (default 5000)
   connect a WebSocket and stay idle; (server VmRSS after - before) / K.

    .venv/bin/python benchmarks/bench_server.py --quick            # < 1 min, both backends
    .venv/bin/python benchmarks/bench_server.py --json > out.json  # full run
    .venv/bin/python benchmarks/bench_server.py --backend sqlite --devices 200 --idle 5000
    .venv/bin/python benchmarks/bench_server.py --send http --backend sqlite   # HTTP sends

Progress goes to stderr; ``--json`` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from veil.server.credentials import hash_credential, new_credential

ADMIN_DSN = os.environ.get("VEIL_BENCH_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("VEIL_BENCH_NATS_URL", "nats://127.0.0.1:4222")
CONTENT_SIZE = 300
REGISTRATION_ID = 77
_HEAD = struct.Struct("<qI")  # send time (CLOCK_MONOTONIC ns), sender index
PEERS_ENV = "VEIL_BENCH_PEERS"
FRANKING_TAG = bytes(range(32))
"""Every Veil client sends one per envelope; the server tags it (one HMAC) and stores both."""


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DeviceCred:
    index: int
    account_id: str
    credential: str

    @property
    def auth(self) -> str:
        raw = f"{self.account_id}.1:{self.credential}".encode()
        return "Basic " + base64.b64encode(raw).decode()


# --- client worker process ------------------------------------------------------------------


class HttpConn:
    """A minimal keep-alive HTTP/1.1 client connection (cheap on client CPU)."""

    def __init__(
        self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.port = port
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpConn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(port, reader, writer)

    async def put(self, path: str, auth: str, body: bytes) -> int:
        try:
            return await self._put(path, auth, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closes keep-alive connections idle for 5 s: reconnect once. A PUT
            # is answered before the connection can be closed, so nothing was half-sent.
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            return await self._put(path, auth, body)

    async def _put(self, path: str, auth: str, body: bytes) -> int:
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


class Worker:
    """One client process: its devices' WebSockets, and senders from its devices."""

    def __init__(
        self,
        wid: int,
        ports: list[int],
        devices: list[DeviceCred],
        peers: list[DeviceCred],
        via: str,
    ):
        from veil.wire import messages  # noqa: PLC0415

        self.wid = wid
        self.ports = ports
        self.port = ports[0]
        self.devices = devices
        self.peers = peers
        self.fixed_peers = int(os.environ.get(PEERS_ENV, "0") or 0)
        self.via = via
        self.decoder = msgspec.msgpack.Decoder(messages.ServerFrame)
        self.encoder = msgspec.msgpack.Encoder()
        self.ack_type = messages.Ack
        self.deliver_type = messages.Deliver
        self.answer_types = (messages.Sent, messages.SendFailed)
        self.send_frame = messages.SendFrame
        self.envelope_in = messages.OutgoingEnvelopeIn
        self.by_device: dict[int, Any] = {}  # device index -> its WebSocket
        self.waiting: dict[int, asyncio.Future[int]] = {}  # request id -> status
        self.received = 0
        self.recording = False
        self.latencies: list[int] = []
        self.put_latencies: list[int] = []
        self.errors: dict[str, int] = {}
        self.sockets: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.pad = os.urandom(CONTENT_SIZE - _HEAD.size)
        self.seq = 0

    def _peer(self, sender: DeviceCred) -> DeviceCred:
        """Anyone but the sender, or (``--peers K``) one of the K devices after it in a ring."""
        if self.fixed_peers:
            step = 1 + random.randrange(min(self.fixed_peers, len(self.peers) - 1))
            return self.peers[(sender.index + step) % len(self.peers)]
        peer = random.choice(self.peers)
        while peer.index == sender.index:  # a copy to oneself would be a device mismatch
            peer = random.choice(self.peers)
        return peer

    def _body(self, sender: DeviceCred) -> tuple[str, bytes]:
        peer = self._peer(sender)
        self.seq += 1
        content = _HEAD.pack(time.monotonic_ns(), self.seq) + self.pad
        body = (
            b'{"envelopes":[{"device_id":1,"registration_id":%d,"type":2,"content":"%s",'
            b'"franking_tag":"%s"}]}'
            % (REGISTRATION_ID, base64.b64encode(content), base64.b64encode(FRANKING_TAG))
        )
        return f"/v1/messages/{peer.account_id}", body

    async def connect(self, devices: list[DeviceCred], idle: bool) -> int:
        from websockets.asyncio.client import connect  # noqa: PLC0415

        sem = asyncio.Semaphore(64)
        ready = 0

        async def one(device: DeviceCred) -> None:
            nonlocal ready
            port = self.ports[device.index % len(self.ports)]
            url = f"ws://127.0.0.1:{port}/v1/websocket"
            async with sem:
                ws = await connect(
                    url,
                    additional_headers={"authorization": device.auth},
                    open_timeout=60,
                    ping_interval=None,
                    compression=None,
                    max_queue=None if not idle else 4,
                )
                self.sockets.append(ws)
                first = self.decoder.decode(await ws.recv(decode=False))
                ready += 1
                if not idle:
                    self.by_device[device.index] = ws
                    self.tasks.append(asyncio.create_task(self.receive(ws, first)))

        await asyncio.gather(*(one(d) for d in devices))
        return ready

    async def receive(self, ws: Any, first: Any) -> None:
        frame = first
        while True:
            if isinstance(frame, self.deliver_type):
                now = time.monotonic_ns()
                ids = []
                for e in frame.envelopes:
                    ids.append(e.envelope_id)
                    if self.recording:
                        self.latencies.append(now - _HEAD.unpack_from(e.content)[0])
                self.received += len(ids)
                await ws.send(self.encoder.encode(self.ack_type(ids)))
            elif isinstance(frame, self.answer_types):
                waiter = self.waiting.pop(frame.request_id, None)
                if waiter is not None and not waiter.done():
                    ok = isinstance(frame, self.answer_types[0])
                    waiter.set_result(200 if ok else frame.status)
            frame = self.decoder.decode(await ws.recv(decode=False))

    async def send_ws(self, sender: DeviceCred) -> int:
        peer = self._peer(sender)
        self.seq += 1
        content = _HEAD.pack(time.monotonic_ns(), self.seq) + self.pad
        envelope = self.envelope_in(1, REGISTRATION_ID, 2, content, None, FRANKING_TAG)
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[self.seq] = waiter
        frame = self.send_frame(self.seq, peer.account_id, [envelope])
        await self.by_device[sender.index].send(self.encoder.encode(frame))
        return await waiter

    async def send_one(self, conn: HttpConn | None) -> None:
        sender = random.choice(self.devices)
        t0 = time.monotonic_ns()
        if conn is None:
            status = await self.send_ws(sender)
        else:
            path, body = self._body(sender)
            status = await conn.put(path, sender.auth, body)
        if self.recording:
            self.put_latencies.append(time.monotonic_ns() - t0)
        if status != 200:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1

    async def closed_loop(self, concurrency: int, duration: float) -> dict[str, Any]:
        sent = 0
        deadline = time.monotonic() + duration

        async def sender() -> None:
            nonlocal sent
            conn = await HttpConn.open(self.port) if self.via == "http" else None
            try:
                while time.monotonic() < deadline:
                    await self.send_one(conn)
                    sent += 1
            finally:
                if conn is not None:
                    conn.writer.close()

        t0 = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return {"sent": sent, "elapsed": time.monotonic() - t0}

    async def open_loop(self, rate: float, duration: float) -> dict[str, Any]:
        """Send at ``rate``/s on a fixed schedule, each send on an idle pooled connection."""
        idle: list[HttpConn] = []
        sent = 0
        late = 0
        inflight: set[asyncio.Task[None]] = set()

        async def one() -> None:
            nonlocal sent
            if self.via != "http":
                await self.send_one(None)
                sent += 1
                return
            conn = idle.pop() if idle else await HttpConn.open(self.port)
            await self.send_one(conn)
            sent += 1
            idle.append(conn)

        interval = 1.0 / rate
        start = time.monotonic()
        n = 0
        while True:
            due = start + n * interval
            if due - start >= duration:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            task = asyncio.create_task(one())
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            n += 1
        await asyncio.gather(*inflight)
        for conn in idle:
            conn.writer.close()
        return {"sent": sent, "late": late, "connections": len(idle)}

    async def serve(self, pipe: Connection) -> None:
        loop = asyncio.get_running_loop()
        cpu0 = os.times()
        while True:
            cmd, arg = await loop.run_in_executor(None, pipe.recv)
            if cmd == "stop":
                pipe.send(None)
                return
            if cmd == "connect":
                pipe.send(await self.connect(self.devices, idle=False))
            elif cmd == "idle":
                pipe.send(await self.connect(arg, idle=True))
            elif cmd == "closed":
                pipe.send(await self.closed_loop(*arg))
            elif cmd == "open":
                pipe.send(await self.open_loop(*arg))
            elif cmd == "record":
                self.recording = arg
                if arg:
                    self.latencies, self.put_latencies = [], []
                pipe.send(None)
            elif cmd == "stats":
                t = os.times()
                pipe.send(
                    {
                        "received": self.received,
                        "latencies": self.latencies,
                        "put_latencies": self.put_latencies,
                        "errors": dict(self.errors),
                        "cpu_s": t.user + t.system - cpu0.user - cpu0.system,
                    }
                )


def worker_main(
    wid: int,
    ports: list[int],
    devices: list[DeviceCred],
    peers: list[DeviceCred],
    via: str,
    pipe: Connection,
) -> None:
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    random.seed(wid)
    asyncio.run(Worker(wid, ports, devices, peers, via).serve(pipe))


class Clients:
    def __init__(self, count: int, ports: list[int], devices: list[DeviceCred], via: str) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for wid in range(count):
            mine = devices[wid::count]
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(wid, ports, mine, devices, via, child), daemon=True
            )
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def all(self, cmd: str, args: list[Any] | None = None) -> list[Any]:
        for i, pipe in enumerate(self.pipes):
            pipe.send((cmd, None if args is None else args[i]))
        return [pipe.recv() for pipe in self.pipes]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.all("stop")
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


# --- server process and storage ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine_busy_s() -> float:
    """CPU time used by the whole machine (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields]
    busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def load_info() -> dict[str, Any]:
    info: dict[str, Any] = {"loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    with contextlib.suppress(OSError):
        info["cpu_pressure_some_avg10"] = float(
            Path("/proc/pressure/cpu").read_text().split()[1].split("=")[1]
        )
    return info


def postgres_cpu_s() -> float:
    """utime+stime of every process named ``postgres`` on this machine."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if (entry / "comm").read_text().strip() == "postgres":
                    total += proc_cpu_s(int(entry.name))
    return total


def make_devices(count: int, start: int = 0) -> list[DeviceCred]:
    return [DeviceCred(start + i, uuid.uuid4().hex, new_credential()) for i in range(count)]


def _rows(devices: list[DeviceCred]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    now = int(time.time() * 1000)
    accounts = [
        (d.account_id, f"bench{d.index}", f"bench{d.index}", b"\x05" + os.urandom(32), now)
        for d in devices
    ]
    devs = [
        (d.account_id, 1, REGISTRATION_ID, hash_credential(d.credential), "bench", now)
        for d in devices
    ]
    return accounts, devs


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "veil", "server", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def provision_sqlite(path: Path, devices: list[DeviceCred]) -> None:
    accounts, devs = _rows(devices)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO accounts (account_id, username, display_username, identity_key,"
        " created_ms) VALUES (?, ?, ?, ?, ?)",
        accounts,
    )
    conn.executemany(
        "INSERT INTO devices (account_id, device_id, registration_id, credential_hash, name,"
        " created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        devs,
    )
    conn.execute("COMMIT")
    conn.close()


async def provision_postgres(dsn: str, devices: list[DeviceCred]) -> None:
    import asyncpg  # noqa: PLC0415

    accounts, devs = _rows(devices)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "accounts",
            records=accounts,
            columns=["account_id", "username", "display_username", "identity_key", "created_ms"],
        )
        await conn.copy_records_to_table(
            "devices",
            records=devs,
            columns=[
                "account_id",
                "device_id",
                "registration_id",
                "credential_hash",
                "name",
                "created_ms",
            ],
        )
    finally:
        await conn.close()


async def admin_sql(sql: str) -> None:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class ServerProc:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "veil", "server", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1).read()
                return
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Servers:
    """The server processes of one backend, measured together."""

    def __init__(self, procs: list[ServerProc]) -> None:
        self.procs = procs

    @property
    def pid(self) -> str:
        return ",".join(str(p.pid) for p in self.procs)

    def cpu_s(self) -> float:
        return sum(proc_cpu_s(p.pid) for p in self.procs)

    def rss_kb(self) -> int:
        return sum(proc_rss_kb(p.pid) for p in self.procs)


# --- the measurement ----------------------------------------------------------------------------


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1e6


def total_received(clients: Clients) -> tuple[int, list[dict[str, Any]]]:
    stats = clients.all("stats")
    return sum(s["received"] for s in stats), stats


def wait_delivered(clients: Clients, expected: int, timeout: float) -> tuple[float, int]:
    """Wait until receivers saw ``expected`` envelopes in all; the time it took, count."""
    t0 = time.monotonic()
    received = 0
    while time.monotonic() - t0 < timeout:
        received, _ = total_received(clients)
        if received >= expected:
            break
        time.sleep(0.02)
    return time.monotonic() - t0, received


def run_backend(backend: str, args: argparse.Namespace, measure_idle: bool) -> dict[str, Any]:
    env = dict(os.environ)
    tmp = Path(tempfile.mkdtemp(prefix="veil-bench-"))
    dbname = None
    devices = make_devices(args.devices)
    idle_devices = make_devices(args.idle, start=args.devices) if measure_idle else []
    result: dict[str, Any] = {}
    try:
        if backend == "sqlite":
            env["VEIL_DATA_DIR"] = str(tmp)
            env.pop("VEIL_DATABASE_URL", None)
            migrate(env)
            provision_sqlite(tmp / "veil.db", devices + idle_devices)
        else:
            dbname = f"veil_bench_{uuid.uuid4().hex[:10]}"
            asyncio.run(admin_sql(f'CREATE DATABASE "{dbname}"'))
            dsn = ADMIN_DSN.rpartition("/")[0] + "/" + dbname
            env["VEIL_DATABASE_URL"] = dsn
            migrate(env)
            asyncio.run(provision_postgres(dsn, devices + idle_devices))
        # One machine plays hundreds of devices from one address: the per-address and
        # per-account request limits (which a real deployment keeps) would measure the limiter.
        env["VEIL_RATE_LIMITS"] = "per_ip=1000000/1000000, per_account=1000000/1000000"
        count = args.pg_processes if backend == "postgres" else 1
        if count > 1:
            env["VEIL_NATS_URL"] = NATS_URL
        else:
            env.pop("VEIL_NATS_URL", None)
        servers: list[ServerProc] = []
        clients = None
        try:
            servers.extend(ServerProc(env, free_port()) for _ in range(count))
            clients = Clients(args.workers, [s.port for s in servers], devices, args.send)
            result = measure(backend, args, Servers(servers), clients, idle_devices)
        finally:
            if clients is not None:
                clients.stop()
            for server in servers:
                server.stop()
    finally:
        if dbname is not None:
            asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def measure(
    backend: str,
    args: argparse.Namespace,
    server: Servers,
    clients: Clients,
    idle: list[DeviceCred],
) -> dict[str, Any]:
    w = args.workers
    connected = sum(clients.all("connect"))
    log(f"[{backend}] {connected} devices connected, server pid {server.pid}")
    rss_active = server.rss_kb()

    # Warm-up.
    per = [args.concurrency // w + (1 if i < args.concurrency % w else 0) for i in range(w)]
    out = clients.all("closed", [(c, args.warmup) for c in per])
    base, _ = total_received(clients)
    wait_delivered(clients, base, 30)

    # 1. Throughput, closed loop.
    received0, stats0 = total_received(clients)
    cpu0, pg0 = server.cpu_s(), postgres_cpu_s() if backend == "postgres" else 0.0
    busy0 = machine_busy_s()
    t0 = time.monotonic()
    out = clients.all("closed", [(c, args.duration) for c in per])
    window = time.monotonic() - t0
    sent = sum(o["sent"] for o in out)
    drain, received1 = wait_delivered(clients, received0 + sent, 60)
    cpu1, pg1 = server.cpu_s(), postgres_cpu_s() if backend == "postgres" else 0.0
    busy1 = machine_busy_s()
    _, stats1 = total_received(clients)
    errors: dict[str, int] = {}
    for s in stats1:
        for k, v in s["errors"].items():
            errors[k] = errors.get(k, 0) + v
    delivered = received1 - received0
    rate = delivered / (window + drain)
    client_cpu = sum(s1["cpu_s"] - s0["cpu_s"] for s0, s1 in zip(stats0, stats1, strict=True))
    log(
        f"[{backend}] closed loop x{args.concurrency}: sent {sent} in {window:.2f}s "
        f"({sent / window:.0f}/s accepted), delivered {delivered} after +{drain:.2f}s drain: "
        f"{rate:.0f}/s sustained; errors {errors}"
    )
    cpu_us = (cpu1 - cpu0) / max(1, delivered) * 1e6

    # 2. Latency, open loop at half the sustained rate.
    half = rate / 2
    clients.all("record", [True] * w)
    received2, stats2 = total_received(clients)
    cpu2 = server.cpu_s()
    out2 = clients.all("open", [(half / w, args.latency_duration)] * w)
    sent2 = sum(o["sent"] for o in out2)
    _, _ = wait_delivered(clients, received2 + sent2, 30)
    cpu3 = server.cpu_s()
    clients.all("record", [False] * w)
    _, stats3 = total_received(clients)
    lat = [x for s in stats3 for x in s["latencies"]]
    put = [x for s in stats3 for x in s["put_latencies"]]
    late = sum(o["late"] for o in out2)
    log(
        f"[{backend}] open loop at {half:.0f}/s: {sent2} sent, {len(lat)} latencies, "
        f"p50 {pct(lat, 0.5):.2f} ms p99 {pct(lat, 0.99):.2f} ms"
        f" (PUT p99 {pct(put, 0.99):.2f} ms), "
        f"{late} sends >5 ms late"
    )
    result: dict[str, Any] = {
        "envelopes_per_s": round(rate, 1),
        "accepted_per_s": round(sent / window, 1),
        "p50_ms": round(pct(lat, 0.5), 3),
        "p99_ms": round(pct(lat, 0.99), 3),
        "p999_ms": round(pct(lat, 0.999), 3),
        "max_ms": round(pct(lat, 1.0), 3),
        "put_p50_ms": round(pct(put, 0.5), 3),
        "put_p99_ms": round(pct(put, 0.99), 3),
        "latency_rate_per_s": round(half, 1),
        "latency_samples": len(lat),
        "latency_sends_late_over_5ms": late,
        "cpu_us_per_envelope": round(cpu_us, 1),
        "cpu_us_per_envelope_at_half_rate": round((cpu3 - cpu2) / max(1, sent2) * 1e6, 1),
        "server_cpu_cores_at_peak": round((cpu1 - cpu0) / (window + drain), 2),
        "client_cpu_cores_at_peak": round(client_cpu / (window + drain), 2),
        "client_cpu_us_per_envelope": round(client_cpu / max(1, delivered) * 1e6, 1),
        "closed_loop": {
            "concurrency": args.concurrency,
            "window_s": round(window, 2),
            "drain_s": round(drain, 3),
            "sent": sent,
            "delivered": delivered,
            "http_errors": errors,
        },
        # CPU used on this machine by anything but the server, its clients and PostgreSQL
        # during the closed loop (other people's jobs): > 0 means the figures are pessimistic.
        "other_cpu_cores_at_peak": round(
            (busy1 - busy0 - (cpu1 - cpu0) - client_cpu - (pg1 - pg0)) / (window + drain), 2
        ),
        "machine_load_at_end": load_info(),
        "server_rss_kb_with_active_devices": rss_active,
        "server_processes": len(server.procs),
        "send_via": args.send,
    }
    if backend == "postgres":
        result["postgres_cpu_us_per_envelope"] = round((pg1 - pg0) / max(1, delivered) * 1e6, 1)
    del stats2

    # 4. Idle connections.
    if idle:
        time.sleep(0.5)
        rss0 = server.rss_kb()
        ready = sum(clients.all("idle", [idle[i::w] for i in range(w)]))
        # Steady state: a connection's push task ends 5 s after its queue drained
        # (veil.server.delivery.LINGER_S); measure after that.
        time.sleep(7.0)
        rss1 = server.rss_kb()
        result["idle"] = {
            "devices": ready,
            "rss_before_kb": rss0,
            "rss_after_kb": rss1,
            "kb_per_device": round((rss1 - rss0) / max(1, ready), 2),
        }
        log(
            f"[{backend}] {ready} idle devices: RSS {rss0} -> {rss1} kB,"
            f" {(rss1 - rss0) / max(1, ready):.1f} kB each"
        )
    return result


def raise_nofile(want: int) -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, want)) if hard != resource.RLIM_INFINITY else max(soft, want)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return {"before": soft, "after": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "hard": hard}


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["psql", ADMIN_DSN, "-Atc", "SHOW server_version"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        )
        info["postgres"] = out.stdout.strip()
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="smaller, shorter run (< 1 min)")
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--devices", type=int, help="active devices (default 200, quick 50)")
    p.add_argument(
        "--idle", type=int, help="idle WebSockets for the RSS figure (default 5000, quick 500)"
    )
    p.add_argument("--idle-all", action="store_true", help="measure idle RSS on every backend")
    p.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    p.add_argument(
        "--send",
        choices=["ws", "http"],
        default="ws",
        help="send over each device's WebSocket (default) or with HTTP PUT",
    )
    p.add_argument(
        "--pg-processes",
        type=int,
        default=2,
        help="server processes sharing PostgreSQL + NATS (default 2; 1 = no NATS)",
    )
    p.add_argument(
        "--concurrency", type=int, help="closed-loop senders in flight (default 128, quick 64)"
    )
    p.add_argument("--duration", type=float, help="closed-loop window, s (default 15, quick 5)")
    p.add_argument(
        "--latency-duration", type=float, help="open-loop window, s (default 15, quick 5)"
    )
    p.add_argument("--warmup", type=float, help="closed-loop warm-up, s (default 3, quick 1)")
    p.add_argument(
        "--peers",
        type=int,
        default=0,
        help="each device writes to this many fixed peers (default 0: anyone, so most sends"
        " are the first message between two people, which records their chat)",
    )
    args = p.parse_args()
    os.environ[PEERS_ENV] = str(max(0, args.peers))  # read by the client processes
    quick = args.quick
    args.devices = args.devices or (50 if quick else 200)
    args.idle = args.idle if args.idle is not None else (500 if quick else 5000)
    args.concurrency = args.concurrency or (64 if quick else 128)
    args.duration = args.duration or (5.0 if quick else 15.0)
    args.latency_duration = args.latency_duration or (5.0 if quick else 15.0)
    args.warmup = args.warmup or (1.0 if quick else 3.0)
    nofile = raise_nofile(2 * (args.idle + args.devices) + 1024)

    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    report: dict[str, Any] = {
        "mode": (
            "closed loop for throughput (concurrency senders), open loop at half rate for latency"
        ),
        "config": {
            "devices": args.devices,
            "idle_devices": args.idle,
            "client_processes": args.workers,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "latency_duration_s": args.latency_duration,
            "content_bytes": CONTENT_SIZE,
            "send_via": args.send,
            "postgres_server_processes": args.pg_processes,
            "peers_per_device": args.peers or "any",
            "quick": quick,
        },
        "environment": {**environment(), "nofile": nofile, "load_at_start": load_info()},
    }
    idle_kb = None
    for i, backend in enumerate(backends):
        res = run_backend(backend, args, measure_idle=(i == 0 or args.idle_all) and args.idle > 0)
        report[backend] = res
        if idle_kb is None and "idle" in res:
            idle_kb = res["idle"]["kb_per_device"]
    report["idle_kb_per_device"] = idle_kb
    report["environment"]["load_at_end"] = load_info()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        summary = {
            b: {
                k: report[b][k]
                for k in ("envelopes_per_s", "p50_ms", "p99_ms", "cpu_us_per_envelope")
            }
            for b in backends
        }
        print(json.dumps({**summary, "idle_kb_per_device": idle_kb}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
