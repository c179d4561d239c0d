"""The device socket (/ws/device/): authentication, hello/welcome, every refusal and its close code."""
import asyncio
import logging
import time

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from recordings import alerts, sessions
from sightline_agent import protocol
from streams import broadcast, groups, limits
from streams.models import Device, DeviceToken
from sightline_agent.protocol import Close
from tests.live_helpers import (
    HELLO,
    connect_device,
    device_socket,
    expect_close,
    jpeg_frame,
    receive_json_of_type,
    wait_for,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


@pytest.fixture
def token(device_token):
    return device_token


@pytest.fixture
def fast_heartbeat(settings):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "HEARTBEAT_SECONDS": 0.25, "DEAD_AFTER_SECONDS": 1.2}


async def refused(communicator, code):
    connected, _ = await communicator.connect()
    assert connected  # refusals come after the handshake so the client sees the code
    return await expect_close(communicator, code)


# -- authentication --------------------------------------------------------------


async def test_a_device_with_a_header_token_gets_a_welcome_with_settings_and_limits(token, acme_camera):
    device, welcome = await connect_device(token)
    assert welcome["device_id"] == str(acme_camera.pk)
    assert welcome["protocol"] == 1
    assert welcome["settings"] == {"brightness": 0, "contrast": 0, "fps": 10, "resolution": "640x360"}
    assert set(welcome["limits"]) >= {"max_frame_bytes", "max_message_bytes", "max_fps", "max_bytes_per_second",
                                      "heartbeat_seconds", "dead_after_seconds"}
    assert welcome["recording"] in (True, False)
    await device.disconnect()


async def test_a_device_may_present_its_token_as_a_subprotocol_and_only_v1_is_echoed(token):
    device, welcome = await connect_device(token, via="subprotocol")
    assert welcome["type"] == "welcome"
    await device.disconnect()


@pytest.mark.parametrize("presented", [None, "nope", "sl_ABCDEFGH_" + "x" * 43])
async def test_a_missing_malformed_or_unknown_token_is_refused_with_4001(acme_camera, presented):
    await refused(device_socket(presented), Close.BAD_TOKEN)


async def test_a_revoked_token_is_refused_with_4002(acme_camera):
    clear, row = await database_sync_to_async(acme_camera.issue_token)()
    await database_sync_to_async(row.revoke)()
    await refused(device_socket(clear), Close.TOKEN_REVOKED)


async def test_a_disabled_device_is_refused_with_4003(acme_camera, token):
    await database_sync_to_async(Device.objects.filter(pk=acme_camera.pk).update)(enabled=False)
    await refused(device_socket(token), Close.DEVICE_DISABLED)


async def test_auth_failures_from_one_address_are_rate_limited_with_4429_and_logged_without_the_token(
    monkeypatch, caplog, token
):
    monkeypatch.setattr(limits, "AUTH_FAILURES_ALLOWED", 3)
    wrong = "sl_ABCDEFGH_" + "y" * 43
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        await refused(device_socket(wrong, address="192.0.2.77"), Close.BAD_TOKEN)
    # Over the limit, failures are refused with 4429, whatever their kind ...
    await refused(device_socket(wrong, address="192.0.2.77"), Close.AUTH_RATE_LIMITED)
    await refused(device_socket(None, address="192.0.2.77"), Close.AUTH_RATE_LIMITED)
    # ... and another address is unaffected.
    await refused(device_socket(wrong, address="192.0.2.78"), Close.BAD_TOKEN)
    assert "sl_ABCDEFGH_…" in caplog.text
    assert wrong not in caplog.text and token not in caplog.text
    await broadcast.redis_client().delete(groups.auth_failures_key("192.0.2.77"), groups.auth_failures_key("192.0.2.78"))


async def test_a_valid_token_from_an_address_with_many_failures_is_accepted_while_an_invalid_one_gets_4429(
    monkeypatch, token
):
    """Many cameras share one NAT address: a guesser behind it must not lock them out."""
    monkeypatch.setattr(limits, "AUTH_FAILURES_ALLOWED", 5)
    address = "192.0.2.90"
    for attempt in range(30):
        expected = Close.BAD_TOKEN if attempt < 5 else Close.AUTH_RATE_LIMITED
        await refused(device_socket(None, address=address), expected)
    device, welcome = await connect_device(token, address=address)
    assert welcome["type"] == "welcome"
    await refused(device_socket("sl_ABCDEFGH_" + "z" * 43, address=address), Close.AUTH_RATE_LIMITED)
    await device.disconnect()
    await broadcast.redis_client().delete(groups.auth_failures_key(address))


