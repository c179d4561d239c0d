"""Reference agent against a small in-test portal (a `websockets` server speaking protocol v1).

The fake portal records everything the agent sends (text messages, and frames
reassembled with the server's own protocol.Reassembler) so each test can
script one connection at a time: welcome, ping, command, drop, refuse.
"""
import asyncio
import io
import json
import os
import subprocess
import sys
import time

import pytest
import websockets
from PIL import Image, ImageStat

from sightline_agent import protocol, tokens
from sightline_agent.encoders import H264Encoder, JpegEncoder
from sightline_agent.reconnect import AgentExit
from sightline_agent.session import Agent, AgentConfig
from sightline_agent.sources import PatternSource, SourceUnavailable
from sightline_agent.status import Counters, StatusLine

LIMITS = {"max_frame_bytes": 4 * 1024 * 1024, "max_message_bytes": 2048, "max_fps": 60,
          "max_bytes_per_second": 8 * 1024 * 1024, "heartbeat_seconds": 1, "dead_after_seconds": 30}


class Connection:
    """One agent connection as the portal sees it."""

    def __init__(self, ws):
        self.ws = ws
        self.headers = ws.request.headers
        self.offered = [p.strip() for p in ws.request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p]
        self.events: asyncio.Queue = asyncio.Queue()
        self.video_seqs: list[int] = []
        self.audio_seqs: list[int] = []
        self.metadata_seqs: list[int] = []
        self.binary_messages = 0
        self.reassembler = protocol.Reassembler(LIMITS["max_frame_bytes"])

    async def read_forever(self):
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    await self.events.put(json.loads(message))
                    continue
                self.binary_messages += 1
                frame = self.reassembler.feed(message)  # raises on any framing mistake
                if frame is not None:
                    seqs = {protocol.KIND_AUDIO: self.audio_seqs,
                            protocol.KIND_METADATA: self.metadata_seqs}.get(frame.header.kind, self.video_seqs)
                    seqs.append(frame.header.seq)
                    await self.events.put(frame)
        finally:
            await self.events.put(None)

    async def next(self, want, timeout: float = 10):
        """The next text message of type `want`, or the next Frame of kind `want` (an int)."""
        deadline = time.monotonic() + timeout
        while True:
            event = await asyncio.wait_for(self.events.get(), max(0.01, deadline - time.monotonic()))
            assert event is not None, f"connection ended while waiting for {want!r}"
            if isinstance(want, int) and isinstance(event, protocol.Frame) and event.header.kind == want:
                return event
            if isinstance(want, str) and isinstance(event, dict) and event.get("type") == want:
                return event

    async def welcome(self, settings=None, **limits):
        await self.ws.send(json.dumps({"type": "welcome", "protocol": 1, "device_id": "dev-1",
                                       "settings": settings or {}, "limits": {**LIMITS, **limits},
                                       "recording": False}))


class FakePortal:
    """Runs `script(connection, index)` for each connection the agent makes."""

    def __init__(self, script):
        self.script = script
        self.connections: list[Connection] = []

    async def __aenter__(self):
        self.server = await websockets.serve(self._handle, "127.0.0.1", 0, subprotocols=["sightline.v1"],
                                             compression=None, max_size=None)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/ws/device/"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, ws):
        connection = Connection(ws)
        self.connections.append(connection)
        reader = asyncio.create_task(connection.read_forever())
        try:
            await self.script(connection, len(self.connections) - 1)
        finally:
            reader.cancel()


def token() -> str:
    return tokens.generate()[0]


def make_agent(url: str, secret: str, encoder=None, **config) -> Agent:
    config = {"url": url, "token": secret, "fps": 20, "width": 320, "height": 180, **config}
    return Agent(AgentConfig(**config), PatternSource(), encoder or JpegEncoder(), rng=lambda: 0.05)


def luminance(frame: protocol.Frame) -> float:
    return ImageStat.Stat(Image.open(io.BytesIO(frame.payload)).convert("L")).mean[0]


