"""The RTSP bridge as a real process, between a real RTSP camera and a real Sightline.

The camera is GStreamer's RTSP server (tests/rtsp_camera.py: H.264 320x240 at
10 fps and G.711 A-law audio, all clients sharing one encoder, so two clients
receive the same access units); Sightline is uvicorn on the test database and
Redis (fixtures of tests/test_agent_integration.py). Skipped, with the reason,
when the GStreamer packages are not installed (scripts/test installs them as root).
"""
import asyncio
import socket
import subprocess
import sys
import threading
import time

import av
import pytest

from sightline_agent import audioformats, protocol
from sightline_agent.annexb import split_annexb, without_parameter_sets
from streams.models import Device
from tests.integration.test_live_two_processes import next_json, wait_for_port
from tests.integration.test_recording_worker import stack  # noqa: F401 -- fixture
from tests.rtsp_camera import TestCamera, rtsp_server_missing
from tests.support import free_port, wait_until
from tests.test_agent_integration import (  # noqa: F401 -- fixtures
    PYTHON,
    ROOT,
    next_frame,
    rows,
    server,
    server_env,
    stop,
    viewer,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(rtsp_server_missing() is not None,
                                 reason=f"RTSP TESTS NOT RUN: {rtsp_server_missing()}")]

PASSWORD = "pa:ss/w0rd-secret"


@pytest.fixture
def cameras(tmp_path):
    started = []

    def start(running: bool = True, **kwargs) -> TestCamera:
        camera = TestCamera(free_port(), tmp_path, **kwargs)
        started.append(camera)
        if running:
            camera.start()
        return camera

    yield start
    for camera in started:
        camera.stop()


@pytest.fixture
def bridge(server, server_env, tmp_path):
    """Start `sightline-agent bridge` on a config of (name, camera URL, clear token, extra keys)."""
    started = []

    def start(entries, *args, **defaults):
        lines = ["status_every = 1", "", "[defaults]", f'sightline_url = "ws://127.0.0.1:{server}/ws/device/"']
        lines += [f"{key} = {value!r}" for key, value in defaults.items()]
        for name, url, token, *extra in entries:
            token_file = tmp_path / f"{name}.token"
            token_file.write_text(token)
            lines += ["", "[[camera]]", f'name = "{name}"', f"url = {url!r}", f'token_file = "{token_file.name}"']
            lines += [f"{key} = {value!r}" for key, value in (extra[0] if extra else {}).items()]
        config = tmp_path / "bridge.toml"
        config.write_text("\n".join(lines).replace("'", '"') + "\n")
        log_path = tmp_path / f"bridge-{len(started)}.log"
        log = open(log_path, "wb")
        process = subprocess.Popen([str(PYTHON), "-m", "sightline_agent", "bridge", "--config", str(config), *args],
                                   cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT)
        started.append((process, log, log_path, [e[2] for e in entries]))
        return process, log_path

    yield start
    for process, log, log_path, tokens in started:
        stop(process)
        log.close()
        output = log_path.read_text(errors="replace")
        sys.stderr.write(f"--- bridge ---\n{output[-4000:]}\n")
        assert PASSWORD not in output and "pa%3Ass" not in output, "the bridge printed a camera password"
        assert not any(token in output for token in tokens), "the bridge printed a device token"


def direct_read(url: str, stop_reading: threading.Event, out: list[bytes], timeout: float = 40) -> None:
    """What PyAV reads from the camera itself: the video packets' bytes."""
    container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10, 10))
    try:
        deadline = time.monotonic() + timeout
        for packet in container.demux(video=0):
            if packet.size:
                out.append(bytes(packet))
            if stop_reading.is_set() or time.monotonic() > deadline:
                return
    finally:
        container.close()


def contiguous_in(needle: list, haystack: list) -> bool:
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def new_device(org, name: str) -> tuple[Device, str]:
    device = Device.objects.create(organisation=org, name=name, recording_policy="off")
    token, _ = device.issue_token(label="rtsp bridge test")
    return device, token


