"""Per-socket limits: sizes, token buckets for frames/s, bytes/s and messages/s.

Plain code with an injectable clock so the arithmetic is unit-tested without
sockets. The numbers come from settings.SIGHTLINE and are told to the device in
its welcome message (docs/protocol.md, "Limits").
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from sightline_agent.protocol import KIND_H264, KIND_JPEG, Close, ProtocolError

# A bucket holds this many seconds of its rate, so a device may burst (a
# keyframe, a late batch after a network stall) as long as its average holds.
BURST_SECONDS = 2.0
# Binary messages per second of any kind (chunks, audio, metadata), beyond
# the frame limit: stops floods of tiny messages.
MAX_MESSAGES_PER_SECOND = 1000
# Text messages per second from a viewer or wall socket (commands, pings).
MAX_VIEWER_TEXT_PER_SECOND = 20
# Text messages per second from a device (pings, acks, stats): each may cost a reply.
MAX_DEVICE_TEXT_PER_SECOND = 20
# Failed authentications per client address per window before 4429.
AUTH_FAILURES_ALLOWED = 20
AUTH_FAILURE_WINDOW_SECONDS = 60
# Handshakes being authenticated at once in one process, per client address and
# in total (settings HANDSHAKES_PER_ADDRESS / HANDSHAKES_IN_PROGRESS); beyond,
# close 1013 at once. Authentication needs the database: this bounds its queue.
HANDSHAKES_PER_ADDRESS = 16
HANDSHAKES_IN_PROGRESS = 64
# Commands a single viewer may have waiting for an ack at once.
MAX_PENDING_COMMANDS = 8

VIDEO_KINDS = frozenset({KIND_JPEG, KIND_H264})


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int
    max_message_bytes: int
    max_fps: int
    max_bytes_per_second: int
    max_messages_per_second: int
    heartbeat_seconds: int
    dead_after_seconds: int
    command_timeout_seconds: int

    @classmethod
    def from_settings(cls) -> "Limits":
        conf = settings.SIGHTLINE
        return cls(
            max_frame_bytes=conf["MAX_FRAME_BYTES"],
            max_message_bytes=conf["MAX_MESSAGE_BYTES"],
            max_fps=conf["MAX_FPS"],
            max_bytes_per_second=conf["MAX_BYTES_PER_SECOND"],
            max_messages_per_second=MAX_MESSAGES_PER_SECOND,
            heartbeat_seconds=conf["HEARTBEAT_SECONDS"],
            dead_after_seconds=conf["DEAD_AFTER_SECONDS"],
            command_timeout_seconds=conf["COMMAND_TIMEOUT_SECONDS"],
        )

    def for_welcome(self) -> dict:
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_message_bytes": self.max_message_bytes,
            "max_fps": self.max_fps,
            "max_bytes_per_second": self.max_bytes_per_second,
            "max_messages_per_second": self.max_messages_per_second,
            "burst_seconds": BURST_SECONDS,
            "heartbeat_seconds": self.heartbeat_seconds,
            "dead_after_seconds": self.dead_after_seconds,
        }


class TokenBucket:
    """Allows `rate` units per second on average, bursts up to `capacity`."""

    __slots__ = ("rate", "capacity", "tokens", "updated", "clock")

    def __init__(self, rate: float, capacity: float, clock=time.monotonic):
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.clock = clock
        self.updated = clock()

    def take(self, amount: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False


class IngestLimiter:
    """The checks a device socket applies to each binary message and frame."""

    def __init__(self, limits: Limits, clock=time.monotonic):
        self.limits = limits
        self.messages = TokenBucket(limits.max_messages_per_second, limits.max_messages_per_second * BURST_SECONDS, clock)
        self.bytes = TokenBucket(limits.max_bytes_per_second, limits.max_bytes_per_second * BURST_SECONDS, clock)
        self.frames = TokenBucket(limits.max_fps, limits.max_fps * BURST_SECONDS, clock)

    def check_message(self, size: int) -> None:
        """Before parsing: size of one binary message, message and byte rate."""
        if size > self.limits.max_message_bytes:
            raise ProtocolError(
                Close.OVERSIZED,
                f"message of {size} bytes exceeds max_message_bytes={self.limits.max_message_bytes}",
            )
        if not self.messages.take():
            raise ProtocolError(Close.RATE_LIMITED, f"more than {self.limits.max_messages_per_second} messages/s")
        if not self.bytes.take(size):
            raise ProtocolError(Close.RATE_LIMITED, f"more than {self.limits.max_bytes_per_second} bytes/s")

    def check_frame(self, kind: int) -> None:
        """After reassembly: video frames per second (audio/metadata are bounded by bytes and messages)."""
        if kind in VIDEO_KINDS and not self.frames.take():
            raise ProtocolError(Close.RATE_LIMITED, f"more than {self.limits.max_fps} video frames/s")
