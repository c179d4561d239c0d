"""Rows left online by a server process that died are set offline from Redis presence."""
import time

import pytest

from streams import groups, presence
from streams.models import Device
from streams.tasks import mark_stale_devices_offline_task


def test_only_rows_without_live_presence_are_stale():
    live = {"a": (True, 1.0), "b": (False, None)}
    assert presence.stale_online_ids(["a", "b", "c"], live) == ["b", "c"]


@pytest.mark.django_db
def test_a_device_whose_server_died_is_marked_offline_and_a_live_one_stays(acme, acme_camera):
    import redis
    from django.conf import settings

    live_camera = Device.objects.create(organisation=acme, name="Still here", online=True)
    Device.objects.filter(pk=acme_camera.pk).update(online=True)  # its server died: no Redis key
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = groups.presence_key(live_camera.pk)
    client.hset(key, mapping={"gen": "1", "last_seen": str(time.time())})
    client.expire(key, 30)
    try:
        assert mark_stale_devices_offline_task() == 1
    finally:
        client.delete(key)
        client.close()
    acme_camera.refresh_from_db()
    live_camera.refresh_from_db()
    assert acme_camera.online is False
    assert live_camera.online is True
