"""The RTSP source's pure parts: URL redaction, H.264 access units, retry delays, capture
times, the bridge's config file, and the relay loop with a fake camera (no sockets)."""
import asyncio
import io
from pathlib import Path

import av
import pytest

from sightline_agent.annexb import (
    BitstreamError,
    access_unit,
    avcc_to_annexb,
    parameter_sets_from_extradata,
    split_annexb,
    without_parameter_sets,
)
from sightline_agent.bridge import BridgeConfigError, parse_config, status_table
from sightline_agent.passthrough import PassthroughAgent
from sightline_agent.reconnect import Backoff
from sightline_agent.rtsp import (
    CameraInfo,
    CameraRefused,
    Clock,
    Item,
    RtspCamera,
    check_video_codec,
    classify_open_error,
    explain_open_error,
    redact_url,
    retry_delay,
    scrub,
)
from sightline_agent.session import AgentConfig
from sightline_agent.status import Counters, StatusLine
from sightline_agent.protocol import KIND_AUDIO, KIND_H264

SPS = b"\x67\x42\xc0\x0c\xda"
PPS = b"\x68\xce\x3c\x80"
AUD = b"\x09\x10"
IDR = b"\x65\x88\x84\x00\x33"
P_SLICE = b"\x41\x9a\x00\x11"
SC = b"\x00\x00\x00\x01"


# -- credentials ----------------------------------------------------------------------

