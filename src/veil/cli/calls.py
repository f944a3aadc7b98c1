"""``veil call`` and ``veil answer``: end-to-end encrypted 1:1 calls from the terminal.

Headless by default: ``--audio tone`` and ``--video pattern`` are built-in synthetic sources;
``--audio mic`` and ``--video camera`` capture from this machine's devices (``default``: the
device when there is one, else the synthetic source), and any file PyAV can read works too
(``--audio song.ogg``, ``--video clip.mp4``); see :mod:`veil.cli.call_sources`.
While the call runs, a line a second shows its duration, the frames received, the bitrate
sent, the packet loss and the round-trip time; with ``--json`` those are JSON lines
(``state``, ``stats``) and the last line is a ``summary`` object with ``connected_ms``,
``audio_frames_received``, ``video_frames_received``, ``end_reason`` and ``duration_s``.
``--record OUT`` keeps what the other side sends in a media file.
Exit status 0 if the call connected, 1 if it never did, 2 if a microphone or camera asked
for is missing. aiortc and PyAV load only when these commands run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from veil.cli.common import client_command, json_line
from veil.client import Call, Client, ClientError, IncomingCall

if TYPE_CHECKING:
    from veil.cli.call_sources import Source
    from veil.client.call_devices import DeviceError


def add_call_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``call`` and ``answer`` to ``veil``'s parser."""
    call = commands.add_parser(
        "call",
        help="call someone (end-to-end encrypted audio and video)",
        description="Call NAME on every device; the first to answer gets the call. "
        + _SOURCES_HELP,
    )
    call.add_argument("name", help="the username to call")
    _media_arguments(call, audio="tone", video="none")
    call.add_argument(
        "--ring-timeout", type=float, default=60.0, help="give up after S s unanswered (60)"
    )
    call.set_defaults(handler=client_command(_call))

    answer = commands.add_parser(
        "answer",
        help="wait for a call and answer it",
        description="Wait for an incoming call and answer it (asks first unless --auto). "
        + _SOURCES_HELP,
    )
    answer.add_argument("--auto", action="store_true", help="answer the first call, no question")
    answer.add_argument(
        "--wait", type=float, default=300.0, help="seconds to wait for a call (300)"
    )
    _media_arguments(answer, audio="tone", video="pattern")
    answer.set_defaults(handler=client_command(_answer))


_SOURCES_HELP = (
    "Sources: tone (a sine wave), pattern (a coloured test picture), mic[:DEVICE] (the "
    "microphone: ALSA/PulseAudio 'default' or DEVICE on Linux, the default input on macOS), "
    "camera[:DEVICE] (the camera: /dev/video0 or DEVICE on Linux), default (the microphone or "
    "camera if there is one, else the tone or pattern), none, or a media file. A missing "
    "microphone or camera exits with status 2."
)


def _media_arguments(parser: argparse.ArgumentParser, *, audio: str, video: str) -> None:
    parser.add_argument(
        "--audio",
        default=audio,
        metavar="SRC",
        help=f"tone, mic[:DEVICE], default, none or a file ({audio})",
    )
    parser.add_argument(
        "--video",
        default=video,
        metavar="SRC",
        help=f"pattern, camera[:DEVICE], default, none or a file ({video})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="hang up S seconds after connecting (default: when the other side hangs up)",
    )
    parser.add_argument(
        "--record",
        metavar="OUT",
        help="record what the other side sends (.mkv/.mp4: audio and video; .wav/.ogg: audio)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines; the last a summary")


def _sources(args: argparse.Namespace, *, caller: bool) -> tuple[Source, Source]:
    """Open ``--audio`` and ``--video`` (notes about a fallback go to stderr)."""
    from veil.cli.call_sources import open_source  # noqa: PLC0415 - loads aiortc and PyAV

    audio = open_source("audio", args.audio, caller=caller)
    try:
        video = open_source("video", args.video, caller=caller)
    except BaseException:
        if audio.track is not None:
            audio.track.stop()  # release the microphone
        raise
    for note in (audio.note, video.note):
        if note:
            print(f"veil: {note}", file=sys.stderr)
    return audio, video


def _device_missing(exc: DeviceError) -> int:
    """Print a missing or unusable device (with what to use instead); exit status 2."""
    from veil.cli.call_sources import HINTS  # noqa: PLC0415

    print(f"veil: {exc}; {HINTS[exc.kind]}", file=sys.stderr)
    return 2


async def _events(client: Client, incoming: asyncio.Queue[IncomingCall]) -> None:
    """Read the client's events (call signals arrive there); hand incoming calls over."""
    async for event in client.events():
        if isinstance(event, IncomingCall):
            incoming.put_nowait(event)


