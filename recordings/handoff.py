"""The durable hand-off from the ingest to the recorders: names, sizing and decisions (plain Python, no I/O).

    ingest: PUBLISH <prefix>:frames:<device>   (live viewers, unchanged)
            XADD <prefix>:recq:<device> MAXLEN ~ N * f <frame> s <session> n <count>
            (both in one EVALSHA of INGEST_SCRIPT: one command, one round trip)
    recorder (lease holder of the device):  XREADGROUP GROUP recorders <me> ... >
            writer fsyncs the part  ->  XACK + SET <prefix>:recq:acked:<device> "<conn> <n>" + XTRIM MINID

One stream **per device**, not per shard, because:

- sizing: the ingest knows its own device's frame rate and frame size, so
  it can bound the stream in seconds *and* bytes of that device's traffic
  (`stream_maxlen`); a stream shared by a shard would hold whatever mix of
  cameras happened to be busy, and one camera sending large frames would
  push the others' frames out;
- the per-device lease (recordings/sessions.py) stays what it was: the lease
  holder is the only reader of the device's stream, so a consumer group
  never splits one camera's frames between two recorders;
- a standby that takes a lease over claims exactly that device's pending
  entries (XAUTOCLAIM), nothing of devices still recorded elsewhere.

Recorders find the streams of their shard in one set per first hex digit of
the device id (`index_key`), which the ingest refreshes once a second.

Every entry carries the session (`s`: a connection id, then the recording
session of recordings/sessions.py) and a counter `n` the ingest numbers
1, 2, 3... per connection. A recorder tells from them, with no other state,
when a new connection starts (new segment), which entries it has already
handled (`continuity`: duplicate), and how many entries were trimmed before
any recorder read them (lost, counted and reported).
"""
from __future__ import annotations

import hashlib
import math
import os
import struct

GROUP = "recorders"  # the one consumer group of every device stream
STREAM_TTL_SECONDS = 24 * 3600  # a stream (and its acked mark) outlives its device's last frame by this
INDEX_REFRESH_SECONDS = 1.0  # the ingest re-registers its device and re-sizes the stream this often
MIN_STREAM_ENTRIES = 16  # floor of MAXLEN, whatever the byte budget says
DEFAULT_FPS = 30.0  # assumed until the ingest has measured a second of the device's traffic
DISCOVER_SECONDS = 0.5  # recorders look for new device streams of their shard this often
READ_COUNT = 100  # entries per stream per XREADGROUP
READ_BLOCK_MS = 500
ACK_SECONDS = 0.25  # the recorder acknowledges what its writer has made durable this often
CLAIM_COUNT = 500  # entries per XAUTOCLAIM call when taking a device over

# One command per frame for the ingest (EVALSHA): the live PUBLISH, the keyframe store when due,
# the XADD, and once a second the index and expiry. One round trip as a pipeline would be, but
# the frame crosses the socket once and redis-py builds one command, not a pipeline: measured on
# 20 cameras x 15 fps x 60 KB, a pipeline cost ~50 us more ingest CPU per frame than PUBLISH
# alone (+16 % of ~310 us), this script ~10 us. Atomic as any script; nothing relies on that.
#   KEYS: stream, live channel, index set, keyframe key
#   ARGV: message, field (f|e), session, n, maxlen, refresh (0|1), store keyframe (0|1),
#         device id, stream TTL, keyframe TTL
INGEST_SCRIPT = b"""
redis.call('PUBLISH', KEYS[2], ARGV[1])
if ARGV[7] == '1' then redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[10]) end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', ARGV[2], ARGV[1], 's', ARGV[3], 'n', ARGV[4])
if ARGV[6] == '1' then
  redis.call('SADD', KEYS[3], ARGV[8])
  redis.call('EXPIRE', KEYS[1], ARGV[9])
end
return id
"""
INGEST_SCRIPT_SHA = hashlib.sha1(INGEST_SCRIPT).hexdigest()

_SEQ_TS = struct.Struct(">IQ")  # sequence and capture timestamp at offset 4 of a frame message
_HEADER_SIZE = 24


def stream_key(prefix: str, device_id) -> str:
    return f"{prefix}:recq:{device_id}"


