"""Recording end to end in one process: the real device consumer publishes, a real recorder
service (recordings/service.py) subscribed through Redis records, segments land in the spool
and the database, and the device hears `persisted`."""
import asyncio
import time

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async

from recordings import lifecycle, sessions, spool, synthetic
from recordings.models import Segment, SegmentState
from recordings.service import RecorderService
from streams import broadcast, groups, protocol
from streams.models import Device
from tests.live_helpers import HELLO, connect_device, receive_json_of_type, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


@pytest.fixture
def token(device_token):
    return device_token


@pytest.fixture
def queued(monkeypatch, settings):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "SEGMENT_SECONDS": 1}
    ids = []
    monkeypatch.setattr(lifecycle, "queue_processing", lambda segment_id: ids.append(str(segment_id)))
    return ids


@pytest.fixture
def quick_leases(monkeypatch):
    monkeypatch.setattr(sessions, "LEASE_SECONDS", 1)
    monkeypatch.setattr(sessions, "RENEW_SECONDS", 0.2)
    monkeypatch.setattr(sessions, "RECHECK_SECONDS", 0.2)


@pytest_asyncio.fixture
async def start_service():
    running = []

    async def start(**kwargs):
        service = RecorderService(recover_at_start=False, **kwargs)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await asyncio.wait_for(service.ready.wait(), 10)
        running.append((stop, task))

        async def stop_it():
            stop.set()
            await asyncio.wait_for(task, 30)

        service.stop = stop_it
        return service

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)


def jpeg(seq, t0):
    return protocol.encode_frame(protocol.KIND_JPEG, synthetic.jpeg_frame(seq), seq, t0 + seq * 100_000,
                                 keyframe=True)[0]


def rows(device_id):
    return list(Segment.objects.filter(device_id=device_id).order_by("start")
                .values_list("state", "frames", "first_seq", "last_seq", "spool_path", "writer"))


async def all_closed(device_id, count):
    def check():
        found = rows(device_id)
        return found if len(found) == count and all(r[0] == SegmentState.CLOSED for r in found) else None
    return await wait_for(lambda: database_sync_to_async(check)(), timeout=15)


async def test_a_device_streaming_jpeg_is_recorded_and_told_when_each_segment_is_durable(
        token, acme_camera, queued, start_service):
    await start_service(segment_seconds=1)
    device, welcome = await connect_device(token)
    assert welcome["recording"] is True
    t0 = int(time.time() * 1_000_000)
    for seq in range(25):  # 2.5 s of capture time, 1-s segments
        await device.send_to(bytes_data=jpeg(seq, t0))
    first = await receive_json_of_type(device, "persisted", timeout=10)
    second = await receive_json_of_type(device, "persisted", timeout=10)
    assert (first["first_seq"], first["last_seq"], first["frames"]) == (0, 9, 10)
    assert (second["first_seq"], second["last_seq"], second["frames"]) == (10, 19, 10)
    await device.disconnect()  # presence "offline": the recorder closes the last segment now

    closed = await all_closed(acme_camera.pk, 3)
    assert [r[1] for r in closed] == [10, 10, 5]
    assert len(queued) == 3 and queued[0] == first["segment_id"]
    assert len(spool.read_spool(closed[2][4]).records) == 5


async def test_the_device_hears_that_recording_started(token, acme_camera, queued, start_service):
    await start_service(segment_seconds=1)
    device, _ = await connect_device(token)
    await device.send_to(bytes_data=jpeg(0, int(time.time() * 1_000_000)))
    state = await receive_json_of_type(device, "recording", timeout=10)
    assert state == {"type": "recording", "state": "recording", "reason": ""}
    await device.disconnect()


async def test_a_device_with_recording_off_is_not_recorded(token, acme_camera, queued, start_service):
    service = await start_service(segment_seconds=1)
    await database_sync_to_async(Device.objects.filter(pk=acme_camera.pk).update)(recording_policy="off")
    device, welcome = await connect_device(token)
    assert welcome["recording"] is False
    t0 = int(time.time() * 1_000_000)
    for seq in range(5):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_ignored + service.frames_received >= 5 and
                   getattr(service.slots.get(str(acme_camera.pk)), "state", None) == "ignored")
    await device.disconnect()
    assert not await database_sync_to_async(Segment.objects.exists)()


async def test_a_reconnect_ends_the_segment_and_the_next_connection_starts_a_new_one(
        token, acme_camera, queued, start_service):
    await start_service(segment_seconds=30)
    t0 = int(time.time() * 1_000_000)
    device, _ = await connect_device(token)
    for seq in range(4):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await device.disconnect()
    device, _ = await connect_device(token, hello={**HELLO, "audio": None})
    for seq in range(4, 10):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await device.disconnect()
    closed = await all_closed(acme_camera.pk, 2)
    assert [(r[1], r[2], r[3]) for r in closed] == [(4, 0, 3), (6, 4, 9)]


async def test_a_standby_recorder_takes_over_when_the_lease_holder_stops_and_no_frame_is_recorded_twice(
        token, acme_camera, queued, start_service, quick_leases):
    first = await start_service(segment_seconds=30)
    second = await start_service(segment_seconds=30)
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    seq = 0

    async def send(count):
        nonlocal seq
        for _ in range(count):
            await device.send_to(bytes_data=jpeg(seq, t0))
            seq += 1
            await asyncio.sleep(0.02)

    await send(10)
    owner = first if first.status()["recording"] else second
    standby = second if owner is first else first
    assert owner.status()["recording"] == 1 and standby.status()["recording"] == 0
    await owner.stop()  # closes its segment durably and gives the lease back
    await wait_for(lambda: _takes_over(send, standby), timeout=15)  # within the (shortened) lease
    await send(10)
    await device.disconnect()
    closed = await all_closed(acme_camera.pk, 2)
    assert closed[0][2] == 0 and closed[0][3] < closed[1][2]  # the standby starts after the owner ended: nothing twice
    assert closed[1][3] == seq - 1


