"""Health endpoint for load balancers and compose health checks.

GET /healthz -> 200 {"status": "ok", "checks": {...}} when the database, Redis,
recordings storage and the local spool all answer; otherwise 503
{"status": "unhealthy", "failing": ["redis", ...], "checks": {...}} with each
failing check's error. No login, no session: it is for machines.
"""
import os
import shutil
import time
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_redis():
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _writable_directory(path: Path):
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable")


def _check_storage():
    from django.core.files.storage import FileSystemStorage, storages

    storage = storages["recordings"]
    if isinstance(storage, FileSystemStorage):
        _writable_directory(Path(storage.location))
    else:
        storage.exists("healthz-probe")  # one HEAD request to the bucket


def _check_spool():
    # Segments are written here before they are archived: a read-only spool
    # fails the check. Low free space only warns: below the watermark retention
    # deletes the oldest recordings, below half of it recorders pause, and live
    # view keeps working either way (docs/recording.md, "Retention").
    spool = Path(settings.SPOOL_DIR)
    _writable_directory(spool)
    free = shutil.disk_usage(spool).free
    watermark = settings.SIGHTLINE["FREE_DISK_WATERMARK_BYTES"]
    if free < watermark / 2:
        return {"free_bytes": free, "warning": "below half of FREE_DISK_WATERMARK_BYTES: recording paused"}
    if free < watermark:
        return {"free_bytes": free, "warning": "below FREE_DISK_WATERMARK_BYTES: retention is deleting the oldest recordings"}
    return {"free_bytes": free}


CHECKS = {"database": _check_database, "redis": _check_redis, "storage": _check_storage, "spool": _check_spool}


def run_checks() -> dict:
    results = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            details = check() or {}
            results[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1), **details}
        except Exception as exc:  # report, never raise: this page must always answer
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return results


@never_cache
@require_safe
def health(request):
    results = run_checks()
    failing = [name for name, result in results.items() if not result["ok"]]
    body = {"status": "unhealthy" if failing else "ok", "checks": results}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)
