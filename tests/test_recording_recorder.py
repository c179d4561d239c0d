"""The recorder: segments cut by capture time, durable spool, rows closed, device told."""
import os
import time

import pytest

from recordings import constants, lifecycle, recorder, spool, synthetic
from recordings.models import Segment, SegmentState
from sightline_agent.protocol import KIND_AUDIO, KIND_H264, KIND_JPEG

T0 = 1_763_700_000_000_000  # 2025-11-21 capture clock, microseconds


@pytest.fixture
def queued(monkeypatch):
    """Chains the recorder would queue; no broker needed here."""
    ids = []
    monkeypatch.setattr(lifecycle, "queue_processing", lambda segment_id, **send: ids.append(str(segment_id)))
    return ids


@pytest.fixture
def persisted(monkeypatch):
    messages = []
    monkeypatch.setattr(recorder.DeviceRecorder, "_notify_persisted",
                        lambda self, message: messages.append(message))
    return messages


def feed_jpeg(rec, count, fps=10, start_seq=0, t0=T0, jpeg=None):
    for i in range(count):
        payload = jpeg or synthetic.jpeg_frame(i)
        rec.submit(synthetic.frame(KIND_JPEG, payload, start_seq + i, t0 + int(i * 1_000_000 / fps)), time.time())


def make_recorder(device, seconds=2, audio=None):
    rec = recorder.DeviceRecorder(device.id, device.organisation_id, audio=audio, segment_seconds=seconds)
    rec.start()
    return rec


@pytest.mark.django_db(transaction=True)
def test_it_cuts_jpeg_frames_into_segments_of_the_configured_length(acme_camera, queued, persisted):
    rec = make_recorder(acme_camera, seconds=2)
    feed_jpeg(rec, 50, fps=10)  # 5 s of capture time
    rec.close()
    assert rec.join(10)
    segments = list(Segment.objects.order_by("start"))
    assert [s.frames for s in segments] == [20, 20, 10]
    assert all(s.state == SegmentState.CLOSED for s in segments)
    assert [(s.first_seq, s.last_seq) for s in segments] == [(0, 19), (20, 39), (40, 49)]
    assert queued == [str(s.id) for s in segments]
    assert [m["segment_id"] for m in persisted] == queued
    assert persisted[0]["type"] == "segment.persisted" and persisted[0]["frames"] == 20


@pytest.mark.django_db(transaction=True)
def test_spool_paths_are_utc_dated_per_organisation_and_device(acme_camera, queued, persisted):
    from datetime import datetime, timezone

    rec = make_recorder(acme_camera)
    now = time.time()
    feed_jpeg(rec, 3, t0=int(now * 1_000_000))
    rec.close()
    assert rec.join(10)
    segment = Segment.objects.get()
    expected = f"{acme_camera.organisation_id}/{acme_camera.id}/{datetime.fromtimestamp(now, timezone.utc):%Y-%m-%d/%H}/"
    assert expected in segment.spool_path and segment.spool_path.endswith(f"{segment.id}.spool")
    contents = spool.read_spool(segment.spool_path)
    assert len(contents.records) == 3 and contents.torn_bytes == 0
    assert contents.meta["device_id"] == str(acme_camera.id)


@pytest.mark.django_db(transaction=True)
def test_h264_segments_are_cut_only_on_keyframes(acme_camera, queued, persisted):
    units = synthetic.h264_access_units(45, gop=15)  # keyframes at 0, 15, 30
    rec = make_recorder(acme_camera, seconds=1)
    for i, (au, key) in enumerate(units):
        rec.submit(synthetic.frame(KIND_H264, au, i, T0 + i * 100_000, keyframe=key), time.time())
    rec.close()
    assert rec.join(10)
    assert [s.frames for s in Segment.objects.order_by("start")] == [15, 15, 15]
    assert set(Segment.objects.values_list("codec", flat=True)) == {"h264"}


