"""The viewer socket (/ws/view/<id>/) as owner, operator, viewer, outsider and anonymous:
welcome, live frames through the Redis hub, latest frame at once, stats, presence, commands."""
import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from sightline_agent import protocol
from streams import broadcast, groups
from streams.models import Device
from sightline_agent.protocol import Close
from tests.live_helpers import (
    browser_socket,
    connect_device,
    expect_close,
    jpeg_frame,
    receive_binary,
    receive_json_of_type,
    receive_nothing_but_pings,
    wait_for,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


@pytest.fixture
def token(device_token):
    return device_token


async def open_viewer(device, sessionid, **kwargs):
    viewer = browser_socket(f"/ws/view/{device.pk}/", sessionid, **kwargs)
    assert (await viewer.connect())[0]
    return viewer


async def watch(device, sessionid):
    viewer = await open_viewer(device, sessionid)
    welcome = await receive_json_of_type(viewer, "welcome")
    # The hub subscribes during connect; wait until it is live before sending frames.
    await wait_for(lambda: str(device.pk) in broadcast.get_hub().feeds)
    return viewer, welcome


# -- who may watch --------------------------------------------------------------------


@pytest.mark.parametrize("role, can_control", [("owner", True), ("operator", True), ("viewer", False)])
async def test_members_get_a_welcome_with_their_role_and_whether_they_may_control(
    sessions, acme_camera, role, can_control
):
    viewer, welcome = await watch(acme_camera, sessions[role])
    assert welcome["role"] == role and welcome["can_control"] is can_control
    assert welcome["device"] == {
        "id": str(acme_camera.pk), "name": "Front door", "online": False, "last_seen": None,
        "settings": {"brightness": 0, "contrast": 0, "fps": 10, "resolution": "640x360"},
        "expected_media": "jpeg",
    }
    await viewer.disconnect()


async def test_the_outsider_is_refused_with_4404_and_receives_nothing_else(sessions, acme_camera, token):
    device, _ = await connect_device(token)
    outsider = await open_viewer(acme_camera, sessions["outsider"])
    await expect_close(outsider, Close.NOT_FOUND)
    await device.send_to(bytes_data=jpeg_frame(1))
    assert await outsider.receive_nothing(timeout=0.3)
    await device.disconnect()


async def test_a_malformed_device_id_is_refused_like_a_foreign_one(sessions):
    viewer = browser_socket("/ws/view/not-a-uuid/", sessions["owner"])
    assert (await viewer.connect())[0]
    await expect_close(viewer, Close.NOT_FOUND)


async def test_an_anonymous_viewer_is_refused_with_4401(acme_camera):
    viewer = await open_viewer(acme_camera, None)
    await expect_close(viewer, Close.NOT_AUTHENTICATED)


@pytest.mark.parametrize("origin", [b"http://evil.example", None, b"null"])
async def test_a_viewer_from_a_foreign_or_missing_origin_is_refused_with_4403(sessions, acme_camera, origin):
    viewer = await open_viewer(acme_camera, sessions["owner"], origin=origin)
    await expect_close(viewer, Close.FORBIDDEN)


# -- frames ----------------------------------------------------------------------------------


async def test_frames_reach_the_viewer_intact_in_order_with_their_capture_timestamp(sessions, acme_camera, token):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    device, _ = await connect_device(token)
    sent = [jpeg_frame(seq, bytes([seq]) * 300, timestamp_us=1_700_000_000_000_000 + seq) for seq in range(1, 4)]
    for message in sent:
        await device.send_to(bytes_data=message)
        # One at a time: the viewer's video slot is latest-wins.
        assert await receive_binary(viewer) == message
    await device.disconnect()
    await viewer.disconnect()


async def test_each_frame_crosses_redis_once_whatever_the_number_of_viewers(monkeypatch, sessions, acme_camera, token):
    publishes, subscriptions = [], []
    real_frame, real_subscribe = broadcast.IngestPublisher.frame, broadcast.Hub._subscribe

    async def counting_frame(self, message, *args):
        publishes.append(message)
        return await real_frame(self, message, *args)

    async def counting_subscribe(self, channel):
        subscriptions.append(channel)
        return await real_subscribe(self, channel)

    monkeypatch.setattr(broadcast.IngestPublisher, "frame", counting_frame)
    monkeypatch.setattr(broadcast.Hub, "_subscribe", counting_subscribe)
    viewers = [(await watch(acme_camera, sessions[role]))[0] for role in ("owner", "operator", "viewer")]
    device, _ = await connect_device(token)
    sent = [jpeg_frame(seq, bytes([seq]) * 300) for seq in range(1, 4)]
    for message in sent:
        await device.send_to(bytes_data=message)
        for viewer in viewers:  # one at a time: a viewer's video slot is latest-wins
            assert await receive_binary(viewer) == message
    assert publishes == sent  # once per frame, not once per viewer
    assert subscriptions == [groups.frames_channel(acme_camera.pk)]  # one subscription in this process
    await device.disconnect()
    for viewer in viewers:
        await viewer.disconnect()


async def test_a_chunked_frame_reaches_the_viewer_as_one_whole_message(sessions, acme_camera, token):
    viewer, _ = await watch(acme_camera, sessions["owner"])
    device, _ = await connect_device(token)
    payload = bytes(range(256)) * 40
    chunks = protocol.encode_frame(protocol.KIND_JPEG, payload, 9, 1234, True, max_message_bytes=1000)
    assert len(chunks) > 1
    for chunk in chunks:
        await device.send_to(bytes_data=chunk)
    received = await receive_binary(viewer)
    header = protocol.parse_header(received, 1 << 20)
    assert (header.seq, header.timestamp_us, header.chunk_count, header.keyframe) == (9, 1234, 1, True)
    assert received[protocol.HEADER_SIZE:] == payload
    await device.disconnect()
    await viewer.disconnect()


async def test_audio_and_metadata_are_relayed_like_video(sessions, acme_camera, token):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    device, _ = await connect_device(token)
    audio = protocol.encode_frame(protocol.KIND_AUDIO, b"\x00\x01" * 160, 1, 5)[0]
    meta = protocol.encode_frame(protocol.KIND_METADATA, b'{"motion":true}', 1, 6)[0]
    await device.send_to(bytes_data=audio)
    await device.send_to(bytes_data=meta)
    assert await receive_binary(viewer) == audio
    assert await receive_binary(viewer) == meta
    await device.disconnect()
    await viewer.disconnect()


async def test_a_viewer_can_subscribe_to_some_kinds_only(sessions, acme_camera, token):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    await viewer.send_json_to({"type": "subscribe", "kinds": ["metadata"]})
    device, _ = await connect_device(token)
    await viewer.send_json_to({"type": "ping", "id": 1, "ts": 0})
    await receive_json_of_type(viewer, "pong")  # the subscribe was handled before the frames
    await device.send_to(bytes_data=jpeg_frame(1))
    meta = protocol.encode_frame(protocol.KIND_METADATA, b"{}", 1, 6)[0]
    await device.send_to(bytes_data=meta)
    assert await receive_binary(viewer) == meta
    await device.disconnect()
    await viewer.disconnect()


async def test_a_new_viewer_gets_the_latest_jpeg_at_once(sessions, acme_camera, token):
    first, _ = await watch(acme_camera, sessions["viewer"])
    device, _ = await connect_device(token)
    latest = jpeg_frame(2, b"latest")
    await device.send_to(bytes_data=jpeg_frame(1, b"older"))
    await device.send_to(bytes_data=latest)
    await wait_for(lambda: broadcast.get_hub().feeds[str(acme_camera.pk)].latest_key == latest)
    second, _ = await watch(acme_camera, sessions["owner"])
    assert await receive_binary(second) == latest
    for socket in (device, first, second):
        await socket.disconnect()


async def test_a_viewer_on_a_process_with_no_cache_gets_the_stored_keyframe(sessions, acme_camera, token):
    device, _ = await connect_device(token)
    stored = jpeg_frame(1, b"stored")
    await device.send_to(bytes_data=stored)  # no viewer anywhere: published and stored only
    await device.send_json_to({"type": "ping", "id": 1, "ts": 0})
    await receive_json_of_type(device, "pong")
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    assert await receive_binary(viewer) == stored
    await device.disconnect()
    await viewer.disconnect()


async def test_another_organisations_viewer_receives_none_of_the_frames(sessions, acme_camera, globex_camera, token):
    outsider, _ = await watch(globex_camera, sessions["outsider"])
    device, _ = await connect_device(token)
    await device.send_to(bytes_data=jpeg_frame(1))
    await receive_nothing_but_pings(outsider, timeout=0.5)
    await device.disconnect()
    await outsider.disconnect()


async def test_viewers_get_stats_about_once_a_second(sessions, acme_camera, token):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    device, _ = await connect_device(token)
    for seq in (1, 2, 5):  # 3 and 4 missing
        await device.send_to(bytes_data=jpeg_frame(seq))
        await receive_binary(viewer)
    stats = await receive_json_of_type(viewer, "stats", timeout=3)
    assert stats["device_id"] == str(acme_camera.pk)
    assert stats["drops"] == 0 and stats["server_ts"] > 0
    for key in ("fps", "bitrate_bps", "seq_gaps", "capture_to_server_ms"):
        assert key in stats
    stats = await wait_for_stats(viewer, lambda s: s["seq_gaps"] == 2)
    assert stats["fps"] > 0 and stats["bitrate_bps"] > 0
    await device.disconnect()
    await viewer.disconnect()


async def wait_for_stats(viewer, predicate, timeout=5):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stats = await receive_json_of_type(viewer, "stats", timeout=max(0.1, deadline - loop.time()))
        if predicate(stats):
            return stats


# -- presence ---------------------------------------------------------------------------------


async def test_viewers_are_told_when_the_device_comes_online_and_goes_offline(sessions, acme_camera, token):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    device, _ = await connect_device(token)
    online = await receive_json_of_type(viewer, "presence")
    assert online["device_id"] == str(acme_camera.pk) and online["online"] is True and online["last_seen"]
    await device.disconnect()
    offline = await receive_json_of_type(viewer, "presence")
    assert offline["online"] is False
    await viewer.disconnect()


# -- commands -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "operator"])
async def test_a_command_reaches_the_device_and_its_ack_returns_and_is_saved(sessions, acme_camera, token, role):
    device, _ = await connect_device(token)
    viewer, _ = await watch(acme_camera, sessions[role])
    await viewer.send_json_to({"type": "command", "id": "c1", "settings": {"brightness": 20, "resolution": "1280x720"}})
    command = await receive_json_of_type(device, "command")
    assert command["settings"] == {"brightness": 20, "resolution": "1280x720"} and command["id"] != "c1"
    await device.send_json_to({"type": "ack", "id": command["id"], "ok": True, "applied": command["settings"]})
    result = await receive_json_of_type(viewer, "command_result")
    assert result == {"type": "command_result", "id": "c1", "ok": True,
                      "applied": {"brightness": 20, "resolution": "1280x720"}}
    row = await database_sync_to_async(Device.objects.get)(pk=acme_camera.pk)
    assert (row.brightness, row.width, row.height) == (20, 1280, 720)
    await device.disconnect()
    await viewer.disconnect()


async def test_a_generic_setting_is_saved_in_extra_settings(sessions, acme_camera, token):
    device, _ = await connect_device(token)
    viewer, _ = await watch(acme_camera, sessions["operator"])
    await viewer.send_json_to({"type": "command", "id": 2, "settings": {"x_ir_mode": "auto"}})
    command = await receive_json_of_type(device, "command")
    await device.send_json_to({"type": "ack", "id": command["id"], "ok": True})  # "applied" omitted
    result = await receive_json_of_type(viewer, "command_result")
    assert result["ok"] is True and result["applied"] == {"x_ir_mode": "auto"} and result["id"] == 2
    row = await database_sync_to_async(Device.objects.get)(pk=acme_camera.pk)
    assert row.extra_settings == {"x_ir_mode": "auto"}
    await device.disconnect()
    await viewer.disconnect()


async def test_a_viewer_role_is_forbidden_to_send_commands_and_the_device_hears_nothing(sessions, acme_camera, token):
    device, _ = await connect_device(token)
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    await viewer.send_json_to({"type": "command", "id": "c", "settings": {"brightness": 5}})
    result = await receive_json_of_type(viewer, "command_result")
    assert result == {"type": "command_result", "id": "c", "ok": False, "error": "forbidden"}
    await receive_nothing_but_pings(device)
    await device.disconnect()
    await viewer.disconnect()


async def test_an_invalid_command_is_refused_before_it_reaches_the_device(sessions, acme_camera, token):
    device, _ = await connect_device(token)
    viewer, _ = await watch(acme_camera, sessions["operator"])
    await viewer.send_json_to({"type": "command", "id": "c", "settings": {"brightness": 500}})
    result = await receive_json_of_type(viewer, "command_result")
    assert result["ok"] is False and result["error"].startswith("invalid: brightness")
    await receive_nothing_but_pings(device)
    await device.disconnect()
    await viewer.disconnect()


async def test_a_command_to_an_offline_device_fails_at_once(sessions, acme_camera):
    viewer, _ = await watch(acme_camera, sessions["owner"])
    await viewer.send_json_to({"type": "command", "id": "c", "settings": {"contrast": 5}})
    result = await receive_json_of_type(viewer, "command_result")
    assert result == {"type": "command_result", "id": "c", "ok": False, "error": "device_offline"}
    await viewer.disconnect()


async def test_a_device_that_does_not_answer_yields_a_timeout(settings, sessions, acme_camera, token):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "COMMAND_TIMEOUT_SECONDS": 0.3}
    device, _ = await connect_device(token)
    viewer, _ = await watch(acme_camera, sessions["operator"])
    await viewer.send_json_to({"type": "command", "id": "late", "settings": {"fps": 5}})
    command = await receive_json_of_type(device, "command")
    result = await receive_json_of_type(viewer, "command_result", timeout=3)
    assert result == {"type": "command_result", "id": "late", "ok": False, "error": "timeout"}
    # A late ack changes nothing.
    await device.send_json_to({"type": "ack", "id": command["id"], "ok": True, "applied": {"fps": 5}})
    row = await database_sync_to_async(Device.objects.get)(pk=acme_camera.pk)
    assert row.fps == 10
    await device.disconnect()
    await viewer.disconnect()


