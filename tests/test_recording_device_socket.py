"""The recorder contract end to end in one process: the real device consumer feeds the real
recorder, segments land in the spool and the database, and the device hears `persisted`."""
import time

import pytest
from channels.db import database_sync_to_async

from recordings import lifecycle, recorder, spool, synthetic
from recordings.models import Segment, SegmentState
from streams import protocol
from tests.live_helpers import connect_device, receive_json_of_type, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


@pytest.fixture
def token(device_token):
    return device_token


@pytest.fixture
def queued(monkeypatch, settings):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "SEGMENT_SECONDS": 1}
    monkeypatch.setattr(recorder, "_recovery_done", True)  # no background recovery in this process
    ids = []
    monkeypatch.setattr(lifecycle, "queue_processing", lambda segment_id: ids.append(str(segment_id)))
    return ids


async def test_a_device_streaming_jpeg_is_recorded_and_told_when_each_segment_is_durable(token, acme_camera, queued):
    device, welcome = await connect_device(token)
    assert welcome["recording"] is True
    t0 = int(time.time() * 1_000_000)
    for seq in range(25):  # 2.5 s of capture time, 1-s segments
        message = protocol.encode_frame(protocol.KIND_JPEG, synthetic.jpeg_frame(seq), seq, t0 + seq * 100_000,
                                        keyframe=True)[0]
        await device.send_to(bytes_data=message)
    first = await receive_json_of_type(device, "persisted", timeout=10)
    second = await receive_json_of_type(device, "persisted", timeout=10)
    assert (first["first_seq"], first["last_seq"], first["frames"]) == (0, 9, 10)
    assert (second["first_seq"], second["last_seq"], second["frames"]) == (10, 19, 10)
    await device.disconnect()

    def rows():
        return list(Segment.objects.order_by("start").values_list("state", "frames", "spool_path"))

    closed = await wait_for(lambda: database_sync_to_async(
        lambda: (r := rows()) and len(r) == 3 and all(s == SegmentState.CLOSED for s, _, _ in r) and r)(),
        timeout=10)
    assert [frames for _, frames, _ in closed] == [10, 10, 5]  # the last one closed durably on disconnect
    assert len(queued) == 3 and queued[0] == first["segment_id"]
    assert len(spool.read_spool(closed[2][2]).records) == 5


async def test_a_device_with_recording_off_streams_live_only(token, acme_camera, queued):
    acme_camera.recording_policy = "off"
    await database_sync_to_async(acme_camera.save)()
    device, welcome = await connect_device(token)
    assert welcome["recording"] is False
    await device.disconnect()
    assert not await database_sync_to_async(Segment.objects.exists)()


def test_the_first_recorder_of_a_process_starts_spool_recovery_once(acme_camera, monkeypatch):
    calls = []
    monkeypatch.setattr(recorder, "_recovery_done", False)
    monkeypatch.setattr(recorder.recovery, "recover_in_thread", lambda: calls.append(1))
    opened = [recorder.open_recorder(acme_camera, {"type": "hello", "audio": None}) for _ in range(3)]
    for rec in opened:
        rec.close()
        assert rec.join(5)
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:  # it runs in a background thread
        time.sleep(0.01)
    assert calls == [1]