@pytest.mark.asyncio
async def test_the_agent_speaks_v1_with_header_auth_and_resumes_its_sequence_after_a_drop():
    secret = token()
    checks = {}
    second_connection_ready = asyncio.Event()

    async def script(conn: Connection, index: int):
        hello = await conn.next("hello")
        assert hello["protocol"] == 1 and hello["codecs"] == ["jpeg"] and hello["fps"] == 20
        assert hello["audio"] == {"codec": "pcm_s16le", "rate": 16000, "channels": 1}
        assert hello["agent"].startswith("sightline-agent/") and "(porch)" in hello["agent"]
        assert conn.headers["Authorization"] == f"Bearer {secret}" and conn.offered == ["sightline.v1"]
        assert conn.ws.subprotocol == "sightline.v1"
        if index == 0:
            await conn.welcome({"brightness": 0, "contrast": 0, "fps": 20, "resolution": "160x90"})
            first = await conn.next(protocol.KIND_JPEG)
            assert Image.open(io.BytesIO(first.payload)).size == (160, 90)  # the welcome's settings won
            assert first.header.keyframe and abs(first.header.timestamp_us / 1e6 - time.time()) < 2
            await conn.ws.send(json.dumps({"type": "ping", "id": 7, "ts": 1763700000.5}))
            pong = await conn.next("pong")
            assert pong == {"type": "pong", "id": 7, "ts": 1763700000.5}

            await conn.ws.send(json.dumps({"type": "command", "id": "c-1", "settings": {"brightness": 50}}))
            ack = await conn.next("ack")
            assert ack == {"type": "ack", "id": "c-1", "ok": True, "applied": {"brightness": 50}}
            for _ in range(2):  # a frame already being encoded may predate the command
                await conn.next(protocol.KIND_JPEG)
            brighter = await conn.next(protocol.KIND_JPEG)
            assert luminance(brighter) > luminance(first) + 30

            await conn.ws.send(json.dumps({"type": "command", "id": "c-2", "settings": {"fps": 500}}))
            refused = await conn.next("ack")
            assert refused["id"] == "c-2" and refused["ok"] is False and "fps" in refused["error"]

            ping = await conn.next("ping", timeout=5)  # heartbeat_seconds=1: the agent pings us
            assert isinstance(ping["id"], int) and ping["ts"] > 1e9
            await conn.ws.send(json.dumps({"type": "persisted", "segment_id": "s", "frames": 3,
                                           "first_seq": 1, "last_seq": 3}))
            await conn.next(protocol.KIND_AUDIO)
            metadata = await conn.next(protocol.KIND_METADATA)
            assert not metadata.header.keyframe
            described = json.loads(metadata.payload)
            assert described["name"] == "porch" and described["settings"]["resolution"] == "160x90"
            await conn.next(protocol.KIND_JPEG)
            checks["chunked"] = conn.binary_messages > len(conn.video_seqs) + len(conn.audio_seqs)
            await conn.ws.close(1012, "service restart")
        else:
            await conn.welcome({"fps": 20, "resolution": "160x90"})  # no brightness: the agent keeps its own
            await conn.next(protocol.KIND_JPEG)
            await conn.next(protocol.KIND_AUDIO)
            await conn.next(protocol.KIND_METADATA)
            second_connection_ready.set()
            await conn.ws.wait_closed()

    async with FakePortal(script) as portal:
        agent = make_agent(portal.url, secret, audio=True, metadata=True, name="porch")
        running = asyncio.create_task(agent.run())
        await asyncio.wait_for(second_connection_ready.wait(), 20)
        agent.stop()
        assert await asyncio.wait_for(running, 10) == 0

    first, second = portal.connections
    assert checks["chunked"], "frames above max_message_bytes must be sent in chunks"
    assert first.video_seqs == list(range(1, len(first.video_seqs) + 1))
    assert first.audio_seqs == list(range(1, len(first.audio_seqs) + 1))
    # A frame in flight when the server dropped may be lost, but the count never restarts.
    assert first.video_seqs[-1] < second.video_seqs[0] <= first.video_seqs[-1] + 2
    assert first.audio_seqs[-1] < second.audio_seqs[0] <= first.audio_seqs[-1] + 2
    assert first.metadata_seqs == list(range(1, len(first.metadata_seqs) + 1))
    assert first.metadata_seqs[-1] < second.metadata_seqs[0] <= first.metadata_seqs[-1] + 2
    assert agent.counters.reconnects == 1 and agent.counters.persisted == 1
    assert agent.settings.brightness == 50  # settings survive the reconnect too


