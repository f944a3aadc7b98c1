"""Benchmark of E2EE 1:1 calls (audio + video over aiortc) through a real ``veil server``.

The script starts ``python -m veil server`` as a subprocess on a free loopback port (SQLite in
a temporary data folder), registers pairs of accounts in a temporary folder (each pair
follows each other) and drives every client from this one process. As in
tests/e2e/test_calls.py, aioice gathers 127.0.0.1 only, so media stays on loopback and no
public STUN server is ever asked. The callee's client accepts every incoming call as soon as
it sees it. Sources are the SDK's synthetic ones: a tone (48 kHz, 20 ms frames) and a
solid-colour pattern (30 frames a second, VP8).

Phases:

1. setup latency, ``--calls`` sequential calls (audio + video, 320x240): from
   ``client.call()`` to the caller's ``connected`` state (ICE + DTLS done) and to the first
   decoded video frame at the caller (the callee's picture); median and p90 in ms.
2. baseline, in the same run and interleaved with phase 1 (one Veil call, one bare call, ...):
   aiortc alone, two ``RTCPeerConnection``s in this process exchanging offer and answer
   directly (no Veil, no server), the same tracks, the same two timings. The difference is what
   Veil's E2EE signalling through the server adds (resolve, TURN request, offer / ringing /
   answer / answered as Signal-encrypted content, the callee's accept).
3. CPU per call: one call at 640x480@30 + audio for ``--seconds`` (after a 1 s warm-up):
   CPU time of this process (``time.process_time``, both clients: encode, decode, SRTP, the
   sinks) per second of call, the server's CPU (idle during media), and the frames each side
   received per second (~30 video, ~50 audio if nothing degrades).
4. concurrent calls: K simultaneous calls between K pairs of accounts (``--concurrent``,
   default 1,2,4) at 640x480@30 for ``--concurrent-seconds`` each: received video fps per call
   (the lower of the two directions), total CPU, and the largest K that still holds >= 25 fps
   in every call. All 2K clients share this process, so on a small machine the encoder
   threads and the event loop compete; the figure is a floor for one device per process.

    .venv/bin/python benchmarks/bench_calls.py --quick            # < 1 min
    .venv/bin/python benchmarks/bench_calls.py --json > out.json  # full run (< 3 min)
    .venv/bin/python benchmarks/bench_calls.py --calls 20 --seconds 20 --concurrent 1,2,3

Progress goes to stderr; ``--json`` prints one JSON object on stdout.
"""

# ruff: noqa: E402  (the checkout's src/ goes on sys.path before veil is imported)

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import aioice.ice
import aiortc
import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcicetransport import RTCIceGatherer

from veil.cli.serverproc import free_port, start_server, stop_server
from veil.client import Call, CaughtUp, Client, IncomingCall
from veil.client.calls_media import AudioSink, PatternSource, Switch, ToneSource, VideoSink

RED, BLUE = (255, 0, 0), (0, 0, 255)
FPS_TARGET = 25.0


def log(msg: str) -> None:
    print(f"[bench_calls] {msg}", file=sys.stderr, flush=True)


# --- loopback only (as tests/e2e/test_calls.py) ---------------------------------------------
def loopback_only() -> None:
    """Gather 127.0.0.1 only; fail loudly if aiortc reaches for its default public STUN."""

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"]

    def no_default() -> list[RTCIceServer]:
        raise AssertionError("aiortc's default (public) STUN server was used")

    aioice.ice.get_host_addresses = host_addresses
    RTCIceGatherer.getDefaultIceServers = staticmethod(no_default)  # type: ignore[method-assign]


# --- the server: veil.cli.serverproc (as veil demo and the end-to-end tests) -----------------
RATES: Final = {"VEIL_RATE_LIMITS": "register_per_ip=100/1000"}


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds; 0.0 if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- clients ---------------------------------------------------------------------------------
@dataclass
class Peer:
    """A client whose events are read in the background; incoming calls are accepted at once
    (with a blue pattern of ``size``)."""

    client: Client
    name: str
    size: tuple[int, int] = (320, 240)
    accepted: asyncio.Queue[Call] = field(default_factory=asyncio.Queue)
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    _accepting: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.client.events():
            if isinstance(event, CaughtUp):
                self.caught_up.set()
            elif isinstance(event, IncomingCall):
                task = asyncio.create_task(self._accept(event))
                self._accepting.add(task)
                task.add_done_callback(self._accepting.discard)

    async def _accept(self, incoming: IncomingCall) -> None:
        w, h = self.size
        call = await incoming.accept(video_source=PatternSource(BLUE, w, h))
        await self.accepted.put(call)

    async def stop(self) -> None:
        await self.client.calls.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.client.close()


