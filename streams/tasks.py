"""Celery tasks of the live side: thin wrappers over streams/presence.py."""
import logging

from celery import shared_task

from streams import presence

log = logging.getLogger(__name__)


@shared_task(name="streams.mark_stale_devices_offline_task", ignore_result=True,
             autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=3)
def mark_stale_devices_offline_task() -> int:
    changed = presence.mark_stale_devices_offline()
    if changed:
        log.info("marked %d devices offline whose server went away", changed)
    return changed
