"""Reference agent, media side: the test pattern, brightness/contrast, sources, encoders, audio tone."""
import math
import struct
import threading
import time

import av
from av.video.frame import PictureType
import pytest
from PIL import Image, ImageChops, ImageStat

from sightline_agent.encoders import AUDIO_HELLO, H264Encoder, JpegEncoder, ToneGenerator, make_encoder
from sightline_agent.imaging import adjust, render_pattern
from sightline_agent.sources import FileSource, LatestFrame, PatternSource, SourceUnavailable, open_source
from sightline_agent.protocol import KIND_H264, KIND_JPEG

T0 = 1763700000.0


def mean_luminance(image: Image.Image) -> float:
    return ImageStat.Stat(image.convert("L")).mean[0]


def test_the_pattern_changes_pixels_in_every_frame():
    frames = [render_pattern(i, T0 + i / 10, 320, 180) for i in range(12)]
    for before, after in zip(frames, frames[1:]):
        assert ImageChops.difference(before, after).getbbox() is not None


def test_the_pattern_moves_even_when_the_clock_stands_still():
    first, second = render_pattern(5, T0, 320, 180), render_pattern(6, T0, 320, 180)
    assert ImageChops.difference(first, second).getbbox() is not None


def test_the_pattern_draws_the_time_and_counter_in_the_lower_band():
    # Same frame index, a different second: only the clock band differs.
    a, b = render_pattern(3, T0, 320, 180), render_pattern(3, T0 + 1.5, 320, 180)
    box = ImageChops.difference(a, b).getbbox()
    assert box is not None and box[1] >= 90, box


@pytest.mark.parametrize("width,height", [(16, 16), (320, 180), (1280, 720)])
def test_the_pattern_has_the_size_asked_for(width, height):
    assert render_pattern(0, T0, width, height).size == (width, height)


def test_a_pattern_source_counts_frames():
    source = PatternSource()
    first = source.capture(64, 36, T0)
    second = source.capture(64, 36, T0)
    assert source.frame_index == 2 and ImageChops.difference(first, second).getbbox() is not None


def test_brightness_plus_50_visibly_raises_mean_luminance():
    image = render_pattern(0, T0, 320, 180)
    assert mean_luminance(adjust(image, 50, 0)) > mean_luminance(image) + 40


def test_brightness_raises_even_the_black_areas():
    black = Image.new("RGB", (32, 32), (0, 0, 0))
    assert mean_luminance(adjust(black, 50, 0)) == pytest.approx(64, abs=1)


def test_negative_brightness_darkens():
    image = render_pattern(0, T0, 320, 180)
    assert mean_luminance(adjust(image, -50, 0)) < mean_luminance(image) - 15


def test_contrast_spreads_and_flattens_the_levels():
    image = render_pattern(0, T0, 320, 180)
    spread = ImageStat.Stat(image.convert("L")).stddev[0]
    assert ImageStat.Stat(adjust(image, 0, 60).convert("L")).stddev[0] > spread * 1.15
    assert ImageStat.Stat(adjust(image, 0, -100).convert("L")).stddev[0] < 1


def test_zero_brightness_and_contrast_leave_the_image_alone():
    image = render_pattern(0, T0, 64, 36)
    assert ImageChops.difference(adjust(image, 0, 0), image).getbbox() is None


def test_a_jpeg_frame_decodes_and_is_a_keyframe():
    [frame] = JpegEncoder(80).encode(render_pattern(0, T0, 320, 180), 10)
    assert frame.kind == KIND_JPEG and frame.keyframe and frame.payload[:2] == b"\xff\xd8"
    import io

    assert Image.open(io.BytesIO(frame.payload)).size == (320, 180)


def nal_types(access_unit: bytes) -> list[int]:
    """NAL unit types of an Annex B access unit (after each 00 00 01 start code)."""
    types, index = [], access_unit.find(b"\x00\x00\x01")
    while index != -1:
        types.append(access_unit[index + 3] & 0x1F)
        index = access_unit.find(b"\x00\x00\x01", index + 3)
    return types


