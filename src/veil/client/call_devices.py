"""Microphones and cameras as call sources: aiortc's ``MediaPlayer`` over PyAV's capture
devices.

* Linux: audio from PulseAudio (``pulse``, when PyAV has it and a server runs) or ALSA
  (``alsa``), device ``default`` unless named (``hw:1``, or any PCM of the ALSA
  configuration); video from Video4Linux2 (``v4l2``), ``/dev/video0`` unless named.
* macOS: AVFoundation (``avfoundation``), the default devices unless named (an index or name).

A missing or unusable device is a :class:`DeviceError` that says which device and why, never
a PyAV traceback; what the capture libraries print while a device is tried (ALSA writes its
complaints to the process's stderr) is caught and folded into that message. Nothing here is
imported by ``import veil.client``: aiortc and PyAV load when a device is opened.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from veil.client.errors import ClientError

if TYPE_CHECKING:
    from aiortc.mediastreams import MediaStreamTrack

LINUX_CAMERA: Final = "/dev/video0"
CAMERA_OPTIONS: Final = {"framerate": "30", "video_size": "640x480"}
MIC_OPTIONS: Final = {"sample_rate": "48000", "channels": "1"}
_ALSA_LINE: Final = re.compile(r"^ALSA lib [^)]*\)\s*(.*)$")


class DeviceError(ClientError):
    """A microphone or camera is missing or cannot be opened."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        """``"audio"`` or ``"video"``."""


def microphone(device: str | None = None) -> MediaStreamTrack:
    """An audio track from the microphone ``device`` (None: the system's default)."""
    if sys.platform.startswith("linux"):
        fmt = "pulse" if _pulse_available() else "alsa"
        name = device or "default"
        what = f"{'PulseAudio source' if fmt == 'pulse' else 'ALSA device'} {name!r}"
        fails = f"no microphone found: {what} cannot be opened"
        return _open("audio", fmt, name, MIC_OPTIONS, fails)
    if sys.platform == "darwin":
        name = f"none:{device or 'default'}"
        fails = f"no microphone found: AVFoundation device {name!r} cannot be opened"
        return _open("audio", "avfoundation", name, {}, fails)
    raise DeviceError("audio", f"microphones are supported on Linux and macOS, not {sys.platform}")


def camera(device: str | None = None) -> MediaStreamTrack:
    """A video track from the camera ``device`` (None: ``/dev/video0``, or the default)."""
    if sys.platform.startswith("linux"):
        path = device or LINUX_CAMERA
        if not Path(path).exists():
            raise DeviceError("video", f"no camera found: {path} does not exist")
        return _open("video", "v4l2", path, CAMERA_OPTIONS, f"cannot open camera {path}")
    if sys.platform == "darwin":
        name = f"{device or 'default'}:none"
        fails = f"cannot open camera {name!r} (AVFoundation)"
        return _open("video", "avfoundation", name, CAMERA_OPTIONS, fails)
    raise DeviceError("video", f"cameras are supported on Linux and macOS, not {sys.platform}")


def _open(kind: str, fmt: str, name: str, options: dict[str, str], fails: str) -> MediaStreamTrack:
    """Open ``name`` with PyAV's ``fmt`` input (first with ``options``, then with the
    device's own settings); its ``kind`` track, or :class:`DeviceError` starting ``fails``."""
    from aiortc.contrib.media import MediaPlayer  # noqa: PLC0415 - loads only for a device

    first: str | None = None
    for attempt in (options, {}) if options else ({},):
        with _captured_stderr() as printed:
            try:
                player = MediaPlayer(name, format=fmt, options=attempt)
            except Exception as exc:  # PyAV raises OSError, ValueError, av.FFmpegError...
                first = first or _why(exc, printed())
                continue
        track = player.audio if kind == "audio" else player.video
        if track is None:
            raise DeviceError(kind, f"{fails}: it gives no {kind}")
        return track
    detail = first or "unknown error"
    if kind == "audio" and fmt == "alsa" and not _sound_cards():
        detail += "; this machine has no sound card"
    raise DeviceError(kind, f"{fails} ({detail})")


def _why(exc: Exception, printed: str) -> str:
    """A short reason: the capture library's last complaint, else the exception's text."""
    said = [m[1] for line in printed.splitlines() if (m := _ALSA_LINE.match(line.strip()))]
    if said:
        return said[-1]
    strerror = getattr(exc, "strerror", None)
    return str(strerror or exc or type(exc).__name__)


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Send what C libraries write to fd 2 meanwhile into a buffer (read by the callable)."""
    with tempfile.TemporaryFile() as buffer:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no real stderr: nothing to catch
            yield lambda: ""
            return
        os.dup2(buffer.fileno(), 2)
        try:

            def read() -> str:
                buffer.seek(0)
                return buffer.read(16_384).decode(errors="replace")

            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _pulse_available() -> bool:
    """PyAV can read PulseAudio and a server answers (its socket or ``$PULSE_SERVER``)."""
    import av  # noqa: PLC0415 - loads only for a device

    if "pulse" not in av.formats_available:
        return False
    if os.environ.get("PULSE_SERVER"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return runtime is not None and Path(runtime, "pulse", "native").exists()


def _sound_cards() -> bool:
    """Whether the kernel lists a sound card (ALSA's ``/proc/asound/cards``)."""
    try:
        listed = Path("/proc/asound/cards").read_text()
    except OSError:
        return False
    return "no soundcards" not in listed and bool(listed.strip())
