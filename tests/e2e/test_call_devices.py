"""Microphones and cameras as call sources (``veil call --audio mic --video camera``).

This machine has neither, and a virtual camera (v4l2loopback) needs a kernel module. So:

* the error paths run for real: a camera path that does not exist, a path that is no camera
  (``/dev/null``), ALSA with no sound card and no such PCM -- each a one-line error naming
  the device, exit status 2, no traceback;
* the device-opening path runs for real against a **userspace** ALSA device: ALSA's ``file``
  plugin, defined in a configuration file named by ``ALSA_CONFIG_PATH``, plays a raw 523 Hz
  tone as its capture stream. ``veil call bob --audio mic`` opens it as the default
  microphone (PyAV's ``alsa`` input, as on a real machine) and Bob hears 523 Hz.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
from array import array
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from veil.client import Call

from .conftest import People
from .test_calls import Pump, loopback_only  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ALSA and V4L2")

MIC_HZ = 523.0


def veil(
    profile: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veil", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def no_alsa_devices(tmp_path: Path) -> dict[str, str]:
    """An ALSA configuration that defines no PCM at all (like a machine with no card)."""
    config = tmp_path / "empty-asound.conf"
    config.write_text("# no devices\n")
    return {"ALSA_CONFIG_PATH": str(config)}


@pytest.fixture
def fake_microphone(tmp_path: Path) -> dict[str, str]:
    """ALSA's default capture device reads a 523 Hz tone (48 kHz, mono, s16le) from a file."""
    tone = tmp_path / "tone.raw"
    samples = array("h", (int(0.3 * 32767 * math.sin(2 * math.pi * MIC_HZ * i / 48_000))
                          for i in range(48_000 * 20)))  # fmt: skip
    if sys.byteorder != "little":
        samples.byteswap()
    tone.write_bytes(samples.tobytes())
    config = tmp_path / "asound.conf"
    config.write_text(
        "pcm.silence { type null }\n"
        "pcm.!default {\n"
        "    type file\n"
        '    slave.pcm "silence"\n'
        '    file "/dev/null"\n'
        f'    infile "{tone}"\n'
        '    format "raw"\n'
        "}\n"
    )
    return {"ALSA_CONFIG_PATH": str(config)}


def assert_device_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [message]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_missing_camera_is_a_clear_error(people: People) -> None:
    profile = people.alice.profile
    proc = veil(profile, "call", "bob", "--video", "camera:/nonexistent/video9")
    assert_device_error(
        proc,
        "veil: no camera found: /nonexistent/video9 does not exist; use --video pattern or a file",
    )
    if not Path("/dev/video0").exists():
        proc = veil(profile, "call", "bob", "--video", "camera")
        assert_device_error(
            proc, "veil: no camera found: /dev/video0 does not exist; use --video pattern or a file"
        )


def test_a_path_that_is_no_camera_is_refused(people: People) -> None:
    proc = veil(people.alice.profile, "call", "bob", "--video", "camera:/dev/null")
    assert_device_error(
        proc,
        "veil: cannot open camera /dev/null (Inappropriate ioctl for device);"
        " use --video pattern or a file",
    )


def test_no_microphone_is_a_clear_error(people: People, no_alsa_devices: dict[str, str]) -> None:
    proc = veil(people.alice.profile, "call", "bob", "--audio", "mic", env=no_alsa_devices)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()  # ALSA's own complaints are caught, not printed
    assert line.startswith(
        "veil: no microphone found: ALSA device 'default' cannot be opened (Unknown PCM default"
    )
    assert line.endswith("; use --audio tone or a file") and "Traceback" not in proc.stderr
    # `veil answer` refuses before it waits for a call (not when one rings)
    proc = veil(people.bob.profile, "answer", "--auto", "--audio", "mic:hw:7", env=no_alsa_devices)
    assert proc.returncode == 2, proc.stderr
    assert "ALSA device 'hw:7' cannot be opened (Unknown PCM hw:7" in proc.stderr
    assert proc.stdout == ""  # it never said "waiting"


@contextlib.asynccontextmanager
async def cli_call_answered_by_bob(
    people: People, env: dict[str, str], *args: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Call]]:
    """``veil call bob ARGS`` as alice's CLI, answered (voice) by bob's SDK once connected."""
    bob = Pump(people.bob)
    caller = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "veil", "--profile", str(people.alice.profile), "call", "bob",
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env},
    )  # fmt: skip
    try:
        incoming = await bob.incoming(timeout=20)
        answered = await incoming.accept(video=False)
        await answered.wait_for("connected", 15)
        yield caller, answered
    finally:
        if caller.returncode is None:
            caller.kill()
            await caller.wait()
        await people.bob.calls.close()
        await bob.stop()


async def finish(caller: asyncio.subprocess.Process) -> tuple[dict[str, object], str]:
    """Wait for the CLI call to end: its JSON summary and its stderr."""
    out, err = await asyncio.wait_for(caller.communicate(), 30)
    assert caller.returncode == 0, err.decode()
    summary: dict[str, object] = json.loads(out.decode().splitlines()[-1])
    return summary, err.decode()


async def test_the_default_microphone_is_opened_and_heard(
    people: People, fake_microphone: dict[str, str]
) -> None:
    args = ("--audio", "mic", "--duration", "3", "--json")
    async with cli_call_answered_by_bob(people, fake_microphone, *args) as (caller, answered):
        for _ in range(100):  # the tone takes a moment through Opus
            await asyncio.sleep(0.05)
            if answered.audio_in.frames > 30 and answered.audio_in.frequency():
                break
        assert abs(answered.audio_in.frequency() - MIC_HZ) < 10
        summary, err = await finish(caller)
        assert summary["type"] == "summary" and summary["end_reason"] == "hangup"
        assert "Traceback" not in err and "ALSA lib" not in err


async def test_default_sources_fall_back_to_the_tone_and_say_so(
    people: People, no_alsa_devices: dict[str, str]
) -> None:
    args = ("--audio", "default", "--duration", "1", "--json")
    async with cli_call_answered_by_bob(people, no_alsa_devices, *args) as (caller, _):
        summary, err = await finish(caller)
        assert summary["connected_ms"] is not None
        [note] = err.splitlines()
        assert note.startswith("veil: no microphone found: ALSA device 'default'")
        assert note.endswith(": sending a 440 Hz tone instead")
