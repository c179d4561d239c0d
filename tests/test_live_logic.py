"""The plain modules behind the live sockets: limits, stats, settings validation, the viewer
outbox, Origin and token extraction. No sockets, no Redis."""
import asyncio

import pytest

from streams import auth, control, limits, stats
from streams.broadcast import DeviceFeed, Outbox, run_sender
from sightline_agent.protocol import KIND_AUDIO, KIND_H264, KIND_JPEG, KIND_METADATA, Close, ProtocolError, encode_frame


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


# -- limits --------------------------------------------------------------------------------------


def test_a_token_bucket_allows_its_burst_then_its_rate():
    clock = Clock()
    bucket = limits.TokenBucket(rate=10, capacity=20, clock=clock)
    assert all(bucket.take() for _ in range(20))
    assert not bucket.take()
    clock.now += 0.5  # 5 tokens back
    assert sum(bucket.take() for _ in range(10)) == 5


def _limits(**changes):
    base = dict(max_frame_bytes=1000, max_message_bytes=500, max_fps=5, max_bytes_per_second=2000,
                max_messages_per_second=50, heartbeat_seconds=10, dead_after_seconds=30, command_timeout_seconds=5)
    return limits.Limits(**{**base, **changes})


def test_the_ingest_limiter_refuses_oversized_messages_with_4006():
    limiter = limits.IngestLimiter(_limits(), clock=Clock())
    with pytest.raises(ProtocolError) as error:
        limiter.check_message(501)
    assert error.value.code == Close.OVERSIZED


def test_the_ingest_limiter_refuses_too_many_bytes_per_second_with_4009():
    clock = Clock()
    limiter = limits.IngestLimiter(_limits(), clock=clock)
    for _ in range(8):  # 2 s burst of 2000 B/s
        limiter.check_message(500)
    with pytest.raises(ProtocolError) as error:
        limiter.check_message(500)
    assert error.value.code == Close.RATE_LIMITED
    clock.now += 1
    limiter.check_message(500)


def test_the_frame_limit_counts_video_only():
    limiter = limits.IngestLimiter(_limits(), clock=Clock())
    for _ in range(100):
        limiter.check_frame(KIND_AUDIO)
    for _ in range(10):
        limiter.check_frame(KIND_JPEG)
    with pytest.raises(ProtocolError) as error:
        limiter.check_frame(KIND_H264)
    assert error.value.code == Close.RATE_LIMITED


def test_welcome_limits_name_every_limit():
    assert set(_limits().for_welcome()) == {"max_frame_bytes", "max_message_bytes", "max_fps", "max_bytes_per_second",
                                           "max_messages_per_second", "burst_seconds", "heartbeat_seconds",
                                           "dead_after_seconds"}


# -- stats ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("previous, current, gap", [
    (None, 5, 0), (5, 6, 0), (5, 8, 2), (2**32 - 1, 0, 0), (2**32 - 2, 1, 2), (10, 3, 0), (10, 10, 0), (1, 10**7, 0),
])
def test_sequence_gaps_wrap_and_ignore_restarts(previous, current, gap):
    assert stats.seq_gap(previous, current) == gap


def test_stream_stats_report_fps_bitrate_gaps_and_latency():
    s = stats.StreamStats()
    for n, seq in enumerate([1, 2, 3, 6]):
        s.on_frame(KIND_JPEG, seq, int((10.0 + n * 0.1 - 0.05) * 1e6), 1000, 10.0 + n * 0.1)
    s.on_frame(KIND_AUDIO, 77, 0, 10, 10.35)  # another kind keeps its own sequence
    snap = s.snapshot(10.4)
    assert snap["seq_gaps"] == 2 and snap["frames"] == 5
    assert snap["fps"] == 2.5 and snap["bitrate_bps"] == int(4010 * 8 / 2)
    assert 45 <= snap["capture_to_server_ms"] <= 55
    assert s.snapshot(20.0)["fps"] == 0


# -- settings ----------------------------------------------------------------------------------------


