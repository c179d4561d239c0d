"""Keyframe requests (docs/protocol.md "keyframe"): the per-device rate decision, the device
consumer relaying requests from the channel layer, and the agent honouring them."""
import asyncio

import pytest
from channels.layers import get_channel_layer

from sightline_agent import protocol
from streams import keyframes
from sightline_agent.encoders import H264Encoder, JpegEncoder
from sightline_agent.sources import PatternSource
from tests.live_helpers import HELLO, connect_device, receive_json_of_type, receive_nothing_but_pings
from test_agent_session import Connection, FakePortal, make_agent, token  # agent/tests (pytest.ini pythonpath)


def test_the_limiter_allows_the_first_request_and_one_per_interval_after():
    limiter = keyframes.KeyframeLimiter(min_interval=0.5)
    assert limiter.allow(100.0)
    assert not limiter.allow(100.1)
    assert not limiter.allow(100.49)
    assert limiter.allow(100.5)
    assert not limiter.allow(100.6)
    assert limiter.dropped == 3


def test_twenty_requests_at_once_reach_the_device_once():
    limiter = keyframes.KeyframeLimiter()
    assert sum(limiter.allow(10.0 + i * 0.001) for i in range(20)) == 1


def test_a_clock_that_went_backwards_does_not_block_requests_forever():
    limiter = keyframes.KeyframeLimiter(min_interval=0.5)
    assert limiter.allow(100.0)
    assert limiter.allow(50.0)


def test_only_h264_devices_get_keyframe_requests():
    assert keyframes.wants_keyframe_requests(["h264"])
    assert not keyframes.wants_keyframe_requests(["jpeg"])
    assert not keyframes.wants_keyframe_requests(None)


def test_the_h264_encoder_emits_an_idr_when_asked_mid_gop():
    encoder = H264Encoder()
    image = PatternSource().capture(160, 90, 0.0)
    flags = []
    for i in range(8):
        [frame] = encoder.encode(image, 15, force_keyframe=(i == 4))
        flags.append(frame.keyframe)
        if i == 4:
            assert b"\x00\x00\x01\x67" in frame.payload or b"\x00\x00\x00\x01\x67" in frame.payload  # SPS in-band
            assert any(nal & 0x1F == 5 for nal in _nal_types(frame.payload))  # an IDR slice
    encoder.close()
    assert flags == [True, False, False, False, True, False, False, False]


def test_a_jpeg_encoder_accepts_the_request_and_every_image_stays_a_keyframe():
    [frame] = JpegEncoder().encode(PatternSource().capture(64, 36, 0.0), 10, force_keyframe=True)
    assert frame.keyframe


def _nal_types(payload: bytes):
    parts = payload.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
    return [p[0] for p in parts if p]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_requests_through_the_device_group_reach_an_h264_device_once_per_interval(device_token, acme_camera):
    device, _ = await connect_device(device_token, {**HELLO, "codecs": ["h264"]})
    layer = get_channel_layer()
    for _ in range(5):
        await keyframes.request_keyframe(layer, acme_camera.pk, "test")
    assert (await receive_json_of_type(device, "keyframe"))["type"] == "keyframe"
    # The four others fell within the interval: nothing else but pings.
    await receive_nothing_but_pings(device, 0.3)
    await device.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_a_jpeg_device_is_not_sent_keyframe_requests(device_token, acme_camera):
    device, _ = await connect_device(device_token)
    await keyframes.request_keyframe(get_channel_layer(), acme_camera.pk, "test")
    await receive_nothing_but_pings(device, 0.4)
    await device.disconnect()


@pytest.mark.asyncio
async def test_the_agent_answers_a_keyframe_request_with_a_keyframe_before_the_gop_ends():
    secret = token()

    async def script(conn: Connection, index: int):
        await conn.next("hello")
        await conn.welcome({"fps": 30, "resolution": "160x90"}, max_message_bytes=1024 * 1024)
        await conn.next(protocol.KIND_H264)  # the IDR that starts every connection
        for _ in range(3):
            assert not (await conn.next(protocol.KIND_H264)).header.keyframe
        await conn.ws.send('{"type":"keyframe"}')
        for _ in range(5):  # the request is honoured on the next captured frame (or the one after)
            if (await conn.next(protocol.KIND_H264)).header.keyframe:
                conn.honoured = True
                break
        await conn.ws.wait_closed()

    async with FakePortal(script) as portal:
        agent = make_agent(portal.url, secret, H264Encoder(), frames=40)
        await asyncio.wait_for(agent.run(), 15)
        assert getattr(portal.connections[0], "honoured", False)
        assert agent.counters.keyframe_requests == 1
