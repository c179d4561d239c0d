"""How the recorder process learns what to record, and who records it (plain Python, no I/O).

The ingest hands every frame of a recorded device to the recorders through a
Redis stream (recordings/handoff.py). This module describes what the ingest
and the recorders agree on besides:

- A **recording session**: when a device with recording on says hello, its
  consumer encodes it (`encode_session`): into the device's presence hash
  (streams/presence.py), and into every hand-off entry of that connection.
- A **lease** per device (`lease_key`): one recorder process reads a device's
  stream at a time. Others with the same shard stand by and take over when the
  lease expires (LEASE_SECONDS), resuming from the unacknowledged entries.
- **Shards**: `shard_digits(index, count)` are the first hex digits of the
  device ids shard `index` of `count` records, so recorders on several hosts
  split the cameras between them. (`frame_patterns` are the same shards as
  PSUBSCRIBE patterns of the live channels.)
- A **heartbeat** (`recorders_key`, a sorted set scored by time) lets the
  device consumer tell a device that no recorder is running.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

LEASE_SECONDS = 6  # a dead recorder's devices are taken over after at most this long
RENEW_SECONDS = 2.0  # leases and the heartbeat are refreshed this often
RECHECK_SECONDS = 3.0  # a device not ours (recording off, leased elsewhere) is looked at again this often
HEARTBEAT_FRESH_SECONDS = 10.0  # a recorder heard from within this is alive
VALID_SHARD_COUNTS = (1, 2, 4, 8, 16)
_HEX = "0123456789abcdef"

# Renew or release a lease only while it is still ours (it may have expired and
# been taken by another recorder while this one was stalled).
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


@dataclass(frozen=True, slots=True)
class RecordingSession:
    """What the recorder needs that only the device's hello carried."""

    organisation_id: str
    audio: dict | None


def encode_session(organisation_id, audio: dict | None) -> str:
    return json.dumps({"org": str(organisation_id), "audio": audio}, separators=(",", ":"))


def decode_session(raw: bytes | str | None) -> RecordingSession | None:
    """The session in a presence hash's `rec` field; None if absent or unreadable (not recorded)."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        audio = data.get("audio")
        return RecordingSession(str(data["org"]), audio if isinstance(audio, dict) else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n); n must divide 16 (the first hex digit of a device id splits evenly)."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"shard must look like 0/2, got {text!r}") from None
    if count not in VALID_SHARD_COUNTS:
        raise ValueError(f"shard count must be one of {VALID_SHARD_COUNTS}, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"shard index must be 0..{count - 1}, got {index}")
    return index, count


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def frame_patterns(prefix: str, index: int = 0, count: int = 1) -> list[str]:
    """PSUBSCRIBE patterns for the frames channels of shard index/count (groups.frames_channel)."""
    base = f"{_glob_escape(prefix)}:frames:"
    if count == 1:
        return [base + "*"]
    width = 16 // count
    digits = _HEX[index * width:(index + 1) * width]
    return [base + f"[{digits}]*"] if len(digits) > 1 else [base + digits + "*"]


def shard_digits(index: int = 0, count: int = 1) -> str:
    """The first hex digits of the device ids that shard index/count records."""
    width = 16 // count
    return _HEX[index * width:(index + 1) * width]


def shard_of(device_id, count: int) -> int:
    """Which of `count` shards records this device: the same split as frame_patterns."""
    return _HEX.index(str(device_id)[0].lower()) // (16 // count)


def device_of_channel(channel: bytes, prefix: str) -> str | None:
    """The device id of a frames channel name, or None if the name is not one."""
    head = f"{prefix}:frames:".encode()
    if not channel.startswith(head):
        return None
    return channel[len(head):].decode("ascii", "replace")


async def recorders_alive(client, prefix: str, now: float) -> int:
    """How many recorder processes were heard from lately (the device consumer asks at hello)."""
    return await client.zcount(recorders_key(prefix), now - HEARTBEAT_FRESH_SECONDS, "+inf")


def lease_key(prefix: str, device_id) -> str:
    return f"{prefix}:recorder:lease:{device_id}"


def recorders_key(prefix: str) -> str:
    return f"{prefix}:recorders"
