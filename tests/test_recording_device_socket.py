"""Recording end to end in one process: the real device consumer hands frames off, a real
recorder service (recordings/service.py) reading the hand-off streams through Redis records,
segments land in the spool and the database, and the device hears `persisted`."""
import asyncio
import time

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async

from recordings import handoff, lifecycle, sessions, spool, synthetic
from recordings.models import Segment, SegmentState
from recordings.service import RecorderService
from sightline_agent import protocol
from streams import broadcast, groups
from streams.models import Device
from tests.live_helpers import HELLO, connect_device, receive_json_of_type, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


@pytest_asyncio.fixture(autouse=True)
async def fresh_handoff_index():
    """Devices of earlier tests (rows gone) are not this test's recorders' business."""
    prefix = groups.prefix()
    await broadcast.redis_client().delete(*[handoff.index_key(prefix, digit) for digit in "0123456789abcdef"])
    yield


@pytest.fixture
def token(device_token):
    return device_token


@pytest.fixture
def queued(monkeypatch, settings):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "SEGMENT_SECONDS": 1}
    ids = []
    monkeypatch.setattr(lifecycle, "queue_processing", lambda segment_id, **send: ids.append(str(segment_id)))
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


async def test_a_device_with_recording_off_is_not_recorded_nor_kept_in_redis(token, acme_camera, queued, start_service):
    service = await start_service(segment_seconds=1)
    await database_sync_to_async(Device.objects.filter(pk=acme_camera.pk).update)(recording_policy="off")
    device, welcome = await connect_device(token)
    assert welcome["recording"] is False
    viewer_channel = await _frames_seen_live(acme_camera.pk)
    t0 = int(time.time() * 1_000_000)
    for seq in range(5):
        await device.send_to(bytes_data=jpeg(seq, t0))
    assert await _received(viewer_channel, 5)  # live still gets every frame
    await asyncio.sleep(2 * handoff.DISCOVER_SECONDS)
    assert str(acme_camera.pk) not in service.slots and service.frames_received == 0
    assert not await broadcast.redis_client().exists(handoff.stream_key(groups.prefix(), acme_camera.pk))
    await device.disconnect()
    assert not await database_sync_to_async(Segment.objects.exists)()


async def _frames_seen_live(device_id):
    pubsub = broadcast.redis_client().pubsub()
    await pubsub.subscribe(groups.frames_channel(device_id))
    return {"pubsub": pubsub, "frames": 0}


async def _received(seen, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while seen["frames"] < count and time.monotonic() < deadline:
        message = await seen["pubsub"].get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None and message["data"][:1] != b"{":
            seen["frames"] += 1
    await seen["pubsub"].aclose()
    return seen["frames"] >= count


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
    await wait_for(lambda: first.status()["recording"] + second.status()["recording"] == 1)
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


async def test_entries_in_the_stream_that_are_not_frames_are_skipped_and_acknowledged(acme_camera, start_service):
    service = await start_service(segment_seconds=1)
    client, prefix = broadcast.redis_client(), groups.prefix()
    stream = handoff.stream_key(prefix, acme_camera.pk)
    session = handoff.session_field("c0ffee00", sessions.encode_session(acme_camera.organisation_id, None))
    await client.xadd(stream, {"f": b"\x53\x01\x09" + b"\x00" * 30, "s": session, "n": 1})  # unknown kind
    await client.xadd(stream, {"f": b"short", "s": session, "n": 2})
    await client.xadd(stream, {"junk": b"no session, no counter"})
    await client.sadd(handoff.index_key(prefix, handoff.index_digit(acme_camera.pk)), str(acme_camera.pk))
    await wait_for(lambda: service.frames_ignored == 3)
    assert service.frames_received == 0
    await wait_for(lambda: _pending(stream, 0))


async def _last_entry_is(stream, n):
    last = await broadcast.redis_client().xrevrange(stream, count=1)
    return bool(last) and int(last[0][1][b"n"]) == n


async def _pending(stream, count):
    return (await broadcast.redis_client().xpending(stream, handoff.GROUP))["pending"] == count


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


async def test_a_recorder_whose_redis_connection_drops_reads_again_and_loses_nothing_sent_meanwhile(
        token, acme_camera, queued, start_service):
    service = await start_service(segment_seconds=30)
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(3):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_received == 3)
    client = broadcast.redis_client()
    reader = await wait_for(lambda: _blocked_reader(service))
    await client.client_kill_filter(_id=reader["id"])  # the reading connection, and only it
    for seq in range(3, 6):  # sent while the recorder is not reading
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.reconnects == 1, timeout=10)
    await wait_for(lambda: service.frames_received == 6, timeout=10)
    await device.disconnect()
    closed = await all_closed(acme_camera.pk, 1)
    assert closed[0][1:4] == (6, 0, 5)


