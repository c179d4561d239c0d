"""Transcode -> thumbnails -> archive as plain functions: outputs, claims, idempotency."""
import os
import subprocess
import sys

import av
import pytest

from recordings import archive, pipeline, synthetic, transcode
from recordings.models import Segment, SegmentState
from sightline_agent.protocol import KIND_AUDIO, KIND_H264

T0 = 1_763_700_000_000_000


def decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def run_chain(segment_id):
    return (pipeline.transcode_segment(segment_id), pipeline.make_thumbnails(segment_id),
            pipeline.archive_segment(segment_id))


@pytest.mark.django_db
def test_a_jpeg_segment_becomes_an_archived_mp4_with_poster_strip_and_checksum(acme_camera):
    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(30, T0))
    paths = pipeline.local_outputs(segment)
    assert run_chain(segment.id) == ("transcoded", "ready", "archived")
    segment.refresh_from_db()
    assert segment.state == SegmentState.ARCHIVED
    storage = archive.recordings_storage()
    assert storage.exists(segment.storage_key) and storage.exists(segment.poster_key)
    assert storage.exists(segment.strip_key)
    assert segment.storage_key.endswith(f"{acme_camera.id}/2025-11-21/04/{segment.id}.mp4")
    local = storage.path(segment.storage_key)
    assert decoded_frames(local) == 30 == segment.frames
    assert archive.sha256_file(local) == segment.checksum and len(segment.checksum) == 64
    assert segment.bytes == os.path.getsize(local) and 0 < segment.init_bytes < segment.bytes
    assert not any(p.exists() for p in paths.values()), "spool cleaned after the archive was confirmed"


@pytest.mark.django_db
def test_corrupt_jpeg_frames_are_skipped_and_counted_not_fatal(acme_camera):
    frames = synthetic.jpeg_frames(20, T0)
    frames[3].payload = frames[3].payload[: len(frames[3].payload) // 2]  # truncated: no EOI
    frames[7].payload = b"\xff\xd8 not a jpeg at all \xff\xd9"
    frames[11].payload = os.urandom(500)
    segment = synthetic.write_closed_segment(acme_camera, frames)
    run_chain(segment.id)
    segment.refresh_from_db()
    assert segment.state == SegmentState.ARCHIVED and segment.corrupt_frames == 3
    assert decoded_frames(archive.recordings_storage().path(segment.storage_key)) == 17 == segment.frames


@pytest.mark.django_db
def test_a_segment_with_no_decodable_frame_fails_with_a_reason(acme_camera):
    frames = synthetic.jpeg_frames(3, T0)
    for f in frames:
        f.payload = b"garbage"
    segment = synthetic.write_closed_segment(acme_camera, frames)
    assert pipeline.transcode_segment(segment.id) == "failed"
    segment.refresh_from_db()
    assert segment.state == SegmentState.FAILED and "no decodable frame" in segment.failure_reason


def test_variable_frame_rate_keeps_true_capture_timing(tmp_path):
    gaps_ms = [100, 100, 300, 50, 50, 500, 100]
    stamps, t = [T0], T0
    for gap in gaps_ms:
        t += gap * 1000
        stamps.append(t)
    frames = [(ts, synthetic.jpeg_frame(i)) for i, ts in enumerate(stamps)]
    transcode.transcode_jpeg_frames(frames, tmp_path / "vfr.mp4")
    with av.open(str(tmp_path / "vfr.mp4")) as container:
        times = [round(float(f.time) * 1000) for f in container.decode(video=0)]
    assert [b - a for a, b in zip(times, times[1:])] == gaps_ms


def test_output_has_a_keyframe_about_every_second(tmp_path):
    frames = [(T0 + i * 100_000, synthetic.jpeg_frame(i)) for i in range(35)]
    transcode.transcode_jpeg_frames(frames, tmp_path / "k.mp4")
    with av.open(str(tmp_path / "k.mp4")) as container:
        keys = [round(float(p.pts * p.time_base), 1) for p in container.demux(video=0) if p.is_keyframe]
    assert keys == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.django_db
def test_h264_input_is_remuxed_without_reencoding(acme_camera):
    units = synthetic.h264_access_units(20, gop=10)
    frames = [synthetic.frame(KIND_H264, au, i, T0 + i * 100_000, keyframe=key) for i, (au, key) in enumerate(units)]
    segment = synthetic.write_closed_segment(acme_camera, frames)
    run_chain(segment.id)
    segment.refresh_from_db()
    path = archive.recordings_storage().path(segment.storage_key)
    with av.open(path) as container:
        packets = [bytes(p) for p in container.demux(video=0) if p.size]
    assert len(packets) == 20 == segment.frames
    # Same coded pictures: the MP4 holds the camera's NAL units, length-prefixed instead of start codes.
    assert [nal_units_annexb(au) for au, _ in units[1:]] == [nal_units_avcc(p) for p in packets[1:]]


def nal_units_annexb(data: bytes) -> list[bytes]:
    import re

    return [n for n in re.split(b"\x00\x00\x00\x01|\x00\x00\x01", data) if n]


def nal_units_avcc(data: bytes) -> list[bytes]:
    units, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        units.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return units


@pytest.mark.django_db
def test_pcm_audio_is_muxed_as_aac(acme_camera):
    frames = []
    for i, f in enumerate(synthetic.jpeg_frames(20, T0)):
        frames.append(f)
        frames.append(synthetic.frame(KIND_AUDIO, synthetic.pcm_chunk(1600, start_sample=i * 1600), i,
                                      f.header.timestamp_us))
    segment = synthetic.write_closed_segment(acme_camera, frames, audio={"codec": "pcm_s16le", "rate": 16000,
                                                                         "channels": 1})
    run_chain(segment.id)
    segment.refresh_from_db()
    with av.open(archive.recordings_storage().path(segment.storage_key)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in container.decode(audio=0)) > 0
    assert segment.has_audio


@pytest.mark.django_db
def test_a_second_worker_cannot_claim_a_segment_being_transcoded(acme_camera):
    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(5, T0))
    assert pipeline.claim_for_transcode(segment.id)
    assert pipeline.claim_for_transcode(segment.id) is None  # this process is alive: its claim holds
    with pytest.raises(pipeline.AlreadyClaimed):
        pipeline.transcode_segment(segment.id)


