"""Clip export across a change of resolution or encoder settings: every segment is in the clip,
at one picture size, the differing ones re-encoded (letterboxed) and named in the export's record."""
import hashlib
import io
from datetime import timedelta

import av
import pytest

from recordings import archive, avcc, exportplan, exports, pipeline, reencode, synthetic
from recordings.models import ClipExport, Segment
from sightline_agent.protocol import KIND_AUDIO, KIND_H264

T0 = 1_763_700_000_000_000  # 2025-11-21T04:40:00Z
RATE = 16000


def _ready(segment):
    for step in (pipeline.transcode_segment, pipeline.make_thumbnails, pipeline.archive_segment):
        step(segment.id)
    return Segment.objects.get(pk=segment.id)


def jpeg_segment(device, index, width, height, frames=20, seq=0, rate=RATE):
    """A 2-s, 10-fps JPEG segment starting at T0 + index * 2 s, with PCM audio: one 100-ms chunk a frame.
    (Also used by tests/browser/test_export_reencoded_clip.py.)"""
    items = []
    t0 = T0 + index * 2_000_000
    for i, f in enumerate(synthetic.jpeg_frames(frames, t0, width=width, height=height, start_seq=seq)):
        items.append(f)
        chunk = synthetic.pcm_chunk(rate // 10, rate=rate, start_sample=(index * 20 + i) * (rate // 10))
        items.append(synthetic.frame(KIND_AUDIO, chunk, i, f.header.timestamp_us))
    return _ready(synthetic.write_closed_segment(device, items, audio={"codec": "pcm_s16le", "rate": rate,
                                                                       "channels": 1}))


def export_of(device, user, start, end):
    export = ClipExport.objects.create(device=device, requested_by=user, start=start, end=end)
    assert exports.run_export(export.id) == "done"
    export.refresh_from_db()
    with archive.recordings_storage().open(export.storage_key, "rb") as f:
        data = f.read()
    return export, data


def decode(data):
    import io

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        frames = [(float(frame.time), frame.width, frame.height, frame.to_image().getpixel((2, 2)))
                  for frame in container.decode(video=0)]
        container.seek(0)
        audio = [(float(frame.time), frame.samples) for frame in container.decode(audio=0)]
    return size, frames, audio


@pytest.mark.django_db
def test_an_export_across_a_resolution_change_holds_every_frame_at_one_size_with_the_audio_in_step(
        acme_camera, bob):
    # 4:3 for 2 s, 16:9 (smaller) for 2 s, 4:3 again: the clip is 4:3, the middle letterboxed.
    first = jpeg_segment(acme_camera, 0, 320, 240)
    middle = jpeg_segment(acme_camera, 1, 256, 144, seq=20)
    last = jpeg_segment(acme_camera, 2, 320, 240, seq=40)
    export, data = export_of(acme_camera, bob, first.start, last.end)

    assert hashlib.sha256(data).hexdigest() == export.checksum and len(data) == export.bytes
    size, frames, audio = decode(data)
    assert size == (320, 240) and {(w, h) for _, w, h, _ in frames} == {(320, 240)}
    assert len(frames) == first.frames + middle.frames + last.frames == 60
    times = [t for t, *_ in frames]
    assert times == sorted(times) and times[-1] == pytest.approx(5.9, abs=0.02)
    with av.open(io.BytesIO(data)) as clip:  # the last frame lasts its 0.1 s too: 6 s, not 5.9
        video = clip.streams.video[0]
        assert float(video.duration * video.time_base) == pytest.approx(6.0, abs=0.02)
    # Each frame where the recording put it: 10 fps from 0 to 5.9 s, across both joins.
    assert times == pytest.approx([i / 10 for i in range(60)], abs=0.02)
    # The re-encoded part (2..4 s) has black bars above and below; the copied parts do not.
    bars = [max(rgb) < 40 for t, *_, rgb in frames]
    assert bars == [2.0 <= t < 4.0 for t in times]
    # Sound: each segment's audio begins with its first picture, the re-encoded one's too, and runs on
    # without a hole. (Each segment's last AAC frame is padded to 1024 samples, so it overlaps the
    # next segment's first by 48 ms at 16 kHz: so it is in the segments, copied or re-encoded alike.)
    assert sum(samples for _, samples in audio) / RATE == pytest.approx(6.0 + 3 * 0.048, abs=0.07)
    joins = [next_t for (t, samples), (next_t, _) in zip(audio, audio[1:])
             if abs(next_t - (t + samples / RATE)) > 0.005]
    assert audio[0][0] == pytest.approx(0, abs=0.01) and joins == pytest.approx([2.0, 4.0], abs=0.01)

    report = export.coverage
    assert report["complete"] is True and report["picture"] == [320, 240]
    assert report["segments"] == [str(first.id), str(middle.id), str(last.id)]
    assert report["reencoded"] == [{"id": str(middle.id), "reason": "256x144, the clip is 320x240"}]


@pytest.mark.django_db
def test_an_export_that_begins_inside_a_reencoded_segment_starts_at_its_start(acme_camera, bob):
    first = jpeg_segment(acme_camera, 0, 160, 120)
    jpeg_segment(acme_camera, 1, 320, 240, seq=20)
    jpeg_segment(acme_camera, 2, 320, 240, seq=40)
    start = first.start + timedelta(seconds=1.05)
    export, data = export_of(acme_camera, bob, start, start + timedelta(seconds=4))
    size, frames, _audio = decode(data)
    assert size == (320, 240)
    # From the frame on screen at 1.05 s (the one of 1.0 s) to 5.05 s: 1.0 .. 5.0, 41 frames, 10 fps.
    assert [t for t, *_ in frames] == pytest.approx([i / 10 for i in range(41)], abs=0.02)
    assert [r["id"] for r in export.coverage["reencoded"]] == [str(first.id)]


@pytest.mark.django_db
def test_a_camera_stream_of_the_same_size_but_other_h264_settings_is_reencoded_not_copied(acme_camera, bob):
    copied = [jpeg_segment(acme_camera, n, 160, 120, seq=n * 20) for n in range(2)]
    units = synthetic.h264_access_units(20, gop=10)  # baseline x264, other than the transcoder's high
    t0 = T0 + 4_000_000
    camera = _ready(synthetic.write_closed_segment(acme_camera, [
        synthetic.frame(KIND_H264, au, 40 + i, t0 + i * 100_000, keyframe=key) for i, (au, key) in enumerate(units)]))
    export, data = export_of(acme_camera, bob, copied[0].start, camera.end)
    size, frames, _audio = decode(data)
    assert size == (160, 120) and len(frames) == 60
    assert export.coverage["reencoded"] == [{"id": str(camera.id), "reason": "other H.264 parameters than the clip's"}]


@pytest.mark.django_db
def test_progress_rises_to_the_end_with_a_reencoded_segment_counted_heavier(acme_camera, tmp_path):
    segments = [jpeg_segment(acme_camera, 0, 160, 120), jpeg_segment(acme_camera, 1, 160, 120, seq=20),
                jpeg_segment(acme_camera, 2, 320, 240, seq=40)]
    seen = []
    report = exports.JoinReport()
    written = exports.join_segments(segments, segments[0].start, segments[-1].end, tmp_path / "clip.mp4",
                                    str(tmp_path), seen.append, report)
    assert written == 60 and report.picture == (160, 120) and len(report.reencoded) == 1
    total = 3 + exports.REENCODE_WEIGHT
    assert seen == [exports.REENCODE_WEIGHT / total] + [(exports.REENCODE_WEIGHT + n) / total for n in (1, 2, 3)]


def _part(name, width, height, seconds, params=("a",)):
    return exportplan.Part(segment_id=name, codec="h264", width=width, height=height, pix_fmt="yuv420p",
                           params=params, seconds=seconds)


def test_the_clip_takes_the_shape_that_covers_most_of_the_range():
    parts = [_part("a", 640, 360, 10), _part("b", 1280, 720, 10), _part("c", 640, 360, 10)]
    assert exportplan.choose_output(parts).segment_id == "a"
    assert exportplan.why_reencode(parts[1], parts[0]) == "1280x720, the clip is 640x360"
    assert exportplan.why_reencode(parts[2], parts[0]) is None


def test_between_equal_shares_the_larger_picture_wins_then_the_earlier_segment():
    assert exportplan.choose_output([_part("a", 640, 360, 10), _part("b", 1280, 720, 10)]).segment_id == "b"
    same = [_part("a", 640, 360, 10, ("x",)), _part("b", 640, 360, 10, ("y",))]
    assert exportplan.choose_output(same).segment_id == "a"
    assert exportplan.why_reencode(same[1], same[0]) == "other H.264 parameters than the clip's"


def test_letterboxing_keeps_the_aspect_ratio_in_even_sizes():
    assert reencode.letterbox_size(256, 144, 320, 240) == (320, 180)  # 16:9 in 4:3: bars above and below
    assert reencode.letterbox_size(320, 240, 1280, 720) == (960, 720)  # 4:3 in 16:9: bars at the sides
    assert reencode.letterbox_size(1920, 1080, 1280, 720) == (1280, 720)
    assert reencode.letterbox_size(101, 77, 160, 120) == (156, 120)  # odd sizes rounded down to even


def test_an_avcc_record_parses_builds_and_merges_parameter_sets_under_free_ids():
    record = avcc.parse(bytes.fromhex("0164000affe100176764000aacb41423f2c2000003000200057e401e244d400100"
                                      "0468ef0fcbfdf8f800"))
    assert (record.profile, record.level, record.length_size, len(record.sps), len(record.pps)) == (100, 10, 4, 1, 1)
    assert record.sps_ids() == {0} and avcc.free_sps_id(record) == 1
    assert avcc.parse(avcc.build(record)) == record
    other_level = avcc.parse(avcc.build(avcc.AvcC(100, 0, 11, 4, (record.sps[0][:3] + b"\x0b" + record.sps[0][4:],),
                                                  record.pps, record.tail)))
    assert other_level.signature() == record.signature()  # the level alone does not stop a copy
    assert avcc.merge(record, record) == record
    with pytest.raises(ValueError):
        avcc.merge(record, other_level)  # the same SPS id with other content
