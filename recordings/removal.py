"""Removing a device: archive it (recordings kept), or delete it with its recordings.

Archive: the device is disabled (its socket closes, its tokens stop working), hidden
from the wall and the device list, and its recordings stay replayable.

Delete: the device is archived at once (so it disappears and disconnects in the same
request), then delete_device_recordings() -- run by recordings.tasks.delete_device_task --
removes its segments through retention_run.delete_batch (storage objects and spool
leftovers first, then rows), its exports' files, and finally the device row. A segment
still in the pipeline (recording, closed, transcoding, ready) is left until it comes to
rest; the task runs again until none is left. Held segments go too: the owner asked for
the device's recordings to be deleted.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from recordings import archive, constants, retention, retention_run
from recordings.models import ClipExport, Segment

log = logging.getLogger(__name__)


def archive_device(device) -> None:
    """Disable and hide; save() so streams/signals.py disconnects the device after commit."""
    device.enabled = False
    device.archived_at = device.archived_at or timezone.now()
    device.save(update_fields=["enabled", "archived_at"])


def restore_device(device) -> None:
    device.archived_at = None
    device.enabled = True
    device.save(update_fields=["enabled", "archived_at"])


def request_deletion(device, schedule) -> None:
    """Archive now and mark for deletion; `schedule(device_id)` runs after commit (the task)."""
    with transaction.atomic():
        archive_device(device)
        device.deletion_requested_at = timezone.now()
        device.save(update_fields=["deletion_requested_at"])
        device_id = str(device.pk)
        transaction.on_commit(lambda: schedule(device_id))


def delete_device_recordings(device_id) -> dict:
    """Delete what is at rest; delete the device once nothing is left. Safe to run twice.

    Returns {"deleted": n, "waiting": segments still in the pipeline, "device_deleted": bool}.
    """
    from streams.models import Device

    device = Device.objects.filter(pk=device_id, deletion_requested_at__isnull=False).first()
    if device is None:
        return {"deleted": 0, "waiting": 0, "device_deleted": False}
    segments = Segment.objects.filter(device_id=device.pk)
    segments.filter(held=True).update(held=False)
    deleted = 0
    ids = list(segments.filter(state__in=retention.DELETABLE_STATES).values_list("pk", flat=True))
    for batch in retention.batches(ids, constants.DELETE_BATCH_SIZE):
        deleted += retention_run.delete_batch(batch)
    waiting = segments.count()
    if waiting:
        log.info("device %s: %d segment(s) deleted, %d still in the pipeline", device.pk, deleted, waiting)
        return {"deleted": deleted, "waiting": waiting, "device_deleted": False}
    for export in ClipExport.objects.filter(device_id=device.pk).exclude(storage_key=""):
        archive.delete_keys([export.storage_key])
    device.delete()  # tokens, grants and export rows go with it
    log.info("device %s deleted with its recordings (%d segment(s))", device_id, deleted)
    return {"deleted": deleted, "waiting": 0, "device_deleted": True}
