"""Per-stream statistics, computed from frame headers alone (no I/O).

The ingesting process keeps one StreamStats per device connection (for
metrics and the wall); every process that fans a device out keeps one for the
frames it relays, which is what its viewers are told about once a second.
"""
from __future__ import annotations

from collections import deque

from sightline_agent.protocol import KIND_NAMES

WINDOW_SECONDS = 2.0  # fps and bitrate are averaged over this window
SEQ_MODULUS = 1 << 32
# A jump backwards, or forwards by more than this, is a restarted counter, not a gap.
MAX_PLAUSIBLE_GAP = 100_000


def seq_gap(previous: int | None, current: int) -> int:
    """Frames missing between two consecutive sequence numbers of one kind."""
    if previous is None:
        return 0
    step = (current - previous) % SEQ_MODULUS
    if step == 0 or step > MAX_PLAUSIBLE_GAP:
        return 0  # duplicate, or the device restarted its counter
    return step - 1


class StreamStats:
    __slots__ = ("_window", "_window_bytes", "_last_seq", "frames", "bytes", "seq_gaps",
                 "capture_to_server_ms", "last_frame_at")

    def __init__(self):
        self._window: deque[tuple[float, int]] = deque()
        self._window_bytes = 0
        self._last_seq: dict[int, int] = {}
        self.frames = 0
        self.bytes = 0
        self.seq_gaps = 0
        self.capture_to_server_ms: float | None = None
        self.last_frame_at: float | None = None

    def on_frame(self, kind: int, seq: int, timestamp_us: int, size: int, received_at: float) -> int:
        """Record one whole frame; returns the sequence gap it revealed."""
        gap = seq_gap(self._last_seq.get(kind), seq)
        self._last_seq[kind] = seq
        self.seq_gaps += gap
        self.frames += 1
        self.bytes += size
        self.last_frame_at = received_at
        if timestamp_us:
            latency = received_at * 1000.0 - timestamp_us / 1000.0
            # Smoothed, so one late frame does not make the number jump.
            previous = self.capture_to_server_ms
            self.capture_to_server_ms = latency if previous is None else previous * 0.9 + latency * 0.1
        self._window.append((received_at, size))
        self._window_bytes += size
        self._prune(received_at)
        return gap

    def _prune(self, now: float) -> None:
        window = self._window
        while window and window[0][0] < now - WINDOW_SECONDS:
            self._window_bytes -= window.popleft()[1]

    def snapshot(self, now: float) -> dict:
        self._prune(now)
        count = len(self._window)
        return {
            "fps": round(count / WINDOW_SECONDS, 2),
            "bitrate_bps": int(self._window_bytes * 8 / WINDOW_SECONDS),
            "seq_gaps": self.seq_gaps,
            "frames": self.frames,
            "capture_to_server_ms": None if self.capture_to_server_ms is None else round(self.capture_to_server_ms, 1),
        }


def kind_name(kind: int) -> str:
    return KIND_NAMES.get(kind, "unknown")
