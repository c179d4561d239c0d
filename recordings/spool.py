"""The spool file format: what the recorder appends and the transcoder reads.

A spool file is one segment as received, written off the event loop:

    file header:  b"SLSPOOL1" | u32 length | JSON {segment_id, device_id, organisation_id, codec, audio}
    records:      u32 length | f64 received_at | 24-byte protocol header | payload
                  (length counts everything after itself)

The protocol header is the one agent/sightline_agent/protocol.py defines, so a record keeps
the capture timestamp, sequence number, kind and keyframe flag as sent. A
crash can leave a torn last record; read_records() stops at it and says how
many bytes it ignored. The writer fsyncs every part (constants.PART_SECONDS),
so at most one part of frames is lost (docs/recording.md, "Crash window").
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from sightline_agent.protocol import HEADER, HEADER_SIZE, KIND_NAMES, MAGIC as MAGIC_BYTE, VERSION, Frame, FrameHeader, pack_header

MAGIC = b"SLSPOOL1"
_LEN = struct.Struct(">I")
_RECEIVED = struct.Struct(">d")
_MAX_RECORD = 64 * 1024 * 1024


class SpoolFormatError(Exception):
    """The file is not a spool file (bad magic or header)."""


@dataclass(slots=True)
class SpoolRecord:
    header: FrameHeader
    payload: bytes
    received_at: float


def encode_file_header(meta: dict) -> bytes:
    body = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    return MAGIC + _LEN.pack(len(body)) + body


def encode_record_parts(frame: Frame, received_at: float) -> tuple[bytes, bytes]:
    """(prefix, payload) of one record: the writer hands both to writelines(),
    so the payload is copied once, into the file buffer."""
    h = frame.header
    header = pack_header(FrameHeader(h.kind, h.flags, h.seq, h.timestamp_us, 0, 1, len(frame.payload)))
    prefix = _LEN.pack(_RECEIVED.size + HEADER_SIZE + len(frame.payload)) + _RECEIVED.pack(received_at) + header
    return prefix, frame.payload


def encode_record(frame: Frame, received_at: float) -> bytes:
    return b"".join(encode_record_parts(frame, received_at))


def read_file_header(f: BinaryIO) -> dict:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise SpoolFormatError("not a spool file")
    raw = f.read(_LEN.size)
    if len(raw) != _LEN.size:
        raise SpoolFormatError("truncated spool header")
    (length,) = _LEN.unpack(raw)
    body = f.read(length)
    if len(body) != length:
        raise SpoolFormatError("truncated spool header")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise SpoolFormatError("spool header is not JSON") from exc


@dataclass(slots=True)
class SpoolContents:
    meta: dict
    records: list[SpoolRecord]
    torn_bytes: int  # bytes after the last whole record (a crash mid-write)


_PREFIX = _RECEIVED.size + HEADER_SIZE  # bytes of a record before its payload


def _stored_header(raw: bytes, payload_len: int) -> FrameHeader:
    magic, version, kind, flags, seq, ts, index, count, length = HEADER.unpack(raw)
    if magic != MAGIC_BYTE or version != VERSION or kind not in KIND_NAMES or length != payload_len:
        raise SpoolFormatError("garbled record header")
    return FrameHeader(kind, flags, seq, ts, index, count, length)


def iter_records(f: BinaryIO, stats: dict | None = None, payload_kinds=None) -> Iterator[SpoolRecord]:
    """Yield whole records; stop at a torn or garbled tail (counted in stats["torn_bytes"]).

    payload_kinds: read payloads only of these kinds (others come back empty,
    skipped with a seek), so an index of a large spool costs little memory.
    """
    size = os.fstat(f.fileno()).st_size
    while True:
        start = f.tell()
        raw = f.read(_LEN.size + _PREFIX)
        if not raw:
            return
        header = None
        if len(raw) == _LEN.size + _PREFIX:
            (length,) = _LEN.unpack_from(raw)
            payload_len = length - _PREFIX
            if 0 <= payload_len <= _MAX_RECORD and start + _LEN.size + length <= size:
                try:
                    header = _stored_header(raw[_LEN.size + _RECEIVED.size:], payload_len)
                except (SpoolFormatError, struct.error):
                    header = None
        if header is None:
            if stats is not None:
                stats["torn_bytes"] = size - start
            return
        (received_at,) = _RECEIVED.unpack_from(raw, _LEN.size)
        if payload_kinds is None or header.kind in payload_kinds:
            payload = f.read(payload_len)
        else:
            f.seek(payload_len, os.SEEK_CUR)
            payload = b""
        yield SpoolRecord(header, payload, received_at)


def read_spool(path: Path | str) -> SpoolContents:
    with open(path, "rb") as f:
        meta = read_file_header(f)
        stats = {"torn_bytes": 0}
        records = list(iter_records(f, stats))
    return SpoolContents(meta, records, stats["torn_bytes"])


def truncate_torn_tail(path: Path | str) -> int:
    """Cut a torn last record off a spool file (recovery); returns bytes removed."""
    with open(path, "r+b") as f:
        read_file_header(f)
        stats = {"torn_bytes": 0}
        for _ in iter_records(f, stats):
            pass
        torn = stats["torn_bytes"]
        if torn:
            size = f.seek(0, os.SEEK_END)
            f.truncate(size - torn)
            f.flush()
            os.fsync(f.fileno())
    return torn
