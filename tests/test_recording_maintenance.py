"""Retention runs, reconcile and spool recovery against a real database and storage."""
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command

from recordings import alerts, archive, constants, lifecycle, pipeline, recovery, retention_run, spool, synthetic
from recordings.models import Segment, SegmentState

T0 = 1_763_700_000_000_000  # 2025-11-21T04:40:00Z
NOW = datetime(2025, 11, 21, 12, 0, tzinfo=timezone.utc)


def archived(device, n, frames=5):
    segment = synthetic.write_closed_segment(device, synthetic.jpeg_frames(frames, T0 + n * 2_000_000,
                                                                           start_seq=n * frames))
    pipeline.transcode_segment(segment.id)
    pipeline.make_thumbnails(segment.id)
    pipeline.archive_segment(segment.id)
    return Segment.objects.get(pk=segment.id)


def age(segment, days):
    Segment.objects.filter(pk=segment.pk).update(start=NOW - timedelta(days=days),
                                                end=NOW - timedelta(days=days) + timedelta(seconds=2))


@pytest.fixture
def queued(monkeypatch):
    """Chains queued after commit (recorded here; no broker in these tests)."""
    ids = []
    monkeypatch.setattr(lifecycle, "queue_processing", lambda segment_id: ids.append(str(segment_id)))
    return ids


@pytest.fixture
def recover(django_capture_on_commit_callbacks):
    def run():
        with django_capture_on_commit_callbacks(execute=True):
            return recovery.recover_spool()
    return run


@pytest.fixture
def plenty_of_disk(monkeypatch):
    monkeypatch.setattr(retention_run, "disk_free_bytes", lambda path: 10**15)


@pytest.mark.django_db
def test_retention_deletes_by_age_but_never_a_held_segment(acme_camera, plenty_of_disk):
    old, held, fresh = archived(acme_camera, 0), archived(acme_camera, 1), archived(acme_camera, 2)
    age(old, 8), age(held, 9), age(fresh, 1)
    Segment.objects.filter(pk=held.pk).update(held=True)
    report = retention_run.run_retention(now=NOW)
    assert report["age"] == 1 and report["deleted"] == 1
    assert set(Segment.objects.values_list("id", flat=True)) == {held.id, fresh.id}
    storage = archive.recordings_storage()
    assert not storage.exists(old.storage_key) and not storage.exists(old.poster_key)
    assert storage.exists(held.storage_key)


@pytest.mark.django_db
def test_retention_keeps_an_organisation_within_its_quota_oldest_first(acme_camera, plenty_of_disk):
    segments = [archived(acme_camera, n) for n in range(4)]
    Segment.objects.filter(pk=segments[0].pk).update(held=True)
    acme = acme_camera.organisation
    acme.storage_quota_bytes = segments[2].bytes + segments[3].bytes + segments[0].bytes
    acme.save()
    report = retention_run.run_retention(now=NOW)
    assert report["quota"] == 1
    assert set(Segment.objects.values_list("id", flat=True)) == {segments[0].id, segments[2].id, segments[3].id}


@pytest.mark.django_db
def test_retention_below_the_disk_watermark_evicts_oldest_and_raises_an_alert(acme_camera, globex_camera,
                                                                             monkeypatch, settings):
    a, b, c = archived(acme_camera, 0), archived(globex_camera, 1), archived(acme_camera, 2)
    Segment.objects.filter(pk=a.pk).update(held=True)
    settings.SIGHTLINE = {**settings.SIGHTLINE, "FREE_DISK_WATERMARK_BYTES": 10_000_000}
    monkeypatch.setattr(retention_run, "disk_free_bytes", lambda path: 10_000_000 - b.bytes // 2)
    try:
        report = retention_run.run_retention(now=NOW)
        assert report["watermark"] == 1
        assert set(Segment.objects.values_list("id", flat=True)) == {a.id, c.id}
        alert = alerts.storage_alert()
        assert alert["watermark_bytes"] == 10_000_000
        monkeypatch.setattr(retention_run, "disk_free_bytes", lambda path: 10**15)
        retention_run.run_retention(now=NOW)
        assert alerts.storage_alert() is None
    finally:
        alerts.clear_storage_alert()


@pytest.mark.django_db
def test_reconcile_lists_and_fixes_orphan_files_and_rows_without_files(acme_camera, capsys):
    kept, lost = archived(acme_camera, 0), archived(acme_camera, 1)
    storage = archive.recordings_storage()
    storage.delete(lost.storage_key)
    storage.save("stray/orphan.mp4", __import__("io").BytesIO(b"nobody's"))
    call_command("reconcile")
    out = capsys.readouterr().out
    assert "file without row: stray/orphan.mp4" in out and f"row without file: segment {lost.id}" in out
    assert storage.exists("stray/orphan.mp4")
    call_command("reconcile", "--fix")
    assert not storage.exists("stray/orphan.mp4")
    assert Segment.objects.get(pk=lost.pk).state == SegmentState.FAILED
    assert Segment.objects.get(pk=kept.pk).state == SegmentState.ARCHIVED
    call_command("reconcile")
    assert "found 0 files without rows, 0 rows without files" in capsys.readouterr().out


def dead_pid():
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)