async def _blocked_reader(service):
    clients = await broadcast.redis_client().client_list()
    found = [c for c in clients if c.get("name") == service.client_name and c.get("cmd") == "xreadgroup"]
    return found[0] if found else None


async def test_frames_sent_while_no_recorder_runs_are_recorded_when_one_starts(
        token, acme_camera, queued, start_service):
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(20):  # no recorder at all
        await device.send_to(bytes_data=jpeg(seq, t0))
    await asyncio.sleep(1)
    service = await start_service(segment_seconds=30)
    await wait_for(lambda: service.frames_received == 20, timeout=10)
    for seq in range(20, 25):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await device.disconnect()
    closed = await all_closed(acme_camera.pk, 1)
    assert closed[0][1:4] == (25, 0, 24)
    assert [r.header.seq for r in spool.read_spool(closed[0][4]).records] == list(range(25))
    assert service.frames_trimmed == 0
    stream = handoff.stream_key(groups.prefix(), acme_camera.pk)
    await wait_for(lambda: _pending(stream, 0))  # acknowledged once durable, and trimmed from Redis
    assert await broadcast.redis_client().xlen(stream) < 25  # approximate trimming: whole nodes


async def test_frames_trimmed_before_any_recorder_read_them_are_counted_and_the_device_is_told(
        token, acme_camera, queued, start_service, settings):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "RECORDING_HANDOFF_SECONDS": 1}  # 30 entries at first
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(60):
        await device.send_to(bytes_data=jpeg(seq, t0))
    stream = handoff.stream_key(groups.prefix(), acme_camera.pk)
    await wait_for(lambda: _last_entry_is(stream, 61))  # the consumer has handed every frame off
    kept = await broadcast.redis_client().xlen(stream)
    assert 30 <= kept < 61
    service = await start_service(segment_seconds=30)
    told = await receive_json_of_type(device, "recording", timeout=10)
    while "trimmed" not in told["reason"]:
        told = await receive_json_of_type(device, "recording", timeout=10)
    assert told["state"] == "degraded"
    await device.disconnect()
    closed = await all_closed(acme_camera.pk, 1)
    # 61 entries: the presence event of the connection, then 60 frames.
    assert service.frames_trimmed == 61 - kept and closed[0][1] == kept
    dropped = await database_sync_to_async(lambda: Segment.objects.get(device=acme_camera).dropped_frames)()
    assert dropped == service.frames_trimmed


async def test_the_ingest_hands_a_frame_off_with_its_live_publish_even_after_redis_lost_the_script(
        acme_camera, monkeypatch):
    monkeypatch.setattr(handoff, "INGEST_SCRIPT_SHA", "0" * 40)  # as after a Redis restart: NOSCRIPT
    session = sessions.encode_session(acme_camera.organisation_id, None)
    publisher = broadcast.IngestPublisher(acme_camera.pk, recording_session=session)
    live = await _frames_seen_live(acme_camera.pk)
    t0 = int(time.time() * 1_000_000)
    for seq in range(3):
        await publisher.frame(jpeg(seq, t0), protocol.KIND_JPEG, True, time.time())
    assert await _received(live, 3)
    client, prefix = broadcast.redis_client(), groups.prefix()
    entries = await client.xrange(handoff.stream_key(prefix, acme_camera.pk))
    assert [int(fields[b"n"]) for _, fields in entries] == [1, 2, 3]
    assert [handoff.frame_position(fields[b"f"])[0] for _, fields in entries] == [0, 1, 2]
    assert handoff.split_session_field(entries[0][1][b"s"])[1] == session.encode()
    assert await client.sismember(handoff.index_key(prefix, handoff.index_digit(acme_camera.pk)), str(acme_camera.pk))
    assert await client.get(groups.keyframe_key(acme_camera.pk)) == jpeg(0, t0)  # stored once a second
    assert 0 < await client.ttl(handoff.stream_key(prefix, acme_camera.pk)) <= handoff.STREAM_TTL_SECONDS


