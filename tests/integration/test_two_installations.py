"""Two installations on one real Redis at once never see each other's tasks, frames or presence.

Each installation is what `bash scripts/run` starts: its own var directory (so its own
generated namespace, nothing set in the environment), its own SQLite database, a uvicorn
server, a recorder process and a Celery worker serving the default queue. B's database is
a clone of A's (staging restored from production's backup: the same device id, token and
session exist in both), plus a device only B has. A device streams into each.
"""
import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import websockets
from django.conf import settings

from recordings import sessions, synthetic
from sightline_agent import protocol
from tests.support import child_redis_names, free_port, start_recorder, wait_until

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FRAMES = 20  # per device, at 10 fps
FIRST_SEQ = {"a": 1, "b": 100_001, "b_only": 200_001}  # whose frame is it: told by its seq

# Rows of one installation, made with its own settings in a child process.
SETUP_A = """
import json, django; django.setup()
from django.test import Client
from accounts.models import Membership, Organisation, Role
from django.contrib.auth import get_user_model
from streams.models import Device
org = Organisation.objects.create(name="Shared", slug="shared")
owner = get_user_model().objects.create_user("owner", password="owner-password")
Membership.objects.create(organisation=org, user=owner, role=Role.OWNER)
device = Device.objects.create(organisation=org, name="Cloned camera")
client = Client(); client.force_login(owner)
print(json.dumps({"device": str(device.pk), "token": device.issue_token()[0],
                  "session": client.cookies["sessionid"].value}))
"""
SETUP_B = """
import json, django; django.setup()
from accounts.models import Organisation
from streams.models import Device
device = Device.objects.create(organisation=Organisation.objects.get(slug="shared"), name="Only in B")
print(json.dumps({"device": str(device.pk), "token": device.issue_token()[0]}))
"""


class Installation:
    def __init__(self, name: str, root: Path):
        self.name, self.var, self.logs = name, root / name / "var", root / name / "logs"
        self.logs.mkdir(parents=True)
        self.var.mkdir(parents=True)
        inherited = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
        # Nothing names the namespace or a prefix: each installation generates its own.
        self.env = {**inherited, "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "two-installations",
                    "SIGHTLINE_VAR_DIR": str(self.var), "REDIS_URL": settings.REDIS_URL, "SEGMENT_SECONDS": "2",
                    "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_FORMAT": "console", "LOG_LEVEL": "INFO",
                    "PYTHONUNBUFFERED": "1"}
        self.children: list[subprocess.Popen] = []
        self.port = free_port()

    def python(self, code: str) -> dict:
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=90)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "ab") as log:
            child = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append(child)
        return child

    def start(self):
        self.spawn("web", [str(VENV_BIN / "uvicorn"), "project.asgi:application", "--host", "127.0.0.1", "--port",
                           str(self.port), "--lifespan", "off", "--ws-per-message-deflate", "false", "--no-access-log"])
        # No --queues: the worker serves the default queue, which the namespace names.
        self.spawn("worker", [str(VENV_BIN / "celery"), "-A", "project", "worker", "-P", "solo", "-l", "info",
                              "--without-gossip", "--without-mingle", "--without-heartbeat"])

    def wait_ready(self):
        self.children.append(start_recorder(self.env, self.logs / "recorder.log"))
        wait_until(lambda: self.alive() and " ready." in self.log("worker"), 60, f"{self.name}'s worker to be ready")
        wait_until(lambda: self.alive() and _listening(self.port), 30, f"{self.name}'s server to listen")

    def alive(self) -> bool:
        for child in self.children:
            if child.poll() is not None:
                raise AssertionError(f"a process of installation {self.name} exited: {child.args}\n{self.all_logs()}")
        return True

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def all_logs(self) -> str:
        return "".join(f"--- {self.name}/{p.name} ---\n{p.read_text(errors='replace')[-2500:]}\n"
                       for p in sorted(self.logs.glob("*.log")))

    def stop(self):
        for child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=5)

    def segments(self) -> list[dict]:
        with sqlite3.connect(self.var / "sightline.sqlite3", timeout=10) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT device_id, state, frames, first_seq, last_seq, spool_path "
                              "FROM recordings_segment").fetchall()
        return [dict(row) for row in rows]


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _hex(device_id: str) -> str:
    return device_id.replace("-", "")  # Django keeps UUIDs as 32 hex digits in SQLite


