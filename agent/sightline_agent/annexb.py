"""H.264 bitstream helpers for passthrough: Annex B access units, parameter sets. Pure.

Protocol v1 carries H.264 as Annex B access units (start codes before each NAL
unit) with SPS/PPS on keyframes (docs/protocol.md section 3). Cameras read
through RTSP already give Annex B (FFmpeg's RTP depacketiser writes start codes),
but a container or another demuxer may give AVCC (each NAL unit behind a 1-4 byte
big-endian length), and parameter sets may travel only out of band (SDP
sprop-parameter-sets, the stream's extradata). These functions fix both without
touching a single byte of the coded pictures.
"""
from __future__ import annotations

START_CODE = b"\x00\x00\x00\x01"
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


class BitstreamError(ValueError):
    """The bytes are not H.264 in the form announced."""


def is_annexb(data: bytes) -> bool:
    return data.startswith(b"\x00\x00\x01") or data.startswith(START_CODE)


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B buffer, without their start codes."""
    units, index, size = [], 0, len(data)
    starts = []
    while True:
        found = data.find(b"\x00\x00\x01", index)
        if found < 0:
            break
        starts.append(found + 3)
        index = found + 3
    for n, begin in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else size
        # A four-byte start code (or trailing zero bytes) leaves zeros before the next one.
        while n + 1 < len(starts) and end > begin and data[end - 1] == 0:
            end -= 1
        if end > begin:
            units.append(data[begin:end])
    return units


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F if unit else 0


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """AVCC (length-prefixed NAL units) to Annex B."""
    if length_size not in (1, 2, 3, 4):
        raise BitstreamError(f"NAL length size {length_size} is impossible")
    out, index = bytearray(), 0
    while index < len(data):
        if index + length_size > len(data):
            raise BitstreamError("truncated NAL length")
        length = int.from_bytes(data[index:index + length_size], "big")
        index += length_size
        if length == 0 or index + length > len(data):
            raise BitstreamError(f"NAL length {length} runs past the packet")
        out += START_CODE + data[index:index + length]
        index += length
    return bytes(out)


def parameter_sets_from_extradata(extradata: bytes | None) -> tuple[bytes, int]:
    """(SPS and PPS as Annex B, NAL length size of the packets) from a stream's extradata,
    which is either Annex B already (RTSP) or an avcC record (MP4, Matroska)."""
    if not extradata:
        return b"", 4
    if is_annexb(extradata):
        units = [u for u in split_annexb(extradata) if nal_type(u) in (NAL_SPS, NAL_PPS)]
        return b"".join(START_CODE + u for u in units), 4
    if extradata[0] != 1 or len(extradata) < 7:
        raise BitstreamError("extradata is neither Annex B nor an avcC record")
    length_size = (extradata[4] & 0x03) + 1
    out, index = bytearray(), 5
    for mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count (8 bits)
        if index >= len(extradata):
            raise BitstreamError("truncated avcC record")
        count = extradata[index] & mask
        index += 1
        for _ in range(count):
            length = int.from_bytes(extradata[index:index + 2], "big")
            index += 2
            if index + length > len(extradata):
                raise BitstreamError("truncated avcC record")
            out += START_CODE + extradata[index:index + length]
            index += length
    return bytes(out), length_size


def access_unit(packet: bytes, keyframe: bool, parameter_sets: bytes, length_size: int = 4) -> bytes:
    """One protocol access unit from one demuxed packet: Annex B, and on a keyframe SPS/PPS
    in front of the picture when the camera did not send them in-band (after an access unit
    delimiter, which must stay first). The coded slices are never changed."""
    data = packet if is_annexb(packet) else avcc_to_annexb(packet, length_size)
    if not keyframe or not parameter_sets:
        return data
    units = split_annexb(data)
    types = {nal_type(u) for u in units}
    if NAL_SPS in types and NAL_PPS in types:
        return data
    if units and nal_type(units[0]) == NAL_AUD:
        return START_CODE + units[0] + parameter_sets + b"".join(START_CODE + u for u in units[1:])
    return parameter_sets + data


def without_parameter_sets(data: bytes) -> list[bytes]:
    """The NAL units other than SPS/PPS: what two copies of a stream must share byte for
    byte when one of them had parameter sets put on its keyframes."""
    return [u for u in split_annexb(data) if nal_type(u) not in (NAL_SPS, NAL_PPS)]