@pytest.mark.django_db(transaction=True)
def test_audio_is_recorded_with_the_video_it_belongs_to(acme_camera, queued, persisted):
    rec = make_recorder(acme_camera, audio={"codec": "pcm_s16le", "rate": 16000, "channels": 1})
    for i in range(10):
        ts = T0 + i * 100_000
        rec.submit(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(i), i, ts), time.time())
        rec.submit(synthetic.frame(KIND_AUDIO, synthetic.pcm_chunk(1600), i, ts), time.time())
    rec.close()
    assert rec.join(10)
    segment = Segment.objects.get()
    assert segment.has_audio and segment.frames == 10


@pytest.mark.django_db(transaction=True)
def test_a_full_queue_drops_frames_for_recording_only_and_counts_them(acme_camera, queued, persisted, monkeypatch):
    monkeypatch.setattr(constants, "QUEUE_MAX_FRAMES", 5)
    rec = recorder.DeviceRecorder(acme_camera.id, acme_camera.organisation_id, segment_seconds=10)
    # Writer not started yet, so nothing drains: the sixth frame on is dropped.
    feed_jpeg(rec, 8)
    assert rec.dropped_frames == 3
    rec.start()
    rec.close()
    assert rec.join(10)
    assert Segment.objects.get().frames == 5


def test_submit_only_queues_and_never_touches_disk_or_database(monkeypatch):
    # The cost of recording is measured in bench/recording_cpu.py; here: submit()
    # on the event loop does no I/O, so a slow disk can never stall the live path.
    def forbidden(*args, **kwargs):
        raise AssertionError("submit() must not do I/O on the event loop")

    monkeypatch.setattr(recorder.os, "writev", forbidden)
    monkeypatch.setattr(recorder.lifecycle, "create_segment", forbidden)
    rec = recorder.DeviceRecorder("d", "o", segment_seconds=10)  # not started: the hand-off alone
    frame = synthetic.frame(KIND_JPEG, b"x" * 60_000, 1, T0)
    for _ in range(5):
        rec.submit(frame, 0.0)
    assert rec.status["queued"] == 5 and rec.dropped_frames == 0


@pytest.mark.django_db(transaction=True)
def test_every_recorder_of_a_process_shares_one_writer_thread(acme, queued, persisted):
    import threading

    from streams.models import Device

    cameras = [Device.objects.create(organisation=acme, name=f"cam {i}") for i in range(3)]
    recs = [make_recorder(camera, seconds=2) for camera in cameras]
    for rec in recs:
        feed_jpeg(rec, 25, fps=10)
    writers = [t for t in threading.enumerate() if t.name == "recorder-writer"]
    for rec in recs:
        rec.close()
    assert all(rec.join(10) for rec in recs)
    assert len(writers) == 1
    assert sorted(Segment.objects.values_list("frames", flat=True)) == [5, 5, 5, 20, 20, 20]


@pytest.mark.django_db(transaction=True)
def test_disk_errors_degrade_recording_and_keep_what_was_durable(acme_camera, queued, persisted, monkeypatch, tmp_path):
    rec = make_recorder(acme_camera, seconds=30)
    feed_jpeg(rec, 5)
    deadline = time.monotonic() + 10
    while Segment.objects.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while rec._writer.synced[0] < 5 and time.monotonic() < deadline:  # one part fsynced
        time.sleep(0.02)
    assert rec._writer.synced[0] == 5
    real_durable = recorder._durable

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recorder, "_durable", failing_fsync)
    feed_jpeg(rec, 5, start_seq=5, t0=T0 + 500_000)
    deadline = time.monotonic() + 10
    while rec.state != "degraded" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rec.state == "degraded" and "No space" in rec.degraded_reason
    monkeypatch.setattr(recorder, "_durable", real_durable)
    rec.close()
    assert rec.join(10)
    # The segment is cut at its last fsync; the frames written after it are written again, next.
    first, second = Segment.objects.order_by("created_at")
    assert (first.state, first.frames, first.last_seq) == (SegmentState.CLOSED, 5, 4)
    assert len(spool.read_spool(first.spool_path).records) == 5
    assert (second.state, second.frames, second.first_seq) == (SegmentState.CLOSED, 5, 5)
    assert [r.header.seq for r in spool.read_spool(second.spool_path).records] == [5, 6, 7, 8, 9]
    assert rec.dropped_frames == 0