def test_redact_url_hides_user_and_password_and_keeps_where_the_camera_is():
    assert redact_url("rtsp://admin:pa%3Ass@10.0.0.5:554/Streaming/Channels/101") == \
        "rtsp://***@10.0.0.5:554/Streaming/Channels/101"
    assert redact_url("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


def test_redact_url_hides_credentials_passed_as_query_parameters():
    redacted = redact_url("rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=hunter2")
    assert "hunter2" not in redacted and "admin" not in redacted and "channel=1" in redacted


def test_scrub_removes_the_url_and_the_password_from_a_library_message():
    url = "rtsp://admin:s3cr%2Ft@10.0.0.5/live"
    text = f"[Errno 111] Connection refused: '{url}' (password s3cr/t, s3cr%2Ft)"
    scrubbed = scrub(text, url)
    assert "s3cr" not in scrubbed and "rtsp://***@10.0.0.5/live" in scrubbed


# -- H.264 ------------------------------------------------------------------------------

def test_an_annexb_keyframe_with_its_parameter_sets_is_sent_unchanged():
    packet = SC + AUD + SC + SPS + SC + PPS + SC + IDR
    assert access_unit(packet, True, SC + SPS + SC + PPS) == packet


def test_a_keyframe_without_parameter_sets_gets_them_after_its_delimiter():
    packet = SC + AUD + SC + IDR
    assert access_unit(packet, True, SC + SPS + SC + PPS) == SC + AUD + SC + SPS + SC + PPS + SC + IDR
    assert access_unit(SC + IDR, True, SC + SPS + SC + PPS) == SC + SPS + SC + PPS + SC + IDR


def test_a_delta_frame_is_never_given_parameter_sets():
    assert access_unit(SC + P_SLICE, False, SC + SPS + SC + PPS) == SC + P_SLICE


def test_avcc_packets_become_annexb_with_the_slices_untouched():
    avcc = len(IDR).to_bytes(4, "big") + IDR + len(P_SLICE).to_bytes(4, "big") + P_SLICE
    assert avcc_to_annexb(avcc) == SC + IDR + SC + P_SLICE
    assert avcc_to_annexb(len(IDR).to_bytes(2, "big") + IDR, 2) == SC + IDR
    with pytest.raises(BitstreamError):
        avcc_to_annexb(b"\x00\x00\x00\x09" + IDR)


def test_parameter_sets_come_from_an_avcc_record_or_annexb_extradata():
    record = bytes([1, 0x42, 0xC0, 0x0C, 0xFF, 0xE1]) + len(SPS).to_bytes(2, "big") + SPS + b"\x01" \
        + len(PPS).to_bytes(2, "big") + PPS
    assert parameter_sets_from_extradata(record) == (SC + SPS + SC + PPS, 4)
    assert parameter_sets_from_extradata(SC + SPS + SC + PPS) == (SC + SPS + SC + PPS, 4)
    assert parameter_sets_from_extradata(None) == (b"", 4)


def test_split_annexb_handles_three_and_four_byte_start_codes():
    assert split_annexb(SC + SPS + b"\x00\x00\x01" + PPS) == [SPS, PPS]
    assert without_parameter_sets(SC + AUD + SC + SPS + SC + PPS + SC + IDR) == [AUD, IDR]


def test_h265_and_other_codecs_are_refused_with_what_to_do():
    with pytest.raises(CameraRefused, match="H.265.*H.264 in the camera's video settings"):
        check_video_codec("hevc")
    with pytest.raises(CameraRefused, match="mjpeg"):
        check_video_codec("mjpeg")
    check_video_codec("h264")


# -- retrying ---------------------------------------------------------------------------

def test_a_camera_that_is_down_is_retried_with_jittered_backoff_under_the_cap():
    backoff = Backoff(base=0.5, cap=4.0, rng=lambda: 1.0)
    assert [retry_delay(False, backoff) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert retry_delay(False, Backoff(base=0.5, cap=4.0, rng=lambda: 0.0)) == 0.0


def test_a_camera_that_refuses_us_is_retried_slowly_whatever_the_backoff():
    assert retry_delay(True, Backoff(rng=lambda: 0.0), 30) == 30
    assert retry_delay(True, Backoff(rng=lambda: 1.0), 30) == 45


def test_refusals_are_told_apart_from_outages():
    assert classify_open_error(av.error.HTTPUnauthorizedError(825242872, "401")) is CameraRefused
    assert classify_open_error(ConnectionRefusedError(111, "refused")).__name__ == "CameraUnavailable"
    assert "check the path" in explain_open_error(av.error.HTTPNotFoundError(875574520, "404"))


def test_capture_times_follow_the_camera_clock_and_reanchor_after_a_jump():
    now = [1000.0]
    clock = Clock(wall=lambda: now[0])
    assert clock.timestamp_us(5.0) == 1000_000_000
    now[0] = 1000.05  # delivered late: the camera's own spacing is kept
    assert clock.timestamp_us(5.1) == 1000_100_000
    assert clock.timestamp_us(500.0) == 1000_050_000  # the camera's timeline jumped
    assert clock.timestamp_us(None) == 1000_050_000


# -- the bridge's file ------------------------------------------------------------------

CONFIG = """
status_every = 5
[defaults]
sightline_url = "wss://portal.example.com/ws/device/"
[[camera]]
name = "door"
url = "rtsp://u:p@10.0.0.5/live"
token_file = "door.token"
[[camera]]
name = "yard"
url = "rtsp://10.0.0.6/live"
token_file = "/etc/sightline/yard.token"
transport = "udp"
retry_max_seconds = 2
"""


def test_the_bridge_config_gives_each_camera_its_defaults_and_overrides():
    cameras, every = parse_config(CONFIG, Path("/srv/bridge"))
    assert every == 5
    assert [c.name for c in cameras] == ["door", "yard"]
    assert cameras[0].token_file == Path("/srv/bridge/door.token") and cameras[0].transport == "tcp"
    assert cameras[1].token_file == Path("/etc/sightline/yard.token") and cameras[1].transport == "udp"
    assert cameras[1].retry_max_seconds == 2.0
    assert cameras[1].sightline_url == "wss://portal.example.com/ws/device/"


@pytest.mark.parametrize("text, message", [
    ("[[camera]]\nname='a'\n", "'url' is required"),
    ("status_every = -1\n[[camera]]\n", "status_every"),
    ("x = [", "not valid TOML"),
    ("", "no cameras"),
    (CONFIG.replace('transport = "udp"', 'transport = "quic"'), "camera yard: transport"),
    (CONFIG.replace('name = "yard"', 'name = "door"'), "used twice"),
    (CONFIG.replace('rtsp://u:p@10.0.0.5/live', 'http://u:p@10.0.0.5/live'), "camera door: url must start"),
    (CONFIG.replace("retry_max_seconds = 2", "retry_max = 2"), "unknown key(s) retry_max"),
])
def test_a_bad_bridge_config_names_the_camera_and_key_and_never_the_url(text, message):
    with pytest.raises(BridgeConfigError) as raised:
        parse_config(text, Path("/srv"))
    assert message in str(raised.value) and "u:p@" not in str(raised.value)


def test_the_status_table_has_one_line_per_camera_with_its_states():
    camera = RtspCamera("rtsp://u:p@10.0.0.5/live")
    camera.state, camera.reconnects, camera.last_error = "retrying", 3, "the camera did not answer in time"
    agent = PassthroughAgent(AgentConfig(url="ws://x/ws/device/", token="t"), camera)
    agent.counters.state = "camera down"
    table = status_table([("door", agent.counters, camera)], 0.0)
    assert "door" in table and "camera down" in table and "retrying" in table and "u:p@" not in table
    assert table.count("\n") == 2


# -- the relay loop ---------------------------------------------------------------------

class FakeSocket:
    def __init__(self):
        self.sent = []

    async def send(self, message):
        self.sent.append(message)


@pytest.mark.asyncio
async def test_the_relay_starts_at_a_keyframe_sends_audio_after_it_and_ends_when_the_camera_is_lost():
    camera = RtspCamera("rtsp://10.0.0.5/live")
    camera.queue, camera.opened = asyncio.Queue(), asyncio.Event()
    camera.info = CameraInfo(320, 240, 10.0, {"codec": "pcm_s16le", "rate": 8000, "channels": 1})
    camera.generation = 1
    camera.opened.set()
    agent = PassthroughAgent(AgentConfig(url="ws://x/ws/device/", token="t"), camera)
    agent._hello_generation = 1
    for item in [Item("video", 1, SC + P_SLICE, False, 1), Item("audio", 1, b"\x00\x01" * 8, False, 2),
                 Item("video", 1, SC + SPS + SC + PPS + SC + IDR, True, 3), Item("audio", 1, b"\x00\x02" * 8, False, 4),
                 Item("video", 0, SC + P_SLICE, False, 5),  # of an older camera connection: dropped
                 Item("video", 1, SC + P_SLICE, False, 6), Item("lost", 1, message="gone")]:
        camera.queue.put_nowait(item)
    ws = FakeSocket()
    # The queue is emptied at the start of a session; these arrive after it started.
    items = [camera.queue.get_nowait() for _ in range(camera.queue.qsize())]

    async def feed():
        await asyncio.sleep(0)
        for item in items:
            camera.queue.put_nowait(item)

    await asyncio.wait_for(asyncio.gather(agent._video(ws), feed()), 5)
    kinds = [(message[2], int.from_bytes(message[8:16], "big")) for message in ws.sent]
    assert kinds == [(KIND_H264, 3), (KIND_AUDIO, 4), (KIND_H264, 6)]


def test_commands_to_a_relayed_camera_are_acked_as_unsupported_naming_the_settings():
    agent = PassthroughAgent(AgentConfig(url="ws://x/ws/device/", token="t"), RtspCamera("rtsp://10.0.0.5/live"))
    ack = agent.handle_command({"type": "command", "id": "c1", "settings": {"fps": 5, "resolution": "640x360"}})
    assert ack["ok"] is False and ack["id"] == "c1"
    assert ack["error"].startswith("unsupported:") and "fps, resolution" in ack["error"]


def test_a_camera_faster_than_the_servers_max_fps_is_reported_with_what_to_do():
    camera = RtspCamera("rtsp://10.0.0.5/live")
    camera.info = CameraInfo(1920, 1080, 30.0, None)
    out = io.StringIO()
    agent = PassthroughAgent(AgentConfig(url="ws://x/ws/device/", token="t"), camera,
                             StatusLine(Counters(), stream=out))
    agent._apply_welcome({"type": "welcome", "device_id": "d", "limits": {"max_fps": 15}})
    assert "the camera sends 30 fps, above the server's max_fps=15" in out.getvalue()


@pytest.mark.asyncio
async def test_stopping_while_the_camera_is_down_ends_the_session_at_once():
    camera = RtspCamera("rtsp://10.0.0.5/live")
    camera.opened = asyncio.Event()
    agent = PassthroughAgent(AgentConfig(url="ws://x/ws/device/", token="t"), camera)
    session = asyncio.create_task(agent._session())
    await asyncio.sleep(0.05)
    assert agent.counters.state == "camera down" and not session.done()
    agent.stop()
    assert await asyncio.wait_for(session, 1) == (None, False)


@pytest.mark.asyncio
async def test_a_camera_lost_between_hello_and_relay_ends_the_session_instead_of_hanging():
    camera = RtspCamera("rtsp://10.0.0.5/live")
    camera.queue, camera.opened = asyncio.Queue(), asyncio.Event()
    camera.generation = 1
    camera.queue.put_nowait(Item("lost", 1, message="gone"))  # opened was cleared with it
    agent = PassthroughAgent(AgentConfig(url="ws://x/ws/device/", token="t"), camera)
    agent._hello_generation = 1
    ws = FakeSocket()
    await asyncio.wait_for(agent._video(ws), 1)
    assert ws.sent == []


def test_a_cameras_g711_aac_and_opus_are_relayed_as_received_and_other_audio_is_decoded():
    from sightline_agent.rtsp import passthrough_audio

    assert passthrough_audio("pcm_alaw", 8000, 1, None) == {"codec": "pcm_alaw", "rate": 8000, "channels": 1}
    assert passthrough_audio("aac", 16000, 1, b"\x14\x08") == {
        "codec": "aac", "rate": 16000, "channels": 1, "format": "raw", "config": "1408"}
    assert passthrough_audio("opus", 48000, 2, None) == {"codec": "opus", "rate": 48000, "channels": 2}
    assert passthrough_audio("pcm_alaw", 8000, 2, None) is None  # stereo G.711 is not in the protocol
    assert passthrough_audio("aac", 16000, 1, b"") is None  # no config: decode instead
    assert passthrough_audio("adpcm_g726", 8000, 1, None) is None
