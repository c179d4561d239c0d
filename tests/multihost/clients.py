"""What the people and cameras of the multi-host tests do, from the client host, through the proxy.

- `start_camera`: the reference agent (`sightline-agent`) as a process on the client host.
- `Viewer`: a browser-like live socket (session cookie, Origin) in a thread inside the client host,
  recording when each frame arrived and every control message it was told.
- `https_get`: one request through the proxy with the owner's cookie, redirects not followed.
"""
from __future__ import annotations

import asyncio
import http.client
import io
import json
import re
import sys
import threading
import time
from urllib.parse import urlsplit

import websockets

from sightline_agent import protocol
from tests.multihost.topology import ROOT, Topology


def start_camera(lab: Topology, token: str, which: str | None, name: str = "camera", fps: int = 5,
                 duration: float | None = None):
    """The reference agent streaming a test pattern through the proxy (to web host `which`, or either)."""
    token_file = lab.lab.root / f"{name}.token"
    token_file.write_text(token)
    env = lab.lab.base_env()
    env["SSL_CERT_FILE"] = str(lab.cert)  # trust the proxy's self-signed certificate
    args = [sys.executable, "-m", "sightline_agent", "--url", f"{lab.web_url(which, 'wss')}/ws/device/",
            "--token-file", token_file, "--fps", str(fps), "--resolution", "160x96", "--jpeg-quality", "50",
            "--name", name, "--local-settings"]
    if duration:
        args += ["--duration", str(duration)]
    return lab["client"].start(name, args, env=env, cwd=ROOT)


def camera_frames_sent(child) -> int | None:
    """The agent's own count, printed when it stops ("done: N video frames")."""
    found = re.findall(r"done: (\d+) video frames", child.output(100_000))
    return int(found[-1]) if found else None


