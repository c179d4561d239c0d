"""Audio payloads of protocol v1 (docs/protocol.md, "Audio codecs"): pure helpers shared by
the recorder, the reference agent and the tests. No I/O, no Django, no PyAV.

- pcm_s16le: interleaved signed 16-bit little-endian samples.
- pcm_alaw / pcm_mulaw: G.711, one byte per sample, mono.
- aac: ADTS frames (a 7- or 9-byte header each), or raw access units with the
  AudioSpecificConfig in hello.audio.config.
- opus: one Opus packet (RFC 6716) per message, always counted in 48 kHz samples.
"""
from __future__ import annotations

import struct
import warnings

with warnings.catch_warnings():  # audioop is deprecated in 3.11 and gone in 3.13; fine until then
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350]
AAC_FRAME_SAMPLES = 1024  # AAC-LC


def alaw_to_s16(data: bytes) -> bytes:
    return audioop.alaw2lin(data, 2)


def mulaw_to_s16(data: bytes) -> bytes:
    return audioop.ulaw2lin(data, 2)


def s16_to_alaw(pcm: bytes) -> bytes:
    return audioop.lin2alaw(pcm, 2)


def s16_to_mulaw(pcm: bytes) -> bytes:
    return audioop.lin2ulaw(pcm, 2)


def to_s16(codec: str, payload: bytes) -> bytes:
    """PCM s16le of a PCM-family payload (pcm_s16le, pcm_alaw, pcm_mulaw)."""
    if codec == "pcm_alaw":
        return alaw_to_s16(payload)
    if codec == "pcm_mulaw":
        return mulaw_to_s16(payload)
    if codec == "pcm_s16le":
        return payload
    raise ValueError(f"{codec} is not a PCM codec")


def s16_level(pcm: bytes) -> float:
    """RMS level of s16 PCM, 0.0 .. 1.0 (for meters and status lines)."""
    if len(pcm) < 2:
        return 0.0
    return min(1.0, audioop.rms(pcm[: len(pcm) - len(pcm) % 2], 2) / 32768)


# -- AAC -----------------------------------------------------------------------

def audio_specific_config(rate: int, channels: int, object_type: int = 2) -> bytes:
    """The two-byte AudioSpecificConfig (ISO 14496-3 1.6.2.1) of AAC at `rate`."""
    index = AAC_RATES.index(rate)
    return struct.pack(">H", (object_type << 11) | (index << 7) | (channels << 3))


def parse_audio_specific_config(config: bytes) -> tuple[int, int, int]:
    """(object type, sample rate, channels) of a simple AudioSpecificConfig."""
    value = struct.unpack(">H", config[:2])[0]
    object_type, index, channels = value >> 11, (value >> 7) & 0xF, (value >> 3) & 0xF
    if index >= len(AAC_RATES):
        raise ValueError("AudioSpecificConfig with an explicit rate is not supported")
    return object_type, AAC_RATES[index], channels


def adts_header(config: bytes, payload_length: int) -> bytes:
    """A 7-byte ADTS header (no CRC) for one raw AAC frame of payload_length bytes."""
    object_type, rate, channels = parse_audio_specific_config(config)
    length = payload_length + 7
    index = AAC_RATES.index(rate)
    return bytes([
        0xFF, 0xF1,  # syncword, MPEG-4, layer 0, no CRC
        ((object_type - 1) << 6) | (index << 2) | (channels >> 2),
        ((channels & 3) << 6) | (length >> 11),
        (length >> 3) & 0xFF,
        ((length & 7) << 5) | 0x1F,
        0xFC,  # buffer fullness 0x7FF, one raw data block
    ])


def split_adts(data: bytes) -> list[tuple[bytes, bytes]]:
    """[(AudioSpecificConfig, raw AAC frame)] of the ADTS frames in data; stops at garbage."""
    frames, offset = [], 0
    while offset + 7 <= len(data):
        head = data[offset: offset + 7]
        if head[0] != 0xFF or head[1] & 0xF6 != 0xF0:
            break
        protection_absent = head[1] & 1
        object_type = (head[2] >> 6) + 1
        index = (head[2] >> 2) & 0xF
        channels = ((head[2] & 1) << 2) | (head[3] >> 6)
        length = ((head[3] & 3) << 11) | (head[4] << 3) | (head[5] >> 5)
        header_length = 7 if protection_absent else 9
        if length < header_length or offset + length > len(data) or index >= len(AAC_RATES):
            break
        config = struct.pack(">H", (object_type << 11) | (index << 7) | (channels << 3))
        frames.append((config, data[offset + header_length: offset + length]))
        offset += length
    return frames


# -- Opus ----------------------------------------------------------------------

_SILK_MS = [10, 20, 40, 60]
_CELT_MS = [2.5, 5, 10, 20]


def opus_packet_samples(packet: bytes) -> int:
    """Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 3.1)."""
    if not packet:
        return 0
    toc = packet[0]
    config, code = toc >> 3, toc & 3
    if config < 12:
        ms = _SILK_MS[config & 3]
    elif config < 16:
        ms = 10 if config & 1 == 0 else 20
    else:
        ms = _CELT_MS[config & 3]
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = packet[1] & 0x3F if len(packet) > 1 else 0
    return int(ms * 48 * count)


def opus_head(channels: int, input_rate: int = 48000, pre_skip: int = 312) -> bytes:
    """The OpusHead identification header (RFC 7845 5.1): the codec's extradata in MP4/Ogg."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)
