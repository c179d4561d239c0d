"""Sightline wire protocol v1: pure parsing and serialisation (see docs/protocol.md).

Binary WebSocket messages carry media behind a fixed 24-byte big-endian header:

    off size field
    0   1    magic      0x53 ('S')
    1   1    version    1
    2   1    kind       1 JPEG image, 2 H.264 access unit (Annex B), 3 audio (codec from hello.audio), 4 metadata (UTF-8 JSON)
    3   1    flags      0x01 keyframe, 0x02 chunk start, 0x04 chunk end
    4   4    sequence   uint32, one per frame (all chunks of a frame share it)
    8   8    timestamp  uint64, capture time in microseconds since the Unix epoch
    16  2    chunk index   uint16, 0-based
    18  2    chunk count   uint16, >= 1
    20  4    frame length  uint32, length of the whole reassembled payload
    24  ...  payload (this chunk's bytes)

Text messages are JSON objects with a "type" field. Every error raised here is
a ProtocolError carrying the close code the server uses for it.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

MAGIC = 0x53
VERSION = 1
HEADER = struct.Struct(">BBBBIQHHI")
HEADER_SIZE = HEADER.size  # 24

KIND_JPEG = 1
KIND_H264 = 2
KIND_AUDIO = 3
KIND_METADATA = 4
KIND_NAMES = {KIND_JPEG: "jpeg", KIND_H264: "h264", KIND_AUDIO: "audio", KIND_METADATA: "metadata"}
# Server → viewer only (MSE mode, docs/protocol.md): fragmented MP4 made from kind 2. Not in
# KIND_NAMES, so a device sending it is refused with 4005 like any unknown kind.
KIND_FMP4 = 5

FLAG_KEYFRAME = 0x01
FLAG_CHUNK_START = 0x02
FLAG_CHUNK_END = 0x04
_KNOWN_FLAGS = FLAG_KEYFRAME | FLAG_CHUNK_START | FLAG_CHUNK_END


class Close:
    """WebSocket close codes (docs/protocol.md, "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect with backoff
    TRY_AGAIN_LATER = 1013  # too many handshakes in progress, or Redis/database unavailable at connect
    BAD_TOKEN = 4001  # missing, malformed or unknown token
    TOKEN_REVOKED = 4002
    DEVICE_DISABLED = 4003
    MALFORMED_HEADER = 4004  # short binary message, bad magic, inconsistent chunk fields
    UNKNOWN_KIND = 4005
    OVERSIZED = 4006  # message above max_message_bytes or frame above max_frame_bytes
    UNEXPECTED_TEXT = 4007  # bad JSON, unknown type, or text where binary was expected
    FRAME_BEFORE_HELLO = 4008
    RATE_LIMITED = 4009  # frames/s or bytes/s above the limits in welcome
    UNSUPPORTED_VERSION = 4010
    HEARTBEAT_TIMEOUT = 4011
    REPLACED = 4012  # the same device connected again elsewhere; newest wins
    ACCESS_REVOKED = 4013  # a person's access changed under an open browser socket (accounts/signals.py)
    DEVICE_BUSY = 4014  # browser publishing to a connected device without a confirmed takeover
    SERVER_ERROR = 1011  # a server-side handler failed; sent after an error message
    NOT_AUTHENTICATED = 4401  # viewer without a session
    FORBIDDEN = 4403  # bad Origin, or role does not allow the endpoint
    NOT_FOUND = 4404  # device does not exist or is not the user's
    AUTH_RATE_LIMITED = 4429  # too many failed authentications from this address


class ProtocolError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class FrameHeader:
    kind: int
    flags: int
    seq: int
    timestamp_us: int
    chunk_index: int = 0
    chunk_count: int = 1
    frame_length: int = 0

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)

    @property
    def chunked(self) -> bool:
        return self.chunk_count > 1


def pack_header(h: FrameHeader) -> bytes:
    return HEADER.pack(
        MAGIC, VERSION, h.kind, h.flags, h.seq & 0xFFFFFFFF, h.timestamp_us,
        h.chunk_index, h.chunk_count, h.frame_length,
    )


