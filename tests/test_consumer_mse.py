"""MSE mode of the viewer socket (docs/protocol.md "MSE mode"): fragmented MP4 muxed once per
device per process, the init segment first, fragments that FFmpeg decodes."""
import io
import json

import av
import pytest

from sightline_agent import protocol
from streams import broadcast, fmp4
from sightline_agent.encoders import H264Encoder
from sightline_agent.sources import PatternSource
from tests.live_helpers import (
    HELLO,
    browser_socket,
    connect_device,
    receive_binary,
    receive_json_of_type,
    receive_nothing_but_pings,
    wait_for,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


def h264_messages(count: int, fps: int = 15):
    encoder, source = H264Encoder(), PatternSource()
    start = 1_700_000_000_000_000
    messages = []
    for i in range(count):
        ts = start + i * 1_000_000 // fps
        [frame] = encoder.encode(source.capture(320, 180, ts / 1e6), fps)
        messages.append(protocol.encode_frame(protocol.KIND_H264, frame.payload, i + 1, ts, frame.keyframe)[0])
    encoder.close()
    return messages


async def watch(device, sessionid, mode=None):
    viewer = browser_socket(f"/ws/view/{device.pk}/", sessionid)
    assert (await viewer.connect())[0]
    await receive_json_of_type(viewer, "welcome")
    await wait_for(lambda: str(device.pk) in broadcast.get_hub().feeds)
    if mode:
        await viewer.send_json_to({"type": "subscribe", "mode": mode})
        await wait_for(lambda: broadcast.get_hub().feeds[str(device.pk)].mse is not None)
    return viewer


async def test_an_mse_viewer_gets_an_init_segment_then_fragments_that_decode(sessions, acme_camera, device_token):
    device, _ = await connect_device(device_token, {**HELLO, "codecs": ["h264"]})
    mse = await watch(acme_camera, sessions["viewer"], "mse")
    plain = await watch(acme_camera, sessions["owner"])
    assert (await receive_json_of_type(device, "keyframe"))["type"] == "keyframe"  # asked at subscribe
    frames = h264_messages(16)
    stream, kinds = bytearray(), []
    # One access unit at a time, each fragment read before the next frame is sent: a busy test
    # machine then never makes this viewer "slow" (the outbox drops a slow viewer's frames).
    for index, message in enumerate(frames):
        await device.send_to(bytes_data=message)
        if index == 0:
            described = await receive_json_of_type(mse, "mse")
            assert described["codec"].startswith("avc1.") and (described["width"], described["height"]) == (320, 180)
        for _ in range(2 if index == 0 else 1):  # the init segment comes with the first fragment
            data = await receive_binary(mse)
            kinds.append(data[2])
            stream += data[protocol.HEADER_SIZE:]
    assert set(kinds) == {protocol.KIND_FMP4}
    assert stream[4:8] == b"ftyp"
    with av.open(io.BytesIO(bytes(stream)), format="mp4") as container:
        assert len(list(container.decode(video=0))) == 16
    # The other viewer still gets the device's own H.264 access units, and no MP4.
    for message in frames:
        assert await receive_binary(plain) == message
    for socket in (device, mse, plain):
        await socket.disconnect()


async def test_each_access_unit_is_muxed_once_whatever_the_number_of_mse_viewers(
        monkeypatch, sessions, acme_camera, device_token):
    pushed = []
    original = fmp4.Fmp4Muxer.push
    monkeypatch.setattr(fmp4.Fmp4Muxer, "push", lambda self, *a: pushed.append(1) or original(self, *a))
    device, _ = await connect_device(device_token, {**HELLO, "codecs": ["h264"]})
    viewers = [await watch(acme_camera, sessions[role], "mse") for role in ("owner", "operator", "viewer")]
    for message in h264_messages(5):
        await device.send_to(bytes_data=message)
    for viewer in viewers:
        for _ in range(6):
            await receive_binary(viewer)
    assert len(pushed) == 5
    for socket in (device, *viewers):
        await socket.disconnect()
    assert str(acme_camera.pk) not in broadcast.get_hub().feeds


async def test_a_late_mse_viewer_starts_from_the_cached_keyframe(sessions, acme_camera, device_token):
    device, _ = await connect_device(device_token, {**HELLO, "codecs": ["h264"]})
    early = await watch(acme_camera, sessions["owner"])
    frames = h264_messages(3)
    await device.send_to(bytes_data=frames[0])
    await receive_binary(early)
    late = await watch(acme_camera, sessions["viewer"], "mse")
    await receive_json_of_type(late, "mse")
    init, key = await receive_binary(late), await receive_binary(late)
    assert init[protocol.HEADER_SIZE + 4:protocol.HEADER_SIZE + 8] == b"ftyp"
    assert key[3] & protocol.FLAG_KEYFRAME and key[protocol.HEADER_SIZE + 4:protocol.HEADER_SIZE + 8] == b"moof"
    for socket in (device, early, late):
        await socket.disconnect()


async def test_a_bad_mode_closes_the_socket_with_4007(sessions, acme_camera):
    viewer = await watch(acme_camera, sessions["viewer"])
    await viewer.send_json_to({"type": "subscribe", "mode": "hls"})
    error = await receive_json_of_type(viewer, "error")
    assert error["code"] == protocol.Close.UNEXPECTED_TEXT and "mode" in error["message"]
    await viewer.disconnect()


async def test_a_device_may_not_send_the_server_only_mp4_kind(device_token):
    device, _ = await connect_device(device_token)
    await device.send_to(bytes_data=protocol.encode_frame(protocol.KIND_FMP4, b"moof", 1, 1, True)[0])
    error = await receive_json_of_type(device, "error")
    assert error["code"] == protocol.Close.UNKNOWN_KIND
