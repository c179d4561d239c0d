"""Crash recovery of the spool on this host.

Run at the start of an ingest process (the first recorder starts it), by the
beat task `recover_spool_task`, and by `manage.py recover_spool`:

1. `recording` rows of this host whose writer is gone (its process is dead,
   or the segment is older than the longest a live writer keeps one open) are
   closed with what the spool holds -- a torn last record is cut off -- and
   queued. The loss is at most the last part (constants.PART_SECONDS) plus the
   recorder's queue at the moment of the crash.
2. Spool files with no row (a crash between creating the file and the row)
   get a row from the file header and are queued the same way.
3. `closed` rows whose chain never ran (a broker outage) are queued again;
   the tasks are idempotent, so a duplicate costs nothing.
"""
from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from django.db import IntegrityError, transaction

from recordings import constants, lifecycle, spool
from recordings.models import Segment, SegmentState

log = logging.getLogger(__name__)

GRACE_SECONDS = 60  # beyond the longest segment before an old `recording` row counts as abandoned
REQUEUE_CLOSED_AFTER_SECONDS = 300


def pid_alive(pid: int) -> bool:
    """True if a process with this pid runs. A zombie (killed, not yet reaped --
    common in containers whose PID 1 reaps lazily) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def process_gone(identity: str, host: str) -> bool:
    """identity is host:pid[:run]; True when that process is certainly not running."""
    parts = identity.split(":")
    if len(parts) < 2 or parts[0] != host:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return True
    if pid == os.getpid():
        from recordings.recorder import RUN_ID

        return len(parts) > 2 and parts[2] != RUN_ID
    return not pid_alive(pid)


def writer_gone(segment: Segment, host: str, now: datetime) -> bool:
    if not segment.writer or process_gone(segment.writer, host):
        return True
    longest = timedelta(seconds=constants.max_segment_seconds() + constants.segment_seconds() + GRACE_SECONDS)
    return segment.created_at < now - longest


def summarise(contents: spool.SpoolContents) -> dict:
    video = [r for r in contents.records if r.header.kind in (1, 2)]
    audio = any(r.header.kind == 3 for r in contents.records)
    if not video:
        return {"frames": 0}
    first, last = video[0].header, video[-1].header
    offset = int(contents.meta.get("clock_offset_us") or 0)
    interval = (last.timestamp_us - first.timestamp_us) // (len(video) - 1) if len(video) > 1 else 100_000
    return {"frames": len(video), "first_seq": first.seq, "last_seq": last.seq, "has_audio": audio,
            "start": lifecycle.utc_from_us(first.timestamp_us + offset),
            "end": lifecycle.utc_from_us(last.timestamp_us + max(interval, 1) + offset)}


def close_abandoned(segment: Segment) -> str:
    """Close one abandoned `recording` row from its spool file; returns what happened."""
    path = Path(segment.spool_path)
    try:
        torn = spool.truncate_torn_tail(path)
        contents = spool.read_spool(path)
    except (OSError, spool.SpoolFormatError) as exc:
        lifecycle.fail_segment(segment.id, f"spool unreadable after crash: {exc}", [SegmentState.RECORDING])
        return "failed"
    info = summarise(contents)
    if not info["frames"]:
        lifecycle.fail_segment(segment.id, "crash before any frame was durable", [SegmentState.RECORDING])
        path.unlink(missing_ok=True)
        return "failed"
    closed = lifecycle.close_segment(segment.id, end=info["end"], frames=info["frames"], first_seq=info["first_seq"],
                                     last_seq=info["last_seq"], spool_bytes=path.stat().st_size,
                                     dropped_frames=0, has_audio=info["has_audio"])
    log.warning("recovered segment %s: %d frames, %d torn bytes dropped", segment.id, info["frames"], torn)
    return "closed" if closed else "skipped"


def adopt_orphan_file(path: Path) -> str:
    """A spool file with no row: make the row from the file header."""
    from streams.models import Device

    try:
        spool.truncate_torn_tail(path)
        contents = spool.read_spool(path)
        meta = contents.meta
        segment_id = uuid.UUID(meta["segment_id"])
        device = Device.objects.get(pk=meta["device_id"])
    except Exception as exc:
        log.warning("orphan spool file %s cannot be adopted: %s", path, exc)
        return "unadoptable"
    info = summarise(contents)
    if not info["frames"]:
        path.unlink(missing_ok=True)
        return "empty"
    start = info["start"]
    try:
        with transaction.atomic():
            if Segment.objects.filter(pk=segment_id).exists():
                return "skipped"
            lifecycle.create_segment(segment_id=segment_id, device_id=device.id, start=start, codec=meta["codec"],
                                     has_audio=info["has_audio"], spool_path=str(path),
                                     spool_host=constants.host_name(), writer="")
    except IntegrityError:  # its recorder wrote the row it owed in the meantime (recordings/pending_rows.py)
        return "skipped"
    lifecycle.close_segment(segment_id, end=info["end"], frames=info["frames"], first_seq=info["first_seq"],
                            last_seq=info["last_seq"], spool_bytes=path.stat().st_size, dropped_frames=0,
                            has_audio=info["has_audio"])
    return "adopted"


def recover_spool(now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    host = constants.host_name()
    report = {"closed": 0, "failed": 0, "adopted": 0, "requeued": 0}
    for segment in Segment.objects.filter(state=SegmentState.RECORDING, spool_host=host):
        if writer_gone(segment, host, now):
            outcome = close_abandoned(segment)
            report[outcome] = report.get(outcome, 0) + 1
    known = {str(p) for p in Segment.objects.filter(spool_host=host).exclude(spool_path="")
             .values_list("spool_path", flat=True)}
    root = constants.spool_root()
    if root.exists():
        for path in root.rglob(f"*{constants.SPOOL_SUFFIX}"):
            if str(path) not in known and _old_enough(path, now):
                outcome = adopt_orphan_file(path)
                report[outcome] = report.get(outcome, 0) + 1
    report["requeued"] = requeue_stalled(host, now)
    return report


def requeue_stalled(host: str, now: datetime) -> int:
    """Queue again what stopped moving: a lost broker message, or retries that
    gave up while storage or the database was down. The tasks are idempotent."""
    from django.db.models import Q

    from recordings.pipeline import claim_is_abandoned
    from recordings.tasks import archive_task

    stale = now - timedelta(seconds=REQUEUE_CLOSED_AFTER_SECONDS)
    requeued = 0
    rows = Segment.objects.filter(Q(state=SegmentState.CLOSED) | Q(state=SegmentState.TRANSCODING)
                                  | Q(state=SegmentState.READY), spool_host=host, updated_at__lt=stale)
    for segment in rows.only("id", "state", "claimed_by", "claimed_at"):
        if segment.state == SegmentState.READY:
            archive_task.apply_async(args=[str(segment.id)], queue=constants.spool_queue())
        elif segment.state == SegmentState.CLOSED or claim_is_abandoned(segment, now):
            lifecycle.queue_processing(segment.id)
        else:
            continue
        requeued += 1
    return requeued


def spool_queues() -> list[str]:
    """Queues of the hosts that still hold unfinished spool segments (plus this
    process's own, so a host whose rows were all lost still checks its disk)."""
    unfinished = [SegmentState.RECORDING, SegmentState.CLOSED, SegmentState.TRANSCODING, SegmentState.READY]
    queues = set(Segment.objects.filter(state__in=unfinished).exclude(spool_queue="")
                 .order_by().values_list("spool_queue", flat=True).distinct())
    queues.add(constants.spool_queue())
    return sorted(queues)


def _old_enough(path: Path, now: datetime) -> bool:
    """A brand-new file may be a live writer between creating the file and its row."""
    try:
        return path.stat().st_mtime < now.timestamp() - 5
    except OSError:
        return False


def recover_in_thread() -> None:
    from django.db import connection

    try:
        report = recover_spool()
        if any(report.values()):
            log.warning("spool recovery at ingest start: %s", report)
    except Exception:
        log.exception("spool recovery at ingest start failed")
    finally:
        connection.close()
