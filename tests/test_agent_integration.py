"""The agent as a real process against a real uvicorn server on the test database and Redis.

A device with recording off streams; a logged-in viewer (a `websockets` client
with a session cookie and Origin, in this process) receives its frames; an
owner's brightness command reaches the agent, is acked, saved, and brightens
the picture. The outsider's viewer socket is refused and gets no frame.
"""
import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings

from tests.support import subprocess_database_url
from django.db import connection
from django.test import Client
from PIL import Image, ImageStat

from sightline_agent import protocol
from streams.models import Device
from tests.integration.test_live_two_processes import free_port, next_binary, next_json, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[1]
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"
PYTHON = ROOT / ".venv" / "bin" / "python"


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server_env(request):
    """The server's environment; a test may add variables with
    ``@pytest.mark.parametrize("server_env", [{"MAX_BYTES_PER_SECOND": "100000"}], indirect=True)``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "SIGHTLINE_DEVICE_TOKEN"},
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "SIGHTLINE_VAR_DIR": str(settings.VAR_DIR),
        "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_PREFIX": f"agent-it-{uuid.uuid4().hex[:10]}",
        "CACHE_PREFIX": f"agent-it-{uuid.uuid4().hex[:10]}",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "LOG_FORMAT": "console",
        "LOG_LEVEL": "WARNING",
    }
    # The server must use the database this test writes to (under pytest-django, the test database).
    env["DATABASE_URL"] = subprocess_database_url()
    env.update(getattr(request, "param", {}))
    return env


@pytest.fixture
def server(server_env, tmp_path):
    port = free_port()
    log_path = tmp_path / "uvicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(UVICORN), "project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--lifespan", "off", "--ws-per-message-deflate", "false", "--no-access-log"],
            cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop(process)
        sys.stderr.write(f"--- uvicorn ---\n{log_path.read_text(errors='replace')[-3000:]}\n")


@pytest.fixture
def start_agent(server, server_env, tmp_path):
    started = []

    def start(clear: str, *args):
        token_file = tmp_path / f"device-{len(started)}.token"
        token_file.write_text(clear)
        token_file.chmod(0o600)
        log = open(tmp_path / f"agent-{len(started)}.log", "wb")
        process = subprocess.Popen(
            [str(PYTHON), "-m", "sightline_agent", "--url", f"ws://127.0.0.1:{server}/ws/device/",
             "--token-file", str(token_file), "--duration", "60", *args],
            cwd=ROOT, env=server_env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        started.append((process, log, clear))
        return process

    yield start
    for process, log, clear in started:
        stop(process)
        log.close()
        output = Path(log.name).read_text(errors="replace")
        assert clear not in output, "the agent printed its token"
        sys.stderr.write(f"--- agent ---\n{output[-3000:]}\n")


@pytest.fixture
def rows(personas, acme_camera):
    acme_camera.recording_policy = "off"
    acme_camera.width, acme_camera.height = 320, 180  # the server's stored settings win over --resolution
    acme_camera.save()
    sessions = {}
    for who in ("owner", "outsider"):
        client = Client()
        client.force_login(personas[who])
        sessions[who] = client.cookies["sessionid"].value
    token, _ = acme_camera.issue_token(label="agent integration test")
    return {"device": acme_camera, "sessions": sessions, "token": token}


def viewer(port: int, device_id, sessionid: str):
    return websockets.connect(f"ws://127.0.0.1:{port}/ws/view/{device_id}/", origin=f"http://127.0.0.1:{port}",
                              additional_headers={"Cookie": f"sessionid={sessionid}"},
                              compression=None, max_size=None)


async def next_frame(ws, kind: int, timeout: float = 15) -> tuple[protocol.FrameHeader, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        message = await next_binary(ws, max(0.01, deadline - time.monotonic()))
        header = protocol.parse_header(message, 1 << 24)
        if header.kind == kind:
            return header, message[protocol.HEADER_SIZE:]


def saved_device(device_id) -> Device:
    """Read the row from a worker thread, closing that thread's connection so the test
    database can be dropped at the end of the run (PostgreSQL refuses while one is open)."""
    try:
        return Device.objects.get(pk=device_id)
    finally:
        connection.close()


def luminance(jpeg: bytes) -> float:
    return ImageStat.Stat(Image.open(io.BytesIO(jpeg)).convert("L")).mean[0]


@pytest.mark.asyncio
async def test_the_agent_streams_to_a_real_server_and_applies_a_viewers_brightness_command(server, rows, start_agent):
    device = rows["device"]
    agent = start_agent(rows["token"], "--fps", "10", "--resolution", "640x360", "--name", "it")
    async with viewer(server, device.pk, rows["sessions"]["owner"]) as ws:
        welcome = await next_json(ws, "welcome")
        assert welcome["can_control"] is True
        headers, payloads = [], []
        for _ in range(5):
            header, payload = await next_frame(ws, protocol.KIND_JPEG)
            headers.append(header)
            payloads.append(payload)
        seqs = [h.seq for h in headers]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        assert all(abs(h.timestamp_us / 1e6 - time.time()) < 5 for h in headers)
        assert Image.open(io.BytesIO(payloads[-1])).size == (320, 180)
        before = luminance(payloads[-1])

        await ws.send(json.dumps({"type": "command", "id": "it-brightness", "settings": {"brightness": 60}}))
        result = await next_json(ws, "command_result")
        assert result == {"type": "command_result", "id": "it-brightness", "ok": True, "applied": {"brightness": 60}}
        after = before
        deadline = time.monotonic() + 10
        while after < before + 30 and time.monotonic() < deadline:
            _, payload = await next_frame(ws, protocol.KIND_JPEG)
            after = luminance(payload)
        assert after > before + 30, (before, after)

        await ws.send(json.dumps({"type": "command", "id": "it-generic", "settings": {"x_ir_mode": "on"}}))
        assert (await next_json(ws, "command_result"))["ok"] is True
        row = await sync_to_async(saved_device)(device.pk)
        assert row.brightness == 60 and row.extra_settings.get("x_ir_mode") == "on"

        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 15) == 0
        offline = await next_json(ws, "presence")
        assert offline["online"] is False


@pytest.mark.asyncio
async def test_h264_and_audio_reach_a_viewer_and_the_outsider_gets_nothing(server, rows, start_agent):
    device = rows["device"]
    start_agent(rows["token"], "--codec", "h264", "--audio", "--fps", "10", "--auth", "subprotocol", "--quiet")
    async with viewer(server, device.pk, rows["sessions"]["outsider"]) as outsider:
        error = await next_json(outsider, "error")
        assert error["code"] == protocol.Close.NOT_FOUND
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                message = await asyncio.wait_for(outsider.recv(), 5)
                assert not isinstance(message, bytes), "the outsider received a frame"
        assert outsider.close_code == protocol.Close.NOT_FOUND
    async with viewer(server, device.pk, rows["sessions"]["owner"]) as ws:
        await next_json(ws, "welcome")
        header, payload = await next_frame(ws, protocol.KIND_H264)
        deadline = time.monotonic() + 10
        while not header.keyframe and time.monotonic() < deadline:
            header, payload = await next_frame(ws, protocol.KIND_H264)
        assert header.keyframe and payload.startswith(b"\x00\x00\x00\x01")
        audio_header, audio = await next_frame(ws, protocol.KIND_AUDIO)
        assert len(audio) == 640 and audio_header.seq >= 1  # 20 ms of 16 kHz mono PCM
