"""What the Celery tasks do, as plain functions of a segment id.

State machine (docs/recording.md):

    recording -> closed -> transcoding -> ready -> archived
                    \\------------\\----------\\-> failed (with a reason)

Claiming: transcode moves closed -> transcoding with one conditional UPDATE
that also writes a fresh claim token, the claimer's host:pid and the time. A
redelivered task may re-claim a `transcoding` row only if the claimer is
certainly dead (same host, pid gone -- the case after a worker is SIGKILLed)
or its lease (the hard time limit + a margin) ran out. Every later write is
conditional on the token, so a stale worker can never overwrite the winner.
All outputs are written to a temp name and renamed; each step computes only
what is missing, so running any step twice yields one set of outputs.
"""
from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from django.conf import settings
from django.db.models import Q

from recordings import archive, constants, lifecycle, thumbnails, transcode
from recordings.models import Segment, SegmentState
from recordings.recovery import process_gone

log = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{constants.host_name()}:{os.getpid()}"


def local_outputs(segment: Segment) -> dict[str, Path]:
    base = Path(segment.spool_path)
    stem = base.with_suffix("")
    return {"spool": base, "mp4": stem.with_suffix(constants.MP4_SUFFIX),
            "poster": Path(str(stem) + constants.POSTER_SUFFIX), "strip": Path(str(stem) + constants.STRIP_SUFFIX)}


def _lease() -> timedelta:
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + constants.CLAIM_LEASE_MARGIN_SECONDS)


# Claims this process made whose transcode raised (e.g. the database went away before the
# result was saved). Their rows still say "transcoding, claimed by this live process", which
# would make the task's own retry stop as AlreadyClaimed and leave the segment stuck until
# the claim's lease ran out; the retry takes such a claim over instead.
_ENDED_CLAIMS: set[str] = set()


def claim_for_transcode(segment_id) -> str | None:
    """Claim the segment for this worker; the claim token, or None if someone else has it."""
    now = datetime.now(timezone.utc)
    token = uuid.uuid4().hex
    claimable = Q(state=SegmentState.CLOSED) | Q(state=SegmentState.TRANSCODING, claimed_at__lt=now - _lease())
    current = Segment.objects.filter(pk=segment_id).values("state", "claimed_by", "claim_token").first()
    if current and current["state"] == SegmentState.TRANSCODING and process_gone(
            current["claimed_by"], constants.host_name()):
        # Its claimer was killed (same host, pid gone): take over at once. The
        # condition on claimed_by keeps two redeliveries from both taking it.
        claimable |= Q(state=SegmentState.TRANSCODING, claimed_by=current["claimed_by"])
    elif current and current["state"] == SegmentState.TRANSCODING and current["claim_token"] in _ENDED_CLAIMS:
        claimable |= Q(state=SegmentState.TRANSCODING, claim_token=current["claim_token"])
    won = Segment.objects.filter(claimable, pk=segment_id).update(
        state=SegmentState.TRANSCODING, claim_token=token, claimed_by=worker_identity(), claimed_at=now,
        updated_at=now)
    if won and current:
        _ENDED_CLAIMS.discard(current["claim_token"])
    return token if won else None


def claim_is_abandoned(segment: Segment, now: datetime) -> bool:
    """A transcoding claim whose holder is certainly dead or whose lease ran out."""
    if segment.claimed_at is None or segment.claimed_at < now - _lease():
        return True
    return process_gone(segment.claimed_by, constants.host_name())


class AlreadyClaimed(Exception):
    """Another live worker holds the segment; this copy of the chain stops."""


def transcode_segment(segment_id) -> str:
    """closed -> transcoding, write the MP4. Returns what happened."""
    token = claim_for_transcode(segment_id)
    try:
        return _transcode(segment_id, token)
    except BaseException:
        if token:
            _ENDED_CLAIMS.add(token)  # this run is over; a retry in this process may take the claim over
        raise


def _transcode(segment_id, token: str | None) -> str:
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return "gone"
    if token is None:
        if segment.state in (SegmentState.READY, SegmentState.ARCHIVED, SegmentState.FAILED):
            return "done"
        if segment.state == SegmentState.TRANSCODING and segment.init_bytes:
            return "done"  # transcoded, thumbnails pending: let the chain go on
        raise AlreadyClaimed(f"segment {segment_id} is {segment.state}, claimed by {segment.claimed_by}")
    paths = local_outputs(segment)
    if segment.init_bytes and paths["mp4"].exists() and paths["mp4"].stat().st_size == segment.bytes:
        return "done"  # a previous run finished the file; nothing missing
    for stale in paths["mp4"].parent.glob(f"{paths['mp4'].name}.tmp-*"):
        stale.unlink(missing_ok=True)  # left by a killed run
    tmp = paths["mp4"].with_name(f"{paths['mp4'].name}.tmp-{token[:8]}")
    try:
        result = transcode.transcode_spool(paths["spool"], tmp)
    except (transcode.TranscodeError, FileNotFoundError) as exc:
        tmp.unlink(missing_ok=True)
        lifecycle.fail_segment(segment_id, f"transcode: {exc}", [SegmentState.TRANSCODING])
        return "failed"
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, paths["mp4"])
    Segment.objects.filter(pk=segment_id, claim_token=token).update(
        frames=result.frames, corrupt_frames=result.corrupt_frames, has_audio=result.has_audio,
        bytes=result.bytes, init_bytes=result.init_bytes, updated_at=datetime.now(timezone.utc))
    log.info("transcoded segment %s: %d frames, %d corrupt", segment_id, result.frames, result.corrupt_frames)
    return "transcoded"


def make_thumbnails(segment_id) -> str:
    """transcoding (MP4 done) -> ready, after writing poster and strip."""
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return "gone"
    if segment.state != SegmentState.TRANSCODING:
        return "done" if segment.state in (SegmentState.READY, SegmentState.ARCHIVED) else segment.state
    if not segment.init_bytes:
        raise AlreadyClaimed(f"segment {segment_id} is not transcoded yet")
    paths = local_outputs(segment)
    thumbnails.make_thumbnails(paths["mp4"], paths["poster"], paths["strip"])
    Segment.objects.filter(pk=segment_id, state=SegmentState.TRANSCODING).update(
        state=SegmentState.READY, updated_at=datetime.now(timezone.utc))
    return "ready"


def archive_segment(segment_id) -> str:
    """ready -> archived: upload MP4, poster and strip, record SHA-256, confirm,
    then (and only then) clean the spool."""
    segment = Segment.objects.select_related("device").filter(pk=segment_id).first()
    if segment is None:
        return "gone"
    if segment.state != SegmentState.READY:
        return "done" if segment.state == SegmentState.ARCHIVED else segment.state
    paths = local_outputs(segment)
    checksum = archive.sha256_file(paths["mp4"])
    keys = {
        "storage_key": archive.store_file(paths["mp4"], constants.storage_key_for(segment, constants.MP4_SUFFIX)),
        "poster_key": archive.store_file(paths["poster"], constants.storage_key_for(segment, constants.POSTER_SUFFIX)),
        "strip_key": archive.store_file(paths["strip"], constants.storage_key_for(segment, constants.STRIP_SUFFIX)),
    }
    archived = Segment.objects.filter(pk=segment_id, state=SegmentState.READY).update(
        state=SegmentState.ARCHIVED, checksum=checksum, claim_token="", updated_at=datetime.now(timezone.utc),
        **keys)
    if archived:
        for path in paths.values():
            path.unlink(missing_ok=True)
    return "archived" if archived else "done"