def test_valid_settings_are_cleaned():
    assert control.validate_settings({"brightness": -100, "contrast": 100.0, "fps": 60, "resolution": "1920x1080",
                                      "x_ir_mode": "auto", "x_zoom": 2}) == {
        "brightness": -100, "contrast": 100, "fps": 60, "resolution": "1920x1080", "x_ir_mode": "auto", "x_zoom": 2}


@pytest.mark.parametrize("settings, message", [
    ({}, "non-empty"),
    ([], "non-empty"),
    ({"brightness": 101}, "between -100 and 100"),
    ({"brightness": True}, "integer"),
    ({"contrast": 1.5}, "integer"),
    ({"fps": 0}, "between 1 and 60"),
    ({"resolution": "big"}, "1280x720"),
    ({"resolution": "8x8"}, "between"),
    ({"brightnes": 1}, "unknown setting"),
    ({"x_mode": {"a": 1}}, "string, number"),
    ({"x_mode": "y" * 201}, "longer"),
])
def test_invalid_settings_are_refused_with_a_reason(settings, message):
    with pytest.raises(control.InvalidSettings, match=message):
        control.validate_settings(settings)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1e400, -1e400])
@pytest.mark.parametrize("key", ["brightness", "contrast", "fps", "x_key"])
def test_non_finite_numbers_are_refused_as_invalid_settings_never_with_another_error(key, value):
    # NaN once reached int() (ValueError) and, as an x_ value, the database (IntegrityError).
    with pytest.raises(control.InvalidSettings, match=key):
        control.validate_settings({key: value})


def test_a_generic_integer_beyond_what_a_double_holds_exactly_is_refused():
    with pytest.raises(control.InvalidSettings, match="x_big"):
        control.validate_settings({"x_big": 10**400})
    assert control.validate_settings({"x_big": 2**53}) == {"x_big": 2**53}


def test_fps_is_capped_by_the_servers_max_fps():
    with pytest.raises(control.InvalidSettings):
        control.validate_settings({"fps": 30}, max_fps=25)


def test_settings_map_onto_device_fields():
    assert control.device_field_updates({"brightness": 3, "resolution": "320x240", "x_a": 1}) == {
        "brightness": 3, "width": 320, "height": 240, "extra_settings": {"x_a": 1}}


# -- outbox ----------------------------------------------------------------------------------------------


def test_a_slow_viewer_keeps_only_the_latest_jpeg():
    outbox = Outbox()
    for n in range(5):
        outbox.offer_frame(KIND_JPEG, True, b"jpeg%d" % n)
    assert outbox.pop() == b"jpeg4" and outbox.pop() is None
    assert outbox.drops == 4


def test_after_an_h264_drop_the_outbox_waits_for_the_next_keyframe():
    outbox = Outbox()
    outbox.offer_frame(KIND_H264, True, b"I1")
    outbox.offer_frame(KIND_H264, False, b"P1")  # slot full: dropped, now waiting for a keyframe
    outbox.offer_frame(KIND_H264, False, b"P2")
    assert outbox.pop() == b"I1"
    outbox.offer_frame(KIND_H264, False, b"P3")  # still no keyframe: its references are gone
    assert outbox.pop() is None
    outbox.offer_frame(KIND_H264, True, b"I2")
    outbox.offer_frame(KIND_H264, True, b"I3")  # a keyframe replaces a queued keyframe
    assert outbox.pop() == b"I3"
    outbox.offer_frame(KIND_H264, False, b"P4")
    assert outbox.pop() == b"P4"
    assert outbox.drops == 4


def test_audio_and_metadata_queue_briefly_and_drop_oldest():
    outbox = Outbox()
    for n in range(Outbox.AUX_MAX + 3):
        outbox.offer_frame(KIND_AUDIO, False, b"a%d" % n)
    outbox.offer_frame(KIND_METADATA, False, b"m")
    drained = []
    while (item := outbox.pop()) is not None:
        drained.append(item)
    assert len(drained) == Outbox.AUX_MAX and drained[-1] == b"m" and outbox.drops == 4