@dataclass
class Pair:
    caller: Peer
    callee: Peer


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def make_pairs(n: int, url: str, folder: Path) -> list[Pair]:
    pairs = []
    for i in range(n):
        a = await Client.register(folder / f"caller{i}", url, f"caller{i}")
        b = await Client.register(folder / f"callee{i}", url, f"callee{i}")
        await a.follow(f"callee{i}")
        await b.follow(f"caller{i}")
        pair = Pair(Peer(a, f"caller{i}"), Peer(b, f"callee{i}"))
        for peer in (pair.caller, pair.callee):
            peer.start()
        pairs.append(pair)
    for pair in pairs:
        for peer in (pair.caller, pair.callee):
            await asyncio.wait_for(peer.caught_up.wait(), 30)
    return pairs


@dataclass
class Live:
    """A connected call: the caller's and the callee's sides, and the two setup timings."""

    caller: Call
    callee: Call
    connected_s: float
    first_frame_s: float


async def veil_call(pair: Pair, size: tuple[int, int]) -> Live:
    pair.callee.size = size
    w, h = size
    t0 = time.monotonic()
    call = await pair.caller.client.call(
        pair.callee.name, audio=True, video=True, video_source=PatternSource(RED, w, h)
    )
    answered = await asyncio.wait_for(pair.callee.accepted.get(), 15)
    await call.wait_for("connected", 20)
    await until(lambda: call.video_in.first_frame_at is not None, 20, "the first video frame")
    assert call.connected_at is not None and call.video_in.first_frame_at is not None
    return Live(call, answered, call.connected_at - t0, call.video_in.first_frame_at - t0)


async def hang_up(live: Live) -> None:
    await live.caller.end()
    await live.callee.wait_for("ended", 15)


@dataclass
class Bare:
    """Two aiortc peer connections in this process, no Veil: the baseline."""

    pcs: tuple[RTCPeerConnection, RTCPeerConnection]
    sinks: list[AudioSink | VideoSink]
    tracks: list[MediaStreamTrack]
    connected_s: float
    first_frame_s: float

    async def close(self) -> None:
        for track in self.tracks:
            track.stop()
        for pc in self.pcs:
            await pc.close()
        for sink in self.sinks:
            await sink.close()


async def bare_call(size: tuple[int, int]) -> Bare:
    w, h = size
    t0 = time.monotonic()
    config = RTCConfiguration(iceServers=[])  # explicit, as Veil does: no default STUN
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    a_audio, a_video, b_audio, b_video = AudioSink(), VideoSink(), AudioSink(), VideoSink()
    connected_at: list[float] = []

    def on_track_a(track: MediaStreamTrack) -> None:
        (a_audio if track.kind == "audio" else a_video).attach(track)

    def on_track_b(track: MediaStreamTrack) -> None:
        (b_audio if track.kind == "audio" else b_video).attach(track)

    def on_state() -> None:
        if a.connectionState == "connected" and not connected_at:
            connected_at.append(time.monotonic())

    a.on("track", on_track_a)
    b.on("track", on_track_b)
    a.on("connectionstatechange", on_state)
    tracks: list[MediaStreamTrack] = []
    for track in (Switch(ToneSource(440.0)), Switch(PatternSource(RED, w, h))):
        a.addTrack(track)
        tracks.append(track)
    await a.setLocalDescription(await a.createOffer())
    assert a.localDescription is not None
    await b.setRemoteDescription(a.localDescription)
    for track in (Switch(ToneSource(660.0)), Switch(PatternSource(BLUE, w, h))):
        b.addTrack(track)
        tracks.append(track)
    await b.setLocalDescription(await b.createAnswer())
    assert b.localDescription is not None
    await a.setRemoteDescription(b.localDescription)
    await until(lambda: bool(connected_at), 20, "the bare connection")
    await until(lambda: a_video.first_frame_at is not None, 20, "the first bare video frame")
    assert a_video.first_frame_at is not None
    return Bare(
        (a, b),
        [a_audio, a_video, b_audio, b_video],
        tracks,
        connected_at[0] - t0,
        a_video.first_frame_at - t0,
    )


# --- statistics ------------------------------------------------------------------------------
def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    ms = [1000 * s for s in seconds]
    return {
        "median_ms": round(quantile(ms, 0.5), 1),
        "p90_ms": round(quantile(ms, 0.9), 1),
        "min_ms": round(min(ms), 1),
        "max_ms": round(max(ms), 1),
        "n": len(ms),
    }