async def test_a_device_refusal_is_reported_to_the_operator(sessions, acme_camera, token):
    device, _ = await connect_device(token)
    viewer, _ = await watch(acme_camera, sessions["operator"])
    await viewer.send_json_to({"type": "command", "id": "c", "settings": {"resolution": "1920x1080"}})
    command = await receive_json_of_type(device, "command")
    await device.send_json_to({"type": "ack", "id": command["id"], "ok": False, "error": "sensor is 720p"})
    result = await receive_json_of_type(viewer, "command_result")
    assert result == {"type": "command_result", "id": "c", "ok": False, "error": "device: sensor is 720p"}
    await device.disconnect()
    await viewer.disconnect()


# -- misbehaving viewers ---------------------------------------------------------------------------


async def test_binary_from_a_viewer_is_refused_with_4007(sessions, acme_camera):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    await viewer.send_to(bytes_data=b"\x00\x01")
    await expect_close(viewer, Close.UNEXPECTED_TEXT)


async def test_a_flood_of_viewer_messages_is_refused_with_4009(sessions, acme_camera):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    for n in range(60):
        await viewer.send_to(text_data=json.dumps({"type": "pong", "id": n, "ts": 0}))
    await expect_close(viewer, Close.RATE_LIMITED)


@pytest.fixture
def fast_heartbeat(settings):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "HEARTBEAT_SECONDS": 0.25, "DEAD_AFTER_SECONDS": 1.2}


