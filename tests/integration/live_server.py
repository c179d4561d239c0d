"""One real uvicorn process on the test database, started as scripts/run starts it (its
--ws-max-size from `manage.py ws_max_size`), for tests that attack it from outside: its RSS,
its hub's viewer count (GET /metrics) and its log are what they measure."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import websockets
from django.conf import settings

from tests.support import free_port, subprocess_database_url, wait_until

ROOT = Path(__file__).resolve().parents[2]
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"


def server_env(**overrides) -> dict:
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
        "CELERY_QUEUE": f"it-{uuid.uuid4().hex[:10]}",
        "DATABASE_URL": subprocess_database_url(),
    }
    env.update(overrides)
    return env


class LiveServer:
    def __init__(self, env: dict, log_path: Path):
        self.env, self.log_path = env, log_path
        self.ws_max_size = int(subprocess.run(
            [sys.executable, "manage.py", "ws_max_size"], cwd=ROOT, env=env, capture_output=True, text=True,
            check=True, timeout=60,
        ).stdout.strip())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [str(UVICORN), "project.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
             "--lifespan", "off", "--ws-per-message-deflate", "false", "--no-access-log",
             "--ws-max-size", str(self.ws_max_size)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_until(self._healthy, 60, "uvicorn to answer /healthz", interval=0.2)

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def alive_and_healthy(self) -> bool:
        return self.process.poll() is None and self._healthy()

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024

    def registered_viewers(self) -> int:
        """The hub's viewers, summed over devices (the sightline_viewers gauge of GET /metrics)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return int(sum(float(value) for value in re.findall(r"^sightline_viewers\{[^}]*\} (\S+)$", text, re.M)))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def open_device(server: LiveServer, token: str, **kwargs):
    return await websockets.connect(
        f"{server.ws_url}/ws/device/", additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=["sightline.v1"], max_size=None, compression=None, open_timeout=20, **kwargs,
    )


async def open_viewer(server: LiveServer, device_id, sessionid: str, **kwargs):
    return await websockets.connect(
        f"{server.ws_url}/ws/view/{device_id}/", additional_headers={"Cookie": f"sessionid={sessionid}"},
        origin=server.ws_url.replace("ws://", "http://", 1), max_size=None, compression=None, open_timeout=20, **kwargs,
    )


def documented_close_codes() -> set[int]:
    """Every code in the table of docs/protocol.md section 7: the doc is the source of truth."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text[text.index("## 7. Close codes"):]
    section = section[:section.index("\n## ", 1)]
    codes = set()
    for row in re.findall(r"^\| *([0-9][0-9 /]*?) *\|", section, re.M):
        codes.update(int(code) for code in row.split("/"))
    return codes


class KeptAlive:
    """Reads a socket in the background, answers the server's JSON pings (else it closes the
    socket with 4011 after dead_after_seconds) and notes when each binary frame arrived."""

    def __init__(self, ws):
        self.ws = ws
        self.frame_times: list[float] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.frame_times.append(time.monotonic())
                elif '"ping"' in message:
                    ping = json.loads(message)
                    if ping.get("type") == "ping":
                        await self.ws.send(json.dumps({"type": "pong", "id": ping.get("id"), "ts": ping.get("ts")}))
        except websockets.ConnectionClosed:
            pass

    @property
    def open(self) -> bool:
        return not self.task.done()

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self.task, 10)
