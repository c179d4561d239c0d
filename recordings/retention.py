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


def _candidates(segments) -> list[SegmentFacts]:
    return sorted((s for s in segments if not s.held and s.state in DELETABLE_STATES), key=lambda s: s.start)


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


def over_quota(segments, quotas: dict, already: set = frozenset()) -> list:
    """Oldest-first ids to delete so each organisation fits its quota (0 = unlimited).

    `already` holds ids chosen by an earlier rule; their bytes count as freed.
    Held and in-pipeline segments count against the quota but are never chosen.
    """
    used: dict = {}
    for s in segments:
        if s.id not in already:
            used[s.organisation_id] = used.get(s.organisation_id, 0) + s.bytes
    chosen = []
    for s in _candidates(segments):
        quota = quotas.get(s.organisation_id) or 0
        if s.id in already or quota <= 0 or used.get(s.organisation_id, 0) <= quota:
            continue
        chosen.append(s.id)
        used[s.organisation_id] -= s.bytes
    return chosen


def for_watermark(segments, free_bytes: int, watermark_bytes: int, already: set = frozenset()) -> tuple[list, bool]:
    """(oldest-first ids to delete until free >= watermark, whether it can be met).

    Segments are assumed to free their bytes on the disk in question; the
    caller passes only those that do.
    """
    if watermark_bytes <= 0 or free_bytes >= watermark_bytes:
        return [], True
    chosen, free = [], free_bytes
    for s in _candidates(segments):
        if s.id in already:
            continue
        if free >= watermark_bytes:
            break
        chosen.append(s.id)
        free += s.bytes
    return chosen, free >= watermark_bytes


def batches(ids: list, size: int) -> list[list]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]