def https_get(lab: Topology, url: str, cookie: str | None = None, timeout: float = 15):
    """(status, headers, body) of one GET from the client host; TLS checked against the proxy's cert."""

    def get():
        parts = urlsplit(url)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                               context=lab.ssl_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path, headers={"Cookie": f"sessionid={cookie}"} if cookie else {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    return lab["client"].call(get, timeout=timeout + 5)


class Viewer:
    """A live viewer socket kept open (and reopened after a close, like the browser) in the client host."""

    def __init__(self, lab: Topology, device_id: str, cookie: str, which: str | None, reconnect: bool = False):
        self.lab, self.device_id, self.cookie, self.which, self.reconnect = lab, device_id, cookie, which, reconnect
        self.frames: list[tuple[float, int]] = []  # (monotonic arrival, seq)
        self.messages: list[dict] = []  # every text message but pings
        self.closes: list[tuple[float, int | None]] = []
        self.connects = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = lab["client"].background(self._run)

    def _run(self):
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by wait_frames / stop
            self.error = error

    async def _main(self):
        url = f"{self.lab.web_url(self.which, 'wss')}/ws/view/{self.device_id}/"
        while not self._stop.is_set():
            try:
                async with websockets.connect(url, ssl=self.lab.ssl_context(), origin=self.lab.public_url,
                                              additional_headers={"Cookie": f"sessionid={self.cookie}"},
                                              max_size=None, compression=None, open_timeout=5) as ws:
                    self.connects += 1
                    while not self._stop.is_set():
                        try:
                            message = await asyncio.wait_for(ws.recv(), 0.2)
                        except asyncio.TimeoutError:
                            continue
                        if isinstance(message, bytes):
                            header = protocol.parse_header(message, 1 << 24)
                            self.frames.append((time.monotonic(), header.seq))
                        else:
                            data = json.loads(message)
                            if data.get("type") == "ping":  # as the browser does; else closed with 4011
                                await ws.send(json.dumps({"type": "pong", "id": data.get("id"), "ts": data.get("ts")}))
                            else:
                                self.messages.append(data)
            except websockets.ConnectionClosed as closed:
                self.closes.append((time.monotonic(), closed.rcvd.code if closed.rcvd else None))
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as error:
                self.closes.append((time.monotonic(), None))
                self.messages.append({"type": "connect-error", "error": repr(error)})
            if not self.reconnect:
                return
            await asyncio.sleep(0.5)

    def frames_after(self, moment: float) -> list[int]:
        return [seq for at, seq in self.frames if at > moment]

    def wait_frames(self, count: int, timeout: float, after: float = 0.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.frames_after(after)) >= count:
                return self.frames_after(after)
            if self.error is not None:
                raise self.error
            time.sleep(0.05)
        raise AssertionError(f"the viewer got {len(self.frames_after(after))} of {count} frames in {timeout} s; "
                             f"messages: {self.messages[-5:]}, closes: {self.closes}")

    def stop(self):
        self._stop.set()
        self._thread.join(10)


def small_jpeg(width: int = 160, height: int = 96) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(out, "JPEG", quality=50)
    return out.getvalue()


class Camera:
    """A device socket through the proxy that reconnects like the agent and remembers everything:
    each frame it sent (seq), everything the server told it, every close code."""

    def __init__(self, lab: Topology, token: str, which: str | None = None, fps: int = 5, device_id: str = ""):
        self.lab, self.token, self.which, self.fps, self.device_id = lab, token, which, fps, device_id
        self.sent: list[tuple[float, int]] = []
        self.messages: list[dict] = []
        self.closes: list[tuple[float, int | None]] = []
        self.connects: list[float] = []
        self.error: BaseException | None = None
        self._jpeg = small_jpeg()
        self._seq = 0
        self._stop = threading.Event()
        self._thread = lab["client"].background(self._run)

    def _run(self):
        try:
            asyncio.run(self._main())
        except BaseException as error:
            self.error = error

    async def _main(self):
        url = f"{self.lab.web_url(self.which, 'wss')}/ws/device/"
        while not self._stop.is_set():
            try:
                async with websockets.connect(url, ssl=self.lab.ssl_context(), subprotocols=["sightline.v1"],
                                              additional_headers={"Authorization": f"Bearer {self.token}"},
                                              max_size=None, compression=None, open_timeout=5) as ws:
                    await ws.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"],
                                              "resolution": "160x96", "fps": self.fps, "audio": None,
                                              "agent": "multihost-camera"}))
                    self.connects.append(time.monotonic())
                    await asyncio.gather(self._send_frames(ws), self._listen(ws))
            except websockets.ConnectionClosed as closed:
                self.closes.append((time.monotonic(), closed.rcvd.code if closed.rcvd else None))
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as error:
                self.closes.append((time.monotonic(), None))
                self.messages.append({"type": "connect-error", "error": type(error).__name__})
            if not self._stop.is_set():
                await asyncio.sleep(0.5)  # the agent's first back-off step

    async def _send_frames(self, ws):
        interval = 1 / self.fps
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._seq += 1
            await ws.send(protocol.encode_frame(protocol.KIND_JPEG, self._jpeg, self._seq,
                                                int(time.time() * 1e6), keyframe=True)[0])
            self.sent.append((time.monotonic(), self._seq))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await ws.close()

    async def _listen(self, ws):
        async for message in ws:
            if isinstance(message, bytes):
                continue
            data = json.loads(message)
            if data.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong", "id": data.get("id"), "ts": data.get("ts")}))
            else:
                self.messages.append(data)

    def stop(self):
        self._stop.set()
        self._thread.join(10)


class FrameTap:
    """Counts the frames the web hosts accepted: each is published once on the device's Redis channel."""

    def __init__(self, lab: Topology, device_id: str):
        self.lab, self.channel = lab, f"{lab.namespace}:frames:{device_id}"
        self.seqs: set[int] = set()
        self._stop = threading.Event()
        self._thread = lab["client"].background(self._run)

    def _run(self):
        import redis

        while not self._stop.is_set():
            client = redis.Redis(host=self.lab.address("data"), port=6379, socket_timeout=1, socket_connect_timeout=1)
            try:
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message and message["type"] == "message" and isinstance(message["data"], bytes) \
                            and not message["data"].startswith(b"{"):
                        self.seqs.add(protocol.parse_header(message["data"], 1 << 24).seq)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(0.2)
            finally:
                client.close()

    def stop(self):
        self._stop.set()
        self._thread.join(5)
