"""Celery tasks: thin wrappers taking ids; the work is in pipeline/retention/exports/recovery.

All tasks are acks_late + reject_on_worker_lost (settings), so a task whose
worker dies is redelivered; the plain functions make a second run harmless.
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from django.db import DatabaseError

from recordings import constants

log = logging.getLogger(__name__)

# Transient: storage or database briefly unreachable. Anything else is a bug or
# bad input and fails the segment with its reason (SegmentTask.on_failure).
try:  # S3 via django-storages: connection errors and 5xx/throttling replies are botocore errors
    from botocore.exceptions import BotoCoreError, ClientError

    _STORAGE_ERRORS: tuple = (BotoCoreError, ClientError)
except ImportError:  # pragma: no cover - boto3 is in requirements.txt
    _STORAGE_ERRORS = ()
TRANSIENT = (OSError, DatabaseError, *_STORAGE_ERRORS)
COMMON = dict(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=constants.RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=constants.MAX_RETRIES,
)


def _fail_segment(task, exc, args):
    from recordings import lifecycle
    from recordings.models import SegmentState

    if args:
        reason = f"{task.name}: {type(exc).__name__}: {exc}"
        lifecycle.fail_segment(args[0], reason, [SegmentState.CLOSED, SegmentState.TRANSCODING, SegmentState.READY])
        log.error("segment %s failed: %s", args[0], reason)


def _on_failure(self, exc, task_id, args, kwargs, einfo):
    if isinstance(exc, TRANSIENT):
        # Storage or database still down after every retry: leave the state as
        # it is (nothing persisted is lost); recovery_task requeues it later.
        log.error("%s for segment %s gave up for now: %s", self.name, args[0] if args else "?", exc)
        return
    _fail_segment(self, exc, args)


def _stop_chain_if_claimed(func, segment_id):
    from recordings.pipeline import AlreadyClaimed

    try:
        return func(segment_id)
    except AlreadyClaimed as exc:
        log.info("%s", exc)
        raise Ignore() from exc  # the claimer's own chain carries on


@shared_task(name="recordings.transcode_task", soft_time_limit=540, time_limit=600, on_failure=_on_failure,
             **COMMON)
def transcode_task(segment_id: str) -> str:
    from recordings import pipeline

    return _stop_chain_if_claimed(pipeline.transcode_segment, segment_id)


@shared_task(name="recordings.thumbnails_task", soft_time_limit=120, time_limit=150, on_failure=_on_failure,
             **COMMON)
def thumbnails_task(segment_id: str) -> str:
    from recordings import pipeline

    return _stop_chain_if_claimed(pipeline.make_thumbnails, segment_id)


@shared_task(name="recordings.archive_task", soft_time_limit=300, time_limit=360, on_failure=_on_failure,
             **{**COMMON, "max_retries": constants.ARCHIVE_MAX_RETRIES})
def archive_task(segment_id: str) -> str:
    from recordings import pipeline

    return pipeline.archive_segment(segment_id)


def _on_export_failure(self, exc, task_id, args, kwargs, einfo):
    from recordings import exports

    if args:
        exports.fail_export(args[0], f"{type(exc).__name__}: {exc}")


@shared_task(name="recordings.export_clip_task", soft_time_limit=900, time_limit=960,
             on_failure=_on_export_failure, **COMMON)
def export_clip_task(export_id: str) -> str:
    from recordings import exports

    # Eager (no broker): a re-queued poll would run at once, in this call; export what is ready.
    eager = bool(export_clip_task.app.conf.task_always_eager)
    try:
        result = exports.run_export(export_id, may_wait=not eager)
        if result == "waiting":  # segments of the range still pending: look again soon, freeing the worker
            export_clip_task.apply_async((export_id,), countdown=constants.EXPORT_POLL_SECONDS)
        return result
    except SoftTimeLimitExceeded:
        exports.fail_export(export_id, "took too long")
        raise


@shared_task(name="recordings.retention_task", soft_time_limit=240, time_limit=300, acks_late=True)
def retention_task() -> dict:
    from recordings import retention_run

    return retention_run.run_retention()


@shared_task(name="recordings.recover_spool_task", soft_time_limit=240, time_limit=300, acks_late=True)
def recover_spool_task(fan_out: bool = True) -> dict:
    """From beat (fan_out): send one local recovery to every spool host's queue,
    since only the host holding a spool can recover it."""
    from recordings import recovery

    if fan_out:
        queues = recovery.spool_queues()
        for queue in queues:
            recover_spool_task.apply_async(kwargs={"fan_out": False}, queue=queue)
        return {"fanned_out_to": queues}
    return recovery.recover_spool()


@shared_task(name="recordings.delete_device_task", bind=True, soft_time_limit=240, time_limit=300, acks_late=True,
             max_retries=constants.DEVICE_DELETE_MAX_RETRIES)
def delete_device_task(self, device_id: str) -> dict:
    """Delete a removed device's recordings, then the device; again later while some are in the pipeline."""
    from recordings import removal

    report = removal.delete_device_recordings(device_id)
    if report["waiting"]:
        raise self.retry(countdown=constants.DEVICE_DELETE_RETRY_SECONDS)
    return report