# --- phases ----------------------------------------------------------------------------------
async def phase_setup(pair: Pair, n: int) -> dict[str, Any]:
    size = (320, 240)
    veil_conn: list[float] = []
    veil_frame: list[float] = []
    bare_conn: list[float] = []
    bare_frame: list[float] = []
    # One discarded warm-up of each (first-use imports, codec init, sessions).
    await hang_up(await veil_call(pair, size))
    await (await bare_call(size)).close()
    for i in range(n):
        live = await veil_call(pair, size)
        veil_conn.append(live.connected_s)
        veil_frame.append(live.first_frame_s)
        await hang_up(live)
        bare = await bare_call(size)
        bare_conn.append(bare.connected_s)
        bare_frame.append(bare.first_frame_s)
        await bare.close()
        log(
            f"setup {i + 1}/{n}: veil {1000 * live.connected_s:.0f}/"
            f"{1000 * live.first_frame_s:.0f} ms, aiortc {1000 * bare.connected_s:.0f}/"
            f"{1000 * bare.first_frame_s:.0f} ms (connected/first frame)"
        )
    veil = {"connected": summary_ms(veil_conn), "first_frame": summary_ms(veil_frame)}
    base = {"connected": summary_ms(bare_conn), "first_frame": summary_ms(bare_frame)}
    return {
        "video_size": list(size),
        "veil": veil,
        "aiortc_baseline": base,
        "veil_adds_median_ms": {
            k: round(veil[k]["median_ms"] - base[k]["median_ms"], 1)
            for k in ("connected", "first_frame")
        },
    }


def counters(lives: list[Live]) -> list[tuple[int, int, int, int]]:
    return [
        (
            lv.caller.video_in.frames,
            lv.callee.video_in.frames,
            lv.caller.audio_in.frames,
            lv.callee.audio_in.frames,
        )
        for lv in lives
    ]


async def measure(lives: list[Live], seconds: float, server_pid: int) -> dict[str, Any]:
    """Frames received per second on each side of each call, and CPU, over ``seconds``."""
    await asyncio.sleep(1.0)  # warm-up: bitrate ramp, first keyframes
    c0, w0, s0, n0 = time.process_time(), time.monotonic(), proc_cpu_s(server_pid), counters(lives)
    await asyncio.sleep(seconds)
    c1, w1, s1, n1 = time.process_time(), time.monotonic(), proc_cpu_s(server_pid), counters(lives)
    wall = w1 - w0
    calls = []
    for before, after in zip(n0, n1, strict=True):
        rates = [round((b - a) / wall, 1) for a, b in zip(before, after, strict=True)]
        calls.append(
            {
                "video_fps_at_caller": rates[0],
                "video_fps_at_callee": rates[1],
                "audio_fps_at_caller": rates[2],
                "audio_fps_at_callee": rates[3],
            }
        )
    return {
        "window_s": round(wall, 2),
        "process_cpu_s_per_s": round((c1 - c0) / wall, 3),
        "server_cpu_s_per_s": round((s1 - s0) / wall, 4),
        "calls": calls,
    }


async def phase_cpu(pair: Pair, seconds: float, server_pid: int) -> dict[str, Any]:
    size = (640, 480)
    live = await veil_call(pair, size)
    try:
        m = await measure([live], seconds, server_pid)
    finally:
        await hang_up(live)
    return {
        "video_size": list(size),
        "seconds": m["window_s"],
        "process_cpu_s_per_s_of_call": m["process_cpu_s_per_s"],
        "process_cpu_percent_of_one_core": round(100 * m["process_cpu_s_per_s"], 1),
        "server_cpu_s_per_s": m["server_cpu_s_per_s"],
        **m["calls"][0],
    }


async def phase_concurrent(
    pairs: list[Pair], ks: list[int], seconds: float, server_pid: int
) -> dict[str, Any]:
    size = (640, 480)
    rows = []
    for k in ks:
        lives = list(await asyncio.gather(*(veil_call(p, size) for p in pairs[:k])))
        try:
            m = await measure(lives, seconds, server_pid)
        finally:
            await asyncio.gather(*(hang_up(lv) for lv in lives))
        per_call = [min(c["video_fps_at_caller"], c["video_fps_at_callee"]) for c in m["calls"]]
        row = {
            "k": k,
            "video_fps_per_call": per_call,
            "min_video_fps": min(per_call),
            "median_video_fps": round(quantile(per_call, 0.5), 1),
            "process_cpu_s_per_s": m["process_cpu_s_per_s"],
            "holds_25fps": min(per_call) >= FPS_TARGET,
            "calls": m["calls"],
        }
        rows.append(row)
        log(
            f"concurrent k={k}: video fps per call {per_call}, "
            f"CPU {m['process_cpu_s_per_s']:.2f} s/s"
        )
        await asyncio.sleep(0.5)
    holding = [r["k"] for r in rows if r["holds_25fps"]]
    return {
        "video_size": list(size),
        "seconds_each": seconds,
        "rows": rows,
        "max_k_holding_25fps": max(holding) if holding else 0,
    }


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "aiortc": aiortc.__version__,
    }
    info["pyav"] = av.__version__
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["load_at_start"] = list(os.getloadavg())
    return info