@pytest.mark.django_db(transaction=True)
def test_frames_wait_unacknowledged_while_the_spool_disk_is_full_and_are_recorded_in_order_when_space_returns(
        acme_camera, queued, persisted, monkeypatch):
    monkeypatch.setattr(constants, "SPOOL_FULL_PROBE_SECONDS", 0.1)
    free = [1000]
    probes = []
    monkeypatch.setattr(recorder, "_free_spool_bytes", lambda fresh=False: probes.append(fresh) or free[0])
    rec = make_recorder(acme_camera, seconds=30)
    entries = [(f"1-{i}".encode(), b"conn", i + 1) for i in range(10)]
    for i, entry in enumerate(entries):
        rec.submit(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(i), i, T0 + i * 100_000), time.time(), entry)
    assert wait_for(lambda: rec.holding and sum(probes) >= 2)  # probed again, afresh, while full
    assert rec.status["state"] == "degraded" and "nearly full" in rec.status["reason"]
    assert rec.outstanding() and rec.take_durable() == [] and len(rec._queue) == 10
    assert rec.dropped_frames == 0 and not Segment.objects.exists()
    free[0] = 1 << 40
    assert wait_for(lambda: rec.state == "recording" and not rec.holding)
    rec.close()
    assert rec.join(10)
    segment = Segment.objects.get()
    assert [r.header.seq for r in spool.read_spool(segment.spool_path).records] == list(range(10))
    assert (segment.frames, rec.dropped_frames) == (10, 0)
    assert rec.take_durable() == entries  # each acknowledged once, in order


@pytest.mark.django_db(transaction=True)
def test_a_recorder_closed_while_the_spool_stays_full_drops_its_frames_after_the_grace(
        acme_camera, queued, persisted, monkeypatch):
    monkeypatch.setattr(recorder, "_free_spool_bytes", lambda fresh=False: 1000)
    monkeypatch.setattr(recorder, "PENDING_GRACE_SECONDS", 0.3)
    rec = make_recorder(acme_camera)
    entries = [(f"1-{i}".encode(), b"conn", i + 1) for i in range(5)]
    for i, entry in enumerate(entries):
        rec.submit(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(i), i, T0 + i * 100_000), time.time(), entry)
    rec.close()
    assert rec.join(10)
    assert rec.status["state"] == "degraded" and "nearly full" in rec.status["reason"]
    assert rec.dropped_frames == 5 and not Segment.objects.exists()
    assert rec.take_durable() == entries


@pytest.mark.django_db(transaction=True)
def test_a_camera_clock_far_off_is_placed_on_the_receive_clock(acme_camera, queued, persisted):
    rec = make_recorder(acme_camera)
    before = time.time()
    feed_jpeg(rec, 10, t0=1_000_000)  # a camera that believes it is 1970
    rec.close()
    assert rec.join(10)
    segment = Segment.objects.get()
    assert segment.start.timestamp() >= before - 1 and segment.duration == pytest.approx(1.0)
    assert "/1970-01-01/" not in segment.spool_path