async def test_failures_are_shared_through_redis_in_batches_and_other_processes_counts_are_learned(monkeypatch):
    from streams import auth

    monkeypatch.setattr(limits, "AUTH_FAILURES_ALLOWED", 10)
    address = "192.0.2.91"
    key = groups.auth_failures_key(address)
    client = broadcast.redis_client()
    await client.set(key, 9, ex=60)  # nine failures counted by other server processes
    await refused(device_socket(None, address=address), Close.BAD_TOKEN)  # this process has seen one
    await wait_for(lambda: auth.auth_failures().is_blocked(address), timeout=3)
    assert int(await client.get(key)) == 10
    await refused(device_socket(None, address=address), Close.AUTH_RATE_LIMITED)
    await client.delete(key)


async def test_a_refusal_before_authentication_never_touches_redis(monkeypatch):
    """A flood of token-less upgrades once took every Redis connection (and the live cameras with it)."""
    def no_redis():
        raise AssertionError("Redis used during a handshake")

    monkeypatch.setattr(broadcast, "redis_client", no_redis)
    from streams import auth

    monkeypatch.setattr(auth.AuthFailures, "FLUSH_SECONDS", 3600)  # the batch goes later, off the handshake
    for presented in (None, "nope", "sl_ABCDEFGH_" + "x" * 43):
        await refused(device_socket(presented, address="192.0.2.92"), Close.BAD_TOKEN)


async def test_handshakes_beyond_the_per_address_cap_are_refused_with_1013_without_waiting(settings, monkeypatch, token):
    import threading

    from streams.consumers import device as device_module

    settings.SIGHTLINE = {**settings.SIGHTLINE, "HANDSHAKES_PER_ADDRESS": 1}
    release = threading.Event()
    real = device_module.authenticate_token

    def slow_authenticate(presented):
        release.wait(5)
        return real(presented)

    monkeypatch.setattr(device_module, "authenticate_token", slow_authenticate)
    first = device_socket(token, address="192.0.2.93")
    pending = asyncio.ensure_future(first.connect())
    await wait_for(lambda: auth_gate_in_progress() == 1)
    await refused(device_socket(token, address="192.0.2.93"), Close.TRY_AGAIN_LATER)
    release.set()
    connected, _ = await pending
    assert connected
    await first.send_json_to(HELLO)
    assert (await receive_json_of_type(first, "welcome"))["type"] == "welcome"
    await first.disconnect()
    assert auth_gate_in_progress() == 0


def auth_gate_in_progress() -> int:
    from streams import auth

    return auth.handshake_gate().in_progress


async def test_a_database_error_while_checking_a_token_closes_with_1013_not_http_500(monkeypatch, token):
    from streams.consumers import device as device_module

    def broken(presented):
        raise RuntimeError("database is down")

    monkeypatch.setattr(device_module, "authenticate_token", broken)
    await refused(device_socket(token), Close.TRY_AGAIN_LATER)
    assert auth_gate_in_progress() == 0


# -- hello and messages -------------------------------------------------------------


async def test_binary_before_hello_is_refused_with_4008(token):
    device = device_socket(token)
    assert (await device.connect())[0]
    await device.send_to(bytes_data=jpeg_frame(1))
    await expect_close(device, Close.FRAME_BEFORE_HELLO)


async def test_text_other_than_hello_first_is_refused_with_4008(token):
    device = device_socket(token)
    assert (await device.connect())[0]
    await device.send_json_to({"type": "ping", "id": 1, "ts": time.time()})
    await expect_close(device, Close.FRAME_BEFORE_HELLO)


async def test_a_hello_for_another_protocol_version_is_refused_with_4010(token):
    device = device_socket(token)
    assert (await device.connect())[0]
    await device.send_json_to({**HELLO, "protocol": 2})
    await expect_close(device, Close.UNSUPPORTED_VERSION)


@pytest.mark.parametrize("text", ["not json", '{"type":"launch"}', "[1,2]", '{"type":"hello","protocol":1,"codecs":[]}'])
async def test_bad_text_is_refused_with_4007(token, text):
    device = device_socket(token)
    assert (await device.connect())[0]
    await device.send_to(text_data=text)
    await expect_close(device, Close.UNEXPECTED_TEXT)


async def test_a_second_hello_is_refused_with_4007(token):
    device, _ = await connect_device(token)
    await device.send_json_to(HELLO)
    await expect_close(device, Close.UNEXPECTED_TEXT)