async def run(args: argparse.Namespace, report: dict[str, Any]) -> None:
    loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="veil-bench-calls-"))
    port = free_port()
    log_path = folder / "server.log"
    server = start_server(port, folder / "server", log=log_path, env=RATES)
    pairs: list[Pair] = []
    try:
        url = f"http://127.0.0.1:{port}"
        t = time.monotonic()
        pairs = await make_pairs(max([1, *args.concurrent]), url, folder / "profiles")
        log(f"{2 * len(pairs)} accounts registered in {time.monotonic() - t:.1f} s")
        report["setup_latency"] = await phase_setup(pairs[0], args.calls)
        report["cpu_per_call"] = await phase_cpu(pairs[0], args.seconds, server.pid)
        log(f"cpu: {report['cpu_per_call']}")
        if args.concurrent:
            report["concurrent"] = await phase_concurrent(
                pairs, args.concurrent, args.concurrent_seconds, server.pid
            )
    finally:
        for pair in pairs:
            for peer in (pair.caller, pair.callee):
                with contextlib.suppress(Exception):
                    await peer.stop()
        stop_server(server)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="smaller, shorter run (< 1 min)")
    p.add_argument("--calls", type=int, help="sequential calls timed (default 10, quick 3)")
    p.add_argument("--seconds", type=float, help="CPU measurement window, s (default 10, quick 4)")
    p.add_argument(
        "--concurrent",
        help="numbers of simultaneous calls, comma-separated (default 1,2,4; '' to skip)",
    )
    p.add_argument(
        "--concurrent-seconds",
        type=float,
        help="window for each number of simultaneous calls, s (default 5, quick 3)",
    )
    args = p.parse_args()
    quick = args.quick
    args.calls = args.calls or (3 if quick else 10)
    args.seconds = args.seconds or (4.0 if quick else 10.0)
    args.concurrent_seconds = args.concurrent_seconds or (3.0 if quick else 5.0)
    spec = "1,2,4" if args.concurrent is None else args.concurrent
    args.concurrent = [int(k) for k in spec.split(",") if k.strip()]
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    report: dict[str, Any] = {
        "config": {
            "calls": args.calls,
            "seconds": args.seconds,
            "concurrent": args.concurrent,
            "concurrent_seconds": args.concurrent_seconds,
            "media": "audio (tone, 48 kHz, 20 ms) + video (solid pattern, 30 fps, VP8)",
            "network": "loopback, host candidates 127.0.0.1 only",
            "quick": quick,
        },
        "environment": environment(),
    }
    started = time.monotonic()
    asyncio.run(run(args, report))
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    with contextlib.suppress(OSError):
        report["environment"]["load_at_end"] = list(os.getloadavg())
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    s = report["setup_latency"]
    v, b = s["veil"], s["aiortc_baseline"]
    print(f"setup latency, {args.calls} calls, 320x240 (median / p90 ms):")
    for key, label in (("connected", "connected"), ("first_frame", "first video frame")):
        print(
            f"  {label:18} veil {v[key]['median_ms']:7.1f} / {v[key]['p90_ms']:7.1f}"
            f"   aiortc alone {b[key]['median_ms']:7.1f} / {b[key]['p90_ms']:7.1f}"
            f"   veil adds {s['veil_adds_median_ms'][key]:+.1f}"
        )
    c = report["cpu_per_call"]
    print(
        f"one call 640x480@30 + audio, {c['seconds']} s: "
        f"{c['process_cpu_s_per_s_of_call']:.3f} CPU s per s (both clients), "
        f"server {c['server_cpu_s_per_s']:.4f}"
    )
    print(
        f"  received video fps caller/callee {c['video_fps_at_caller']}/"
        f"{c['video_fps_at_callee']}, audio frames/s {c['audio_fps_at_caller']}/"
        f"{c['audio_fps_at_callee']}"
    )
    if "concurrent" in report:
        cc = report["concurrent"]
        print(f"concurrent calls, 640x480@30, {cc['seconds_each']} s each:")
        for r in cc["rows"]:
            print(
                f"  k={r['k']}: video fps per call {r['video_fps_per_call']}, "
                f"CPU {r['process_cpu_s_per_s']:.2f} s/s, "
                f"{'holds' if r['holds_25fps'] else 'below'} 25 fps"
            )
        print(f"  largest k holding >= 25 fps per call: {cc['max_k_holding_25fps']}")
    print(f"cpus {report['environment']['cpus']}, elapsed {report['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
