"""Two real uvicorn processes sharing Redis and the test database: a device on A, a viewer on B.

Frames (whole and chunked) arrive intact and in order across processes; a
command from the viewer on B reaches the device on A and its ack comes back
and is saved.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from sightline_agent import protocol
from streams.models import Device
from tests.support import free_port, start_recorder, subprocess_database_url, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"server on port {port} did not start")


class RunningServers(list):
    """The ports of the started servers (unpack as a list), with their processes."""

    def __init__(self, ports, processes):
        super().__init__(ports)
        self.processes = processes


@pytest.fixture
def servers(django_db_setup, tmp_path):
    """Start two uvicorn processes and a recorder process on the test database with a private
    channel prefix."""
    env = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "SIGHTLINE_VAR_DIR": str(settings.VAR_DIR),
        "CHANNEL_PREFIX": f"it-{uuid.uuid4().hex[:10]}",
        "CACHE_PREFIX": f"it-{uuid.uuid4().hex[:10]}",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "LOG_FORMAT": "console",
        "LOG_LEVEL": "WARNING",
        "COMMAND_TIMEOUT_SECONDS": "5",
        # Closed segments queue tasks: to a queue of this run that no worker serves.
        "CELERY_QUEUE": f"it-{uuid.uuid4().hex[:10]}",
    }
    env["DATABASE_URL"] = subprocess_database_url()
    processes, ports = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            log = open(tmp_path / f"uvicorn-{name}.log", "wb")
            processes.append(subprocess.Popen(
                [str(UVICORN), "project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                 "--lifespan", "off", "--ws-per-message-deflate", "false", "--no-access-log"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            ))
            ports.append(port)
        for port, process in zip(ports, processes):
            wait_for_port(port, process)
        processes.append(start_recorder(env, tmp_path / "recorder.log"))
        yield RunningServers(ports, processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for name in ("uvicorn-a", "uvicorn-b", "recorder"):
            path = tmp_path / f"{name}.log"
            if path.exists():
                sys.stderr.write(f"--- {name} ---\n{path.read_text(errors='replace')[-3000:]}\n")


@pytest.fixture
def setup_rows(personas, acme_camera):
    token, _row = acme_camera.issue_token()
    client = Client()
    client.force_login(personas["owner"])
    return {"token": token, "sessionid": client.cookies["sessionid"].value, "device": acme_camera}


async def next_json(ws, kind: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(message, str):
            data = json.loads(message)
            if data["type"] == kind:
                return data


async def next_binary(ws, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(message, bytes):
            return message


def payload_for(seq: int, size: int) -> bytes:
    return (seq.to_bytes(4, "big") * (size // 4 + 1))[:size]


@pytest.mark.asyncio
async def test_frames_and_commands_cross_between_two_server_processes(servers, setup_rows):
    port_a, port_b = servers
    device_id = setup_rows["device"].pk
    device = await websockets.connect(
        f"ws://127.0.0.1:{port_a}/ws/device/",
        additional_headers={"Authorization": f"Bearer {setup_rows['token']}"},
        subprotocols=["sightline.v1"], max_size=None,
    )
    assert device.subprotocol == "sightline.v1"
    await device.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "resolution": "640x360",
                                  "fps": 20, "audio": None, "agent": "integration"}))
    welcome = await next_json(device, "welcome")
    assert welcome["device_id"] == str(device_id)

    viewer = await websockets.connect(
        f"ws://127.0.0.1:{port_b}/ws/view/{device_id}/",
        additional_headers={"Cookie": f"sessionid={setup_rows['sessionid']}"},
        origin=f"http://127.0.0.1:{port_b}", max_size=None,
    )
    viewer_welcome = await next_json(viewer, "welcome")
    assert viewer_welcome["role"] == "owner" and viewer_welcome["device"]["online"] is True

    # Frames: alternate small whole frames and large chunked ones. Lock-step
    # (send the next when the last arrived), since a viewer that falls behind
    # is allowed to skip frames (latest wins) and this test is about integrity.
    sizes = {seq: (200 if seq % 2 else 150_000) for seq in range(1, 21)}
    seqs = []
    for seq, size in sizes.items():
        for chunk in protocol.encode_frame(protocol.KIND_JPEG, payload_for(seq, size), seq, seq * 1000, True,
                                           max_message_bytes=64 * 1024):
            await device.send(chunk)
        message = await next_binary(viewer)
        header = protocol.parse_header(message, 1 << 24)
        assert header.chunk_count == 1 and header.timestamp_us == header.seq * 1000
        assert message[protocol.HEADER_SIZE:] == payload_for(header.seq, sizes[header.seq])
        seqs.append(header.seq)
    assert seqs == list(range(1, 21))

    # Command: viewer on B -> device on A -> ack -> viewer on B; saved on the row.
    await viewer.send(json.dumps({"type": "command", "id": "it-1", "settings": {"brightness": 33, "fps": 15}}))
    command = await next_json(device, "command")
    assert command["settings"] == {"brightness": 33, "fps": 15}
    await device.send(json.dumps({"type": "ack", "id": command["id"], "ok": True, "applied": command["settings"]}))
    result = await next_json(viewer, "command_result")
    assert result == {"type": "command_result", "id": "it-1", "ok": True, "applied": {"brightness": 33, "fps": 15}}
    row = await sync_to_async(Device.objects.get)(pk=device_id)
    assert (row.brightness, row.fps) == (33, 15)

    await device.close()
    offline = await next_json(viewer, "presence")
    assert offline["online"] is False
    await viewer.close()


def protocol_doc_device_example() -> str:
    """The Python device of docs/protocol.md section 10, exactly as published."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text[text.index("## 10. A minimal device in Python"):]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.asyncio