def index_key(prefix: str, digit: str) -> str:
    """The set of device ids whose id starts with `digit` that have a hand-off stream."""
    return f"{prefix}:recq:index:{digit}"


def acked_key(prefix: str, device_id) -> str:
    """`<conn> <n>`: the last entry of the device that a recorder made durable and acknowledged."""
    return f"{prefix}:recq:acked:{device_id}"


def index_digit(device_id) -> str:
    return str(device_id)[0].lower()


# -- sizing ------------------------------------------------------------------------


def stream_maxlen(frames_per_second: float, mean_frame_bytes: float, seconds: float, max_bytes: int) -> int:
    """MAXLEN of a device's stream: `seconds` of its traffic, but never more than `max_bytes` of it.

    The stream normally holds only what the recorder has not acknowledged yet
    (it trims what it acked); this bound matters only while no recorder reads.
    """
    by_time = math.ceil(seconds * max(frames_per_second, 1.0))
    by_bytes = int(max_bytes // max(mean_frame_bytes, 1.0))
    return max(MIN_STREAM_ENTRIES, min(by_time, by_bytes))


class RateMeter:
    """Frames and bytes of one device over the last refresh interval (the ingest, per frame: two adds)."""

    __slots__ = ("frames", "bytes", "since")

    def __init__(self, now: float):
        self.frames = 0
        self.bytes = 0
        self.since = now

    def rate(self, now: float) -> tuple[float, float]:
        """(frames per second, mean frame bytes) since the last call; starts counting afresh."""
        elapsed = max(now - self.since, 1e-3)
        fps = self.frames / elapsed if self.frames else 0.0
        mean = self.bytes / self.frames if self.frames else 0.0
        self.frames, self.bytes, self.since = 0, 0, now
        return fps, mean


# -- entries -------------------------------------------------------------------------


def new_connection_id() -> str:
    return os.urandom(4).hex()


def session_field(connection_id: str, session: str) -> bytes:
    """The `s` field: the same bytes in every entry of one connection."""
    return f"{connection_id} {session}".encode()


def split_session_field(raw: bytes) -> tuple[bytes, bytes]:
    """(connection id, session JSON) of an `s` field."""
    conn, _, session = raw.partition(b" ")
    return conn, session


def encode_mark(conn: bytes, n: int) -> str:
    return f"{conn.decode('ascii', 'replace')} {n}"


def decode_mark(raw: bytes | str | None) -> tuple[bytes, int] | None:
    """The acked mark as (connection id, counter); None if absent or unreadable."""
    if not raw:
        return None
    if isinstance(raw, str):
        raw = raw.encode()
    conn, _, n = raw.partition(b" ")
    try:
        return conn, int(n)
    except ValueError:
        return None


def continuity(last: tuple[bytes, int] | None, conn: bytes, n: int) -> tuple[bool, int]:
    """(duplicate, lost) for entry `n` of connection `conn`, given the last one handled for the device.

    duplicate: this entry (or a later one) of the same connection was already
    handled -- a redelivery; skip it. lost: entries of this connection between
    the last handled and this one that no recorder will ever see (trimmed by
    MAXLEN while no recorder read, or the stream expired). A connection not
    seen before lost the entries before `n`.
    """
    if last is not None and last[0] == conn:
        if n <= last[1]:
            return True, 0
        return False, n - last[1] - 1
    return False, max(n - 1, 0)


def frame_position(message: bytes) -> tuple[int, int] | None:
    """(seq, capture timestamp) of a whole-frame message, None if it is not one."""
    if len(message) < _HEADER_SIZE or message[:1] == b"{":
        return None
    return _SEQ_TS.unpack_from(message, 4)


def resume_index(positions: list[tuple[int, int] | None], last_spooled: tuple[int, int] | None) -> int:
    """How many of the claimed entries the spool already holds.

    A recorder that died wrote frames to its spool before it could acknowledge
    them (it acknowledges only after the fsync). Its successor claims those
    entries again; the frames up to and including the last one in the dead
    recorder's spool (same sequence number and capture time) are already
    recorded, the rest are not. If that frame is not among the claimed ones,
    nothing claimed was written.
    """
    if last_spooled is None:
        return 0
    for index, position in enumerate(positions):
        if position == last_spooled:
            return index + 1
    return 0