def encode_h264(count: int, fps: int = 5, size=(160, 90)) -> list:
    encoder = H264Encoder()
    out = []
    for i in range(count):
        frames = encoder.encode(render_pattern(i, T0 + i / fps, *size), fps)
        assert len(frames) == 1, "zerolatency must give one access unit per image"
        out.extend(frames)
    encoder.close()
    return out


def test_h264_access_units_decode_back_with_keyframes_every_fps_frames():
    fps = 5
    units = encode_h264(3 * fps + 2, fps)
    assert all(u.kind == KIND_H264 for u in units)
    assert [i for i, u in enumerate(units) if u.keyframe] == [0, 5, 10, 15]
    decoder = av.CodecContext.create("h264", "r")
    decoded = []
    for unit in units:
        decoded.extend(decoder.decode(av.Packet(unit.payload)))
    decoded.extend(decoder.decode(None))
    assert len(decoded) == len(units)
    assert decoded[0].key_frame and (decoded[0].width, decoded[0].height) == (160, 90)


def test_h264_is_annex_b_with_sps_pps_on_every_keyframe_and_no_b_frames():
    units = encode_h264(11, fps=5)
    for unit in units:
        assert unit.payload.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        types = nal_types(unit.payload)
        if unit.keyframe:
            assert {7, 8, 5} <= set(types), types  # SPS, PPS, IDR slice
        else:
            assert 5 not in types and 7 not in types
    decoder = av.CodecContext.create("h264", "r")
    picture_types = []
    for unit in units:
        picture_types += [PictureType(frame.pict_type) for frame in decoder.decode(av.Packet(unit.payload))]
    assert PictureType.B not in picture_types and PictureType.I in picture_types


def test_h264_restarts_with_a_keyframe_after_a_resolution_change_or_restart():
    encoder = H264Encoder()
    assert encoder.encode(render_pattern(0, T0, 160, 90), 10)[0].keyframe
    assert not encoder.encode(render_pattern(1, T0, 160, 90), 10)[0].keyframe
    assert encoder.encode(render_pattern(2, T0, 320, 180), 10)[0].keyframe
    assert not encoder.encode(render_pattern(3, T0, 320, 180), 10)[0].keyframe
    encoder.restart()
    assert encoder.encode(render_pattern(4, T0, 320, 180), 10)[0].keyframe
    encoder.close()


def test_make_encoder_refuses_unknown_codecs():
    assert make_encoder("h264").codec == "h264" and make_encoder("jpeg", 50).quality == 50
    with pytest.raises(ValueError):
        make_encoder("vp8")


def test_the_tone_is_100_ms_of_16_khz_mono_s16le_at_440_hz():
    assert AUDIO_HELLO == {"codec": "pcm_s16le", "rate": 16000, "channels": 1}
    tone = ToneGenerator()
    chunks = [tone.next_chunk() for _ in range(10)]
    assert all(len(c) == 1600 * 2 for c in chunks)
    samples = [s for chunk in chunks for (s,) in struct.iter_unpack("<h", chunk)]
    rising = sum(1 for a, b in zip(samples, samples[1:]) if a < 0 <= b)
    assert abs(rising - 440) <= 1  # one second of audio: 440 cycles
    assert 0 < max(samples) < 32767 and min(samples) > -32768


def test_the_tone_continues_without_a_jump_between_chunks():
    tone = ToneGenerator()
    first, second = tone.next_chunk(), tone.next_chunk()
    last = struct.unpack_from("<h", first, len(first) - 2)[0]
    next_ = struct.unpack_from("<h", second, 0)[0]
    largest_step = tone.amplitude * 2 * math.pi * 440 / 16000
    assert abs(next_ - last) <= largest_step + 1


def test_a_missing_file_or_webcam_or_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(SourceUnavailable, match="does not exist"):
        open_source(f"file:{tmp_path / 'nope.mp4'}", 64, 36, 5)
    with pytest.raises(SourceUnavailable, match="no webcam at /dev/video-missing"):
        open_source("v4l2:/dev/video-missing", 64, 36, 5)
    with pytest.raises(SourceUnavailable, match="unknown source"):
        open_source("camera", 64, 36, 5)