async def test_the_server_answers_a_ping_with_a_pong_carrying_its_id_and_ts(token):
    device, _ = await connect_device(token)
    await device.send_json_to({"type": "ping", "id": 7, "ts": 123.5})
    pong = await receive_json_of_type(device, "pong")
    assert (pong["id"], pong["ts"]) == (7, 123.5) and pong["server_ts"] > 0
    await device.disconnect()


def _header_bytes(**fields) -> bytes:
    values = {"magic": 0x53, "version": 1, "kind": 1, "flags": 0x07, "seq": 1, "ts": 1, "index": 0,
              "count": 1, "length": 4}
    values.update(fields)
    return protocol.HEADER.pack(*values.values()) + b"abcd"


@pytest.mark.parametrize("message, code", [
    (b"S\x01", Close.MALFORMED_HEADER),
    (_header_bytes(magic=0x00), Close.MALFORMED_HEADER),
    (_header_bytes(kind=9), Close.UNKNOWN_KIND),
    (_header_bytes(version=2), Close.UNSUPPORTED_VERSION),
    (_header_bytes(length=5), Close.MALFORMED_HEADER),
    (_header_bytes(length=10**9), Close.OVERSIZED),
])
async def test_a_bad_binary_message_closes_only_that_socket_with_its_code(token, message, code):
    device, _ = await connect_device(token)
    await device.send_to(bytes_data=message)
    await expect_close(device, code)


async def test_a_message_above_max_message_bytes_is_refused_with_4006(settings, token):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "MAX_MESSAGE_BYTES": 2048}
    device, welcome = await connect_device(token)
    assert welcome["limits"]["max_message_bytes"] == 2048
    await device.send_to(bytes_data=jpeg_frame(1, b"x" * 4000))
    await expect_close(device, Close.OVERSIZED)


async def test_text_in_the_middle_of_a_chunked_frame_is_refused_with_4007(token):
    device, _ = await connect_device(token)
    chunks = protocol.encode_frame(protocol.KIND_JPEG, b"z" * 5000, 1, 1, True, max_message_bytes=2048)
    await device.send_to(bytes_data=chunks[0])
    await device.send_json_to({"type": "ping", "id": 1, "ts": 0})
    await expect_close(device, Close.UNEXPECTED_TEXT)


async def test_frames_above_max_fps_are_refused_with_4009(settings, token):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "MAX_FPS": 2}
    device, _ = await connect_device(token)
    for seq in range(int(2 * limits.BURST_SECONDS) + 8):  # the bucket holds BURST_SECONDS of frames
        await device.send_to(bytes_data=jpeg_frame(seq))
    await expect_close(device, Close.RATE_LIMITED)


async def test_bytes_above_max_bytes_per_second_are_refused_with_4009(settings, token):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "MAX_BYTES_PER_SECOND": 4096}
    device, _ = await connect_device(token)
    for seq in range(20):  # 20 x 1 KB > 2 s x 4 KB/s, with room for a slow machine
        await device.send_to(bytes_data=jpeg_frame(seq, b"b" * 1000))
    await expect_close(device, Close.RATE_LIMITED)


async def test_a_flood_of_text_messages_is_refused_with_4009(token):
    device, _ = await connect_device(token)
    for i in range(200):  # far above 20/s with a 40-message burst, however slow the machine
        await device.send_json_to({"type": "ping", "id": i, "ts": 0})
    await expect_close(device, Close.RATE_LIMITED)


async def test_a_text_message_above_64_kib_is_refused_with_4006(token):
    device, _ = await connect_device(token)
    await device.send_json_to({"type": "stats", "note": "x" * (64 * 1024 + 1)})
    await expect_close(device, Close.OVERSIZED)


async def test_a_bad_token_offered_as_a_subprotocol_is_logged_redacted(caplog):
    wrong = "sl_ABCDEFGH_" + "z" * 43
    caplog.set_level(logging.INFO)
    await refused(device_socket(wrong, via="subprotocol"), Close.BAD_TOKEN)
    assert "sl_ABCDEFGH_…" in caplog.text and wrong not in caplog.text


# -- heartbeats, presence, replacement ------------------------------------------------


async def test_the_server_pings_and_closes_a_silent_device_with_4011(fast_heartbeat, token):
    device, welcome = await connect_device(token)
    assert welcome["limits"]["heartbeat_seconds"] == 0.25
    ping = await receive_json_of_type(device, "ping", timeout=2)
    assert ping["id"] == 1 and ping["ts"] > 0
    await expect_close(device, Close.HEARTBEAT_TIMEOUT, timeout=3)