@pytest.fixture
def installations(tmp_path):
    a, b = Installation("a", tmp_path), Installation("b", tmp_path)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=a.env,
                       check=True, timeout=120)
        rows = a.python(SETUP_A)
        shutil.copy(a.var / "sightline.sqlite3", b.var / "sightline.sqlite3")  # the clone (no namespace file)
        rows["b_only"] = b.python(SETUP_B)
        for side in (a, b):
            side.start()
        for side in (a, b):
            side.wait_ready()
        yield a, b, rows
    finally:
        for side in (a, b):
            side.stop()
        sys.stderr.write(a.all_logs() + b.all_logs())


async def _next_json(ws, kind: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(message, str) and json.loads(message)["type"] == kind:
            return json.loads(message)


async def _device(port: int, token: str):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/device/", subprotocols=["sightline.v1"],
                                  additional_headers={"Authorization": f"Bearer {token}"}, max_size=None)
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "resolution": "160x120",
                              "fps": 10, "audio": None, "agent": "two-installations"}))
    welcome = await _next_json(ws, "welcome")
    assert welcome["recording"] is True, welcome
    return ws


async def _viewer(port: int, session: str, device_id: str):
    return await websockets.connect(f"ws://127.0.0.1:{port}/ws/view/{device_id}/", max_size=None,
                                    additional_headers={"Cookie": f"sessionid={session}"},
                                    origin=f"http://127.0.0.1:{port}")


async def _stream(ws, first_seq: int):
    now_us = time.time_ns() // 1000
    for i in range(FRAMES):
        await ws.send(protocol.encode_frame(protocol.KIND_JPEG, synthetic.jpeg_frame(i), first_seq + i,
                                            now_us + i * 100_000, True)[0])
        await asyncio.sleep(0.1)
    await ws.send(json.dumps({"type": "ping", "id": 1, "ts": 0}))
    await _next_json(ws, "pong")  # handled in order: every frame is in