async def test_a_viewer_that_never_answers_pings_is_closed_with_4011(fast_heartbeat, sessions, acme_camera):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    assert (await receive_json_of_type(viewer, "ping", timeout=2))["id"] == 1
    await expect_close(viewer, Close.HEARTBEAT_TIMEOUT, timeout=3)


async def test_repeated_anonymous_attempts_from_one_address_are_rate_limited_with_4429_but_a_session_is_not(
    monkeypatch, sessions, acme_camera
):
    from streams import limits

    monkeypatch.setattr(limits, "AUTH_FAILURES_ALLOWED", 2)
    address = "198.51.100.23"
    for _ in range(2):
        await expect_close(await open_viewer(acme_camera, None, address=address), Close.NOT_AUTHENTICATED)
    await expect_close(await open_viewer(acme_camera, None, address=address), Close.AUTH_RATE_LIMITED)
    # Only failures are refused: a logged-in viewer behind the same address still watches.
    viewer = await open_viewer(acme_camera, sessions["owner"], address=address)
    assert (await receive_json_of_type(viewer, "welcome"))["role"] == "owner"
    await viewer.disconnect()
    from streams import groups

    await broadcast.redis_client().delete(groups.auth_failures_key(address))


async def test_a_database_error_while_checking_a_session_closes_with_1013_not_http_500(monkeypatch, sessions, acme_camera):
    from streams import auth

    async def broken(scope):
        raise RuntimeError("database is down")

    monkeypatch.setattr(auth, "user_from_scope", broken)
    await expect_close(await open_viewer(acme_camera, sessions["viewer"]), Close.TRY_AGAIN_LATER)
    assert auth.handshake_gate().in_progress == 0
