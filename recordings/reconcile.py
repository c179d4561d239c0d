"""Storage vs database: files nobody points at, rows pointing at nothing."""
from __future__ import annotations

from dataclasses import dataclass, field

from recordings import archive
from recordings.models import ClipExport, Segment, SegmentState


@dataclass
class ReconcileReport:
    orphan_files: list[str] = field(default_factory=list)
    missing_files: list[tuple[str, str]] = field(default_factory=list)


def walk(storage, prefix: str = ""):
    directories, files = storage.listdir(prefix)
    for name in files:
        yield f"{prefix}/{name}" if prefix else name
    for directory in directories:
        yield from walk(storage, f"{prefix}/{directory}" if prefix else directory)


def reconcile(fix: bool = False) -> ReconcileReport:
    storage = archive.recordings_storage()
    report = ReconcileReport()
    known = set()
    for row in Segment.objects.values_list("storage_key", "poster_key", "strip_key"):
        known.update(k for k in row if k)
    known.update(k for k in ClipExport.objects.values_list("storage_key", flat=True) if k)
    for key in walk(storage):
        if key not in known:
            report.orphan_files.append(key)
    for segment_id, key in Segment.objects.filter(state=SegmentState.ARCHIVED).values_list("id", "storage_key"):
        if not key or not storage.exists(key):
            report.missing_files.append((str(segment_id), key))
    if fix:
        archive.delete_keys(report.orphan_files)
        Segment.objects.filter(pk__in=[s for s, _ in report.missing_files]).update(
            state=SegmentState.FAILED, failure_reason="archived file missing from storage (reconcile)")
    return report
