"""The non-browser viewer of docs/protocol.md (section 5), run as written against a real uvicorn
server: it logs in with a password through POST /login/, learns the organisation id from
GET /api/organisations/, finds the streaming device and receives its frames. The playback
example of docs/playback.md runs on top of it. The code is read from the docs, so doc and
server cannot drift apart (issue 9, item 14)."""
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import websockets
from django.conf import settings

from sightline_agent import protocol
from tests.support import free_port, subprocess_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"


def code_block(doc: str, first_line: str) -> str:
    """The fenced python block of docs/<doc> whose first line starts with first_line."""
    text = (ROOT / "docs" / doc).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, f"no single python block starting {first_line!r} in docs/{doc}"
    return found[0]


@pytest.fixture
def portal(django_db_setup, tmp_path):
    """One uvicorn process on the test database, with a private channel prefix; yields its origin."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "SIGHTLINE_VAR_DIR": str(settings.VAR_DIR),
        "CHANNEL_PREFIX": f"it-{uuid.uuid4().hex[:10]}",
        "CACHE_PREFIX": f"it-{uuid.uuid4().hex[:10]}",
        "CELERY_QUEUE": f"it-{uuid.uuid4().hex[:10]}",  # the export it queues is never run
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CSRF_TRUSTED_ORIGINS": origin,
        "LOG_FORMAT": "console",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": subprocess_database_url(),
    }
    log_path = tmp_path / "uvicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(UVICORN), "project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--lifespan", "off", "--ws-per-message-deflate", "false", "--no-access-log"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        yield origin
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        sys.stderr.write(f"--- uvicorn ---\n{log_path.read_text(errors='replace')[-3000:]}\n")


@pytest.fixture
def passwords(personas):
    """The personas' passwords hashed with a hasher the server knows (the test settings use MD5 for
    speed, which project.settings cannot verify); few iterations, as only the format matters here."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    for user in personas.values():
        user.password = PBKDF2PasswordHasher().encode("password", PBKDF2PasswordHasher().salt(), iterations=1000)
        user.save(update_fields=["password"])


async def stream(origin: str, token: str, started: asyncio.Event, stop: asyncio.Event) -> None:
    """A camera sending a small JPEG ten times a second, answering pings."""
    url = origin.replace("http", "ws", 1) + "/ws/device/"
    async with websockets.connect(url, subprotocols=["sightline.v1"], compression=None,
                                  additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "fps": 10,
                                  "audio": None, "agent": "docs-test"}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        started.set()

        async def answer_pings():
            async for text in ws:
                if isinstance(text, str) and json.loads(text).get("type") == "ping":
                    message = json.loads(text)
                    await ws.send(json.dumps({"type": "pong", "id": message["id"], "ts": message["ts"]}))

        answering = asyncio.create_task(answer_pings())
        seq = 0
        try:
            while not stop.is_set():
                seq += 1
                for part in protocol.encode_frame(protocol.KIND_JPEG, b"\xff\xd8docs\xff\xd9", seq,
                                                  time.time_ns() // 1000, keyframe=True):
                    await ws.send(part)
                await asyncio.sleep(0.1)
        finally:
            answering.cancel()


async def run_script(path: Path, env: dict, timeout: float = 60) -> str:
    process = await asyncio.create_subprocess_exec(sys.executable, str(path), env=env, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        raise AssertionError(f"{path.name} did not finish in {timeout} s:\n{out.decode(errors='replace')}")
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    return text


@pytest.mark.asyncio
async def test_the_documented_non_browser_viewer_logs_in_and_receives_frames(portal, personas, acme, acme_camera,
                                                                            device_token, passwords, tmp_path):
    token = device_token
    viewer_code = code_block("protocol.md", '"""Minimal Sightline viewer outside a browser')
    script = tmp_path / "viewer.py"
    script.write_text(viewer_code)
    env = {"PATH": os.environ.get("PATH", ""), "SIGHTLINE_BASE": portal, "SIGHTLINE_USERNAME": "carol",
           "SIGHTLINE_PASSWORD": "password", "SIGHTLINE_FRAMES": "3"}
    started, stop = asyncio.Event(), asyncio.Event()
    camera = asyncio.create_task(stream(portal, token, started, stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        output = await run_script(script, env)
        # The playback example, with the viewer's definitions and after its log_in().
        playback = code_block("playback.md", "segments = json.load(")
        combined = viewer_code.rsplit("main()", 1)[0] + (
            "log_in()\n"
            f"device_id = {str(acme_camera.pk)!r}\n"
            + playback +
            'print("segments", json.dumps(segments))\n'
            'print("export", json.dumps(export))\n')
        (tmp_path / "playback.py").write_text(combined)
        # Exporting needs the operator role: the same steps as bob.
        playback_output = await run_script(tmp_path / "playback.py", {**env, "SIGHTLINE_USERNAME": "bob"})
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(camera, return_exceptions=True), 10)

    sys.stderr.write(output)
    assert f"('Acme', '{acme.pk}', 'viewer')" in output
    assert "watching Front door as viewer" in output and "'max_binary_message_bytes'" in output
    frames = re.findall(r"^frame kind=1 seq=(\d+) bytes=8 keyframe=True", output, re.M)
    assert len(frames) == 3, output
    segments = json.loads(re.search(r"^segments (.*)$", playback_output, re.M).group(1))
    export = json.loads(re.search(r"^export (.*)$", playback_output, re.M).group(1))
    assert segments["segments"] == [] and "recording" in segments
    assert set(export) == {"id", "status_url"}  # 202: the CSRF header of the doc is accepted