async def video_frames(ws, count: int, timeout: float = 20) -> list[tuple[protocol.FrameHeader, bytes]]:
    """`count` H.264 frames starting at a keyframe."""
    frames = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        header, payload = await next_frame(ws, protocol.KIND_H264, max(0.1, deadline - time.monotonic()))
        if frames or header.keyframe:
            frames.append((header, payload))
    return frames


@pytest.mark.asyncio
@pytest.mark.parametrize("audio, samples", [("alaw", 1024), ("aac", 1024)])  # samples per audio packet
async def test_the_bridge_relays_the_cameras_access_units_byte_for_byte_with_its_audio(
        server, rows, cameras, bridge, audio, samples):
    camera = cameras(user="viewer", password=PASSWORD, audio=audio)
    reading, direct = threading.Event(), []
    reader = threading.Thread(target=direct_read, args=(camera.url(), reading, direct))
    reader.start()
    try:
        bridge([("door", camera.url(), rows["token"])])
        async with viewer(server, rows["device"].pk, rows["sessions"]["owner"]) as ws:
            await next_json(ws, "welcome")
            frames = await video_frames(ws, 25)
            audio_header, audio_payload = await next_frame(ws, protocol.KIND_AUDIO)
            await asyncio.sleep(0.5)  # the direct reader is a little behind the viewer at most
    finally:
        reading.set()
        await asyncio.to_thread(reader.join, 15)

    relayed = [without_parameter_sets(payload) for _, payload in frames]
    read = [without_parameter_sets(packet) for packet in direct]
    assert len(read) > 25 and contiguous_in(relayed, read), "the relayed access units differ from the camera's"
    headers = [h for h, _ in frames]
    assert headers[0].keyframe and payload_has_parameter_sets(frames[0][1])
    assert [h.seq for h in headers] == list(range(headers[0].seq, headers[0].seq + 25))
    steps = [(b.timestamp_us - a.timestamp_us) / 1000 for a, b in zip(headers, headers[1:])]
    assert all(60 <= step <= 140 for step in steps[5:]), steps  # the camera's 10 fps, from its own clock
    assert abs(headers[-1].timestamp_us / 1e6 - time.time()) < 3

    decoder = av.CodecContext.create("h264", "r")
    pictures = [picture for _, payload in frames for picture in decoder.decode(av.Packet(payload))]
    pictures += list(decoder.decode(None))
    assert len(pictures) == 25 and (pictures[0].width, pictures[0].height) == (320, 240)
    # G.711 A-law (8 kHz) or AAC (16 kHz) mono, relayed as the camera sent it (docs/protocol.md 3a).
    assert audio_header.seq >= 1
    if audio == "alaw":  # one byte per sample, 1024 samples a packet here
        assert len(audio_payload) == samples and len(set(audio_payload)) > 10
    else:  # one raw AAC-LC access unit: decodes to 1024 samples with the config of the hello
        aac = av.CodecContext.create("aac", "r")
        aac.extradata = audioformats.audio_specific_config(16000, 1)
        decoded = aac.decode(av.Packet(audio_payload))
        assert sum(f.samples for f in decoded) in (0, samples)


def payload_has_parameter_sets(payload: bytes) -> bool:
    return len(without_parameter_sets(payload)) < len(split_annexb(payload))


