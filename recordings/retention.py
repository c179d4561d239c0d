"""Retention decisions, pure: which segments to delete, given facts. No disk, no database.

Three rules, applied in this order by retention_run.run_retention():

1. Age: a segment whose end is older than its device's retention_days goes.
2. Quota: while an organisation's recorded bytes exceed its storage_quota_bytes
   (0 = unlimited), its oldest segments go.
3. Watermark: while free disk is below FREE_DISK_WATERMARK_BYTES, the oldest
   segments (any organisation) whose bytes live on that disk go, and an alert
   is raised.

Held segments are never chosen. Only segments at rest are candidates
(archived, or failed); anything still in the pipeline is left alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DELETABLE_STATES = frozenset({"archived", "failed"})


@dataclass(frozen=True, slots=True)
class SegmentFacts:
    id: object
    device_id: object
    organisation_id: object
    start: datetime
    end: datetime | None
    bytes: int
    held: bool
    state: str


def _candidates(segments):
    """Deletable segments in the order given (callers pass them oldest first)."""
    return (s for s in segments if not s.held and s.state in DELETABLE_STATES)


def expired_by_age(segments, retention_days: dict, now: datetime) -> list:
    """Ids whose end (or start) is older than their device's retention_days."""
    chosen = []
    for s in _candidates(segments):
        days = retention_days.get(s.device_id)
        if days is None:
            continue
        if (s.end or s.start) < now - timedelta(days=days):
            chosen.append(s.id)
    return chosen


def usage_by_organisation(segments) -> dict:
    used: dict = {}
    for s in segments:
        used[s.organisation_id] = used.get(s.organisation_id, 0) + s.bytes
    return used


def over_quota(oldest_first, used: dict, quotas: dict, already: set = frozenset()) -> list:
    """Oldest-first ids to delete so each organisation fits its quota (0 = unlimited).

    `used` is each organisation's recorded bytes, held and in-pipeline segments
    included (they count against the quota but are never chosen), and without
    the ids in `already` (chosen by an earlier rule; skipped here). Stops
    reading `oldest_first` as soon as every organisation fits.
    """
    over = {org: used.get(org, 0) - quota for org, quota in quotas.items() if quota and used.get(org, 0) > quota}
    chosen = []
    if not over:
        return chosen
    for s in _candidates(oldest_first):
        if s.organisation_id not in over or s.id in already:
            continue
        chosen.append(s.id)
        over[s.organisation_id] -= s.bytes
        if over[s.organisation_id] <= 0:
            del over[s.organisation_id]
            if not over:
                break
    return chosen


def for_watermark(oldest_first, free_bytes: int, watermark_bytes: int, already: set = frozenset()) -> tuple[list, bool]:
    """(oldest-first ids to delete until free >= watermark, whether it can be met).

    Segments are assumed to free their bytes on the disk in question; the
    caller passes only those that do. `free_bytes` should already count what
    earlier rules free (the ids in `already`, which are skipped here).
    """
    if watermark_bytes <= 0 or free_bytes >= watermark_bytes:
        return [], True
    chosen, free = [], free_bytes
    for s in _candidates(oldest_first):
        if s.id in already:
            continue
        chosen.append(s.id)
        free += s.bytes
        if free >= watermark_bytes:
            break
    return chosen, free >= watermark_bytes


def batches(ids: list, size: int) -> list[list]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]