async def _call(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    from veil.client.call_devices import DeviceError  # noqa: PLC0415 - loads with calls

    if args.audio == "none" and args.video == "none":
        raise ClientError("a call needs --audio or --video")
    try:
        audio, video = _sources(args, caller=True)
    except DeviceError as exc:
        return _device_missing(exc)
    client.calls.ring_timeout_s = args.ring_timeout
    incoming: asyncio.Queue[IncomingCall] = asyncio.Queue()
    reader = asyncio.ensure_future(_events(client, incoming))
    try:
        call = await client.call(
            args.name,
            audio=audio.sends,
            video=video.sends,
            audio_source=audio.track,
            video_source=video.track,
        )
        if args.record:
            call.record_to(args.record)
        return await _follow(call, args, out, client.username_of(call.peer) or args.name)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _answer(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    from veil.cli.call_sources import check_source  # noqa: PLC0415 - loads with calls
    from veil.client.call_devices import DeviceError  # noqa: PLC0415

    try:  # a missing device is refused before waiting, not when the call rings
        check_source("audio", args.audio)
        check_source("video", args.video)
    except DeviceError as exc:
        return _device_missing(exc)
    incoming: asyncio.Queue[IncomingCall] = asyncio.Queue()
    reader = asyncio.ensure_future(_events(client, incoming))
    try:
        _say(out, args, {"type": "state", "state": "waiting"})
        try:
            ringing = await asyncio.wait_for(incoming.get(), args.wait)
        except TimeoutError:
            raise ClientError(f"no call came in {args.wait:g} s") from None
        who = client.username_of(ringing.caller) or ringing.caller
        kinds = " and ".join(
            k for k, on in (("audio", ringing.audio), ("video", ringing.video)) if on
        )
        _say(out, args, {"type": "incoming", "from": who, "audio": ringing.audio,
                         "video": ringing.video, "request": ringing.request})  # fmt: skip
        if not args.auto and not await _ask(f"{who} is calling ({kinds}). Answer? [y/N] "):
            await ringing.reject()
            _say(out, args, {"type": "state", "state": "rejected"})
            return 1
        try:
            audio, video = _sources(args, caller=False)
        except DeviceError as exc:  # it went away while we waited
            await ringing.reject()
            return _device_missing(exc)
        if args.record:
            ringing.call.record_to(args.record)
        call = await ringing.accept(
            audio=audio.sends,
            video=video.sends,
            audio_source=audio.track,
            video_source=video.track,
        )
        return await _follow(call, args, out, who)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise ClientError("not a terminal: use --auto to answer without asking")
    answer = await asyncio.to_thread(input, question)
    return answer.strip().lower() in ("y", "yes")


async def _follow(call: Call, args: argparse.Namespace, out: TextIO, who: str) -> int:
    """Show the call's states and a stats line a second until it ends; the summary."""
    shown = ""
    last_bytes, last_t = 0, time.monotonic()
    while call.state != "ended":
        if call.state != shown:
            shown = call.state
            _say(out, args, {"type": "state", "state": shown, "with": who,
                             "connected_ms": call.connected_ms})  # fmt: skip
        connected_at = call.connected_at
        if call.state == "connected" and connected_at is not None:
            now = time.monotonic()
            if args.duration is not None and now - connected_at >= args.duration:
                await call.end()
                break
            stats = await call.stats()
            kbps = (stats.bytes_sent - last_bytes) * 8 / 1000 / max(now - last_t, 1e-3)
            last_bytes, last_t = stats.bytes_sent, now
            _say(out, args, {
                "type": "stats",
                "seconds": round(now - connected_at, 1),
                "audio_frames_received": call.audio_frames_received,
                "video_frames_received": call.video_frames_received,
                "kbps_sent": round(kbps, 1),
                "loss": round(stats.loss, 4),
                "rtt_ms": stats.rtt_ms,
            })  # fmt: skip
        tick = 1.0
        if args.duration is not None and call.connected_at is not None:
            left = call.connected_at + args.duration - time.monotonic()
            tick = min(tick, max(left, 0.01))
        with contextlib.suppress(TimeoutError):
            await call.wait_for("ended", timeout=tick)
    with contextlib.suppress(TimeoutError):
        await call.wait_for("ended", timeout=5.0)
    connected_at = call.connected_at
    summary = {
        "type": "summary",
        "with": who,
        "connected_ms": call.connected_ms,
        "audio_frames_received": call.audio_frames_received,
        "video_frames_received": call.video_frames_received,
        "end_reason": call.end_reason,
        "ended_by": call.ended_by,
        "duration_s": round(time.monotonic() - connected_at, 1) if connected_at else 0.0,
    }
    _say(out, args, summary)
    return 0 if call.connected_ms is not None else 1


def _say(out: TextIO, args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        json_line(out, data)
        return
    kind = data["type"]
    if kind == "state":
        state = data["state"]
        if state == "dialing":
            text = f"calling {data.get('to') or data.get('with')}…"
        elif state == "connected":
            text = f"connected with {data['with']} ({data['connected_ms']} ms)"
        else:
            text = state
    elif kind == "incoming":
        text = f"{data['from']} is calling" + (" (message request)" if data["request"] else "")
    elif kind == "stats":
        rtt = "-" if data["rtt_ms"] is None else f"{data['rtt_ms']:g} ms"
        text = (
            f"{_clock(data['seconds'])}  audio {data['audio_frames_received']} frames,"
            f" video {data['video_frames_received']} frames, {data['kbps_sent']:g} kbit/s out,"
            f" loss {100 * data['loss']:.1f} %, rtt {rtt}"
        )
    else:
        by = f" by {data['with']}" if data["ended_by"] == "peer" else ""
        text = (
            f"call ended ({data['end_reason']}{by}) after {_clock(data['duration_s'])};"
            f" received {data['audio_frames_received']} audio and"
            f" {data['video_frames_received']} video frames"
        )
    print(text, file=out, flush=True)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"
