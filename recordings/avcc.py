"""The H.264 decoder configuration of an MP4 track (avcC, ISO/IEC 14496-15 5.3.3.1). Pure.

A clip export copies the packets of matching segments into one MP4 track, which has one
avcC: packets can be copied only from segments whose parameter sets are the same as the
track's, and parts re-encoded by the export (recordings/reencode.py) bring their own SPS
and PPS. Those get ids of their own and are added to the track's avcC next to the
original ones, so a decoder finds every set a packet names without any being in-band.
"""
from __future__ import annotations

from dataclasses import dataclass

# Profiles whose avcC ends with chroma format, bit depths and SPS extensions.
_HIGH_PROFILES = {100, 110, 122, 144}
PROFILE_NAMES = {66: "baseline", 77: "main", 100: "high"}  # what x264's `profile` option accepts
MAX_SPS_ID = 31


@dataclass(frozen=True)
class AvcC:
    profile: int
    compatibility: int
    level: int
    length_size: int  # bytes of each NAL unit's length prefix in the samples
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    tail: bytes = b""  # the high-profile extension, kept as it came

    def signature(self) -> tuple:
        """What must be equal for packets to be copied under another track's avcC.

        The level is left out: x264 picks it from the frame rate too, so segments of one
        camera differ in it (10 vs 10.5 fps) while decoding the same; a decoder does not
        use it. Everything else (profile, resolution, entropy coding, reference frames...)
        decides how slices are parsed."""
        return (self.profile, self.length_size, tuple(_without_level(s) for s in self.sps), self.pps)

    def sps_ids(self) -> set[int]:
        return {_sps_id(s) for s in self.sps}


def parse(data: bytes) -> AvcC:
    if len(data) < 7 or data[0] != 1:
        raise ValueError("not an avcC record (the H.264 track carries Annex B extradata)")
    pos = 6
    sps, pos = _sets(data, pos, data[5] & 0x1F)
    pps, pos = _sets(data, pos + 1, data[pos])
    return AvcC(data[1], data[2], data[3], (data[4] & 0x03) + 1, tuple(sps), tuple(pps), bytes(data[pos:]))


def _sets(data: bytes, pos: int, count: int) -> tuple[list[bytes], int]:
    found = []
    for _ in range(count):
        size = int.from_bytes(data[pos:pos + 2], "big")
        found.append(bytes(data[pos + 2:pos + 2 + size]))
        pos += 2 + size
    if pos > len(data):
        raise ValueError("truncated avcC record")
    return found, pos


def build(record: AvcC) -> bytes:
    out = bytearray([1, record.profile, record.compatibility, record.level, 0xFC | (record.length_size - 1),
                     0xE0 | len(record.sps)])
    for item in record.sps:
        out += len(item).to_bytes(2, "big") + item
    out.append(len(record.pps))
    for item in record.pps:
        out += len(item).to_bytes(2, "big") + item
    return bytes(out) + (record.tail if record.profile in _HIGH_PROFILES else b"")


def merge(track: AvcC, added: AvcC) -> AvcC:
    """The track's avcC with `added`'s parameter sets too (their ids must be free in the track).

    The header keeps the track's profile (the re-encoder is asked for the same one) and takes
    the higher level, so it announces what the most demanding part needs. Adding sets the
    track already holds changes nothing."""
    if set(added.sps) <= set(track.sps) and set(added.pps) <= set(track.pps):
        return track
    if added.sps_ids() & track.sps_ids():
        raise ValueError("the added SPS ids are already used by the track")
    if added.length_size != track.length_size:
        raise ValueError(f"NAL length prefix of {added.length_size} bytes, the track uses {track.length_size}")
    return AvcC(track.profile, track.compatibility & added.compatibility, max(track.level, added.level),
                track.length_size, track.sps + added.sps, track.pps + added.pps, track.tail)


def free_sps_id(track: AvcC) -> int:
    """An SPS id (x264 gives its PPS the same one) the track's parameter sets do not use.

    PPS ids are checked too, since x264 numbers its PPS like its SPS."""
    used = track.sps_ids() | {_pps_id(p) for p in track.pps}
    for candidate in range(1, MAX_SPS_ID + 1):
        if candidate not in used:
            return candidate
    raise ValueError("no free SPS id in the track's avcC")


def _without_level(sps: bytes) -> bytes:
    # NAL header, profile_idc, constraint flags, level_idc: the level is the 4th byte.
    return sps[:3] + b"\x00" + sps[4:] if len(sps) > 4 else sps


class _Bits:
    """Exp-Golomb reader for the first fields of an SPS or PPS (emulation bytes removed)."""

    def __init__(self, data: bytes):
        self.data = data.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos // 8]
        value = (byte >> (7 - self.pos % 8)) & 1
        self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
        value = 1
        for _ in range(zeros):
            value = (value << 1) | self.bit()
        return value - 1


def _sps_id(sps: bytes) -> int:
    reader = _Bits(sps[4:])  # after NAL header, profile, constraints, level
    return reader.ue()


def _pps_id(pps: bytes) -> int:
    return _Bits(pps[1:]).ue()