async def _takes_over(send, standby):
    await send(2)
    return standby.status()["recording"] == 1


async def test_a_recorder_records_only_its_shard(token, acme_camera, queued, start_service):
    device_id = str(acme_camera.pk)
    index = sessions.shard_of(device_id, 2)
    ours = await start_service(segment_seconds=1, shard=(index, 2))
    other = await start_service(segment_seconds=1, shard=(1 - index, 2))
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(3):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: ours.status()["recording"] == 1)
    assert other.frames_received == other.frames_ignored == 0 and not other.slots
    await device.disconnect()


async def test_frames_on_the_channel_that_are_not_frames_are_skipped(acme_camera, start_service):
    service = await start_service(segment_seconds=1)
    client = broadcast.redis_client()
    channel = groups.frames_channel(acme_camera.pk)
    await client.publish(channel, b"\x53\x01\x09" + b"\x00" * 30)  # unknown kind
    await client.publish(channel, b"short")
    await wait_for(lambda: service.frames_ignored == 2)
    assert service.frames_received == 0


async def test_a_recorder_that_loses_its_lease_stops_writing_that_device(
        token, acme_camera, queued, start_service, quick_leases):
    service = await start_service(segment_seconds=30)
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(3):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.status()["recording"] == 1)
    # As if this recorder had stalled past its lease and another one took the device.
    await broadcast.redis_client().set(sessions.lease_key(groups.prefix(), acme_camera.pk), "someone-else")
    await wait_for(lambda: service.status()["recording"] == 0, timeout=5)
    closed = await all_closed(acme_camera.pk, 1)
    assert closed[0][1] == 3
    await device.send_to(bytes_data=jpeg(3, t0))  # the lease is someone else's: not recorded here
    await wait_for(lambda: getattr(service.slots.get(str(acme_camera.pk)), "state", None) == "ignored")
    await device.disconnect()


async def test_a_device_that_goes_silent_is_closed_and_its_lease_given_back(
        token, acme_camera, queued, start_service, quick_leases):
    service = await start_service(segment_seconds=1)  # idle after 3 segment lengths
    device, _ = await connect_device(token)
    await device.send_to(bytes_data=jpeg(0, int(time.time() * 1_000_000)))
    await wait_for(lambda: service.status()["recording"] == 1)
    lease = sessions.lease_key(groups.prefix(), acme_camera.pk)
    assert await broadcast.redis_client().get(lease) == service.identity.encode()
    await wait_for(lambda: not service.slots, timeout=10)
    await wait_for(lambda: _gone(lease), timeout=5)
    await device.disconnect()


async def _gone(key):
    return not await broadcast.redis_client().exists(key)


async def test_a_recorder_whose_redis_subscription_drops_subscribes_again_and_goes_on_recording(
        token, acme_camera, queued, start_service):
    service = await start_service(segment_seconds=30)
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(3):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_received == 3)
    client = broadcast.redis_client()
    ours = [c for c in await client.client_list() if c.get("name") == service.client_name and int(c.get("psub", 0))]
    assert len(ours) == 1
    await client.client_kill_filter(_id=ours[0]["id"])  # the subscription's connection, and only it
    await wait_for(lambda: service.reconnects == 1, timeout=10)
    await wait_for(lambda: service.ready.is_set() and _subscribed(service), timeout=10)
    for seq in range(3, 6):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_received == 6, timeout=10)
    await device.disconnect()
    closed = await all_closed(acme_camera.pk, 1)
    assert closed[0][1:4] == (6, 0, 5)


async def _subscribed(service):
    clients = await broadcast.redis_client().client_list()
    return any(c.get("name") == service.client_name and int(c.get("psub", 0)) for c in clients)


# -- persisted across a reconnect (issue 9, item 13) -------------------------------------------

async def test_a_device_that_disconnects_mid_segment_learns_in_its_next_welcome_what_was_persisted(
        token, acme_camera, queued, start_service):
    service = await start_service(segment_seconds=30)
    device, welcome = await connect_device(token)
    assert welcome["persisted"] is None  # nothing recorded yet
    t0 = int(time.time() * 1_000_000)
    for seq in range(15):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_received == 15)
    await device.disconnect()  # mid-segment: the recorder closes it with no connection there to tell
    closed = await all_closed(acme_camera.pk, 1)
    device, welcome = await connect_device(token)
    segment = await database_sync_to_async(Segment.objects.get)()
    assert welcome["persisted"] == {"segment_id": str(segment.id), "start": segment.start.isoformat(),
                                    "end": segment.end.isoformat(), "frames": 15, "first_seq": 0, "last_seq": 14}
    assert closed[0][1:4] == (15, 0, 14)
    await device.disconnect()


async def test_a_device_that_reconnects_at_once_hears_of_the_segment_its_disconnect_closed(
        token, acme_camera, queued, start_service):
    """Whether the segment closes before the new hello (welcome) or after it (a `persisted` message
    to the new connection), the device learns it: the consumer joins the group, then reads."""
    service = await start_service(segment_seconds=30)
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(8):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_received == 8)
    await device.disconnect()
    device, welcome = await connect_device(token)
    told = welcome["persisted"] or await receive_json_of_type(device, "persisted", timeout=10)
    assert (told["first_seq"], told["last_seq"], told["frames"]) == (0, 7, 8)
    await device.disconnect()