@pytest.mark.asyncio
async def test_subprotocol_auth_sends_no_header_and_h264_starts_with_a_keyframe_and_stops_after_frames():
    secret = token()

    async def script(conn: Connection, index: int):
        await conn.next("hello")
        assert "Authorization" not in conn.headers
        assert conn.offered == ["sightline.v1", f"sightline.token.{secret}"]
        assert conn.ws.subprotocol == "sightline.v1"
        await conn.welcome({"fps": 30, "resolution": "160x90"}, max_message_bytes=1024 * 1024)
        await conn.ws.wait_closed()

    async with FakePortal(script) as portal:
        agent = make_agent(portal.url, secret, H264Encoder(), auth="subprotocol", frames=12)
        assert await asyncio.wait_for(agent.run(), 15) == 0
        [conn] = portal.connections
        await asyncio.wait_for(conn.ws.wait_closed(), 5)

    assert conn.ws.close_code == 1000
    frames = []
    while not conn.events.empty():
        event = conn.events.get_nowait()
        if isinstance(event, protocol.Frame):
            frames.append(event)
    assert [f.header.seq for f in frames] == list(range(1, 13))
    assert [f.header.keyframe for f in frames] == [i % 30 == 0 for i in range(12)]
    assert frames[0].payload.startswith(b"\x00\x00\x00\x01") and b"\x00\x00\x01\x68" in frames[0].payload


@pytest.mark.asyncio
async def test_a_silent_server_is_declared_dead_and_the_agent_reconnects():
    secret = token()
    reconnected = asyncio.Event()

    async def script(conn: Connection, index: int):
        await conn.next("hello")
        await conn.welcome({"fps": 5, "resolution": "64x36"}, heartbeat_seconds=0.3, dead_after_seconds=1)
        if index == 1:
            reconnected.set()
        await conn.ws.wait_closed()  # and never say a word: no pong, no ping

    async with FakePortal(script) as portal:
        agent = make_agent(portal.url, secret)
        running = asyncio.create_task(agent.run())
        started = time.monotonic()
        await asyncio.wait_for(reconnected.wait(), 10)
        took = time.monotonic() - started
        agent.stop()
        assert await asyncio.wait_for(running, 10) == 0
    # Not declared dead before dead_after_seconds of silence; the wait_for above bounds the other side.
    assert took >= 1.0, took


@pytest.mark.asyncio
async def test_the_command_exits_non_zero_with_a_clear_message_when_the_token_is_revoked(tmp_path):
    secret = token()

    async def script(conn: Connection, index: int):
        await conn.next("hello")
        await conn.ws.send(json.dumps({"type": "error", "code": 4002, "message": "token revoked"}))
        await conn.ws.close(4002, "token revoked")

    token_file = tmp_path / "device.token"
    token_file.write_text(secret + "\n")
    async with FakePortal(script) as portal:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sightline_agent", "--url", portal.url, "--token-file", str(token_file),
            "--resolution", "64x36", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = stderr.decode()
    assert process.returncode == 4, output
    assert "revoked" in output and "4002" in output
    assert secret not in output and secret.split("_", 2)[2] not in output
    assert len(portal.connections) == 1  # no retry after a final refusal


