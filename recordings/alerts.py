"""States the owner must see: recording degraded on a device, disk below the watermark.

Kept in the cache (Redis, shared by every process) so the segments API and
/healthz-style pages can show them; also logged at ERROR/WARNING. A cache
outage must not break recording, so every call here swallows cache errors.
"""
from __future__ import annotations

import logging
import time

from django.core.cache import cache

from recordings import constants

log = logging.getLogger(__name__)


def _degraded_key(device_id) -> str:
    return f"recordings:degraded:{device_id}"


def set_recording_degraded(device_id, reason: str) -> None:
    try:
        cache.set(_degraded_key(device_id), {"reason": reason, "since": time.time()},
                  constants.STORAGE_ALERT_TTL_SECONDS)
    except Exception:
        log.warning("cache unavailable; recording-degraded flag for %s not stored", device_id)


def clear_recording_degraded(device_id) -> None:
    try:
        cache.delete(_degraded_key(device_id))
    except Exception:
        pass


def recording_degraded(device_id) -> dict | None:
    try:
        return cache.get(_degraded_key(device_id))
    except Exception:
        return None


def raise_storage_alert(free_bytes: int, watermark: int, path: str) -> None:
    log.error("free disk %d bytes under watermark %d on %s: evicting oldest unprotected segments",
              free_bytes, watermark, path)
    try:
        cache.set(constants.STORAGE_ALERT_CACHE_KEY,
                  {"free_bytes": free_bytes, "watermark_bytes": watermark, "path": path, "at": time.time()},
                  constants.STORAGE_ALERT_TTL_SECONDS)
    except Exception:
        pass


def clear_storage_alert() -> None:
    try:
        cache.delete(constants.STORAGE_ALERT_CACHE_KEY)
    except Exception:
        pass


def storage_alert() -> dict | None:
    try:
        return cache.get(constants.STORAGE_ALERT_CACHE_KEY)
    except Exception:
        return None
