"""What a clip export covers of the range asked, and whether it should wait first. Pure.

An export never says "ready" for less than asked without saying so: it first waits
(up to EXPORT_WAIT_SECONDS) for the segments of its range that are still being
recorded or transcoded, then reports the wall-clock intervals the clip holds and
the ones it lacks, with the reason (docs/recording.md, "Clip export").
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

# Segment states that will become playable: worth waiting for.
PENDING_STATES = frozenset({"recording", "closed", "transcoding"})
# A hole up to this long (between two segments, at the ends) is not a missing part:
# segments are cut between frames, and a clip begins at the keyframe before its start.
GAP_TOLERANCE_SECONDS = 1.0


def should_wait(pending: int, waited_seconds: float, max_wait_seconds: float) -> bool:
    return pending > 0 and waited_seconds < max_wait_seconds


def waiting_progress(ready: int, total: int) -> float:
    """Progress shown while waiting: the first quarter of the bar, by segments ready."""
    return 0.25 * (ready / total) if total else 0.0


def covered_intervals(spans, start: datetime, end: datetime,
                      tolerance: float = GAP_TOLERANCE_SECONDS) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) that `spans` ((start, end) of the exported segments) cover,
    merged across holes of at most `tolerance` seconds."""
    clipped = sorted((max(s, start), min(e, end)) for s, e in spans if e is not None and s < end and e > start)
    merged: list[list[datetime]] = []
    for s, e in clipped:
        if merged and (s - merged[-1][1]).total_seconds() <= tolerance:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def missing_intervals(covered, start: datetime, end: datetime,
                      tolerance: float = GAP_TOLERANCE_SECONDS) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) longer than `tolerance` that `covered` lacks."""
    holes, cursor = [], start
    for s, e in covered:
        if (s - cursor).total_seconds() > tolerance:
            holes.append((cursor, s))
        cursor = max(cursor, e)
    if (end - cursor).total_seconds() > tolerance:
        holes.append((cursor, end))
    return holes


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _clock(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%H:%M:%S")


def describe(spans, start: datetime, end: datetime, *, pending: int = 0, failed: int = 0,
             now: datetime | None = None) -> dict:
    """The coverage report stored with a finished export and returned by its status API."""
    covered = covered_intervals(spans, start, end)
    missing = missing_intervals(covered, start, end)
    covered_seconds = sum((e - s).total_seconds() for s, e in covered)
    requested_seconds = (end - start).total_seconds()
    reasons = []
    if pending:
        reasons.append(f"{pending} segment{'s' if pending != 1 else ''} still being recorded or processed")
    if failed:
        reasons.append(f"{failed} segment{'s' if failed != 1 else ''} failed to process")
    if now is not None and end > now + timedelta(seconds=GAP_TOLERANCE_SECONDS):
        reasons.append("the range goes on past the time of the export")
    if missing and not reasons:
        reasons.append("nothing was recorded then")
    complete = not missing
    note = "" if complete else (
        f"covers {covered_seconds:.1f} s of the {requested_seconds:.1f} s asked"
        + (f" ({', '.join(f'{_clock(s)}–{_clock(e)}' for s, e in covered)} UTC)" if covered else "")
        + f"; missing {', '.join(f'{_clock(s)}–{_clock(e)}' for s, e in missing)} UTC: {'; '.join(reasons)}")
    return {
        "complete": complete,
        "requested_seconds": round(requested_seconds, 3),
        "covered_seconds": round(covered_seconds, 3),
        "covered": [[_iso(s), _iso(e)] for s, e in covered],
        "missing": [[_iso(s), _iso(e)] for s, e in missing],
        "note": note,
    }