@pytest.mark.django_db(transaction=True)
def test_a_full_disk_mid_write_degrades_then_recording_resumes_when_space_is_back(
        acme_camera, queued, persisted, monkeypatch):
    monkeypatch.setattr(constants, "DEGRADED_RETRY_SECONDS", 0.2)
    rec = make_recorder(acme_camera, seconds=30)
    feed_jpeg(rec, 5)
    wait = time.monotonic() + 10
    while not (Segment.objects.exists() and rec._writer.synced[0] == 5) and time.monotonic() < wait:
        time.sleep(0.02)
    real_writev = os.writev

    def disk_full(fd, buffers):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", disk_full)
    feed_jpeg(rec, 5, start_seq=5, t0=T0 + 500_000)
    wait = time.monotonic() + 10
    while rec.state != "degraded" and time.monotonic() < wait:
        time.sleep(0.02)
    assert rec.state == "degraded"
    monkeypatch.setattr(os, "writev", real_writev)
    while time.monotonic() < rec._writer.degraded_until:  # the writer retries after this
        time.sleep(0.01)
    feed_jpeg(rec, 5, start_seq=10, t0=T0 + 1_000_000)
    wait = time.monotonic() + 10
    while rec.state != "recording" and time.monotonic() < wait:
        time.sleep(0.02)
    assert rec.state == "recording"
    rec.close()
    assert rec.join(10)
    first, second = Segment.objects.order_by("created_at")
    assert (first.state, first.frames, first.last_seq) == (SegmentState.CLOSED, 5, 4)  # what was durable
    # The frames of the failed write wait, then lead the next segment: none lost, none twice.
    assert (second.frames, second.first_seq, second.last_seq) == (10, 5, 14)
    assert [r.header.seq for r in spool.read_spool(second.spool_path).records] == list(range(5, 15))
    assert len(spool.read_spool(first.spool_path).records) == 5


@pytest.mark.django_db(transaction=True)
def test_an_h264_recording_starts_at_the_first_keyframe(acme_camera, queued, persisted):
    units = synthetic.h264_access_units(25, gop=10)  # keyframes at 0, 10, 20
    rec = make_recorder(acme_camera, seconds=10)
    for i, (au, key) in enumerate(units[3:], start=3):  # joined mid-GOP
        rec.submit(synthetic.frame(KIND_H264, au, i, T0 + i * 100_000, keyframe=key), time.time())
    rec.close()
    assert rec.join(10)
    segment = Segment.objects.get()
    assert (segment.first_seq, segment.frames) == (10, 15) and rec.dropped_frames == 7


@pytest.mark.django_db(transaction=True)
def test_a_stuck_camera_clock_still_gets_segments_cut_by_wall_time(acme_camera, queued, persisted):
    rec = make_recorder(acme_camera, seconds=0.2)  # max segment: 0.6 s of wall time
    t_end = time.monotonic() + 1.5
    seq = 0
    while time.monotonic() < t_end:
        rec.submit(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(seq), seq, T0), time.time())  # same timestamp
        seq += 1
        time.sleep(0.05)
    rec.close()
    assert rec.join(10)
    segments = list(Segment.objects.order_by("created_at"))
    assert len(segments) >= 2 and sum(s.frames for s in segments) == seq


def test_the_device_is_told_once_when_recording_degrades_and_when_it_recovers(monkeypatch):
    told = []
    monkeypatch.setattr(recorder.DeviceRecorder, "_tell_device", lambda self, message: told.append(message))
    monkeypatch.setattr("recordings.alerts.set_recording_degraded", lambda *a: None)
    monkeypatch.setattr("recordings.alerts.clear_recording_degraded", lambda *a: None)
    rec = recorder.DeviceRecorder("d", "o", segment_seconds=10)  # not started: state changes only
    rec._set_degraded("spool disk full")
    rec._set_degraded("spool disk still full")
    rec._clear_degraded()
    rec._clear_degraded()
    assert told == [
        {"type": "recording.state", "state": "degraded", "reason": "spool disk full"},
        {"type": "recording.state", "state": "recording", "reason": ""},
    ]


@pytest.mark.django_db(transaction=True)
def test_the_spool_is_fsynced_once_per_part_so_a_crash_loses_at_most_one_part(acme_camera, queued, persisted, monkeypatch):
    assert constants.PART_SECONDS <= 1.0  # the crash window docs/recording.md promises
    syncs = []
    monkeypatch.setattr(recorder, "_durable", lambda fd: syncs.append(fd))
    rec = recorder.DeviceRecorder(acme_camera.id, acme_camera.organisation_id, segment_seconds=30)  # not started
    writer = rec._writer
    writer.write_batch([(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(i), i, T0 + i * 100_000), time.time(), None)
                        for i in range(3)])
    start = writer.last_sync
    writer.tick(start + constants.PART_SECONDS * 0.5)
    assert syncs == []  # not yet a whole part
    writer.tick(start + constants.PART_SECONDS)
    assert len(syncs) == 1 and writer.synced[0] == 3  # the part's frames are now durable
    writer.finish_segment()
    assert len(syncs) == 2  # and the segment is made durable again before it is acknowledged