class FrameTap:
    """PSUBSCRIBE on an installation's frame pattern, as its recorder does: (device, seq) of what arrives."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        self.pubsub = self.client.pubsub()
        self.seen: list[tuple[str, int]] = []  # frames: (device, seq)
        self.devices: set[str] = set()  # of frames and events (presence, stats)

    async def start(self):
        await self.pubsub.psubscribe(*sessions.frame_patterns(self.prefix))
        self.task = asyncio.create_task(self._read())

    async def _read(self):
        async for message in self.pubsub.listen():
            if message["type"] == "pmessage":
                device = sessions.device_of_channel(message["channel"], self.prefix)
                self.devices.add(device)
                if not message["data"].startswith(b"{"):  # JSON events travel on the same channel
                    self.seen.append((device, protocol.parse_header(message["data"], 1 << 24).seq))

    async def close(self):
        self.task.cancel()
        await self.pubsub.aclose()
        await self.client.aclose()


@pytest.mark.asyncio
async def test_two_installations_on_one_redis_see_none_of_each_others_tasks_frames_or_presence(installations):
    a, b, rows = installations
    started = time.monotonic()
    ns = {side.name: (side.var / "namespace").read_text().strip() for side in (a, b)}
    assert ns["a"] != ns["b"] and all(value.startswith("sl-") for value in ns.values())
    prefix = {side.name: child_redis_names(side.env).channel_prefix for side in (a, b)}
    assert prefix == ns  # the generated namespace, nothing else
    cloned, only_b, session = rows["device"], rows["b_only"]["device"], rows["session"]
    r = redis.asyncio.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    taps = {name: FrameTap(prefix[name]) for name in ("a", "b")}

    async def present(installation_prefix: str) -> set[str]:
        """Devices with presence keys under a prefix (<prefix>:presence:<device>[:...])."""
        keys = await r.keys(f"{installation_prefix}:presence:*")
        return {key.split(":presence:", 1)[1].split(":")[0] for key in keys}

    for tap in taps.values():
        await tap.start()
    try:
        # B's two devices go live; A's copy of the cloned device is not connected.
        cloned_in_b = await _device(b.port, rows["token"])
        only_in_b = await _device(b.port, rows["b_only"]["token"])
        refused = await _viewer(a.port, session, only_b)  # a device A does not have
        await asyncio.wait_for(refused.wait_closed(), 10)
        assert refused.close_code == protocol.Close.NOT_FOUND == 4404
        viewer_a = await _viewer(a.port, session, cloned)
        welcome = await _next_json(viewer_a, "welcome")
        assert welcome["device"]["online"] is False  # B's presence of the same id is not A's
        assert await present(prefix["a"]) == set()
        assert await present(prefix["b"]) == {cloned, only_b}

        cloned_in_a = await _device(a.port, rows["token"])
        assert (await _next_json(viewer_a, "presence"))["online"] is True
        assert await present(prefix["a"]) == {cloned}

        async def watch():
            seqs = []
            while len(seqs) < FRAMES:
                message = await asyncio.wait_for(viewer_a.recv(), 10)
                if isinstance(message, bytes):
                    seqs.append(protocol.parse_header(message, 1 << 24).seq)
            return seqs

        watched, *_ = await asyncio.gather(watch(), _stream(cloned_in_a, FIRST_SEQ["a"]),
                                           _stream(cloned_in_b, FIRST_SEQ["b"]), _stream(only_in_b, FIRST_SEQ["b_only"]))
        assert watched == list(range(1, FRAMES + 1))  # A's frames only, none of B's for the same id

        await cloned_in_a.close()  # offline in A while the same id streams on in B
        assert (await _next_json(viewer_a, "presence"))["online"] is False
        await viewer_a.close()
        await cloned_in_b.close()
        await only_in_b.close()
        await asyncio.sleep(0.3)  # the last published frames reach the taps
    finally:
        for tap in taps.values():
            await tap.close()
    a_range = range(FIRST_SEQ["a"], FIRST_SEQ["a"] + FRAMES)
    assert sorted(taps["a"].seen) == [(cloned, seq) for seq in a_range]
    assert taps["a"].devices == {cloned}
    assert sorted(taps["b"].seen) == sorted([(cloned, FIRST_SEQ["b"] + i) for i in range(FRAMES)]
                                            + [(only_b, FIRST_SEQ["b_only"] + i) for i in range(FRAMES)])

    # Each recorder recorded only its own installation's frames; each worker archived them.
    def archived(side):
        side.alive()
        segments = side.segments()
        return segments if segments and all(s["state"] == "archived" for s in segments) \
            and sum(s["frames"] for s in segments) == FRAMES * (1 if side is a else 2) else None

    segments_a = await asyncio.to_thread(wait_until, lambda: archived(a), 60, "A's segments to be archived", 0.3)
    segments_b = await asyncio.to_thread(wait_until, lambda: archived(b), 60, "B's segments to be archived", 0.3)
    assert {s["device_id"] for s in segments_a} == {_hex(cloned)}
    assert all(s["first_seq"] in a_range and s["last_seq"] in a_range for s in segments_a)
    assert {s["device_id"] for s in segments_b} == {_hex(cloned), _hex(only_b)}
    assert all(s["first_seq"] >= FIRST_SEQ["b"] for s in segments_b)

    # Each worker ran only its own installation's tasks, and stored no result anywhere
    # (CELERY_TASK_IGNORE_RESULT: nothing reads them; they would pile up in Redis).
    sync_redis = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    tasks = {}
    for side in (a, b):
        log = side.log("worker")
        assert "'gone'" not in log and "succeeded" in log
        tasks[side.name] = set(re.findall(r"Task recordings\.\w+\[([0-9a-f-]{36})\] received", log))
        assert tasks[side.name]
        assert not any(next(sync_redis.scan_iter(match=f"*celery-task-meta-{task}"), None)
                       for task in tasks[side.name])
    assert tasks["a"].isdisjoint(tasks["b"])
    await r.aclose()
    sync_redis.close()
    print(f"\ntwo installations: namespaces {ns['a']} / {ns['b']}; tasks run: A {len(tasks['a'])}, "
          f"B {len(tasks['b'])}; segments A {len(segments_a)}, B {len(segments_b)}; "
          f"{time.monotonic() - started:.1f} s after start-up")
