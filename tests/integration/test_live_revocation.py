"""Revocation across processes: a real uvicorn process holds a member's viewer (watching a
streaming camera) and wall sockets; this process deletes the membership in the database;
both sockets get an error and close with 4013 within 2 s, measured and printed. The
owner's sockets on the same server stay open and keep receiving frames."""
import asyncio
import json
import os
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

from accounts.models import Membership
from sightline_agent import protocol
from streams import groups
from tests.integration.test_live_two_processes import wait_for_port
from tests.support import free_port, subprocess_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"
REVOCATION_BAR_SECONDS = 2.0


@pytest.fixture
def server(django_db_setup, tmp_path):
    """One uvicorn process on the test database, sharing this process's channel-layer prefix:
    the membership change made here is announced through the same Redis groups."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "SIGHTLINE_VAR_DIR": str(settings.VAR_DIR),
        "DATABASE_URL": subprocess_database_url(),
        "CHANNEL_PREFIX": groups.prefix(),
        "CACHE_PREFIX": f"it-{uuid.uuid4().hex[:10]}",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "LOG_FORMAT": "console",
        "LOG_LEVEL": "WARNING",
        "CELERY_QUEUE": f"it-{uuid.uuid4().hex[:10]}",
    }
    log_path = tmp_path / "uvicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(UVICORN), "project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--lifespan", "off", "--ws-per-message-deflate", "false", "--no-access-log"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        sys.stderr.write(f"--- uvicorn ---\n{log_path.read_text(errors='replace')[-3000:]}\n")


@pytest.fixture
def rows(personas, acme, acme_camera):
    def session(user):
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    return {"token": acme_camera.issue_token()[0], "device": acme_camera, "organisation": acme,
            "viewer": session(personas["viewer"]), "owner": session(personas["owner"])}


async def browser(port: int, path: str, sessionid: str):
    return await websockets.connect(f"ws://127.0.0.1:{port}{path}", origin="http://127.0.0.1:%d" % port,
                                    additional_headers={"Cookie": f"sessionid={sessionid}"}, max_size=None)


async def next_json(ws, kind: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(message, str) and json.loads(message)["type"] == kind:
            return json.loads(message)


async def next_binary(ws, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(message, bytes):
            return message


async def until_closed(ws, started: float, timeout: float = 10) -> tuple[float, list[dict]]:
    """Read until the server closes; the seconds from `started` to the close, and the errors seen."""
    errors = []
    try:
        async with asyncio.timeout(timeout):
            async for message in ws:
                if isinstance(message, str) and json.loads(message)["type"] == "error":
                    errors.append(json.loads(message))
    except websockets.ConnectionClosed:
        pass
    return time.monotonic() - started, errors


async def stream_frames(device, stop: asyncio.Event) -> None:
    seq = 0
    while not stop.is_set():
        seq += 1
        ts = int(time.time() * 1e6)
        await device.send(protocol.encode_frame(protocol.KIND_JPEG, b"\xff\xd8frame\xff\xd9", seq, ts, True)[0])
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_deleting_a_membership_closes_the_members_open_viewer_and_wall_within_two_seconds(server, rows):
    port = server
    device_id, org_id = rows["device"].pk, rows["organisation"].pk
    device = await websockets.connect(f"ws://127.0.0.1:{port}/ws/device/", subprotocols=["sightline.v1"],
                                      additional_headers={"Authorization": f"Bearer {rows['token']}"})
    await device.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "resolution": "640x360",
                                  "fps": 10, "audio": None, "agent": "revocation-test"}))
    await next_json(device, "welcome")
    stop = asyncio.Event()
    streaming = asyncio.create_task(stream_frames(device, stop))
    try:
        viewer = await browser(port, f"/ws/view/{device_id}/", rows["viewer"])
        wall = await browser(port, f"/ws/wall/{org_id}/", rows["viewer"])
        owners_viewer = await browser(port, f"/ws/view/{device_id}/", rows["owner"])
        owners_wall = await browser(port, f"/ws/wall/{org_id}/", rows["owner"])
        await next_binary(viewer)  # the member is really watching
        await next_json(wall, "devices")
        await next_binary(owners_viewer)
        await next_json(owners_wall, "devices")

        started = time.monotonic()
        await sync_to_async(Membership.objects.filter(user__username="carol").delete)()
        (viewer_seconds, viewer_errors), (wall_seconds, wall_errors) = await asyncio.gather(
            until_closed(viewer, started), until_closed(wall, started)
        )
        print(f"\nrevocation: membership deleted -> viewer closed in {viewer_seconds * 1000:.0f} ms, "
              f"wall closed in {wall_seconds * 1000:.0f} ms (bar {REVOCATION_BAR_SECONDS:.0f} s)")

        for ws, seconds, errors in ((viewer, viewer_seconds, viewer_errors), (wall, wall_seconds, wall_errors)):
            assert ws.close_code == protocol.Close.ACCESS_REVOKED == 4013
            assert [error["code"] for error in errors] == [4013]
            assert seconds <= REVOCATION_BAR_SECONDS
        # The owner on the same server is unaffected: frames still arrive, the wall answers.
        await next_binary(owners_viewer, timeout=2)
        await owners_wall.send(json.dumps({"type": "ping", "id": 1, "ts": 1}))
        assert (await next_json(owners_wall, "pong", timeout=2))["id"] == 1
        await owners_viewer.close()
        await owners_wall.close()
    finally:
        stop.set()
        await streaming
        await device.close()
