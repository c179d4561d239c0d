"""Applies the retention decisions: gathers facts, deletes in batches, raises the disk alert.

Deletes go in batches of constants.DELETE_BATCH_SIZE: files first (storage
objects, then any spool leftovers), then the rows, so a crash between leaves a
row whose file is gone -- which `manage.py reconcile` reports -- never an
orphan file that retention would no longer see. At most RETENTION_MAX_BATCHES
per run; the next beat run carries on.
"""
from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings

from recordings import alerts, archive, constants, retention
from recordings.models import Segment

log = logging.getLogger(__name__)


def disk_free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


def watched_disk() -> Path:
    """The disk the watermark protects: where the spool and (filesystem) archive live."""
    return Path(settings.SPOOL_DIR)


def archive_on_local_disk() -> bool:
    return not hasattr(archive.recordings_storage(), "bucket_name")


def _facts() -> list[retention.SegmentFacts]:
    rows = Segment.objects.values_list("id", "device_id", "device__organisation_id", "start", "end", "bytes",
                                       "held", "state")
    return [retention.SegmentFacts(*row) for row in rows]


def run_retention(now: datetime | None = None) -> dict:
    from accounts.models import Organisation
    from streams.models import Device

    now = now or datetime.now(timezone.utc)
    facts = _facts()
    days = dict(Device.objects.values_list("id", "retention_days"))
    quotas = dict(Organisation.objects.filter(storage_quota_bytes__gt=0).values_list("id", "storage_quota_bytes"))
    by_age = retention.expired_by_age(facts, days, now)
    by_quota = retention.over_quota(facts, quotas, already=set(by_age))
    chosen = set(by_age) | set(by_quota)
    disk = watched_disk()
    free, watermark = disk_free_bytes(disk), constants.free_disk_watermark_bytes()
    on_disk = facts if archive_on_local_disk() else []
    by_watermark, can_meet = retention.for_watermark(on_disk, free + _bytes_of(facts, chosen, on_disk),
                                                     watermark, already=chosen)
    if free < watermark:
        alerts.raise_storage_alert(free, watermark, str(disk))
        if not can_meet:
            log.error("cannot reach the free-disk watermark by deleting unprotected segments")
    else:
        alerts.clear_storage_alert()
    deleted = delete_segments(by_age + by_quota + by_watermark)
    report = {"age": len(by_age), "quota": len(by_quota), "watermark": len(by_watermark), "deleted": deleted,
              "free_bytes": free, "watermark_bytes": watermark}
    if deleted:
        log.info("retention: %s", report)
    return report


def _bytes_of(facts, ids, on_disk) -> int:
    local = {f.id for f in on_disk}
    return sum(f.bytes for f in facts if f.id in ids and f.id in local)


def delete_segments(ids: list) -> int:
    deleted = 0
    for batch in retention.batches(ids, constants.DELETE_BATCH_SIZE)[: constants.RETENTION_MAX_BATCHES]:
        deleted += delete_batch(batch)
    return deleted


def delete_batch(ids: list) -> int:
    """Delete one batch: storage objects and spool leftovers, then rows (never held ones)."""
    from recordings.pipeline import local_outputs

    rows = list(Segment.objects.filter(pk__in=ids, held=False, state__in=retention.DELETABLE_STATES))
    for segment in rows:
        archive.delete_keys([segment.storage_key, segment.poster_key, segment.strip_key])
        if segment.spool_path:
            for path in local_outputs(segment).values():
                path.unlink(missing_ok=True)
    count, _ = Segment.objects.filter(pk__in=[s.pk for s in rows], held=False).delete()
    return count