def test_the_cli_refuses_a_missing_or_malformed_token_without_printing_it(tmp_path):
    bad = tmp_path / "bad.token"
    bad.write_text("not-a-token-secret-value")
    env = {k: v for k, v in os.environ.items() if k != "SIGHTLINE_DEVICE_TOKEN"}
    for args in (["--token-file", str(bad)], ["--token-file", str(tmp_path / "missing")], []):
        result = subprocess.run([sys.executable, "-m", "sightline_agent", "--url", "ws://127.0.0.1:9/ws/device/", *args],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, result.stderr
        assert "token" in result.stderr and "not-a-token-secret-value" not in result.stderr


def test_the_status_line_shows_rates_state_and_counts_and_quiet_silences_it():
    counters = Counters(state="streaming", codec="jpeg", resolution="320x180", reconnects=2, persisted=5)
    for i in range(20):
        counters.on_video_frame(i + 1, 5000, 100.0 + i * 0.1)  # 10 fps of 5 kB: 400 kbit/s
    line = counters.line(102.0)
    assert "[streaming]" in line and "10.0 fps" in line and "400.0 kbit/s" in line
    assert "seq 20" in line and "reconnects 2" in line and "persisted 5" in line
    out = io.StringIO()
    StatusLine(counters, stream=out).tick(102.0)
    assert out.getvalue().strip() == line
    quiet = io.StringIO()
    status = StatusLine(counters, quiet=True, stream=quiet)
    status.tick(102.0)
    status.event("connected")
    assert quiet.getvalue() == ""
    status.error("boom")
    assert "boom" in quiet.getvalue()


class UnpluggedWebcam(PatternSource):
    description = "webcam that is unplugged after two frames"

    def capture(self, width, height, captured_at):
        if self.frame_index >= 2:
            raise SourceUnavailable("webcam /dev/video9 stopped delivering frames")
        return super().capture(width, height, captured_at)


@pytest.mark.asyncio
async def test_a_webcam_that_stops_ends_the_agent_with_an_error_instead_of_reconnecting_forever():
    async def script(conn: Connection, index: int):
        await conn.next("hello")
        await conn.welcome({"fps": 20, "resolution": "64x36"})
        await conn.ws.wait_closed()

    async with FakePortal(script) as portal:
        agent = Agent(AgentConfig(url=portal.url, token=token(), fps=20), UnpluggedWebcam(), JpegEncoder())
        with pytest.raises(AgentExit) as raised:
            await asyncio.wait_for(agent.run(), 10)
    assert raised.value.code == 1 and "stopped delivering" in raised.value.message
    assert agent.counters.frames_sent == 2 and len(portal.connections) == 1


@pytest.mark.asyncio
async def test_frames_are_paced_by_the_clock_without_bursts_or_drift():
    async def script(conn: Connection, index: int):
        await conn.next("hello")
        await conn.welcome({"fps": 20, "resolution": "64x36"})
        await conn.ws.wait_closed()

    async with FakePortal(script) as portal:
        agent = make_agent(portal.url, token(), frames=21)
        assert await asyncio.wait_for(agent.run(), 15) == 0
        [conn] = portal.connections
        await asyncio.wait_for(conn.ws.wait_closed(), 5)
    stamps = []
    while not conn.events.empty():
        event = conn.events.get_nowait()
        if isinstance(event, protocol.Frame):
            stamps.append(event.header.timestamp_us / 1e6)
    assert len(stamps) == 21
    # 20 intervals of 50 ms: never early (no burst), and late frames do not push the rest back.
    assert 0.95 <= stamps[-1] - stamps[0] <= 1.4, stamps[-1] - stamps[0]
    assert min(b - a for a, b in zip(stamps, stamps[1:])) > 0


def test_local_settings_keep_the_command_line_size_and_rate_over_the_servers():
    for use_server, expected in ((True, ("160x90", 5)), (False, ("320x180", 20))):
        agent = make_agent("ws://127.0.0.1:9/ws/device/", token(), use_server_settings=use_server)
        agent._apply_welcome({"settings": {"fps": 5, "resolution": "160x90"}, "limits": LIMITS})
        assert (agent.settings.resolution, agent.settings.fps) == expected


def test_the_servers_max_fps_caps_the_rate():
    agent = make_agent("ws://127.0.0.1:9/ws/device/", token(), fps=30, use_server_settings=False)
    agent._apply_welcome({"settings": {}, "limits": {**LIMITS, "max_fps": 12}})
    assert agent.settings.fps == 12 and agent.limits["max_message_bytes"] == LIMITS["max_message_bytes"]


def test_the_status_line_rates_are_right_before_the_window_fills():
    counters = Counters()
    for i in range(10):
        counters.on_video_frame(i + 1, 1000, 50.0 + i * 0.1)
    fps, kbps = counters.rates(51.0)
    assert fps == pytest.approx(10.0) and kbps == pytest.approx(80.0)
    assert counters.rates(60.0) == (0.0, 0.0)  # nothing sent lately


@pytest.mark.asyncio
async def test_a_server_that_never_welcomes_is_left_and_the_agent_tries_again(monkeypatch):
    monkeypatch.setattr("sightline_agent.session.WELCOME_TIMEOUT_SECONDS", 0.5)
    welcomed = asyncio.Event()

    async def script(conn: Connection, index: int):
        await conn.next("hello")
        if index == 1:
            await conn.welcome({"fps": 5, "resolution": "64x36"})
            await conn.next(protocol.KIND_JPEG)
            welcomed.set()
        await conn.ws.wait_closed()

    async with FakePortal(script) as portal:
        agent = make_agent(portal.url, token())
        running = asyncio.create_task(agent.run())
        await asyncio.wait_for(welcomed.wait(), 10)
        agent.stop()
        assert await asyncio.wait_for(running, 10) == 0
    assert len(portal.connections) == 2 and agent.counters.reconnects == 1


def test_the_status_output_never_contains_the_token():
    secret = token()
    out = io.StringIO()
    status = StatusLine(Counters(), stream=out)
    status.hide(secret, tokens.redact(secret))
    status.error(f"handshake failed: unsupported subprotocol sightline.token.{secret}")
    assert secret not in out.getvalue() and tokens.redact(secret) in out.getvalue()