@pytest.mark.asyncio
async def test_a_camera_down_at_start_then_back_after_ten_seconds_is_relayed_within_five_and_the_device_was_offline(
        server, rows, cameras, bridge):
    camera = cameras(running=False)
    bridge([("door", camera.url(), rows["token"], {"read_timeout_seconds": 3, "retry_max_seconds": 2})])
    async with viewer(server, rows["device"].pk, rows["sessions"]["owner"]) as ws:
        welcome = await next_json(ws, "welcome")
        assert welcome["device"]["online"] is False
        await asyncio.sleep(2)  # the bridge has found the camera down a few times
        await asyncio.to_thread(camera.start)
        assert (await next_json(ws, "presence", timeout=10))["online"] is True
        await video_frames(ws, 3)
        await asyncio.to_thread(camera.stop)
        offline = await next_json(ws, "presence", timeout=10)
        assert offline["online"] is False
        await asyncio.sleep(10)
        await asyncio.to_thread(camera.start)
        back = time.monotonic()
        online = await next_json(ws, "presence", timeout=10)
        assert online["online"] is True
        header, _ = (await video_frames(ws, 1, timeout=10))[0]
        assert time.monotonic() - back < 5, "the bridge took more than 5 s to relay the camera again"
        assert header.keyframe


@pytest.mark.asyncio
async def test_wrong_credentials_and_an_unknown_path_are_said_clearly_and_retried_only_at_the_backoff(
        server, server_env, rows, cameras, bridge, tmp_path):
    camera = cameras(user="viewer", password=PASSWORD)
    process, log_path = bridge([("wrong-password", camera.url(password="wrong-" + PASSWORD), rows["token"]),
                                ("unknown-path", camera.url(path="/nothing"), rows["token"])],
                               "--duration", "9", refused_retry_seconds=4)
    assert await asyncio.to_thread(process.wait, 20) == 0
    output = log_path.read_text()
    unauthorized = [line for line in output.splitlines() if "[wrong-password]" in line and "401" in line]
    not_found = [line for line in output.splitlines() if "[unknown-path]" in line and "404" in line]
    assert unauthorized and "check the user and password" in unauthorized[0]
    assert not_found and "check the path" in not_found[0]
    # 9 s at one attempt per 4..6 s: at most three attempts each, never a fast loop.
    for lines in (unauthorized, not_found):
        seconds = [int(line[:2]) * 3600 + int(line[3:5]) * 60 + int(line[6:8]) for line in lines]
        assert len(lines) <= 3 and all(b - a >= 3 for a, b in zip(seconds, seconds[1:])), output
    assert "rtsp://***@127.0.0.1" in output

    # An H.265 camera: refused once, with what to change in the camera.
    hevc = cameras(audio="none", extra=("--codec", "h265"))
    process, log_path = bridge([("hevc", hevc.url(), rows["token"])], "--duration", "4")
    assert await asyncio.to_thread(process.wait, 20) == 0
    refusals = [line for line in log_path.read_text().splitlines() if "[hevc]" in line and "H.265" in line]
    assert len(refusals) == 1 and "set this stream to H.264" in refusals[0]

    # The single-camera agent says the same, once in its first 5 s (it retries refusals after 30..45 s).
    token_file = tmp_path / "agent.token"
    token_file.write_text(rows["token"])
    agent = await asyncio.to_thread(
        subprocess.run, [str(PYTHON), "-m", "sightline_agent", "--url", f"ws://127.0.0.1:{server}/ws/device/",
                         "--token-file", str(token_file), "--source", camera.url(password="bad"), "--duration", "5"],
        cwd=ROOT, env=server_env, capture_output=True, text=True, timeout=30)
    assert agent.returncode == 0
    assert agent.stderr.count("401 Unauthorized") == 1, agent.stderr
    assert "bad@" not in agent.stderr and ":bad" not in agent.stderr