async def test_a_successor_skips_the_pending_frames_its_predecessors_spool_holds_and_records_the_rest_once(
        token, acme_camera, queued, start_service, quick_leases):
    first = await start_service(segment_seconds=30)

    async def crash_before_acknowledging():  # as if killed between the fsync and the XACK
        pass

    first._ack_once = crash_before_acknowledging
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(10):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: first.frames_received == 10, timeout=10)
    await first.stop()  # its segment is closed with frames 0..9, none of them acknowledged
    stream = handoff.stream_key(groups.prefix(), acme_camera.pk)
    assert (await broadcast.redis_client().xpending(stream, handoff.GROUP))["pending"] == 11  # + the event

    second = await start_service(segment_seconds=30)
    await wait_for(lambda: second.status()["recording"] == 1, timeout=10)
    for seq in range(10, 15):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: second.frames_received == 5, timeout=10)
    await device.disconnect()
    closed = await all_closed(acme_camera.pk, 2)
    assert [(r[2], r[3], r[1]) for r in closed] == [(0, 9, 10), (10, 14, 5)]  # nothing twice, nothing missing
    await wait_for(lambda: _pending(stream, 0))


async def test_a_stream_that_expired_under_a_recorder_is_taken_over_afresh_and_nothing_after_is_lost(
        token, acme_camera, queued, start_service):
    service = await start_service(segment_seconds=30)
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(3):
        await device.send_to(bytes_data=jpeg(seq, t0))
    stream = handoff.stream_key(groups.prefix(), acme_camera.pk)
    await wait_for(lambda: service.frames_received == 3)
    await wait_for(lambda: _pending(stream, 0))
    await broadcast.redis_client().delete(stream)  # as if it had expired: its group is gone with it
    for seq in range(3, 6):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_received == 6, timeout=10)
    await device.disconnect()
    closed = await all_closed(acme_camera.pk, 2)
    assert [(r[2], r[3]) for r in closed] == [(0, 2), (3, 5)] and service.frames_trimmed == 0


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


async def test_frames_sent_while_the_spool_disk_is_full_wait_in_the_hand_off_and_are_recorded_once_in_order(
        token, acme_camera, queued, start_service, monkeypatch):
    import errno
    import os

    from recordings import constants, recorder

    monkeypatch.setattr(constants, "SPOOL_FULL_PROBE_SECONDS", 0.2)
    service = await start_service(segment_seconds=30)
    device, _ = await connect_device(token)
    t0 = int(time.time() * 1_000_000)
    for seq in range(5):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_received == 5)
    real_writev, full = os.writev, [True]

    def writev(fd, buffers):  # the spool disk as the fault suite fills it: no byte left
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", writev)
    monkeypatch.setattr(recorder, "_free_spool_bytes", lambda fresh=False: 0 if full[0] else 1 << 40)
    for seq in range(5, 30):
        await device.send_to(bytes_data=jpeg(seq, t0))
    told = await receive_json_of_type(device, "recording", timeout=10)
    while told["state"] != "degraded":
        told = await receive_json_of_type(device, "recording", timeout=10)
    assert "No space" in told["reason"] or "nearly full" in told["reason"]
    await asyncio.sleep(1.5)  # several probes while full
    stream = handoff.stream_key(groups.prefix(), acme_camera.pk)
    left = await broadcast.redis_client().xrange(stream)
    assert len(left) >= 25, "the frames not written stay in the hand-off, unacknowledged"
    full[0] = False
    for seq in range(30, 35):
        await device.send_to(bytes_data=jpeg(seq, t0))
    await wait_for(lambda: service.frames_received == 35, timeout=10)
    await device.disconnect()

    def settled():  # a segment cut before its first fsync holds nothing and is failed
        found = rows(acme_camera.pk)
        return found if all(r[0] in (SegmentState.CLOSED, SegmentState.FAILED) for r in found) else None

    await wait_for(lambda: _pending(stream, 0), timeout=15)
    closed = await wait_for(lambda: database_sync_to_async(settled)(), timeout=15)
    recorded = [r.header.seq for row in closed if row[0] == SegmentState.CLOSED
                for r in spool.read_spool(row[4]).records]
    assert recorded == list(range(35)), "every frame once, in order"
    assert service.frames_trimmed == 0 and service.duplicates_skipped == 0
