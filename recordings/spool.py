"""The spool file format: what the recorder appends and the transcoder reads.

A spool file is one segment as received, written off the event loop:

    file header:  b"SLSPOOL1" | u32 length | JSON {segment_id, device_id, organisation_id, codec, audio}
    records:      u32 length | f64 received_at | 24-byte protocol header | payload
                  (length counts everything after itself)

The protocol header is the one streams/protocol.py defines, so a record keeps
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

from streams.protocol import HEADER_SIZE, Frame, FrameHeader, pack_header, parse_header

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


def iter_records(f: BinaryIO, stats: dict | None = None) -> Iterator[SpoolRecord]:
    """Yield whole records; stop at a torn or garbled tail (counted in stats["torn_bytes"])."""
    while True:
        start = f.tell()
        raw = f.read(_LEN.size)
        if not raw:
            return
        torn = len(raw) != _LEN.size
        if not torn:
            (length,) = _LEN.unpack(raw)
            torn = length < _RECEIVED.size + HEADER_SIZE or length > _MAX_RECORD
        body = b"" if torn else f.read(length)
        if torn or len(body) != length:
            if stats is not None:
                f.seek(0, os.SEEK_END)
                stats["torn_bytes"] = f.tell() - start
            return
        (received_at,) = _RECEIVED.unpack_from(body)
        try:
            header = parse_header(body[_RECEIVED.size:], max_frame_bytes=_MAX_RECORD)
        except Exception:
            if stats is not None:
                f.seek(0, os.SEEK_END)
                stats["torn_bytes"] = f.tell() - start
            return
        yield SpoolRecord(header, body[_RECEIVED.size + HEADER_SIZE:], received_at)


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