def parse_header(data: bytes, max_frame_bytes: int) -> FrameHeader:
    """Validate and decode the header of one binary message."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(Close.MALFORMED_HEADER, f"binary message of {len(data)} bytes is shorter than the header")
    magic, version, kind, flags, seq, ts, index, count, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(Close.MALFORMED_HEADER, f"bad magic byte 0x{magic:02x}")
    if version != VERSION:
        raise ProtocolError(Close.UNSUPPORTED_VERSION, f"header version {version} is not supported")
    if kind not in KIND_NAMES:
        raise ProtocolError(Close.UNKNOWN_KIND, f"unknown media kind {kind}")
    if flags & ~_KNOWN_FLAGS:
        raise ProtocolError(Close.MALFORMED_HEADER, f"unknown flag bits 0x{flags:02x}")
    if count == 0 or index >= count:
        raise ProtocolError(Close.MALFORMED_HEADER, f"chunk {index} of {count} is impossible")
    if bool(flags & FLAG_CHUNK_START) != (index == 0) or bool(flags & FLAG_CHUNK_END) != (index == count - 1):
        raise ProtocolError(Close.MALFORMED_HEADER, "chunk start/end flags disagree with chunk index/count")
    if length > max_frame_bytes:
        raise ProtocolError(Close.OVERSIZED, f"frame of {length} bytes exceeds max_frame_bytes={max_frame_bytes}")
    payload = len(data) - HEADER_SIZE
    if count == 1 and payload != length:
        raise ProtocolError(Close.MALFORMED_HEADER, f"frame length {length} but payload is {payload} bytes")
    if payload > length:
        raise ProtocolError(Close.MALFORMED_HEADER, f"chunk of {payload} bytes exceeds frame length {length}")
    return FrameHeader(kind, flags, seq, ts, index, count, length)


def encode_frame(kind: int, payload: bytes, seq: int, timestamp_us: int, keyframe: bool = False,
                 max_message_bytes: int = 1024 * 1024) -> list[bytes]:
    """Serialise one frame into one or more binary messages of at most max_message_bytes."""
    room = max_message_bytes - HEADER_SIZE
    if room <= 0:
        raise ValueError("max_message_bytes must exceed the header size")
    count = max(1, -(-len(payload) // room))
    if count > 0xFFFF:
        raise ValueError("frame needs more than 65535 chunks")
    messages = []
    for index in range(count):
        flags = (FLAG_KEYFRAME if keyframe else 0)
        flags |= FLAG_CHUNK_START if index == 0 else 0
        flags |= FLAG_CHUNK_END if index == count - 1 else 0
        header = FrameHeader(kind, flags, seq, timestamp_us, index, count, len(payload))
        messages.append(pack_header(header) + payload[index * room:(index + 1) * room])
    return messages


@dataclass(slots=True)
class Frame:
    header: FrameHeader
    payload: bytes

    def to_message(self) -> bytes:
        """One unchunked binary message (what the server sends to viewers)."""
        h = self.header
        flags = (h.flags & FLAG_KEYFRAME) | FLAG_CHUNK_START | FLAG_CHUNK_END
        return pack_header(FrameHeader(h.kind, flags, h.seq, h.timestamp_us, 0, 1, len(self.payload))) + self.payload


class Reassembler:
    """Joins the chunks of one frame. Chunks of a frame must arrive in order and
    uninterrupted: a chunk of another frame, or a gap, is a protocol error."""

    def __init__(self, max_frame_bytes: int):
        self.max_frame_bytes = max_frame_bytes
        self._header: FrameHeader | None = None
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def in_progress(self) -> bool:
        return self._header is not None

    def feed(self, data: bytes) -> Frame | None:
        """Feed one binary message; returns a whole Frame when one completes."""
        h = parse_header(data, self.max_frame_bytes)
        payload = data[HEADER_SIZE:]
        if h.chunk_count == 1:
            if self._header is not None:
                raise ProtocolError(Close.MALFORMED_HEADER, "new frame before the previous chunked frame ended")
            return Frame(h, bytes(payload))
        if h.chunk_index == 0:
            if self._header is not None:
                raise ProtocolError(Close.MALFORMED_HEADER, "new frame before the previous chunked frame ended")
            self._header, self._parts, self._size = h, [], 0
        else:
            first = self._header
            if first is None:
                raise ProtocolError(Close.MALFORMED_HEADER, "chunk without a start chunk")
            expected = len(self._parts)
            if (h.seq, h.kind, h.chunk_count, h.frame_length, h.timestamp_us) != (
                first.seq, first.kind, first.chunk_count, first.frame_length, first.timestamp_us
            ) or h.chunk_index != expected:
                self.reset()
                raise ProtocolError(Close.MALFORMED_HEADER, f"chunk {h.chunk_index} out of order (expected {expected})")
        self._parts.append(bytes(payload))
        self._size += len(payload)
        if self._size > self._header.frame_length:
            self.reset()
            raise ProtocolError(Close.MALFORMED_HEADER, "chunks exceed the announced frame length")
        if h.chunk_index == h.chunk_count - 1:
            first = self._header
            body = b"".join(self._parts)
            self.reset()
            if len(body) != first.frame_length:
                raise ProtocolError(Close.MALFORMED_HEADER, f"frame reassembled to {len(body)} bytes, announced {first.frame_length}")
            flags = (first.flags & FLAG_KEYFRAME) | FLAG_CHUNK_START | FLAG_CHUNK_END
            return Frame(FrameHeader(first.kind, flags, first.seq, first.timestamp_us, 0, 1, len(body)), body)
        return None

    def reset(self) -> None:
        self._header, self._parts, self._size = None, [], 0


# -- text (JSON) messages ------------------------------------------------------

DEVICE_MESSAGE_TYPES = {"hello", "ping", "pong", "ack", "stats", "error"}
VIEWER_MESSAGE_TYPES = {"ping", "pong", "command", "subscribe", "talk"}
MAX_TEXT_BYTES = 64 * 1024


class _NonFiniteNumber(ValueError):
    pass


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise _NonFiniteNumber(literal)
    return value


def _reject_constant(name: str):
    raise _NonFiniteNumber(name)  # NaN, Infinity, -Infinity: not JSON (RFC 8259), yet json.loads takes them


def loads_strict(text: str):
    """json.loads that refuses what RFC 8259 JSON cannot hold: NaN, Infinity and numbers
    too large for a double, so no handler ever meets a non-finite number."""
    return json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)


def text_size(text: str) -> int:
    """UTF-8 size of a text message (encoding only when the character count could be misleading)."""
    return len(text) if len(text) * 4 <= MAX_TEXT_BYTES or text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def parse_text(text: str, allowed: set[str]) -> dict:
    """Decode a client's text message: a JSON object of an allowed string type, finite numbers only."""
    if text_size(text) > MAX_TEXT_BYTES:
        raise ProtocolError(Close.OVERSIZED, f"text message over {MAX_TEXT_BYTES} bytes")
    try:
        message = loads_strict(text)
    except _NonFiniteNumber as error:
        raise ProtocolError(
            Close.UNEXPECTED_TEXT, f"text message holds a non-finite number ({str(error)[:20]}): not valid JSON"
        ) from None
    except (ValueError, RecursionError):
        raise ProtocolError(Close.UNEXPECTED_TEXT, "text message is not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(Close.UNEXPECTED_TEXT, "text message must be a JSON object with a string 'type'")
    if message["type"] not in allowed:
        raise ProtocolError(Close.UNEXPECTED_TEXT, f"unknown message type {message['type'][:40]!r}")
    return message


def dump(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


HELLO_CODECS = {"jpeg", "h264"}
# Audio a device may send (docs/protocol.md, "Audio codecs"). pcm_s16le is the original one.
AUDIO_CODECS = {"pcm_s16le", "pcm_alaw", "pcm_mulaw", "aac", "opus"}
# Audio a device may be asked to play (talk-back). A device that can play audio takes pcm_s16le.
TALKBACK_CODECS = {"pcm_s16le", "opus"}
TALKBACK_RATES = {8000, 16000, 24000, 48000}
AAC_FORMATS = {"adts", "raw"}
SOURCE_KINDS = {"pattern", "file", "v4l2", "rtsp", "browser"}  # hello.source.kind
_HEX = set("0123456789abcdefABCDEF")


def _bad_audio(message: str) -> ProtocolError:
    return ProtocolError(Close.UNEXPECTED_TEXT, message)


def validate_audio(audio) -> dict | None:
    """hello.audio: what the device sends (codec, rate, channels; for AAC its framing).

    Returns the clean dict the server keeps (and the recorder reads), or None.
    """
    if audio is None:
        return None
    # isinstance before each set lookup: an unhashable value (list, dict) would raise TypeError.
    if not isinstance(audio, dict) or not isinstance(audio.get("codec"), str) or audio["codec"] not in AUDIO_CODECS:
        raise _bad_audio(f"hello.audio.codec must be one of {sorted(AUDIO_CODECS)}")
    codec, rate, channels = audio["codec"], audio.get("rate"), audio.get("channels")
    if not (isinstance(rate, int) and not isinstance(rate, bool) and 1000 <= rate <= 192000
            and isinstance(channels, int) and not isinstance(channels, bool) and 1 <= channels <= 8):
        raise _bad_audio("hello.audio needs rate 1000..192000 and channels 1..8")
    clean = {"codec": codec, "rate": rate, "channels": channels}
    if codec in ("pcm_alaw", "pcm_mulaw") and channels != 1:
        raise _bad_audio(f"hello.audio: {codec} is mono (channels 1)")
    if codec == "opus":
        # Opus always decodes at 48 kHz: timestamps and durations are in 48 kHz samples.
        if rate != 48000 or channels > 2:
            raise _bad_audio("hello.audio: opus needs rate 48000 and channels 1 or 2")
    if codec == "aac":
        framing = audio.get("format", "adts")
        if not isinstance(framing, str) or framing not in AAC_FORMATS:
            raise _bad_audio(f"hello.audio.format must be one of {sorted(AAC_FORMATS)}")
        config = audio.get("config")
        if framing == "raw" and config is None:
            raise _bad_audio("hello.audio: raw AAC needs config (the AudioSpecificConfig in hex)")
        if config is not None and not (isinstance(config, str) and 4 <= len(config) <= 64
                                       and len(config) % 2 == 0 and set(config) <= _HEX):
            raise _bad_audio("hello.audio.config must be 2..32 bytes of AudioSpecificConfig in hex")
        clean["format"] = framing
        if config is not None:
            clean["config"] = config.lower()
    return clean


def validate_talkback(talkback) -> dict | None:
    """hello.talkback: the device can play audio sent to it (an operator talking).

    {"codecs": [...], "rate": 48000, "channels": 1}; codecs must include pcm_s16le,
    the one every browser can send. None when the device cannot play audio.
    """
    if talkback is None:
        return None
    if not isinstance(talkback, dict):
        raise _bad_audio("hello.talkback must be an object or null")
    codecs = talkback.get("codecs")
    if (not isinstance(codecs, list) or "pcm_s16le" not in codecs
            or not all(isinstance(c, str) and c in TALKBACK_CODECS for c in codecs)):
        raise _bad_audio(f"hello.talkback.codecs must list pcm_s16le and may add {sorted(TALKBACK_CODECS - {'pcm_s16le'})}")
    rate = talkback.get("rate", 48000)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate not in TALKBACK_RATES:
        raise _bad_audio(f"hello.talkback.rate must be one of {sorted(TALKBACK_RATES)}")
    return {"codecs": sorted(set(codecs), key=["opus", "pcm_s16le"].index), "rate": rate, "channels": 1}


def validate_hello(message: dict) -> dict:
    """Check a device's hello (docs/protocol.md, "hello") and return its clean fields."""
    if message.get("protocol") != VERSION:
        raise ProtocolError(Close.UNSUPPORTED_VERSION, f"protocol {message.get('protocol')!r} is not supported (want {VERSION})")
    codecs = message.get("codecs")
    # isinstance before each set lookup: a dict or list item is unhashable and would raise TypeError.
    if not isinstance(codecs, list) or not codecs or not all(isinstance(c, str) and c in HELLO_CODECS for c in codecs):
        raise ProtocolError(Close.UNEXPECTED_TEXT, f"hello.codecs must be a non-empty list of {sorted(HELLO_CODECS)}")
    resolution = message.get("resolution")
    if resolution is not None and not (isinstance(resolution, str) and len(resolution) <= 11 and "x" in resolution):
        raise ProtocolError(Close.UNEXPECTED_TEXT, "hello.resolution must look like 640x360")
    fps = message.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000):
        raise ProtocolError(Close.UNEXPECTED_TEXT, "hello.fps must be a positive number")
    audio = validate_audio(message.get("audio"))
    talkback = validate_talkback(message.get("talkback"))
    agent = message.get("agent", "")
    if not isinstance(agent, str):
        raise ProtocolError(Close.UNEXPECTED_TEXT, "hello.agent must be a string")
    # Optional: what the device streams from, shown on the device page and wall.
    source = message.get("source")
    if source is not None:
        kind = source.get("kind") if isinstance(source, dict) else None
        if not isinstance(kind, str) or kind not in SOURCE_KINDS:
            raise ProtocolError(Close.UNEXPECTED_TEXT, f"hello.source.kind must be one of {sorted(SOURCE_KINDS)}")
        source = {"kind": kind}
    return {"protocol": VERSION, "codecs": list(codecs), "resolution": resolution, "fps": fps,
            "audio": audio, "talkback": talkback, "agent": agent[:200], "source": source}