@pytest.mark.asyncio
async def test_a_bridge_of_four_cameras_with_one_dead_streams_the_other_three_unaffected(
        server, rows, personas, cameras, bridge):
    camera = cameras(audio="none")
    acme = rows["device"].organisation
    devices = [(rows["device"], rows["token"])]
    devices += [await asyncio.to_thread(new_device, acme, f"Camera {n}") for n in (2, 3, 4)]
    # The dead camera accepts the TCP connection and never answers: the worst case, a hang.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    dead_url = f"rtsp://127.0.0.1:{hung.getsockname()[1]}/cam"
    try:
        bridge([("cam1", camera.url(), devices[0][1]), ("cam2", camera.url(), devices[1][1]),
                ("dead", dead_url, devices[2][1]), ("cam4", camera.url(), devices[3][1])],
               open_timeout_seconds=3, read_timeout_seconds=3)
        live = [devices[0][0], devices[1][0], devices[3][0]]
        started = time.monotonic()

        async def watch(device):
            async with viewer(server, device.pk, rows["sessions"]["owner"]) as ws:
                welcome = await next_json(ws, "welcome")
                frames = await video_frames(ws, 20)
                return welcome, frames

        results = await asyncio.gather(*(watch(device) for device in live))
        for welcome, frames in results:
            seqs = [h.seq for h, _ in frames]
            assert seqs == list(range(seqs[0], seqs[0] + 20))  # no gap: nothing stalled them
        assert time.monotonic() - started < 20
        async with viewer(server, devices[2][0].pk, rows["sessions"]["owner"]) as ws:
            welcome = await next_json(ws, "welcome")
            assert welcome["device"]["online"] is False
            with pytest.raises(asyncio.TimeoutError):
                await next_frame(ws, protocol.KIND_H264, timeout=2)
    finally:
        hung.close()


def _recorded(device_id):
    from recordings.models import Segment

    try:
        return list(Segment.objects.filter(device_id=device_id).order_by("start"))
    finally:
        from django.db import connection

        connection.close()


@pytest.mark.asyncio
async def test_the_relayed_camera_is_recorded_and_the_recording_decodes_to_the_frames_recorded(
        stack, rows, cameras, tmp_path):
    from recordings.models import SegmentState
    from tests.integration.test_recording_worker import decoded_frames, stored_bytes
    from tests.support import start_recorder

    camera = cameras(audio="none")
    device = rows["device"]
    await asyncio.to_thread(Device.objects.filter(pk=device.pk).update, recording_policy="continuous",
                            expected_media="h264")
    env = {**stack.env, "ALLOWED_HOSTS": "localhost,127.0.0.1", "LOG_LEVEL": "WARNING", "SEGMENT_SECONDS": "3"}
    port = free_port()
    uvicorn = subprocess.Popen([str(ROOT / ".venv" / "bin" / "uvicorn"), "project.asgi:application", "--host",
                                "127.0.0.1", "--port", str(port), "--lifespan", "off", "--no-access-log"],
                               cwd=ROOT, env=env, stdout=open(tmp_path / "uvicorn.log", "wb"), stderr=subprocess.STDOUT)
    recorder = None
    try:
        await asyncio.to_thread(wait_for_port, port, uvicorn)
        recorder = await asyncio.to_thread(start_recorder, env, tmp_path / "recorder.log")
        await asyncio.to_thread(stack.start_worker)
        token_file = tmp_path / "door.token"
        token_file.write_text(rows["token"])
        agent = await asyncio.to_thread(
            subprocess.run, [str(PYTHON), "-m", "sightline_agent", "--url", f"ws://127.0.0.1:{port}/ws/device/",
                             "--token-file", str(token_file), "--source", camera.url(), "--frames", "40", "--quiet"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=40)
        assert agent.returncode == 0, agent.stderr

        def archived():
            segments = _recorded(device.pk)
            return segments if segments and all(s.state == SegmentState.ARCHIVED for s in segments) else None

        segments = await asyncio.to_thread(wait_until, archived, 40, "the recording to be archived")
        recorded = sum(s.frames for s in segments)
        sys.stderr.write(f"recorded {recorded} of 40 frames in {len(segments)} segment(s)\n")
        assert 30 <= recorded <= 40  # the recorder starts on the first keyframe it sees
        for segment in segments:
            data = await asyncio.to_thread(stored_bytes, segment.storage_key)
            assert decoded_frames(data) == segment.frames == segment.last_seq - segment.first_seq + 1
    finally:
        if recorder is not None:
            recorder.terminate()
            recorder.wait(15)
        uvicorn.terminate()
        uvicorn.wait(15)
