"""Segment rows as the recorder opens and closes them, and what happens after.

Actions, then events: a segment becomes `closed` in one transaction, the
processing chain is queued only after that commits, and the device hears
`persisted` only after both (docs/recording.md, "State machine"). The recorder
closes with queue=False and sends the chain itself, owing it while Redis does
not answer (recordings/chain_sends.py): `persisted` then means durable, its
processing a few seconds late.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from django.db import transaction

from recordings.models import Segment, SegmentState

log = logging.getLogger(__name__)


def utc_from_us(timestamp_us: int) -> datetime:
    return datetime.fromtimestamp(timestamp_us / 1_000_000, tz=timezone.utc)


def clock_offset_us(capture_us: int, received_at: float) -> int:
    """What to add to capture times to get wall-clock times for the database.

    0 when the camera's clock is sane. A clock more than MAX_CLOCK_SKEW_SECONDS
    off (no NTP, a reset to 1970) would put the segment in the wrong day -- and
    retention would delete it at once -- so its times are shifted onto the
    server's receive clock. The MP4 keeps the camera's spacing either way.
    """
    from recordings.constants import MAX_CLOCK_SKEW_SECONDS

    offset = int(received_at * 1_000_000) - capture_us
    return offset if abs(offset) > MAX_CLOCK_SKEW_SECONDS * 1_000_000 else 0


def create_segment(*, segment_id, device_id, start: datetime, codec: str, has_audio: bool,
                   spool_path: str, spool_host: str, writer: str) -> None:
    from recordings.constants import spool_queue

    Segment.objects.create(
        id=segment_id, device_id=device_id, start=start, codec=codec, has_audio=has_audio,
        spool_path=spool_path, spool_host=spool_host, spool_queue=spool_queue(), writer=writer,
        state=SegmentState.RECORDING,
    )


def close_segment(segment_id, *, end: datetime, frames: int, first_seq: int | None, last_seq: int | None,
                  spool_bytes: int, dropped_frames: int, has_audio: bool, queue: bool = True) -> Segment | None:
    """recording -> closed, then (after commit) queue transcode -> thumbnails -> archive.

    Conditional on the state, so a recovery run and a late writer cannot both
    close it. Returns the closed row, or None if it was not `recording`.
    """
    with transaction.atomic():
        updated = Segment.objects.filter(pk=segment_id, state=SegmentState.RECORDING).update(
            state=SegmentState.CLOSED, end=end, frames=frames, first_seq=first_seq, last_seq=last_seq,
            bytes=spool_bytes, dropped_frames=dropped_frames, has_audio=has_audio, writer="",
            updated_at=datetime.now(timezone.utc),
        )
        if not updated:
            return None
        if queue:
            transaction.on_commit(lambda: queue_processing(segment_id))
    return Segment.objects.get(pk=segment_id)


def fail_segment(segment_id, reason: str, from_states=None) -> bool:
    qs = Segment.objects.filter(pk=segment_id)
    if from_states:
        qs = qs.filter(state__in=from_states)
    return bool(qs.update(state=SegmentState.FAILED, failure_reason=reason[:2000],
                          updated_at=datetime.now(timezone.utc)))


def queue_processing(segment_id, **first_send) -> None:
    """Send the chain to the spool host's queue (the spool is local to it).

    `first_send`: how the first step is sent (apply_async's connection, retry); the
    recorder's writer sends on a connection of its own that never waits on Redis
    (recordings/chain_sends.py)."""
    from celery import chain

    from recordings import constants
    from recordings.tasks import archive_task, thumbnails_task, transcode_task

    sid = str(segment_id)
    queue = constants.spool_queue()
    # The worker sends each later step when the one before succeeds; if Redis is down at that
    # moment Celery tries 3 times in 0.6 s and the segment stays put until spool recovery
    # (minutes). These steps keep trying for about a minute instead, every 2 s at most, so a
    # Redis restart delays them by seconds. The first step does not wait: the recorder's writer
    # sends it with no retry and owes it while Redis is down (recordings/chain_sends.py).
    later = dict(queue=queue, retry=True, retry_policy=constants.CHAIN_PUBLISH_RETRY_POLICY)
    chain(
        transcode_task.si(sid).set(queue=queue),
        thumbnails_task.si(sid).set(**later),
        archive_task.si(sid).set(**later),
    ).apply_async(**first_send)


def _persisted_fields(segment: Segment) -> dict:
    return {
        "segment_id": str(segment.id),
        "start": segment.start.isoformat(),
        "end": segment.end.isoformat() if segment.end else None,
        "frames": segment.frames,
        "first_seq": segment.first_seq,
        "last_seq": segment.last_seq,
    }


def persisted_message(segment: Segment) -> dict:
    """The channel-layer event for streams' device consumer (BRIEF: recorder contract)."""
    return {"type": "segment.persisted", **_persisted_fields(segment)}


# Durable on the server: closed by the recorder (or by recovery) and everything after.
PERSISTED_STATES = (SegmentState.CLOSED, SegmentState.TRANSCODING, SegmentState.READY, SegmentState.ARCHIVED)


def last_persisted(device_id) -> dict | None:
    """The device's latest durable segment, as in a `persisted` message (without "type"), or None.

    For the welcome: `persisted` is sent to whatever connection of the device is
    open when a segment closes, and the segment a disconnect closes has none. The
    consumer reads this after joining the device's group, so every segment closed
    since is either here or in a `persisted` message to the new connection.
    """
    segment = (Segment.objects.filter(device_id=device_id, state__in=PERSISTED_STATES)
               .only("id", "start", "end", "frames", "first_seq", "last_seq").order_by("-start").first())
    return _persisted_fields(segment) if segment is not None else None
