"""``veil call`` and ``veil answer``: two CLI processes call each other through a real server
(host candidates on this machine; no STUN server anywhere)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import av

from veil.client.calls_media import VideoSink, close_to

from .conftest import VeilServer, veil_cli


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_call_from_the_command_line(veil_server: VeilServer, tmp_path: Path) -> None:
    ann, ben = tmp_path / "ann", tmp_path / "ben"
    veil_cli(ann, "register", "ann", "--server", veil_server.url)
    veil_cli(ben, "register", "ben", "--server", veil_server.url)
    veil_cli(ann, "follow", "ben")
    veil_cli(ben, "follow", "ann")
    recording = tmp_path / "from-ann.mkv"
    answering = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veil",
            "--profile",
            str(ben),
            "answer",
            "--auto",
            "--json",
            "--record",
            str(recording),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        calling = veil_cli(
            ann, "call", "ben", "--video", "pattern", "--duration", "2", "--json", check=False
        )
        answered, errors = answering.communicate(timeout=30)
    finally:
        if answering.poll() is None:
            answering.kill()
    assert calling.returncode == 0, calling.stderr
    assert answering.returncode == 0, errors
    caller, callee = _lines(calling.stdout), _lines(answered)
    assert [e["state"] for e in caller if e["type"] == "state"][-1] == "connected"
    assert {
        "type": "incoming",
        "from": "ann",
        "audio": True,
        "video": True,
        "request": False,
    } in callee
    stats = [e for e in caller if e["type"] == "stats"]
    assert stats and stats[-1]["kbps_sent"] > 0 and stats[-1]["loss"] < 0.5
    for summary in (caller[-1], callee[-1]):
        assert summary["type"] == "summary" and summary["end_reason"] == "hangup"
        assert summary["connected_ms"] is not None and summary["connected_ms"] < 10_000
        assert summary["audio_frames_received"] > 20 and summary["video_frames_received"] > 10
        assert 1.5 <= summary["duration_s"] <= 4
    assert callee[-1]["ended_by"] == "peer" and caller[-1]["ended_by"] == "local"
    # Ben's recording holds Ann's media: her tone and her red test pattern.
    with av.open(str(recording)) as container:
        kinds = sorted(stream.type for stream in container.streams)
        frames = [f for f in container.decode(video=0)]
    assert kinds == ["audio", "video"]
    assert len(frames) > 10
    looked = VideoSink()
    looked.take(frames[-1])
    assert close_to(looked.colour, (255, 0, 0))  # red


def test_answer_without_a_call_and_bad_sources_are_clear_errors(
    veil_server: VeilServer, tmp_path: Path
) -> None:
    ann = tmp_path / "ann"
    veil_cli(ann, "register", "ann", "--server", veil_server.url)
    waited = veil_cli(ann, "answer", "--auto", "--wait", "0.5", check=False)
    assert waited.returncode == 1 and "no call came" in waited.stderr
    missing = veil_cli(ann, "call", "ann", "--audio", "/no/such.ogg", check=False)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    silent = veil_cli(ann, "call", "ann", "--audio", "none", check=False)
    assert silent.returncode == 1 and "needs --audio or --video" in silent.stderr