async def test_the_device_example_in_the_protocol_document_works_against_a_real_server(servers, setup_rows, tmp_path):
    port_a, port_b = servers
    device_id = setup_rows["device"].pk
    script = tmp_path / "device.py"
    script.write_text(protocol_doc_device_example())
    env = {**os.environ, "SIGHTLINE_URL": f"ws://127.0.0.1:{port_a}/ws/device/",
           "SIGHTLINE_DEVICE_TOKEN": setup_rows["token"]}
    log = open(tmp_path / "device.log", "wb")
    process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        viewer = await websockets.connect(
            f"ws://127.0.0.1:{port_b}/ws/view/{device_id}/",
            additional_headers={"Cookie": f"sessionid={setup_rows['sessionid']}"},
            origin=f"http://127.0.0.1:{port_b}", max_size=None,
        )
        await next_json(viewer, "welcome")
        frame = await next_binary(viewer, timeout=20)
        header = protocol.parse_header(frame, 1 << 24)
        assert header.kind == protocol.KIND_JPEG and frame[protocol.HEADER_SIZE:][:2] == b"\xff\xd8"
        await viewer.send(json.dumps({"type": "command", "id": "doc-1", "settings": {"brightness": 40}}))
        result = await next_json(viewer, "command_result")
        assert result["ok"] is True and result["applied"] == {"brightness": 40}
        await viewer.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        sys.stderr.write((tmp_path / "device.log").read_text(errors="replace")[-2000:])


@pytest.mark.asyncio
async def test_a_server_shutting_down_closes_devices_with_1012_and_the_recorder_closes_their_segment_durably(servers, setup_rows):
    # The server's shutdown takes the device offline; the recorder process, hearing that,
    # closes the device's segment durably with every frame the server published.
    from recordings import synthetic
    from recordings.models import Segment, SegmentState

    port_a, _ = servers
    device_row = setup_rows["device"]
    device = await websockets.connect(
        f"ws://127.0.0.1:{port_a}/ws/device/",
        additional_headers={"Authorization": f"Bearer {setup_rows['token']}"},
        subprotocols=["sightline.v1"], max_size=None,
    )
    await device.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "resolution": "160x120",
                                  "fps": 10, "audio": None, "agent": "integration"}))
    assert (await next_json(device, "welcome"))["recording"] is True
    now_us = time.time_ns() // 1000
    for seq in range(1, 6):
        await device.send(protocol.encode_frame(protocol.KIND_JPEG, synthetic.jpeg_frame(seq), seq,
                                                now_us + seq * 100_000, True)[0])
    await device.send(json.dumps({"type": "ping", "id": 99, "ts": 0}))
    assert (await next_json(device, "pong"))["id"] == 99  # messages are handled in order: all 5 frames are in

    server_a = next(p for p in servers.processes if "--port" in p.args and p.args[p.args.index("--port") + 1] == str(port_a))
    server_a.terminate()  # SIGTERM: what an orchestrator sends on a rolling restart
    await asyncio.wait_for(device.wait_closed(), 20)
    assert device.close_code in (1001, 1012)
    assert await asyncio.to_thread(server_a.wait, 20) is not None

    def closed_segment():
        return Segment.objects.filter(device=device_row, state=SegmentState.CLOSED).first()

    segment = await sync_to_async(wait_until)(closed_segment, 20, "the recorder to close the segment")
    assert segment.frames == 5 and (segment.first_seq, segment.last_seq) == (1, 5)


@pytest.mark.asyncio
async def test_talk_back_from_a_viewer_socket_on_one_process_reaches_the_device_on_the_other(servers, setup_rows):
    port_a, port_b = servers
    device_id = setup_rows["device"].pk
    device = await websockets.connect(
        f"ws://127.0.0.1:{port_a}/ws/device/", additional_headers={"Authorization": f"Bearer {setup_rows['token']}"},
        subprotocols=["sightline.v1"])
    await device.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "audio": None,
                                  "talkback": {"codecs": ["pcm_s16le"], "rate": 16000}, "agent": "integration"}))
    await next_json(device, "welcome")
    viewer = await websockets.connect(
        f"ws://127.0.0.1:{port_b}/ws/view/{device_id}/", additional_headers={"Cookie": f"sessionid={setup_rows['sessionid']}"},
        origin=f"http://127.0.0.1:{port_b}")
    welcome = await next_json(viewer, "welcome")
    assert welcome["media"]["talkback"]["codecs"] == ["pcm_s16le"]
    await viewer.send(json.dumps({"type": "talk", "action": "start", "codec": "pcm_s16le", "rate": 16000}))
    assert (await next_json(viewer, "talk_result"))["ok"] is True
    start = await next_json(device, "talk")
    assert (start["state"], start["codec"], start["rate"]) == ("start", "pcm_s16le", 16000)
    frame = protocol.encode_frame(protocol.KIND_AUDIO, b"\x01\x02" * 320, 1, int(time.time() * 1e6))[0]
    await viewer.send(frame)
    assert await next_binary(device) == frame
    await viewer.send(json.dumps({"type": "talk", "action": "stop"}))
    assert (await next_json(device, "talk"))["state"] == "stop"
    await viewer.close()
    await device.close()
