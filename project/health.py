"""Health endpoint for load balancers and compose health checks.

GET /healthz -> 200 with {"status": "ok", "checks": {...}} when the database,
Redis and recordings storage all answer; 503 with the failing check otherwise.
"""
import time

from django.db import connection
from django.http import JsonResponse


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_redis():
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _check_storage():
    from django.core.files.storage import storages

    storages["recordings"].exists("healthz-probe")


CHECKS = {"database": _check_database, "redis": _check_redis, "storage": _check_storage}


def health(request):
    results, healthy = {}, True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
        except Exception as exc:  # report, never raise: this page must always answer
            healthy = False
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return JsonResponse({"status": "ok" if healthy else "unhealthy", "checks": results}, status=200 if healthy else 503)
