"""What ``--audio SRC`` and ``--video SRC`` of ``veil call`` / ``veil answer`` (and ``/call``
in ``veil chat``) send: a synthetic source, a capture device, or a media file.

=================  ============================================================================
``tone``           a sine tone (440 Hz from the caller, 660 Hz from the callee)
``pattern``        a solid-colour test picture (red from the caller, blue from the callee)
``mic[:DEVICE]``   the microphone (ALSA/PulseAudio ``default`` on Linux, or DEVICE such as
                   ``hw:1``; the default input on macOS)
``camera[:DEV]``   the camera (``/dev/video0`` on Linux, or DEV; the default one on macOS)
``default``        the microphone / camera when there is one, else the tone / pattern (and a
                   note saying so)
``none``           send nothing of that kind
anything else      a media file PyAV reads (its audio or video track)
=================  ============================================================================

Loaded only when a call is placed or answered (it imports aiortc and PyAV).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiortc.contrib.media import MediaPlayer

from veil.client import ClientError
from veil.client.call_devices import DeviceError, camera, microphone
from veil.client.calls_media import PatternSource, ToneSource

if TYPE_CHECKING:
    from aiortc.mediastreams import MediaStreamTrack

HINTS: Final = {"audio": "use --audio tone or a file", "video": "use --video pattern or a file"}
_SYNTHETIC: Final = {"audio": "tone", "video": "pattern"}
_DEVICE: Final = {"audio": "mic", "video": "camera"}


class Source:
    """An opened source: the track to send (None: send nothing of this kind) and a note for
    the user when ``default`` fell back to the synthetic source."""

    def __init__(self, track: MediaStreamTrack | None, note: str | None = None) -> None:
        self.track = track
        self.note = note

    @property
    def sends(self) -> bool:
        return self.track is not None


def open_source(kind: str, value: str, *, caller: bool) -> Source:
    """The ``kind`` (``audio``/``video``) source named ``value``; :class:`DeviceError` for a
    missing device, :class:`ClientError` for anything else unusable."""
    if value == "none":
        return Source(None)
    if value == _SYNTHETIC[kind]:
        return Source(_synthetic(kind, caller=caller))
    device = _device_name(kind, value)
    if device is not None:
        return Source(_device(kind, device or None))
    if value == "default":
        try:
            return Source(_device(kind, None))
        except DeviceError as exc:
            what = _synthetic(kind, caller=caller)
            sent = (
                f"a {what.frequency:g} Hz tone"
                if isinstance(what, ToneSource)
                else "a test pattern"
            )
            return Source(what, f"{exc}: sending {sent} instead")
    return Source(_file(kind, value))


def check_source(kind: str, value: str) -> None:
    """Refuse early what :func:`open_source` would refuse (``veil answer`` checks before it
    waits, without holding a camera open meanwhile: a device is probed, then closed)."""
    if value in ("none", "default", _SYNTHETIC[kind]):
        return
    device = _device_name(kind, value)
    if device is None:
        _file(kind, value).stop()
        return
    _device(kind, device or None).stop()


def _device_name(kind: str, value: str) -> str | None:
    """``""`` for the default device (``mic``/``camera``), the name after ``mic:`` /
    ``camera:``, or None when ``value`` does not name a device."""
    prefix = _DEVICE[kind]
    if value == prefix:
        return ""
    if value.startswith(prefix + ":") and value != prefix + ":":
        return value[len(prefix) + 1 :]
    return None


def _synthetic(kind: str, *, caller: bool) -> MediaStreamTrack:
    if kind == "audio":
        return ToneSource(440.0 if caller else 660.0)
    return PatternSource((255, 0, 0) if caller else (0, 0, 255))


def _device(kind: str, name: str | None) -> MediaStreamTrack:
    return microphone(name) if kind == "audio" else camera(name)


def _file(kind: str, value: str) -> MediaStreamTrack:
    path = Path(value).expanduser()
    if not path.is_file():
        devices = "tone, mic, default" if kind == "audio" else "pattern, camera, default"
        raise ClientError(f"--{kind} {value}: no such file (or use {devices}, none)")
    try:
        player = MediaPlayer(str(path))
    except Exception as exc:  # PyAV's own errors: the file is not media it can read
        raise ClientError(f"--{kind} {value}: cannot read it as media ({exc})") from None
    track = player.audio if kind == "audio" else player.video
    if track is None:
        raise ClientError(f"--{kind} {value}: the file has no {kind}")
    return track