async def test_a_device_that_answers_pings_stays_connected(fast_heartbeat, token):
    device, _ = await connect_device(token)
    deadline = time.monotonic() + 2.5  # well beyond dead_after_seconds
    while time.monotonic() < deadline:
        ping = await receive_json_of_type(device, "ping", timeout=2)
        await device.send_json_to({"type": "pong", "id": ping["id"], "ts": ping["ts"]})
    await device.disconnect()


async def test_presence_is_online_in_redis_and_on_the_row_while_connected_and_offline_after(token, acme_camera):
    device, _ = await connect_device(token)
    client = broadcast.redis_client()
    assert await client.exists(groups.presence_key(acme_camera.pk))  # written before the welcome
    # The row is written just after the welcome.
    row = await wait_for(lambda: database_sync_to_async(
        lambda: (r := Device.objects.get(pk=acme_camera.pk)).online and r)())
    assert row.last_seen is not None
    await device.disconnect()
    assert not await client.exists(groups.presence_key(acme_camera.pk))
    row = await database_sync_to_async(Device.objects.get)(pk=acme_camera.pk)
    assert not row.online


async def test_frames_do_not_write_the_device_row(token, acme_camera, monkeypatch):
    device, _ = await connect_device(token)
    writes = []
    monkeypatch.setattr("streams.presence._write_device_row", lambda *args: writes.append(args))
    for seq in range(20):
        await device.send_to(bytes_data=jpeg_frame(seq))
    await device.send_json_to({"type": "ping", "id": 1, "ts": 0})
    await receive_json_of_type(device, "pong")
    assert writes == []
    await device.disconnect()


async def test_each_published_frame_is_timed_in_the_ingest_handling_histogram(token, acme_camera):
    from streams import metrics

    def handled() -> float:
        return sum(s.value for m in metrics.INGEST_HANDLING.collect() for s in m.samples if s.name.endswith("_count"))

    before = handled()
    device, _ = await connect_device(token)
    for seq in range(5):
        await device.send_to(bytes_data=jpeg_frame(seq))
    await device.send_json_to({"type": "ping", "id": 1, "ts": 0})
    await receive_json_of_type(device, "pong")  # frames are handled in order: all five are done
    assert handled() - before == 5
    await device.disconnect()


async def test_the_newest_connection_of_a_device_wins_and_the_old_one_gets_4012(token, acme_camera):
    old, _ = await connect_device(token)
    new, _ = await connect_device(token)
    await expect_close(old, Close.REPLACED)
    await old.disconnect()
    # The replaced connection going away does not mark the device offline.
    assert await broadcast.redis_client().exists(groups.presence_key(acme_camera.pk))
    await new.disconnect()


# -- disconnects from elsewhere -------------------------------------------------------


async def test_revoking_the_token_in_use_disconnects_the_device_at_once_with_4002(token, acme_camera):
    device, _ = await connect_device(token)
    row = await database_sync_to_async(DeviceToken.objects.get)(device=acme_camera)
    await database_sync_to_async(row.revoke)()
    await expect_close(device, Close.TOKEN_REVOKED)


async def test_revoking_another_token_of_the_device_leaves_it_connected(token, acme_camera):
    device, _ = await connect_device(token)
    _other_clear, other = await database_sync_to_async(acme_camera.issue_token)()
    await database_sync_to_async(other.revoke)()
    await device.send_json_to({"type": "ping", "id": 3, "ts": 0})
    assert (await receive_json_of_type(device, "pong"))["id"] == 3
    await device.disconnect()


async def test_disabling_the_device_disconnects_it_at_once_with_4003(token, acme_camera):
    device, _ = await connect_device(token)

    def disable():
        camera = Device.objects.get(pk=acme_camera.pk)
        camera.enabled = False
        camera.save()

    await database_sync_to_async(disable)()
    await expect_close(device, Close.DEVICE_DISABLED)


# -- recorder contract ------------------------------------------------------------------


async def presence_hash(device_id) -> dict:
    return await broadcast.redis_client().hgetall(groups.presence_key(device_id))


