"""Image sources: the synthetic test pattern, a looped video file, a V4L2 webcam.

A source hands out one Pillow RGB image per call of ``capture(width, height,
captured_at)`` at the requested size; the session decides when (pacing) and
what happens next (brightness/contrast, encoding). Sources block, so the
session calls them from its worker thread, never on the event loop.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from PIL import Image

from sightline_agent.imaging import render_pattern


class SourceUnavailable(Exception):
    """The source cannot be opened (missing file, no webcam); the message says what to do."""


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return image


class PatternSource:
    """Moving colour bars, a bouncing square, the UTC time and a frame counter."""

    description = "test pattern"
    kind = "pattern"  # hello.source.kind

    def __init__(self):
        self.frame_index = 0

    def capture(self, width: int, height: int, captured_at: float) -> Image.Image:
        image = render_pattern(self.frame_index, captured_at, width, height)
        self.frame_index += 1
        return image

    def close(self) -> None:
        pass


class FileSource:
    """A video file decoded with PyAV, played at its own speed and looped forever.

    Each capture takes the frame whose presentation time matches the time since
    playback started on the monotonic clock: a 30 fps clip sent at 10 fps skips
    two frames in three, a 5 fps clip sent at 10 fps shows each frame twice. After
    a pause longer than CATCH_UP_SECONDS (the agent was disconnected) playback
    continues where it stopped instead of decoding the backlog.
    """
    kind = "file"  # hello.source.kind

    CATCH_UP_SECONDS = 1.0
    _EPSILON = 1e-6  # presentation times are rationals turned into floats

    def __init__(self, path: str, clock=time.monotonic):
        self.path = path
        self.description = f"file {Path(path).name}"
        if not os.path.isfile(path):
            raise SourceUnavailable(f"video file {path} does not exist")
        self._clock = clock
        self._container = None
        self._frames = None
        self._frame_duration = 1 / 25
        self._anchor = None  # clock reading at media time 0
        self._pass_start = 0.0  # media time at which the current pass of the file starts
        self._pass_origin = None  # the first frame's own timestamp in this pass
        self._pass_end = 0.0  # media time just after the last frame decoded
        self._decoded_in_pass = 0
        self.loops = 0
        self._open()
        self._current = None  # (media time, frame) being shown
        self._pending = self._decode_next()  # the frame after it

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(self.path)
        except (av.error.FFmpegError, OSError) as error:
            raise SourceUnavailable(f"cannot open video file {self.path}: {error}") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceUnavailable(f"{self.path} has no video stream")
        stream = self._container.streams.video[0]
        if stream.average_rate:
            self._frame_duration = 1 / float(stream.average_rate)
        self._frames = self._container.decode(stream)

    def _decode_next(self):
        import av

        for _attempt in range(2):
            try:
                frame = next(self._frames, None)
            except (av.error.FFmpegError, OSError) as error:
                raise SourceUnavailable(f"cannot decode {self.path}: {error}") from None
            if frame is not None:
                own = frame.time if frame.time is not None else self._decoded_in_pass * self._frame_duration
                if self._pass_origin is None:
                    self._pass_origin = own
                when = self._pass_start + max(0.0, own - self._pass_origin)
                self._pass_end = max(self._pass_end, when + self._frame_duration)
                self._decoded_in_pass += 1
                return when, frame
            if self._decoded_in_pass == 0:
                break
            # End of file: start again after the last frame's duration (reopening is
            # simpler and more robust than seeking in every container format).
            self._container.close()
            self._open()
            self._pass_start, self._pass_origin, self._decoded_in_pass = self._pass_end, None, 0
            self.loops += 1
        raise SourceUnavailable(f"{self.path} contains no decodable video frames")

    def capture(self, width: int, height: int, captured_at: float) -> Image.Image:
        now = self._clock()
        if self._anchor is None or now - self._anchor - self._pending[0] > self.CATCH_UP_SECONDS:
            self._anchor = now - self._pending[0]
        target = now - self._anchor + self._EPSILON
        while self._current is None or self._pending[0] <= target:
            self._current = self._pending
            self._pending = self._decode_next()
        return _fit(self._current[1].to_image(), width, height)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class LatestFrame:
    """Reads an endless frame iterator in its own thread and keeps only the newest frame.

    A webcam delivers frames at its own rate into a queue (FFmpeg's v4l2 input
    asks the driver for many buffers). Read at a slower agent rate, that queue
    would fill and every picture sent would be seconds old; taking the newest
    frame instead keeps latency at one camera frame whatever the two rates.
    """

    def __init__(self, frames, name: str, first_frame_timeout: float = 5.0):
        self._frames = frames
        self._name = name
        self._timeout = first_frame_timeout
        self._latest = None
        self._error: str | None = None
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        error = f"{self._name} stopped delivering frames"
        try:
            for frame in self._frames:
                with self._changed:
                    self._latest = frame
                    self._changed.notify_all()
                if self._stopping.is_set():
                    return
        except Exception as exc:  # noqa: BLE001 -- any decode failure ends the source, reported by latest()
            error = f"{self._name} stopped delivering frames: {exc}"
        with self._changed:
            self._error = error
            self._changed.notify_all()

    def latest(self):
        """The newest frame; waits for the first one. Raises SourceUnavailable when the
        stream has ended or no frame came in time."""
        with self._changed:
            self._changed.wait_for(lambda: self._latest is not None or self._error, timeout=self._timeout)
            if self._error:
                raise SourceUnavailable(self._error)
            if self._latest is None:
                raise SourceUnavailable(f"{self._name} delivered no frame within {self._timeout:.0f} s")
            return self._latest

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the reader to stop after its current frame; True once it has."""
        self._stopping.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()


class V4L2Source:
    """A webcam through PyAV's video4linux2 input.

    The camera is asked for the agent's size and rate; a camera that cannot do
    them picks the nearest mode and frames are scaled to the size asked. The
    newest frame is taken at each capture (LatestFrame), so a camera faster than
    the agent's fps adds no latency.
    """
    kind = "v4l2"  # hello.source.kind

    def __init__(self, device: str, width: int, height: int, fps: int):
        self.device = device
        self.description = f"webcam {device}"
        if not os.path.exists(device):
            raise SourceUnavailable(f"no webcam at {device} (is it plugged in? `ls /dev/video*` lists them)")
        import av

        try:
            self._container = av.open(device, format="video4linux2",
                                      options={"video_size": f"{width}x{height}", "framerate": str(fps)})
        except (av.error.FFmpegError, OSError) as error:
            raise SourceUnavailable(f"cannot open webcam {device}: {error} "
                                    "(is another program using it? is your user in the 'video' group?)") from None
        self._reader = LatestFrame(self._container.decode(video=0), f"webcam {device}")

    def capture(self, width: int, height: int, captured_at: float) -> Image.Image:
        return _fit(self._reader.latest().to_image(), width, height)

    def close(self) -> None:
        # Closing the container under a decode in progress can crash FFmpeg: wait for the
        # reader first; if the camera hangs, the daemon thread dies with the process.
        if self._reader.stop():
            self._container.close()


def open_source(spec: str, width: int, height: int, fps: int):
    """``pattern``, ``file:PATH`` or ``v4l2:/dev/videoN`` (docs/agent.md, --source)."""
    if spec == "pattern":
        return PatternSource()
    if spec.startswith("file:") and len(spec) > 5:
        return FileSource(spec[5:])
    if spec.startswith("v4l2:") and len(spec) > 5:
        return V4L2Source(spec[5:], width, height, fps)
    raise SourceUnavailable(f"unknown source {spec!r}: use pattern, file:PATH or v4l2:/dev/videoN")
