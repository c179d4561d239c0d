"""Fragmented MP4 from H.264 access units, for Media Source Extensions (pure; no I/O, no re-encode).

The viewer socket's MSE mode (docs/protocol.md, "MSE mode") sends what this module
builds: one init segment (ftyp + moov, with the avcC built from the SPS/PPS the
device sends in-band on every keyframe) and then one fragment (moof + mdat) per
access unit, its NAL units copied from Annex B into 4-byte length-prefixed form.
Boxes are written by hand (ISO/IEC 14496-12 and -15); only what MSE needs is there.

    muxer = Fmp4Muxer()
    init, fragment = muxer.push(annexb_payload, keyframe, timestamp_us)

`init` is bytes when a new init segment is due (the first keyframe with SPS/PPS,
or when they change, e.g. a new resolution), else None. `fragment` is None until
the first init: a decoder cannot start before a keyframe.
"""
from __future__ import annotations

import struct

TIMESCALE = 90_000  # the usual video clock; capture timestamps are microseconds
DEFAULT_DURATION = TIMESCALE // 15  # a first frame's duration, before an interval is known
NAL_SPS, NAL_PPS, NAL_AUD, NAL_IDR = 7, 8, 9, 5
# Sample flags (14496-12 8.8.3.1): depends on others + non-sync for deltas; depends on none for keys.
FLAGS_KEY = 0x02000000
FLAGS_DELTA = 0x01010000


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes), without the start codes."""
    units, start, i, n = [], None, 0, len(data)
    while i + 2 < n:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            if start is not None:
                units.append(data[start:i].rstrip(b"\x00") if i > start else b"")
            i += 3
            start = i
        else:
            i += 1
    if start is not None and start < n:
        units.append(data[start:])
    return [u for u in units if u]


class _Bits:
    """Exp-Golomb reader over an RBSP (emulation-prevention bytes removed)."""

    def __init__(self, data: bytes):
        self.data = data.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]  # IndexError on a truncated SPS: the caller turns it into ValueError
        value = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) in pixels from an SPS NAL unit (header byte included)."""
    try:
        r = _Bits(sps[1:])
        profile = r.bits(8)
        r.bits(16)  # constraint flags, level
        r.ue()  # seq_parameter_set_id
        chroma_format = 1
        if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma_format = r.ue()
            if chroma_format == 3:
                r.bit()
            r.ue(), r.ue(), r.bit()  # bit depths, qpprime bypass
            if r.bit():  # seq_scaling_matrix_present
                for index in range(8 if chroma_format != 3 else 12):
                    if r.bit():
                        last, next_ = 8, 8
                        for _ in range(16 if index < 6 else 64):
                            if next_:
                                next_ = (last + r.se() + 256) % 256
                            last = next_ or last
        r.ue()  # log2_max_frame_num
        poc_type = r.ue()
        if poc_type == 0:
            r.ue()
        elif poc_type == 1:
            r.bit(), r.se(), r.se()
            for _ in range(r.ue()):
                r.se()
        r.ue(), r.bit()  # max_num_ref_frames, gaps allowed
        width_mbs, height_units = r.ue() + 1, r.ue() + 1
        frame_mbs_only = r.bit()
        if not frame_mbs_only:
            r.bit()
        r.bit()  # direct_8x8_inference
        crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.bit() else (0, 0, 0, 0)
    except IndexError:
        raise ValueError("truncated SPS") from None
    sub_w, sub_h = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}.get(chroma_format, (2, 2))
    crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = height_units * 16 * (2 - frame_mbs_only) - crop_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise ValueError("SPS gives an empty picture")
    return width, height


def codec_string(sps: bytes) -> str:
    """The RFC 6381 codec string MSE needs (avc1.PPCCLL) from an SPS NAL unit."""
    return "avc1." + sps[1:4].hex()


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def avcc(sps: bytes, pps: bytes) -> bytes:
    return _box(b"avcC", bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]), struct.pack(">H", len(sps)), sps,
                b"\x01", struct.pack(">H", len(pps)), pps)


