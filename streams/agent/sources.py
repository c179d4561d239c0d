"""Image sources: the synthetic test pattern, a looped video file, a V4L2 webcam.

A source hands out one Pillow RGB image per call of ``capture(width, height,
captured_at)`` at the requested size; the session decides when (pacing) and
what happens next (brightness/contrast, encoding). Sources block, so the
session calls them from its worker thread, never on the event loop.
"""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from streams.agent.imaging import render_pattern


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

    def __init__(self):
        self.frame_index = 0

    def capture(self, width: int, height: int, captured_at: float) -> Image.Image:
        image = render_pattern(self.frame_index, captured_at, width, height)
        self.frame_index += 1
        return image

    def close(self) -> None:
        pass


class FileSource:
    """A video file decoded with PyAV, looped forever, one decoded frame per capture.

    The file plays at the agent's fps, not its own, so a 30 fps clip sent at
    10 fps runs three times slower: the point is realistic pixels, not playback.
    """

    def __init__(self, path: str):
        self.path = path
        self.description = f"file {Path(path).name}"
        if not os.path.isfile(path):
            raise SourceUnavailable(f"video file {path} does not exist")
        self._container = None
        self._frames = None
        self._open()

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(self.path)
        except (av.error.FFmpegError, OSError) as error:
            raise SourceUnavailable(f"cannot open video file {self.path}: {error}") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceUnavailable(f"{self.path} has no video stream")
        self._frames = self._container.decode(video=0)

    def capture(self, width: int, height: int, captured_at: float) -> Image.Image:
        for attempt in range(2):
            frame = next(self._frames, None)
            if frame is not None:
                return _fit(frame.to_image(), width, height)
            # End of file: start again (reopening is simpler and more robust than seeking).
            self._container.close()
            self._open()
        raise SourceUnavailable(f"{self.path} contains no decodable video frames")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class V4L2Source:
    """A webcam through PyAV's video4linux2 input.

    The camera is asked for the agent's size and rate; a camera that cannot do
    them picks the nearest mode and frames are scaled to the size asked.
    """

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
        self._frames = self._container.decode(video=0)

    def capture(self, width: int, height: int, captured_at: float) -> Image.Image:
        frame = next(self._frames, None)
        if frame is None:
            raise SourceUnavailable(f"webcam {self.device} stopped delivering frames")
        return _fit(frame.to_image(), width, height)

    def close(self) -> None:
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
