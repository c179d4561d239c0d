"""Lowering and raising the agent's own picture rate and JPEG quality to fit the byte budget.

The pacer (pacing.py) keeps the agent under the server's limits by skipping frames; that is
the safety net. For pictures the agent encodes itself it can do better than skip: send fewer,
smaller frames evenly. ``Adapter`` watches, window by window, how many bytes a second the
sources offer against the pacer's budget and moves along a ladder of (fps, quality) levels:

- down at once, as many levels as the overshoot needs, when a window offered more than the
  budget or had frames skipped (JPEG quality first, to ``QUALITY_FLOOR``, then the frame
  rate, then the last qualities at 1 fps);
- up one level only after ``UP_AFTER_WINDOWS`` quiet windows in a row, and only if the level
  above is predicted to use less than ``UP_BELOW`` of the budget. The gap between that and
  going down (over 100 %) is the hysteresis: a scene near the limit does not flap. A step up
  that has to be taken back in the next window doubles the wait before the next try.

A quality step is predicted to change a JPEG's size by ``QUALITY_STEP_FACTOR``. Measured, one
step of the ladder (95→75→60→50→40) cuts 5-15 % off the flat test pattern and 10-60 % off a
photograph or a benchmark camera frame: 0.8 is a middle guess, and the next window corrects a
wrong one. Quality alone rarely halves a stream; the frame rate does the rest. Pure: the clock
is passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

WINDOW_SECONDS = 2.0  # the server's burst: a window over budget is a window the buckets feel
UP_AFTER_WINDOWS = 3
UP_AFTER_MAX_WINDOWS = 30  # a step up that failed at once doubles the wait, up to a minute
UP_BELOW = 0.8
QUALITY_STEPS = (75, 60, 50, 40)  # tried below the configured --jpeg-quality, in this order
QUALITY_FLOOR = 40  # the frame rate goes down before the quality goes below this
LAST_QUALITIES = (25, 10)  # at 1 fps, when even that is too much
FPS_STEP = 0.7
QUALITY_STEP_FACTOR = 0.8


@dataclass(frozen=True)
class Level:
    fps: int
    quality: int | None  # None: the encoder has no quality setting (H.264)


def ladder(fps: int, quality: int | None) -> list[Level]:
    """Every level from the configured (fps, quality) down to the least the agent will send."""
    qualities = [quality] if quality is None else [quality] + [q for q in QUALITY_STEPS if q < quality]
    levels = [Level(fps, q) for q in qualities]
    floor = qualities[-1]
    while fps > 1:
        fps = max(1, min(fps - 1, int(fps * FPS_STEP)))
        levels.append(Level(fps, floor))
    if floor is not None:
        levels += [Level(1, q) for q in LAST_QUALITIES if q < floor]
    return levels


class Adapter:
    def __init__(self, fps: int, quality: int | None, now: float):
        self.reset(fps, quality, now)

    def reset(self, fps: int, quality: int | None, now: float) -> None:
        """Start again from the top (a new connection, or the operator changed the fps)."""
        self.levels = ladder(fps, quality)
        # Each quality below the top is predicted to cost QUALITY_STEP_FACTOR of the one above.
        qualities = sorted({level.quality for level in self.levels if level.quality is not None}, reverse=True)
        self._quality_rank = {q: rank for rank, q in enumerate(qualities)}
        self.index = 0
        self.wanted = (fps, quality)
        self._start_window(now)
        self.quiet_windows = 0
        self.up_after = UP_AFTER_WINDOWS
        self._just_raised = False
        self._just_changed = False

    def _cost(self, level: Level) -> float:
        """A level's bytes a second relative to the others' (for predictions only)."""
        return level.fps * QUALITY_STEP_FACTOR ** self._quality_rank.get(level.quality, 0)

    @property
    def level(self) -> Level:
        return self.levels[self.index]

    @property
    def reduced(self) -> bool:
        return self.index > 0

    def _start_window(self, now: float) -> None:
        self.window_start, self.window_bytes, self.window_skipped = now, 0, 0

    def on_offered(self, size: int, skipped: bool = False) -> None:
        """Every frame the agent produced (video, audio, metadata), sent or skipped."""
        self.window_bytes += size
        self.window_skipped += skipped

    def decide(self, budget: float | None, now: float) -> bool:
        """At the end of a window, move along the ladder; True when the level changed."""
        elapsed = now - self.window_start
        if budget is None or elapsed < WINDOW_SECONDS:
            return False
        offered, skipped = self.window_bytes / elapsed, self.window_skipped
        self._start_window(now)
        just_raised, self._just_raised = self._just_raised, False
        # Skips in the window right after a change are the old level's debt (the buckets it
        # drained refilling), not the new level's doing: that window is judged by its rate only.
        just_changed, self._just_changed = self._just_changed, False
        if (skipped and not just_changed) or offered > budget:
            self.quiet_windows = 0
            if just_raised:  # the level above does not fit this scene: try it less often
                self.up_after = min(UP_AFTER_MAX_WINDOWS, self.up_after * 2)
            self._just_changed = self._down(offered / budget if offered > budget else 1.0 / QUALITY_STEP_FACTOR)
            return self._just_changed
        self.quiet_windows += 1
        if self.quiet_windows < self.up_after or self.index == 0:
            return False
        above = self.levels[self.index - 1]
        if offered * self._cost(above) / self._cost(self.level) >= UP_BELOW * budget:
            return False
        self.index -= 1
        self.quiet_windows = 0
        self._just_raised = self._just_changed = True
        return True

    def _down(self, overshoot: float) -> bool:
        """Step down until the predicted saving covers `overshoot` (offered / budget)."""
        start = self.index
        current = self._cost(self.level)
        while self.index < len(self.levels) - 1 and self._cost(self.levels[self.index]) * overshoot > current:
            self.index += 1
        return self.index != start