@pytest.mark.django_db
def test_a_redelivered_transcode_reclaims_from_a_killed_worker_and_leaves_one_output(acme_camera):
    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(10, T0))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    Segment.objects.filter(pk=segment.id).update(state=SegmentState.TRANSCODING, claim_token="old",
                                                 claimed_by=f"{pipeline.constants.host_name()}:{pid}")
    mp4 = pipeline.local_outputs(segment)["mp4"]
    leftover = mp4.with_name(mp4.name + ".tmp-deadbeef")
    leftover.write_bytes(b"half an mp4")
    assert pipeline.transcode_segment(segment.id) == "transcoded"
    assert not leftover.exists()
    assert sorted(p.name for p in mp4.parent.iterdir() if p.name.startswith(str(segment.id))) == [
        f"{segment.id}.mp4", f"{segment.id}.spool"]
    assert pipeline.transcode_segment(segment.id) == "done"  # running it again changes nothing


@pytest.mark.django_db
def test_running_every_step_twice_gives_the_same_single_result(acme_camera):
    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(10, T0))
    run_chain(segment.id)
    segment.refresh_from_db()
    assert run_chain(segment.id) == ("done", "done", "done")
    again = Segment.objects.get(pk=segment.id)
    assert (again.state, again.checksum, again.storage_key) == (SegmentState.ARCHIVED, segment.checksum,
                                                               segment.storage_key)
    storage = archive.recordings_storage()
    _, files = storage.listdir(os.path.dirname(segment.storage_key))
    assert sorted(f for f in files if f.startswith(str(segment.id))) == [
        f"{segment.id}.mp4", f"{segment.id}.poster.jpg", f"{segment.id}.strip.jpg"]


