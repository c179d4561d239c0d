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
from datetime import datetime, timedelta, timezone
from pathlib import Path

from django.conf import settings
from django.db.models import Sum

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


_FACT_FIELDS = ("id", "device_id", "device__organisation_id", "start", "end", "bytes", "held", "state")


def _facts(queryset):
    """SegmentFacts, streamed from the database oldest first."""
    rows = queryset.order_by("start").values_list(*_FACT_FIELDS).iterator(chunk_size=2000)
    return (retention.SegmentFacts(*row) for row in rows)


def _deletable():
    return Segment.objects.filter(held=False, state__in=retention.DELETABLE_STATES)


def _expired_by_age(now: datetime) -> list[retention.SegmentFacts]:
    """Per device, only rows already past that device's retention are read."""
    from streams.models import Device

    expired = []
    for device_id, days in Device.objects.values_list("id", "retention_days"):
        candidates = list(_facts(_deletable().filter(device_id=device_id, start__lt=now - timedelta(days=days))))
        chosen = set(retention.expired_by_age(candidates, {device_id: days}, now))
        expired += [f for f in candidates if f.id in chosen]
    return expired


def _usage(organisation_ids, excluding) -> dict:
    rows = (Segment.objects.filter(device__organisation_id__in=organisation_ids).exclude(pk__in=excluding)
            .order_by().values("device__organisation_id").annotate(total=Sum("bytes")))
    return {row["device__organisation_id"]: row["total"] or 0 for row in rows}


def run_retention(now: datetime | None = None) -> dict:
    from accounts.models import Organisation

    now = now or datetime.now(timezone.utc)
    by_age = _expired_by_age(now)
    age_ids = {f.id for f in by_age}
    quotas = dict(Organisation.objects.filter(storage_quota_bytes__gt=0).values_list("id", "storage_quota_bytes"))
    by_quota = []
    if quotas:
        used = _usage(list(quotas), age_ids)
        over = [org for org, quota in quotas.items() if used.get(org, 0) > quota]
        if over:
            by_quota = retention.over_quota(_facts(_deletable().filter(device__organisation_id__in=over)),
                                            used, quotas, already=age_ids)
    chosen = age_ids | set(by_quota)
    disk = watched_disk()
    free, watermark = disk_free_bytes(disk), constants.free_disk_watermark_bytes()
    by_watermark, can_meet = [], True
    if archive_on_local_disk() and free < watermark:
        freed = sum(f.bytes for f in by_age) + _bytes_of(by_quota)
        by_watermark, can_meet = retention.for_watermark(_facts(_deletable()), free + freed, watermark,
                                                         already=chosen)
    if free < watermark:
        alerts.raise_storage_alert(free, watermark, str(disk))
        if not can_meet or not archive_on_local_disk():
            log.error("cannot reach the free-disk watermark by deleting unprotected segments")
    else:
        alerts.clear_storage_alert()
    deleted = delete_segments([f.id for f in by_age] + by_quota + by_watermark)
    report = {"age": len(by_age), "quota": len(by_quota), "watermark": len(by_watermark), "deleted": deleted,
              "free_bytes": free, "watermark_bytes": watermark}
    if deleted:
        log.info("retention: %s", report)
    return report


def _bytes_of(ids) -> int:
    if not ids:
        return 0
    return Segment.objects.filter(pk__in=list(ids)).aggregate(total=Sum("bytes"))["total"] or 0


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