def test_control_messages_go_before_frames_and_kinds_can_be_filtered():
    outbox = Outbox()
    outbox.kinds = frozenset({KIND_METADATA})
    outbox.offer_frame(KIND_JPEG, True, b"jpeg")
    outbox.offer_frame(KIND_METADATA, False, b"meta")
    outbox.put_control('{"type":"stats"}')
    assert [outbox.pop(), outbox.pop(), outbox.pop()] == ['{"type":"stats"}', b"meta", None]


def test_a_new_h264_viewer_gets_the_cached_keyframe_then_waits_for_the_next_one():
    feed = DeviceFeed("d")
    key = encode_frame(KIND_H264, b"I", 1, 1, keyframe=True)[0]
    feed.deliver(key, 1.0)
    feed.deliver(encode_frame(KIND_H264, b"P", 2, 2)[0], 1.1)
    outbox = Outbox()
    feed.prime(outbox)
    assert outbox.pop() == key
    outbox.offer_frame(KIND_H264, False, b"P3")
    assert outbox.pop() is None


def test_the_sender_drains_the_outbox_into_the_socket_in_order():
    async def scenario():
        sent = []

        async def send(message):
            sent.append(message.get("text") or message.get("bytes"))

        outbox = Outbox()
        task = asyncio.create_task(run_sender(outbox, send))
        outbox.put_control("hello")
        outbox.offer_frame(KIND_JPEG, True, b"frame")
        await asyncio.sleep(0.01)
        outbox.close()
        await asyncio.wait_for(task, 1)
        return sent, outbox.sent

    assert asyncio.run(scenario()) == (["hello", b"frame"], 1)


# -- auth helpers -------------------------------------------------------------------------------------------


def test_the_token_comes_from_the_authorization_header_or_the_token_subprotocol():
    assert auth.token_from_scope({"headers": [(b"authorization", b"Bearer sl_x")]}) == "sl_x"
    assert auth.token_from_scope({"headers": [], "subprotocols": ["sightline.v1", "sightline.token.sl_y"]}) == "sl_y"
    assert auth.token_from_scope({"headers": [(b"authorization", b"Basic abc")]}) is None
    assert auth.token_from_scope({"path": "/ws/device/", "query_string": b"token=sl_z", "headers": []}) is None


def test_only_the_protocol_subprotocol_is_echoed_never_the_token():
    assert auth.chosen_subprotocol({"subprotocols": ["sightline.v1", "sightline.token.sl_y"]}) == "sightline.v1"
    assert auth.chosen_subprotocol({"subprotocols": ["sightline.token.sl_y"]}) is None


def test_a_slow_viewer_loses_only_its_own_frames():
    async def scenario():
        fast_sent, slow_sent, gate = [], [], asyncio.Event()

        async def fast_send(message):
            fast_sent.append(message["bytes"])

        async def slow_send(message):
            await gate.wait()  # a socket whose buffer is full
            slow_sent.append(message["bytes"])

        feed, fast, slow = DeviceFeed("d"), Outbox(), Outbox()
        feed.viewers.update({fast, slow})
        tasks = [asyncio.create_task(run_sender(fast, fast_send)), asyncio.create_task(run_sender(slow, slow_send))]
        frames = [encode_frame(KIND_JPEG, b"f%d" % n, n, n, True)[0] for n in range(10)]
        for frame in frames:
            feed.deliver(frame, 1.0)
            await asyncio.sleep(0)
        gate.set()
        await asyncio.sleep(0.01)
        for outbox in (fast, slow):
            outbox.close()
        await asyncio.gather(*tasks)
        return frames, fast_sent, slow_sent, fast.drops, slow.drops

    frames, fast_sent, slow_sent, fast_drops, slow_drops = asyncio.run(scenario())
    assert fast_sent == frames and fast_drops == 0
    assert slow_sent == [frames[0], frames[-1]] and slow_drops == 8  # the one in flight, then the latest