@pytest.mark.django_db
def test_the_spool_is_kept_when_the_archive_cannot_be_confirmed(acme_camera, monkeypatch):
    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(5, T0))
    pipeline.transcode_segment(segment.id)
    pipeline.make_thumbnails(segment.id)

    def unconfirmed(key, size):
        raise archive.ArchiveNotConfirmed(key)

    monkeypatch.setattr(archive, "confirm_stored", unconfirmed)
    with pytest.raises(archive.ArchiveNotConfirmed):
        pipeline.archive_segment(segment.id)
    segment.refresh_from_db()
    assert segment.state == SegmentState.READY
    assert all(p.exists() for p in pipeline.local_outputs(segment).values())


def test_thumbnail_strip_has_one_tile_per_keyframe_up_to_the_limit(tmp_path):
    from PIL import Image

    from recordings import thumbnails

    frames = [(T0 + i * 100_000, synthetic.jpeg_frame(i, 320, 240)) for i in range(40)]
    transcode.transcode_jpeg_frames(frames, tmp_path / "t.mp4")
    thumbnails.make_thumbnails(tmp_path / "t.mp4", tmp_path / "p.jpg", tmp_path / "s.jpg")
    assert Image.open(tmp_path / "p.jpg").size == (320, 240)
    strip = Image.open(tmp_path / "s.jpg")
    assert strip.height == 54 and strip.width == 72 * 4  # 4 keyframes in 4 s, 72 px wide each


def test_jpeg_directory_entry_point_for_the_benchmark(tmp_path):
    for i in range(12):
        (tmp_path / f"{i:05d}.jpg").write_bytes(synthetic.jpeg_frame(i))
    result = transcode.transcode_jpeg_directory(tmp_path, tmp_path / "out.mp4", fps=12)
    assert result.frames == 12 == decoded_frames(tmp_path / "out.mp4")
    assert abs(result.duration - 1.0) < 0.01


def test_a_failing_frame_source_raises_and_leaves_no_decoder_thread_behind(tmp_path):
    import threading

    def frames():
        for i in range(30):
            if i == 20:
                raise ValueError("camera file vanished")
            yield T0 + i * 100_000, synthetic.jpeg_frame(i)

    with pytest.raises(ValueError, match="vanished"):
        transcode.transcode_jpeg_frames(frames(), tmp_path / "x.mp4")
    assert not [t for t in threading.enumerate() if t.name == "jpeg-decode"]


@pytest.mark.django_db
def test_an_h264_segment_cut_mid_gop_skips_and_counts_the_undecodable_lead(acme_camera):
    units = synthetic.h264_access_units(20, gop=10)
    frames = [synthetic.frame(KIND_H264, au, i, T0 + i * 100_000, keyframe=key)
              for i, (au, key) in enumerate(units)][4:]  # starts 6 pictures before the keyframe at 10
    segment = synthetic.write_closed_segment(acme_camera, frames)
    run_chain(segment.id)
    segment.refresh_from_db()
    assert segment.state == SegmentState.ARCHIVED and segment.corrupt_frames == 6
    assert decoded_frames(archive.recordings_storage().path(segment.storage_key)) == 10 == segment.frames


@pytest.mark.django_db
def test_a_transcode_retried_in_the_same_worker_after_the_database_failed_takes_its_own_claim_over(
        acme_camera, monkeypatch):
    """Found by the multi-host fault suite (PostgreSQL stopped 10 s): the result could not be saved,
    Celery retried in the same worker process, and the retry stopped as AlreadyClaimed against the
    claim of its own earlier attempt, leaving the segment 'transcoding' until the lease ran out."""
    from django.db import OperationalError
    from django.db.models import QuerySet

    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(6, T0))
    real_update = QuerySet.update

    def database_gone(queryset, **fields):
        if "init_bytes" in fields:
            raise OperationalError("connection to server failed")
        return real_update(queryset, **fields)

    monkeypatch.setattr(QuerySet, "update", database_gone)
    with pytest.raises(OperationalError):
        pipeline.transcode_segment(segment.id)
    monkeypatch.setattr(QuerySet, "update", real_update)
    assert Segment.objects.get(pk=segment.id).state == SegmentState.TRANSCODING

    assert pipeline.transcode_segment(segment.id) == "transcoded"  # the retry, same process
    again = Segment.objects.get(pk=segment.id)
    assert again.frames == 6 and again.init_bytes > 0
    assert pipeline.claim_for_transcode(segment.id) is None, "a claim whose run did not fail still holds"