async def test_a_device_with_recording_on_leaves_its_recording_session_for_the_recorder(token, acme_camera):
    device, welcome = await connect_device(token, hello={**HELLO, "audio": {"codec": "pcm_s16le", "rate": 16000,
                                                                             "channels": 1}})
    assert welcome["recording"] is True
    session = sessions.decode_session((await presence_hash(acme_camera.pk))[b"rec"])
    assert session == sessions.RecordingSession(str(acme_camera.organisation_id),
                                                {"codec": "pcm_s16le", "rate": 16000, "channels": 1})
    await device.disconnect()
    assert await presence_hash(acme_camera.pk) == {}  # the session ends with the connection


async def test_a_device_with_recording_off_leaves_no_recording_session(token, acme_camera):
    await database_sync_to_async(Device.objects.filter(pk=acme_camera.pk).update)(recording_policy="off")
    device, welcome = await connect_device(token)
    assert welcome["recording"] is False
    assert b"rec" not in await presence_hash(acme_camera.pk)
    await device.send_json_to({"type": "ping", "id": 1, "ts": 0})
    assert (await device.receive_json_from())["type"] == "pong"  # and no "recording" warning before it
    await device.disconnect()


@pytest_asyncio.fixture
async def no_recorders():
    key = sessions.recorders_key(groups.prefix())
    await broadcast.redis_client().delete(key)
    yield key
    await broadcast.redis_client().delete(key)


async def test_with_no_recorder_running_the_device_and_its_owner_are_told_recording_is_degraded(
        token, acme_camera, no_recorders):
    device, _ = await connect_device(token)
    state = await receive_json_of_type(device, "recording")
    assert state["state"] == "degraded" and "no recorder process is running" in state["reason"]
    flag = await database_sync_to_async(alerts.recording_degraded)(acme_camera.pk)
    assert "no recorder process" in flag["reason"]
    await device.disconnect()


async def test_with_a_recorder_running_no_warning_is_sent(token, acme_camera, no_recorders):
    await broadcast.redis_client().zadd(no_recorders, {"test-recorder": time.time()})
    device, _ = await connect_device(token)
    await device.send_json_to({"type": "ping", "id": 1, "ts": 0})
    assert (await device.receive_json_from())["type"] == "pong"
    await device.disconnect()


async def test_a_persisted_segment_is_reported_to_the_device(token, acme_camera):
    device, _ = await connect_device(token)
    event = {"type": "segment.persisted", "segment_id": "s-1", "start": "2026-01-01T00:00:00+00:00",
             "end": "2026-01-01T00:00:10+00:00", "frames": 100, "first_seq": 1, "last_seq": 100}
    await get_channel_layer().group_send(groups.device_group(acme_camera.pk), event)
    persisted = await receive_json_of_type(device, "persisted")
    assert persisted == {**event, "type": "persisted"}
    await device.disconnect()


async def test_a_degraded_recording_is_reported_to_the_device_and_live_goes_on(token, acme_camera):
    device, _ = await connect_device(token)
    await get_channel_layer().group_send(groups.device_group(acme_camera.pk),
                                         {"type": "recording.state", "state": "degraded", "reason": "spool disk full"})
    state = await receive_json_of_type(device, "recording")
    assert state == {"type": "recording", "state": "degraded", "reason": "spool disk full"}
    await device.send_to(bytes_data=jpeg_frame(1))  # live frames are still accepted
    await device.send_json_to({"type": "ping", "id": 7, "ts": 1.0})
    assert (await receive_json_of_type(device, "pong"))["id"] == 7
    await device.disconnect()


async def test_device_stats_and_error_reports_are_accepted_without_closing(token):
    device, _ = await connect_device(token)
    await device.send_json_to({"type": "stats", "encoder_fps": 9.8, "temperature_c": 41})
    await device.send_json_to({"type": "error", "message": "lens fogged"})
    await device.send_json_to({"type": "ping", "id": 11, "ts": 0})
    assert (await receive_json_of_type(device, "pong"))["id"] == 11
    await device.disconnect()


async def test_a_misbehaving_device_does_not_disturb_another_devices_stream(token, globex_camera):
    other_token = await database_sync_to_async(lambda: globex_camera.issue_token()[0])()
    good, _ = await connect_device(other_token)
    bad, _ = await connect_device(token)
    await bad.send_to(bytes_data=b"garbage that is not a header at all")
    await expect_close(bad, Close.MALFORMED_HEADER)
    await good.send_to(bytes_data=jpeg_frame(1))
    await good.send_json_to({"type": "ping", "id": 5, "ts": 0})
    assert (await receive_json_of_type(good, "pong"))["id"] == 5
    await good.disconnect()