@pytest.mark.django_db(transaction=True)
def test_hand_off_entries_come_back_for_acknowledgement_only_once_their_part_is_fsynced(
        acme_camera, queued, persisted, monkeypatch):
    syncs = []
    monkeypatch.setattr(recorder, "_durable", lambda fd: syncs.append(fd))
    rec = recorder.DeviceRecorder(acme_camera.id, acme_camera.organisation_id, segment_seconds=30)  # not started
    entries = [(f"1-{i}".encode(), b"conn", i + 1) for i in range(3)]
    for i, entry in enumerate(entries):
        rec.submit(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(i), i, T0 + i * 100_000), time.time(), entry)
    rec.submit_marker((b"1-3", b"conn", 4))  # an event after them: acknowledged after them
    rec._step()
    assert syncs == [] and rec.outstanding() and rec.take_durable() == []  # written, not yet durable
    rec._writer.last_sync -= constants.PART_SECONDS
    rec._step()
    assert len(syncs) == 1 and not rec.outstanding()
    assert rec.take_durable() == [*entries, (b"1-3", b"conn", 4)]
    rec.close()
    rec._step()
    assert rec.join(0) and rec.take_durable() == []


@pytest.mark.django_db(transaction=True)
def test_a_frame_dropped_from_a_full_queue_is_still_acknowledged_in_order(acme_camera, queued, monkeypatch):
    monkeypatch.setattr(constants, "QUEUE_MAX_FRAMES", 2)
    rec = recorder.DeviceRecorder(acme_camera.id, acme_camera.organisation_id, segment_seconds=30)
    entries = [(f"1-{i}".encode(), b"conn", i + 1) for i in range(3)]
    for i, entry in enumerate(entries):
        rec.submit(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(i), i, T0 + i * 100_000), time.time(), entry)
    assert rec.dropped_queue_full == 1
    rec.close()
    rec._step()
    assert rec.take_durable() == entries


class DatabaseOutage:
    """The database as the recorder's writer thread sees it: down while `down` is set (other threads,
    such as spool recovery run by a test, still reach it)."""

    def __init__(self, monkeypatch):
        import threading

        from django.db import OperationalError

        self.down = False
        for name in ("create_segment", "close_segment", "fail_segment"):
            real = getattr(lifecycle, name)

            def failing(*args, _real=real, **kwargs):
                if self.down and threading.current_thread().name == "recorder-writer":
                    raise OperationalError("connection to server failed: Connection refused")
                return _real(*args, **kwargs)

            monkeypatch.setattr(lifecycle, name, failing)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.mark.django_db(transaction=True)
def test_segments_recorded_while_the_database_is_down_are_closed_within_seconds_of_its_return(
        acme_camera, queued, persisted, monkeypatch):
    outage = DatabaseOutage(monkeypatch)
    told = []
    monkeypatch.setattr(recorder.DeviceRecorder, "notify_state", lambda self: told.append(self.state))
    rec = make_recorder(acme_camera, seconds=1)
    feed_jpeg(rec, 10)  # 1 s: the first segment, its row made
    assert wait_for(lambda: Segment.objects.count() == 1)
    outage.down = True
    feed_jpeg(rec, 30, start_seq=10, t0=T0 + 1_000_000)  # its close fails; three more segments, no rows
    assert wait_for(lambda: len(rec._writer.pending) == 4)
    assert rec.state == "degraded" and "database unavailable" in rec.degraded_reason
    assert rec.dropped_frames == 0, "frames keep going to the spool while the database is down"
    outage.down = False
    back = time.monotonic()
    assert wait_for(lambda: Segment.objects.filter(state=SegmentState.CLOSED).count() == 3)
    assert time.monotonic() - back < 3.0, "the writer retries the owed rows promptly, not at spool recovery"
    feed_jpeg(rec, 10, start_seq=40, t0=T0 + 4_000_000)
    rec.close()
    assert rec.join(10)
    segments = list(Segment.objects.order_by("start"))
    assert [(s.state, s.frames, s.first_seq) for s in segments] == [
        (SegmentState.CLOSED, 10, 0), (SegmentState.CLOSED, 10, 10), (SegmentState.CLOSED, 10, 20),
        (SegmentState.CLOSED, 10, 30), (SegmentState.CLOSED, 10, 40)]
    assert sorted(queued) == sorted(str(s.id) for s in segments), "each chain queued once"
    assert [m["segment_id"] for m in persisted] == [str(s.id) for s in segments]
    assert told == ["degraded", "recording"] and rec.state == "closed"


