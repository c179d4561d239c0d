"""Pacing: send only what the server's token buckets will accept, so it never closes us with 4009.

The server (streams/limits.py, docs/protocol.md section 8) keeps three token buckets per device
socket, each full at the start and holding ``burst_seconds`` of its rate:

- bytes: the length of every binary message (header included), ``max_bytes_per_second``;
- messages: every binary message (each chunk, audio and metadata frames too),
  ``max_messages_per_second``; text messages have their own limit and are not paced here;
- frames: whole video frames (JPEG or H.264) after reassembly, ``max_fps``.

``Pacer`` mirrors them on the agent's monotonic clock and decides, per frame, whether it may
go now. Pure: the clock is passed in, nothing is sent or slept here.

Why the margins: the server's buckets run on arrival times, which the network can squeeze
together (a stall, then a batch). A stall while the server's bucket is full wastes its refill,
so what the agent sent during the stall must fit in what is left: our buckets hold only
``BURST_SHARE`` of the server's burst, and the rest of the server's bucket absorbs the batch.
Measured (tests/test_agent_pacing_server.py, a camera far over every limit): stalls of up to
1 s never end in 4009; longer ones can, and the agent then reconnects as before. Our bytes and
messages buckets fill at ``RATE_MARGIN`` of the server's rate, and video never takes the last
``RESERVE`` of a bucket, so audio (small, and the first thing a person notices when it breaks)
keeps room when video has used the rest. The frames bucket fills at the full ``max_fps``: the
agent's own schedule already keeps to its fps, and a 90 % margin there would skip one frame in
ten of a device sending exactly ``max_fps``.

H.264 frames depend on the ones before them back to the last keyframe, so once one is
skipped the rest of its group of pictures is skipped too, up to the next keyframe that fits:
viewers see a pause, never a smeared picture. JPEG frames each stand alone.
"""
from __future__ import annotations

RATE_MARGIN = 0.9
BURST_SHARE = 0.5  # of the server's burst that the agent lets itself use
RESERVE = 0.1  # of each of our buckets' capacity, kept back from video
DEFAULT_BURST_SECONDS = 2.0  # the server's BURST_SECONDS, if a welcome does not say


class Bucket:
    """`rate` units a second on average, up to `capacity` at once (the server's TokenBucket)."""

    __slots__ = ("rate", "capacity", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float):
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.updated = now

    def level(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        return self.tokens

    def fits(self, amount: float, now: float, keep: float = 0.0) -> bool:
        return self.level(now) - amount >= keep

    def take(self, amount: float) -> None:
        self.tokens -= amount


def _positive(limits: dict, key: str) -> float | None:
    value = limits.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


class Pacer:
    """One connection's view of the server's buckets, built from its welcome's ``limits``.

    A limit the welcome does not carry is not paced. ``offered_bytes`` and ``skipped`` count
    what came in and what was held back, for the warning and the status line.
    """

    def __init__(self, limits: dict, now: float):
        burst = _positive(limits, "burst_seconds") or DEFAULT_BURST_SECONDS
        self.bytes_per_second = _positive(limits, "max_bytes_per_second")
        self.buckets: dict[str, Bucket] = {}
        for name, key, margin in (("bytes", "max_bytes_per_second", RATE_MARGIN),
                                  ("messages", "max_messages_per_second", RATE_MARGIN),
                                  ("frames", "max_fps", 1.0)):
            rate = _positive(limits, key)
            if rate is not None:
                self.buckets[name] = Bucket(rate * margin, rate * margin * burst * BURST_SHARE, now)
        self.started = now
        self.offered_bytes = 0
        self.skipped = 0
        self.until_keyframe = False  # an H.264 frame was skipped: so is the rest of its group
        self.limited_by = ""  # the bucket that last held a frame back: bytes, messages or frames

    @property
    def budget(self) -> float | None:
        """Bytes a second the agent aims for (the bytes bucket's rate), None when unlimited."""
        bucket = self.buckets.get("bytes")
        return bucket.rate if bucket else None

    def admit_video(self, sizes: list[int], keyframe: bool, grouped: bool, now: float) -> bool:
        """May this video frame (its binary messages' sizes) go now? Taken from the buckets if so.

        ``grouped``: the frame belongs to a group of pictures (H.264), see the module docstring.
        """
        self.offered_bytes += sum(sizes)
        if grouped and self.until_keyframe and not keyframe:
            self.skipped += 1
            return False
        wanted = {"bytes": sum(sizes), "messages": len(sizes), "frames": 1}
        if not self._fits(wanted, now, RESERVE):
            self.skipped += 1
            self.until_keyframe = grouped
            return False
        self.until_keyframe = False
        self._take(wanted)
        return True

    def admit_other(self, sizes: list[int], now: float) -> bool:
        """Audio or metadata: bytes and messages only, and may use video's reserve."""
        self.offered_bytes += sum(sizes)
        wanted = {"bytes": sum(sizes), "messages": len(sizes)}
        if not self._fits(wanted, now, 0.0):
            return False
        self._take(wanted)
        return True

    def offered_rate(self, now: float) -> float:
        """Bytes a second the sources offered since this connection began."""
        return self.offered_bytes / max(now - self.started, 1e-3)

    def _fits(self, wanted: dict, now: float, reserve: float) -> bool:
        for name, bucket in self.buckets.items():
            if name in wanted and not bucket.fits(wanted[name], now, reserve * bucket.capacity):
                self.limited_by = name
                return False
        return True

    def _take(self, wanted: dict) -> None:
        for name, bucket in self.buckets.items():
            if name in wanted:
                bucket.take(wanted[name])


def rate_text(bytes_per_second: float) -> str:
    """1.0 MB/s, 250 kB/s: decimal units, as the status line's kbit/s."""
    if bytes_per_second >= 1e6:
        return f"{bytes_per_second / 1e6:.1f} MB/s"
    return f"{bytes_per_second / 1e3:.0f} kB/s"