def init_segment(sps: bytes, pps: bytes) -> bytes:
    width, height = sps_dimensions(sps)
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso6avc1mp41")
    mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, 0), struct.pack(">IH", 0x10000, 0x100),
                 bytes(10), _MATRIX, bytes(24), struct.pack(">I", 2))
    tkhd = _full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, 0), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0),
                 _MATRIX, struct.pack(">II", width << 16, height << 16))
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, TIMESCALE, 0), struct.pack(">HH", 0x55C4, 0))
    hdlr = _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00")
    vmhd = _full(b"vmhd", 0, 1, bytes(8))
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    avc1 = _box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", width, height),
                struct.pack(">II", 0x480000, 0x480000), bytes(4), struct.pack(">H", 1), bytes(32),
                struct.pack(">Hh", 0x18, -1), avcc(sps, pps))
    stbl = _box(b"stbl", _full(b"stsd", 0, 0, struct.pack(">I", 1), avc1), _full(b"stts", 0, 0, bytes(4)),
                _full(b"stsc", 0, 0, bytes(4)), _full(b"stsz", 0, 0, bytes(8)), _full(b"stco", 0, 0, bytes(4)))
    mdia = _box(b"mdia", mdhd, hdlr, _box(b"minf", vmhd, dinf, stbl))
    mvex = _box(b"mvex", _full(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    return ftyp + _box(b"moov", mvhd, _box(b"trak", tkhd, mdia), mvex)


def fragment(sequence: int, decode_time: int, duration: int, sample: bytes, keyframe: bool) -> bytes:
    """moof + mdat holding one sample (one access unit in AVCC form)."""
    def moof(data_offset: int) -> bytes:
        tfhd = _full(b"tfhd", 0, 0x020000, struct.pack(">I", 1))  # default-base-is-moof
        tfdt = _full(b"tfdt", 1, 0, struct.pack(">Q", decode_time))
        trun = _full(b"trun", 0, 0x000701, struct.pack(">IiIII", 1, data_offset, duration, len(sample),
                                                       FLAGS_KEY if keyframe else FLAGS_DELTA))
        return _box(b"moof", _full(b"mfhd", 0, 0, struct.pack(">I", sequence)), _box(b"traf", tfhd, tfdt, trun))

    size = len(moof(0))
    return moof(size + 8) + _box(b"mdat", sample)


class Fmp4Muxer:
    """One device's H.264 access units → init segment + fragments (one per access unit).

    Run once per device per process (streams/broadcast.py DeviceFeed), never per viewer.
    Decode times follow the capture timestamps, so gaps (dropped frames) stay gaps.
    """

    def __init__(self):
        self.parameter_sets: tuple[bytes, bytes] | None = None
        self.codec: str | None = None
        self.size: tuple[int, int] | None = None
        self.sequence = 0
        self._origin_us: int | None = None
        self._last_time = -1
        self._duration = DEFAULT_DURATION

    def push(self, payload: bytes, keyframe: bool, timestamp_us: int) -> tuple[bytes | None, bytes | None]:
        units = split_annexb(payload)
        init = None
        if keyframe:
            sps = next((u for u in units if u[0] & 0x1F == NAL_SPS), None)
            pps = next((u for u in units if u[0] & 0x1F == NAL_PPS), None)
            if sps is not None and pps is not None and (sps, pps) != self.parameter_sets:
                try:
                    init = init_segment(sps, pps)
                except ValueError:
                    return None, None  # an SPS we cannot read: wait for the next keyframe
                self.parameter_sets, self.codec, self.size = (sps, pps), codec_string(sps), sps_dimensions(sps)
                self._origin_us, self._last_time = timestamp_us, -1
        if self.parameter_sets is None:
            return None, None
        time = (timestamp_us - self._origin_us) * TIMESCALE // 1_000_000
        if time <= self._last_time:  # a device clock step or equal timestamps: keep decode order
            time = self._last_time + self._duration
        elif self._last_time >= 0:
            self._duration = max(1, min(time - self._last_time, TIMESCALE))
        self._last_time = time
        sample = b"".join(struct.pack(">I", len(u)) + u for u in units if u[0] & 0x1F not in (NAL_SPS, NAL_PPS, NAL_AUD))
        if not sample:
            return init, None
        self.sequence += 1
        return init, fragment(self.sequence, time, self._duration, sample, keyframe)