@pytest.mark.django_db(transaction=True)
def test_owed_rows_and_spool_recovery_racing_close_each_segment_once(acme_camera, queued, persisted, monkeypatch):
    from datetime import datetime, timedelta, timezone

    from recordings import recovery

    outage = DatabaseOutage(monkeypatch)
    rec = make_recorder(acme_camera, seconds=1)
    feed_jpeg(rec, 10)
    assert wait_for(lambda: Segment.objects.count() == 1)
    outage.down = True
    feed_jpeg(rec, 20, start_seq=10, t0=T0 + 1_000_000)
    rec.close()  # the last segment ends while the database is still down; the recorder waits for it
    assert wait_for(lambda: len(rec._writer.pending) == 3 and rec._writer.file is None)
    # Recovery gets there first: it closes the `recording` row and adopts the two files without a row.
    monkeypatch.setattr(recovery, "requeue_stalled", lambda host, now: 0)  # an hour on, it would queue all again
    report = recovery.recover_spool(now=datetime.now(timezone.utc) + timedelta(hours=1))
    assert (report["closed"], report["adopted"]) == (1, 2)
    outage.down = False
    assert rec.join(10) and not rec._writer.pending
    segments = list(Segment.objects.order_by("start"))
    assert [(s.state, s.frames) for s in segments] == [(SegmentState.CLOSED, 10)] * 3
    assert sorted(queued) == sorted(str(s.id) for s in segments), "no segment closed or queued twice"


@pytest.mark.django_db(transaction=True)
def test_a_write_failing_just_after_a_cut_queues_again_every_frame_not_fsynced_and_acknowledges_each_once(
        acme_camera, queued, persisted, monkeypatch):
    real_writev_all, files, full = recorder._writev_all, [], [True]

    def writev_all(fd, chunks):  # the first segment's file takes everything; then the disk is full
        path = os.readlink(f"/proc/self/fd/{fd}")  # fd numbers are reused: tell the files by name
        if path not in files:
            files.append(path)
        if full[0] and path != files[0] and len(chunks) > 1:  # a later file takes its header, no frame
            raise OSError(28, "No space left on device")
        return real_writev_all(fd, chunks)

    monkeypatch.setattr(recorder, "_writev_all", writev_all)
    rec = recorder.DeviceRecorder(acme_camera.id, acme_camera.organisation_id, segment_seconds=1)  # not started
    entries = [(f"1-{i}".encode(), b"conn", i + 1) for i in range(15)]
    for i, entry in enumerate(entries):  # 10 fps: the cut at frame 10, in the same batch
        rec.submit(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(i), i, T0 + i * 100_000), time.time(), entry)
    rec._step()
    assert rec.holding and rec.state == "degraded"
    assert [frame.header.seq for frame, _, _ in rec._queue] == list(range(10, 15))
    assert rec.take_durable() == entries[:10]
    full[0] = False
    rec._writer.degraded_until = 0.0  # the probe is due
    rec._step()
    rec.close()
    rec._step()
    assert rec.join(0) and rec.take_durable() == entries[10:]
    closed = Segment.objects.filter(state=SegmentState.CLOSED).order_by("start")
    assert [(s.first_seq, s.last_seq, s.frames) for s in closed] == [(0, 9, 10), (10, 14, 5)]
    assert [r.header.seq for r in spool.read_spool(closed[1].spool_path).records] == list(range(10, 15))
    assert rec.dropped_frames == 0