def _clip(tmp_path, frames: int = 4, rate: int = 5) -> str:
    """A tiny H.264 clip whose frame i is red level i*60, so frames can be told apart."""
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            image = Image.new("RGB", (96, 64), (i * 60, 0, 0))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return str(path)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _frame_numbers(source: FileSource, clock: FakeClock, captures: int, step: float) -> list[int]:
    """Which clip frame (0..3) each capture showed, with the clock advancing by ``step``."""
    numbers = []
    for _ in range(captures):
        image = source.capture(48, 32, time.time())
        assert image.size == (48, 32)
        numbers.append(round(image.getpixel((24, 16))[0] / 60))
        clock.now += step
    return numbers


def test_a_video_file_source_decodes_scales_and_loops_at_the_clips_own_speed(tmp_path):
    clock = FakeClock()
    source = FileSource(_clip(tmp_path), clock=clock)
    try:
        assert _frame_numbers(source, clock, 9, 0.2) == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    finally:
        source.close()
    assert source.loops == 2


def test_a_video_file_repeats_frames_for_a_faster_agent_and_skips_them_for_a_slower_one(tmp_path):
    clock = FakeClock()
    fast = FileSource(_clip(tmp_path), clock=clock)
    assert _frame_numbers(fast, clock, 8, 0.1) == [0, 0, 1, 1, 2, 2, 3, 3]
    fast.close()
    slow = FileSource(_clip(tmp_path), clock=clock)
    assert _frame_numbers(slow, clock, 4, 0.4) == [0, 2, 0, 2]
    slow.close()


def test_a_video_file_resumes_where_it_was_after_a_long_pause(tmp_path):
    clock = FakeClock()
    source = FileSource(_clip(tmp_path), clock=clock)
    assert _frame_numbers(source, clock, 2, 0.2) == [0, 1]
    clock.now += 60  # disconnected for a minute: no minute of backlog to decode
    assert _frame_numbers(source, clock, 3, 0.2) == [2, 3, 0]
    source.close()


def test_an_empty_video_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceUnavailable):
        FileSource(_clip(tmp_path, frames=0))


class FakeCamera:
    """A frame stream that delivers ``count`` frames at once, then blocks until released
    (a webcam that is faster than the agent, then idles) and then ends or fails."""

    def __init__(self, count: int, failure: Exception | None = None):
        self.count, self.failure = count, failure
        self.delivered = threading.Event()
        self.release = threading.Event()

    def __iter__(self):
        yield from range(1, self.count + 1)
        self.delivered.set()
        self.release.wait(10)
        if self.failure is not None:
            raise self.failure


def _raises_within(call, seconds: float = 5.0) -> SourceUnavailable:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            call()
        except SourceUnavailable as error:
            return error
        time.sleep(0.01)
    raise AssertionError("the source kept delivering")


def test_a_webcam_faster_than_the_agent_hands_out_its_newest_frame_not_a_backlog():
    camera = FakeCamera(50)
    reader = LatestFrame(iter(camera), "webcam /dev/video9")
    try:
        assert camera.delivered.wait(5)
        assert reader.latest() == 50 and reader.latest() == 50
    finally:
        camera.release.set()
    assert "webcam /dev/video9 stopped delivering frames" in str(_raises_within(reader.latest))
    assert reader.stop()


def test_a_webcam_that_fails_or_never_delivers_is_a_clear_error():
    failing = FakeCamera(1, failure=OSError("No such device"))
    reader = LatestFrame(iter(failing), "webcam /dev/video9")
    failing.release.set()
    assert "No such device" in str(_raises_within(reader.latest))

    silent = FakeCamera(0)
    reader = LatestFrame(iter(silent), "webcam /dev/video8", first_frame_timeout=0.2)
    try:
        with pytest.raises(SourceUnavailable, match="no frame within"):
            reader.latest()
    finally:
        silent.release.set()
    assert reader.stop()
