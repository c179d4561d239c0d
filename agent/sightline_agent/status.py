"""What the agent is doing, for the person watching it: counters and the status line.

On a terminal the status line is redrawn in place once a second; into a log
file (not a TTY) it is written as a plain line every ``LOG_EVERY_SECONDS`` so
logs stay readable. Event lines (connected, reconnecting, command applied) are
written in between. ``--quiet`` silences both; errors are always written.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field

LOG_EVERY_SECONDS = 10.0
WINDOW_SECONDS = 2.0  # fps and bitrate are averaged over this window


@dataclass
class Counters:
    state: str = "starting"
    video_seq: int = 0  # sequence number of the last video frame sent
    audio_seq: int = 0
    frames_sent: int = 0
    audio_frames_sent: int = 0
    bytes_sent: int = 0
    reconnects: int = 0
    persisted: int = 0
    commands: int = 0
    keyframe_requests: int = 0  # the server's {"type": "keyframe"} requests honoured
    resolution: str = ""
    codec: str = ""
    talk: str = ""  # who is talking back and the level (agent/talkback.py), "" when nobody
    paced: str = ""  # "8 fps at quality 60 under 1.0 MB/s" while adapting to the server's limits, else ""
    frames_skipped: int = 0  # video frames held back by the pacer (session.py, pacing.py)
    _window: deque = field(default_factory=deque)  # (monotonic time, bytes) of recent video frames
    _first_frame_at: float | None = None

    def on_video_frame(self, seq: int, size: int, now: float) -> None:
        if self._first_frame_at is None:
            self._first_frame_at = now
        self.video_seq = seq
        self.frames_sent += 1
        self.bytes_sent += size
        self._window.append((now, size))
        self._trim(now)

    def on_audio_frame(self, seq: int, size: int) -> None:
        self.audio_seq = seq
        self.audio_frames_sent += 1
        self.bytes_sent += size

    def _trim(self, now: float) -> None:
        while self._window and self._window[0][0] < now - WINDOW_SECONDS:
            self._window.popleft()

    def rates(self, now: float) -> tuple[float, float]:
        """(frames per second, kilobits per second) of video over the last window."""
        self._trim(now)
        if not self._window:
            return 0.0, 0.0
        # In the first seconds the window is not full yet: average over the time there was.
        span = min(WINDOW_SECONDS, now - self._first_frame_at)
        if span <= 0:
            return 0.0, 0.0
        size = sum(s for _, s in self._window)
        return len(self._window) / span, size * 8 / 1000 / span

    def line(self, now: float) -> str:
        fps, kbps = self.rates(now)
        return (f"[{self.state}] {self.codec} {self.resolution} {fps:4.1f} fps {kbps:7.1f} kbit/s "
                f"seq {self.video_seq} audio {self.audio_seq} reconnects {self.reconnects} "
                f"persisted {self.persisted} commands {self.commands}"
                + (f" | paced: {self.paced}" if self.paced else "")
                + (f" | skipped {self.frames_skipped}" if self.frames_skipped else "")
                + (f" | talk-back: {self.talk}" if self.talk else ""))


class StatusLine:
    def __init__(self, counters: Counters, quiet: bool = False, stream=None):
        self.counters = counters
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_log = float("-inf")
        self._drawn = False
        self._secrets: list[tuple[str, str]] = []
        self.mark = ""  # shown before every status line (e.g. INSECURE with --insecure)

    def hide(self, secret: str, shown_as: str) -> None:
        """Never write `secret` (the token), whatever message it ends up in (e.g. a library's error)."""
        if secret:
            self._secrets.append((secret, shown_as))

    def _write(self, text: str) -> None:
        for secret, shown_as in self._secrets:
            text = text.replace(secret, shown_as)
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed (e.g. the parent went away): keep streaming
            pass

    def _clear(self) -> None:
        if self._drawn:
            self._write("\r\033[K")
            self._drawn = False

    def tick(self, now: float | None = None) -> None:
        """Called about once a second."""
        if self.quiet:
            return
        now = time.monotonic() if now is None else now
        if self.interactive:
            self._write("\r\033[K" + self._line(now))
            self._drawn = True
        elif now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            self._write(self._line(now) + "\n")

    def _line(self, now: float) -> str:
        return f"{self.mark} {self.counters.line(now)}" if self.mark else self.counters.line(now)

    def event(self, message: str) -> None:
        if self.quiet:
            return
        self._clear()
        self._write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def error(self, message: str) -> None:
        self._clear()
        self._write(f"{time.strftime('%H:%M:%S')} error: {message}\n")

    def warning(self, message: str) -> None:
        """Written even with --quiet: something the person running the agent must know."""
        self._clear()
        self._write(f"{time.strftime('%H:%M:%S')} WARNING: {message}\n")

    def finish(self) -> None:
        if not self.quiet and self.interactive:
            self._clear()
            self._write(self._line(time.monotonic()) + "\n")