@pytest.mark.django_db
def test_recovery_closes_a_segment_whose_writer_died_and_cuts_the_torn_tail(acme_camera, queued, recover):
    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(12, T0))
    Segment.objects.filter(pk=segment.pk).update(state=SegmentState.RECORDING, frames=0, end=None,
                                                 writer=f"{constants.host_name()}:{dead_pid()}:abc")
    with open(segment.spool_path, "ab") as f:
        f.write(spool.encode_record(synthetic.frame(1, b"\xff\xd8 half", 99, T0 + 5_000_000), 0.0)[:30])
    report = recover()
    assert report["closed"] == 1 and queued == [str(segment.id)]
    segment.refresh_from_db()
    assert segment.state == SegmentState.CLOSED and segment.frames == 12 and segment.last_seq == 11
    assert spool.read_spool(segment.spool_path).torn_bytes == 0


@pytest.mark.django_db
def test_recovery_leaves_a_live_writers_segment_alone(acme_camera, queued, recover):
    from recordings.recorder import writer_identity

    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(3, T0))
    Segment.objects.filter(pk=segment.pk).update(state=SegmentState.RECORDING, writer=writer_identity())
    assert recover()["closed"] == 0
    assert Segment.objects.get(pk=segment.pk).state == SegmentState.RECORDING


@pytest.mark.django_db
def test_recovery_adopts_a_spool_file_that_has_no_row(acme_camera, queued, recover):
    import os

    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(4, T0))
    path = segment.spool_path
    Segment.objects.filter(pk=segment.pk).delete()
    os.utime(path, (0, 0))  # not a file a live writer just created
    report = recover()
    assert report["adopted"] == 1 and queued == [str(segment.id)]
    adopted = Segment.objects.get(pk=segment.id)
    assert adopted.state == SegmentState.CLOSED and adopted.frames == 4 and adopted.device_id == acme_camera.id


@pytest.mark.django_db
def test_recovery_requeues_segments_that_stopped_moving(acme_camera, queued, recover, monkeypatch):
    from recordings.tasks import archive_task

    archived_later = []
    monkeypatch.setattr(archive_task, "apply_async", lambda args, queue: archived_later.append(args[0]))
    stuck_closed = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(3, T0))
    stuck_ready = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(3, T0 + 1_000_000))
    busy = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(3, T0 + 2_000_000))
    fresh = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(3, T0 + 3_000_000))
    long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    Segment.objects.filter(pk=stuck_closed.pk).update(updated_at=long_ago)
    Segment.objects.filter(pk=stuck_ready.pk).update(state=SegmentState.READY, updated_at=long_ago)
    Segment.objects.filter(pk=busy.pk).update(state=SegmentState.TRANSCODING, updated_at=long_ago,
                                              claimed_at=datetime.now(timezone.utc),
                                              claimed_by=pipeline.worker_identity())
    assert recover()["requeued"] == 2
    assert queued == [str(stuck_closed.id)] and archived_later == [str(stuck_ready.id)]
    assert str(fresh.id) not in queued and str(busy.id) not in queued


@pytest.mark.django_db
def test_the_beat_recovery_task_fans_out_to_every_spool_hosts_queue(acme_camera, monkeypatch, settings):
    from recordings.tasks import recover_spool_task

    sent = []
    monkeypatch.setattr(recover_spool_task, "apply_async", lambda kwargs, queue: sent.append((queue, kwargs)))
    elsewhere = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(2, T0))
    Segment.objects.filter(pk=elsewhere.pk).update(spool_queue="spool.host-b")
    done = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(2, T0 + 1_000_000))
    Segment.objects.filter(pk=done.pk).update(spool_queue="spool.host-c", state=SegmentState.ARCHIVED)
    settings.SIGHTLINE = {**settings.SIGHTLINE, "SPOOL_QUEUE": "spool.host-a"}
    assert recover_spool_task.run() == {"fanned_out_to": ["spool.host-a", "spool.host-b"]}
    assert sent == [("spool.host-a", {"fan_out": False}), ("spool.host-b", {"fan_out": False})]
