"""The fragmented-MP4 muxer of the MSE path (streams/fmp4.py): what it writes is read back by
FFmpeg (PyAV), every access unit decodes, nothing is re-encoded."""
import io

import av
import pytest

from streams import fmp4
from sightline_agent.encoders import H264Encoder
from sightline_agent.sources import PatternSource


def encoded_frames(count: int, width=320, height=180, fps=15, start_us=1_700_000_000_000_000):
    encoder, source = H264Encoder(), PatternSource()
    frames = []
    for i in range(count):
        ts = start_us + i * 1_000_000 // fps
        [frame] = encoder.encode(source.capture(width, height, ts / 1e6), fps)
        frames.append((frame.payload, frame.keyframe, ts))
    encoder.close()
    return frames


def decode(stream_bytes: bytes) -> list:
    with av.open(io.BytesIO(stream_bytes), format="mp4") as container:
        return [frame for frame in container.decode(video=0)]


def test_every_access_unit_becomes_one_fragment_and_all_of_them_decode():
    frames = encoded_frames(31)  # three GOPs of 15, then one
    muxer = fmp4.Fmp4Muxer()
    out, inits, fragments = bytearray(), 0, 0
    for payload, keyframe, ts in frames:
        init, fragment = muxer.push(payload, keyframe, ts)
        if init:
            inits += 1
            out += init
        if fragment:
            fragments += 1
            out += fragment
    assert (inits, fragments) == (1, 31)
    decoded = decode(bytes(out))
    assert len(decoded) == 31
    assert (decoded[0].width, decoded[0].height) == (320, 180)
    assert muxer.codec.startswith("avc1.") and len(muxer.codec) == 11


def test_fragments_carry_capture_time_and_keyframe_flags():
    frames = encoded_frames(16, fps=10)
    muxer = fmp4.Fmp4Muxer()
    out = bytearray()
    for payload, keyframe, ts in frames:
        init, fragment = muxer.push(payload, keyframe, ts)
        out += (init or b"") + (fragment or b"")
    with av.open(io.BytesIO(bytes(out)), format="mp4") as container:
        packets = [p for p in container.demux(video=0) if p.size]
    assert [round(float(p.pts * p.time_base), 3) for p in packets][:3] == [0.0, 0.1, 0.2]
    assert [p.is_keyframe for p in packets] == [i % 10 == 0 for i in range(16)]


def test_nothing_is_sent_before_the_first_keyframe_with_parameter_sets():
    frames = encoded_frames(20)
    muxer = fmp4.Fmp4Muxer()
    for payload, keyframe, ts in frames[1:15]:  # joined mid-GOP: deltas only
        assert muxer.push(payload, keyframe, ts) == (None, None)
    init, fragment = muxer.push(*frames[15])
    assert init is not None and fragment is not None
    assert len(decode(init + fragment)) == 1


def test_a_new_resolution_gets_a_new_init_segment_that_decodes_from_there():
    muxer = fmp4.Fmp4Muxer()
    small, large = encoded_frames(3, 160, 90), encoded_frames(3, 320, 180, start_us=1_700_000_001_000_000)
    inits = [muxer.push(*f)[0] for f in small + large]
    assert [i is not None for i in inits] == [True, False, False, True, False, False]
    assert muxer.size == (320, 180)


@pytest.mark.parametrize("size", [(640, 360), (1280, 720), (176, 144), (330, 186)])
def test_the_sps_reader_finds_the_picture_size_including_cropping(size):
    payload = encoded_frames(1, *size)[0][0]
    sps = next(u for u in fmp4.split_annexb(payload) if u[0] & 0x1F == 7)
    assert fmp4.sps_dimensions(sps) == (size[0] - size[0] % 2, size[1] - size[1] % 2)


def test_a_truncated_sps_is_a_value_error_not_a_crash():
    payload = encoded_frames(1)[0][0]
    sps = next(u for u in fmp4.split_annexb(payload) if u[0] & 0x1F == 7)
    with pytest.raises(ValueError):
        fmp4.sps_dimensions(sps[:3])
    muxer = fmp4.Fmp4Muxer()
    assert muxer.push(b"\x00\x00\x00\x01" + sps[:3] + b"\x00\x00\x00\x01\x68\xce", True, 0) == (None, None)


def test_annexb_splitting_handles_three_and_four_byte_start_codes():
    data = b"\x00\x00\x00\x01\x67\x01\x02\x00\x00\x01\x68\x03\x00\x00\x00\x01\x65\x04\x05"
    assert fmp4.split_annexb(data) == [b"\x67\x01\x02", b"\x68\x03", b"\x65\x04\x05"]
