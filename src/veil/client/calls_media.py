"""Media for calls without a microphone or camera: synthetic sources and counting sinks.

* :class:`ToneSource`: a sine tone (48 kHz mono, 20 ms frames), paced in real time;
* :class:`PatternSource`: a solid-colour test pattern (30 frames a second);
* :class:`AudioSink` / :class:`VideoSink`: read a received track, count its frames and keep
  what a headless check needs -- the tone's frequency (a zero-crossing estimate over the last
  0.2 s), the colour in the middle of the last picture.

Sources are aiortc ``MediaStreamTrack`` objects; any other track (a file read by aiortc's
``MediaPlayer``, a camera) can be passed to a call instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
from array import array
from collections import deque
from typing import Final

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame

AUDIO_RATE: Final = 48_000
AUDIO_PTIME: Final = 0.020
AUDIO_SAMPLES: Final = int(AUDIO_RATE * AUDIO_PTIME)
ANALYSIS_SAMPLES: Final = AUDIO_RATE // 5
"""The audio sink estimates the frequency over the last 0.2 s."""
SILENCE_RMS: Final = 200.0
"""Below this level (of 32767) the sink hears no tone."""

Colour = tuple[int, int, int]


class ToneSource(MediaStreamTrack):
    """A sine tone of ``frequency`` Hz at ``amplitude`` (0..1 of full scale)."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self._scale = max(0.0, min(1.0, amplitude)) * 32767
        self._step = 2 * math.pi * frequency / AUDIO_RATE
        self._start = 0.0
        self._timestamp = -1
        self.frames_sent = 0

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._timestamp < 0:
            self._start, self._timestamp = time.time(), 0
        else:
            self._timestamp += AUDIO_SAMPLES
            await asyncio.sleep(self._start + self._timestamp / AUDIO_RATE - time.time())
        n0, step, scale = self._timestamp, self._step, self._scale
        samples = array("h", (int(scale * math.sin(step * (n0 + i))) for i in range(AUDIO_SAMPLES)))
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.pts = self._timestamp
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.frames_sent += 1
        return frame


class PatternSource(VideoStreamTrack):
    """A ``width`` x ``height`` picture of one ``colour`` (RGB), 30 frames a second."""

    def __init__(self, colour: Colour = (255, 0, 0), width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.colour = colour
        self.width, self.height = width, height
        self._planes = _yuv_planes(colour, width, height)
        self.frames_sent = 0

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(self.width, self.height, "yuv420p")
        for plane, data in zip(frame.planes, self._planes, strict=True):
            plane.update(data)
        frame.pts = pts
        frame.time_base = time_base
        self.frames_sent += 1
        return frame


def _yuv_planes(colour: Colour, width: int, height: int) -> list[bytes]:
    """The three yuv420p planes of a picture of one colour (converted by libswscale)."""
    rgb = VideoFrame(width, height, "rgb24")
    plane = rgb.planes[0]
    row = bytes(colour) * width
    plane.update(b"".join(row + bytes(plane.line_size - len(row)) for _ in range(height)))
    yuv = rgb.reformat(format="yuv420p")
    return [bytes(p) for p in yuv.planes]


class Switch(MediaStreamTrack):
    """Relays ``source``; while ``muted``, sends silence (audio) or black (video) instead, in
    the same shape and timing, so the peer sees the mute rather than a stall."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.muted = False

    async def recv(self) -> Frame:
        frame = await self.source.recv()
        if not isinstance(frame, Frame):
            raise MediaStreamError  # a packet-level source cannot be muted
        if not self.muted:
            return frame
        blank: Frame
        if isinstance(frame, AudioFrame):
            blank = AudioFrame(
                format=frame.format.name, layout=frame.layout.name, samples=frame.samples
            )
            for plane in blank.planes:
                plane.update(bytes(plane.buffer_size))
            blank.sample_rate = frame.sample_rate
        elif isinstance(frame, VideoFrame):
            blank = VideoFrame(frame.width, frame.height, "yuv420p")
            for video_plane, value in zip(blank.planes, (16, 128, 128), strict=True):
                video_plane.update(bytes([value]) * video_plane.buffer_size)
        else:
            raise MediaStreamError
        blank.pts = frame.pts
        blank.time_base = frame.time_base
        return blank

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class _Sink:
    """Reads a track until it ends; counts frames."""

    def __init__(self) -> None:
        self.frames = 0
        self.first_frame_at: float | None = None
        """``time.monotonic()`` when the first frame was decoded."""
        self.last_frame_at: float | None = None
        """``time.monotonic()`` when the latest frame was decoded."""
        self._task: asyncio.Task[None] | None = None

    def attach(self, track: MediaStreamTrack) -> None:
        """Start reading ``track`` (the previous one, if any, is dropped)."""
        self.detach()
        self._task = asyncio.ensure_future(self._read(track))

    def detach(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, Frame):
                continue
            self.frames += 1
            self.last_frame_at = time.monotonic()
            if self.first_frame_at is None:
                self.first_frame_at = self.last_frame_at
            self.take(frame)

    def take(self, frame: Frame) -> None:
        """Look at one decoded frame (subclasses)."""


class AudioSink(_Sink):
    """Counts received audio frames and estimates the frequency of the tone they carry."""

    def __init__(self) -> None:
        super().__init__()
        self.sample_rate = AUDIO_RATE
        self._recent: deque[int] = deque(maxlen=ANALYSIS_SAMPLES)

    def take(self, frame: Frame) -> None:
        if not isinstance(frame, AudioFrame):
            return
        channels = len(frame.layout.channels)
        if frame.format.name != "s16":  # aiortc's decoders give packed s16
            return
        samples = array("h")
        samples.frombytes(bytes(frame.planes[0])[: frame.samples * channels * 2])
        self.sample_rate = frame.sample_rate
        self._recent.extend(samples[::channels])

    def level(self) -> float:
        """Root mean square of the last 0.2 s (0..32767)."""
        if not self._recent:
            return 0.0
        return math.sqrt(sum(s * s for s in self._recent) / len(self._recent))

    def frequency(self) -> float:
        """The tone's frequency in Hz over the last 0.2 s from its upward zero crossings;
        0.0 for silence (a muted peer)."""
        recent = list(self._recent)
        if len(recent) < 2 or self.level() < SILENCE_RMS:
            return 0.0
        crossings = [i for i in range(1, len(recent)) if recent[i - 1] < 0 <= recent[i]]
        if len(crossings) < 2:
            return 0.0
        periods = (crossings[-1] - crossings[0]) / (len(crossings) - 1)
        return self.sample_rate / periods


class VideoSink(_Sink):
    """Counts received video frames and keeps the colour in the middle of the last one."""

    def __init__(self) -> None:
        super().__init__()
        self.colour: Colour | None = None
        self.size: tuple[int, int] | None = None

    def take(self, frame: Frame) -> None:
        if not isinstance(frame, VideoFrame):
            return
        rgb = frame.reformat(format="rgb24")
        plane = rgb.planes[0]
        data = bytes(plane)
        offset = (rgb.height // 2) * plane.line_size + (rgb.width // 2) * 3
        r, g, b = data[offset : offset + 3]
        self.colour = (r, g, b)
        self.size = (rgb.width, rgb.height)


def close_to(colour: Colour | None, expected: Colour, tolerance: int = 24) -> bool:
    """Whether ``colour`` is within ``tolerance`` of ``expected`` on every channel (a lossy
    codec shifts colours a little)."""
    return colour is not None and all(
        abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True)
    )
