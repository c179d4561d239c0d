"""Synthetic camera media for tests, demos and the benchmarks (no camera needed)."""
from __future__ import annotations

import io
import math
import struct
from fractions import Fraction

from sightline_agent.protocol import FLAG_CHUNK_END, FLAG_CHUNK_START, FLAG_KEYFRAME, Frame, FrameHeader


def jpeg_frame(index: int, width: int = 160, height: int = 120, quality: int = 80) -> bytes:
    """A moving gradient with the frame number drawn in, as JPEG bytes."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), ((index * 7) % 256, 80, 160))
    draw = ImageDraw.Draw(image)
    x = (index * 4) % max(1, width - 20)
    draw.rectangle([x, height // 3, x + 20, height // 3 + 20], fill=(255, 255, 0))
    draw.text((4, 4), str(index), fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def h264_access_units(count: int, width: int = 160, height: int = 120, fps: int = 10, gop: int = 10) -> list[tuple[bytes, bool]]:
    """(Annex B access unit, keyframe) pairs as a camera sends them: no B-frames, SPS/PPS in-band."""
    import av

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, fps)
    encoder.framerate = Fraction(fps, 1)
    encoder.gop_size = gop
    encoder.max_b_frames = 0
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1"}
    units = []
    decoder = av.CodecContext.create("mjpeg", "r")
    for index in range(count):
        picture = decoder.decode(av.Packet(jpeg_frame(index, width, height)))[0].reformat(format="yuv420p")
        picture.pts = index
        picture.pict_type = av.video.frame.PictureType.NONE  # let gop_size place the keyframes
        for packet in encoder.encode(picture):
            units.append((bytes(packet), packet.is_keyframe))
    for packet in encoder.encode(None):
        units.append((bytes(packet), packet.is_keyframe))
    return units


def pcm_chunk(samples: int, rate: int = 16000, start_sample: int = 0, tone_hz: float = 440.0) -> bytes:
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * tone_hz * (start_sample + i) / rate)))
        for i in range(samples)
    )


def frame(kind: int, payload: bytes, seq: int, timestamp_us: int, keyframe: bool = True) -> Frame:
    flags = (FLAG_KEYFRAME if keyframe else 0) | FLAG_CHUNK_START | FLAG_CHUNK_END
    return Frame(FrameHeader(kind, flags, seq, timestamp_us, 0, 1, len(payload)), payload)


def write_closed_segment(device, frames: list[Frame], audio: dict | None = None, queue: bool = False):
    """A `closed` Segment whose spool file holds `frames`, as the recorder would leave it
    (for tests, demos and benchmarks). Returns the row."""
    import time
    import uuid

    from recordings import constants, lifecycle, spool
    from sightline_agent.protocol import KIND_NAMES

    video = [f for f in frames if f.header.kind in (1, 2)]
    segment_id = uuid.uuid4()
    start = lifecycle.utc_from_us(video[0].header.timestamp_us)
    path = constants.spool_path_for(device.organisation_id, device.id, start, segment_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = KIND_NAMES[video[0].header.kind]
    meta = {"segment_id": str(segment_id), "device_id": str(device.id),
            "organisation_id": str(device.organisation_id), "codec": codec, "audio": audio}
    with open(path, "wb") as f:
        f.write(spool.encode_file_header(meta))
        for item in frames:
            f.write(spool.encode_record(item, time.time()))
    lifecycle.create_segment(segment_id=segment_id, device_id=device.id, start=start, codec=codec,
                             has_audio=False, spool_path=str(path), spool_host=constants.host_name(), writer="")
    interval = 100_000
    if len(video) > 1:
        interval = (video[-1].header.timestamp_us - video[0].header.timestamp_us) // (len(video) - 1)
    close = dict(end=lifecycle.utc_from_us(video[-1].header.timestamp_us + interval), frames=len(video),
                 first_seq=video[0].header.seq, last_seq=video[-1].header.seq, spool_bytes=path.stat().st_size,
                 dropped_frames=0, has_audio=any(f.header.kind == 3 for f in frames))
    return lifecycle.close_segment(segment_id, queue=queue, **close)


def jpeg_frames(count: int, t0_us: int, fps: float = 10, width: int = 160, height: int = 120,
                start_seq: int = 0) -> list[Frame]:
    return [frame(1, jpeg_frame(i, width, height), start_seq + i, t0_us + int(i * 1_000_000 / fps))
            for i in range(count)]
