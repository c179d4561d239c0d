"""Device presence: online/offline and last seen, without a database write per frame.

The truth while a device is connected is a Redis hash (groups.presence_key)
holding the connection's generation and last-seen time, with a TTL of
dead_after_seconds refreshed at most every TOUCH_INTERVAL. The Device row is
written on connect, on disconnect, and at most every DB_WRITE_INTERVAL, so
lists and the admin stay close without per-frame writes. If a server process
dies, the Redis key expires and readers (snapshot()) see the device offline.

Newest connection wins: each connect takes a generation from INCR; an older
connection that sees a newer generation closes with 4012.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from channels.db import database_sync_to_async

from streams import groups

TOUCH_INTERVAL = 2.0
DB_WRITE_INTERVAL = 30.0
GENERATION_TTL = 7 * 24 * 3600

# Refresh only if the key is ours (or expired: we are still alive); 0 = replaced.
_TOUCH = """
local gen = redis.call('HGET', KEYS[1], 'gen')
if gen and gen ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'last_seen', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
# Delete only if the key is ours: a replaced connection must not mark the device offline.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def presence_event(device_id, online: bool, last_seen: float | None, source: str | None = None) -> dict:
    event = {"type": "presence", "device_id": str(device_id), "online": online, "last_seen": iso(last_seen)}
    if source:
        event["source"] = source  # hello.source.kind of the connection that came online
    return event


class Presence:
    """One device connection's presence. `client` is a redis.asyncio client."""

    def __init__(self, client, device_id, ttl: int):
        self.client = client
        self.device_id = str(device_id)
        self.key = groups.presence_key(device_id)
        self.ttl = int(ttl)
        self.generation: int | None = None
        self._touched_at = 0.0
        self._db_written_at = 0.0

    async def claim(self, now: float, fields: dict | None = None) -> int:
        """Take the next generation and write the hash; `fields` are kept with it for the
        connection's life (the recording session, recordings/sessions.py)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(self.key + ":gen")
            # Only overlapping connections compare generations; a week is ample.
            pipe.expire(self.key + ":gen", GENERATION_TTL)
            self.generation = int((await pipe.execute())[0])
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)  # a replaced connection's fields must not outlive it
            pipe.hset(self.key, mapping={"gen": self.generation, "since": now, "last_seen": now, **(fields or {})})
            pipe.expire(self.key, self.ttl)
            await pipe.execute()
        self._touched_at = now
        return self.generation

    def touch_due(self, now: float) -> bool:
        return now - self._touched_at >= TOUCH_INTERVAL

    async def touch(self, now: float) -> bool:
        """Refresh last_seen; False if a newer connection of the device has taken over."""
        self._touched_at = now
        result = await self.client.eval(_TOUCH, 1, self.key, self.generation, now, self.ttl)
        return bool(result)

    def db_write_due(self, now: float) -> bool:
        return now - self._db_written_at >= DB_WRITE_INTERVAL

    async def write_db(self, online: bool, now: float) -> None:
        self._db_written_at = now
        await database_sync_to_async(_write_device_row)(self.device_id, online, now)

    async def release(self) -> bool:
        """Forget this connection; True if it was still the current one (device now offline)."""
        if self.generation is None:
            return False
        return bool(await self.client.eval(_RELEASE, 1, self.key, self.generation))


def _write_device_row(device_id, online: bool, now: float) -> None:
    from streams.models import Device

    Device.objects.filter(pk=device_id).update(
        online=online, last_seen=datetime.fromtimestamp(now, tz=timezone.utc)
    )


async def snapshot(client, device_ids) -> dict[str, tuple[bool, float | None]]:
    """Live presence of several devices: {id: (online, last_seen unix time or None)}."""
    ids = [str(device_id) for device_id in device_ids]
    if not ids:
        return {}
    async with client.pipeline(transaction=False) as pipe:
        for device_id in ids:
            pipe.hget(groups.presence_key(device_id), "last_seen")
        values = await pipe.execute()
    return {
        device_id: (value is not None, float(value) if value is not None else None)
        for device_id, value in zip(ids, values)
    }


async def sources(client, device_ids) -> dict[str, str | None]:
    """What each connected device streams from (hello.source.kind, kept in the presence hash
    for the connection's life); None when offline or not reported."""
    ids = [str(device_id) for device_id in device_ids]
    if not ids:
        return {}
    async with client.pipeline(transaction=False) as pipe:
        for device_id in ids:
            pipe.hget(groups.presence_key(device_id), "source")
        values = await pipe.execute()
    return {device_id: (value.decode() if isinstance(value, bytes) else value) for device_id, value in zip(ids, values)}


def merge_with_row(device, live: tuple[bool, float | None] | None) -> tuple[bool, str | None]:
    """Presence to show for a Device row: Redis when live, else the row's last_seen."""
    if live and live[0]:
        return True, iso(live[1])
    return False, device.last_seen.isoformat() if device.last_seen else None


def now() -> float:
    return time.time()


_sync_client = None


def snapshot_sync(device_ids) -> dict[str, tuple[bool, float | None]]:
    """snapshot() for sync code (HTTP views)."""
    global _sync_client
    import redis
    from django.conf import settings

    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    ids = [str(device_id) for device_id in device_ids]
    if not ids:
        return {}
    with _sync_client.pipeline(transaction=False) as pipe:
        for device_id in ids:
            pipe.hget(groups.presence_key(device_id), "last_seen")
        values = pipe.execute()
    return {
        device_id: (value is not None, float(value) if value is not None else None)
        for device_id, value in zip(ids, values)
    }


def device_summary(device, live: tuple[bool, float | None] | None, source: str | None = None) -> dict:
    """One device as the wall and GET /api/devices/ show it."""
    online, last_seen = merge_with_row(device, live)
    summary = {
        "id": str(device.pk),
        "name": device.name,
        "online": online,
        "last_seen": last_seen,
        "location": device.location,
        "expected_media": device.expected_media,
    }
    if online and source:
        summary["source"] = source
    return summary


def stale_online_ids(online_ids, live: dict[str, tuple[bool, float | None]]) -> list[str]:
    """Rows flagged online whose Redis presence is gone: their server process died
    (a clean disconnect writes the row itself)."""
    return [str(device_id) for device_id in online_ids if not live.get(str(device_id), (False, None))[0]]


def mark_stale_devices_offline(batch: int = 500) -> int:
    """Clear the row's online flag where Redis says the device is gone; returns how many.
    Runs from Celery beat (streams.mark_stale_devices_offline_task), in batches."""
    from streams.models import Device

    changed = 0
    ids = list(Device.objects.filter(online=True).values_list("pk", flat=True))
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        stale = stale_online_ids(chunk, snapshot_sync(chunk))
        if stale:
            changed += Device.objects.filter(pk__in=stale, online=True).update(online=False)
    return changed
