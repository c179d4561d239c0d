"""The agent's connection to the portal: protocol v1 sessions, reconnects, pacing.

(When to reconnect and when to give up is decided in reconnect.py.)

One ``Agent`` lives for the whole process and survives reconnects: its sequence
numbers, settings and counters carry over, so a viewer sees the stream resume
at seq N+1, never at 0. Each connection is a ``_session``: handshake, hello,
welcome, then these tasks until the socket ends or the run is done:

- video: capture → brightness/contrast → encode (in one worker thread, so the
  event loop keeps answering pings) → send, paced by the monotonic clock;
  every frame passes the pacer first (pacing.py: the server's token buckets,
  mirrored), and the frame rate and JPEG quality follow the byte budget (adapt.py);
- audio (with --audio / --audio-codec): 20 ms of the audio source, encoded (agent/audio.py);
- talk-back (with --talkback): operator audio from the server, played (agent/talkback.py);
- metadata (with --metadata): one JSON frame a second;
- receiver: ping → pong, command → ack, persisted, error;
- heartbeat: our own ping every heartbeat_seconds; a server silent for
  dead_after_seconds is dead, and we reconnect;
- report: the status line every second, a stats message every 10 s.

All sends go through one lock: the chunks of a frame must be consecutive on
the wire (docs/protocol.md section 3), with no pong or audio frame between them.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import random
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from sightline_agent import AGENT_NAME
from sightline_agent.controls import CameraSettings, InvalidSetting, apply_command, apply_welcome
from sightline_agent.audio import CHUNK_SECONDS as AUDIO_CHUNK_SECONDS
from sightline_agent.audio import AudioEncoder, open_audio_source
from sightline_agent.adapt import Adapter
from sightline_agent.encoders import EncodedFrame
from sightline_agent.imaging import adjust
from sightline_agent.reconnect import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    FINAL_CLOSES,
    STABLE_SESSION_SECONDS,
    AgentExit,
    Backoff,
    ReplacedBackoff,
    retry_delay,
    retry_message,
)
from sightline_agent.sources import SourceUnavailable
from sightline_agent.status import Counters, StatusLine
from sightline_agent.tls import client_context, handshake_failed_message, untrusted_message
from sightline_agent.pacing import Pacer, rate_text
from sightline_agent.protocol import KIND_AUDIO, KIND_H264, KIND_METADATA, encode_frame

WELCOME_TIMEOUT_SECONDS = 10.0
STATS_EVERY_SECONDS = 10.0
METADATA_EVERY_SECONDS = 1.0
DEFAULT_LIMITS = {"max_message_bytes": 1024 * 1024, "max_frame_bytes": 4 * 1024 * 1024, "max_fps": 60,
                  "max_bytes_per_second": 8 * 1024 * 1024, "max_messages_per_second": 1000, "burst_seconds": 2.0,
                  "heartbeat_seconds": 10, "dead_after_seconds": 30}


@dataclass
class AgentConfig:
    url: str
    token: str
    auth: str = "header"  # or "subprotocol"
    codec: str = "jpeg"
    audio: bool = False
    audio_codec: str = "pcm_s16le"
    audio_source: str = "tone"  # tone, tone:HZ, speech, file:PATH (agent/audio.py)
    talkback: object = None  # an agent.talkback.TalkbackPlayer when this device plays operator audio
    metadata: bool = False
    fps: int = 10
    width: int = 640
    height: int = 360
    duration: float | None = None
    frames: int | None = None
    name: str = ""
    use_server_settings: bool = True
    ca_file: str | None = None  # wss://: also trust this CA (sightline_agent/tls.py)
    insecure: bool = False  # wss://: check no certificate (warned loudly)
    pacing: bool = True  # keep under the welcome's rate limits (pacing.py); off only to show what 4009 is

    def connect_arguments(self) -> dict:
        """How the token travels: a header, or the subprotocol list (never the URL)."""
        if self.auth == "subprotocol":
            return {"subprotocols": ["sightline.v1", f"sightline.token.{self.token}"]}
        return {"subprotocols": ["sightline.v1"], "additional_headers": {"Authorization": f"Bearer {self.token}"}}


class Agent:
    def __init__(self, config: AgentConfig, source, encoder, status: StatusLine | None = None,
                 rng=random.random):
        self.config = config
        self.source = source
        self.encoder = encoder
        self.counters = status.counters if status else Counters()
        self.status = status or StatusLine(self.counters, quiet=True)
        self.counters.codec = encoder.codec
        self.settings = CameraSettings(fps=config.fps, width=config.width, height=config.height)
        self.backoff = Backoff(rng=rng)
        self.replaced_backoff = ReplacedBackoff(rng=rng)
        # Last sequence number sent per media kind (protocol section 3: each kind counts on its
        # own); kept across reconnects so a stream resumes at N+1.
        self.seqs = {"video": 0, "audio": 0, "metadata": 0}
        self.limits = dict(DEFAULT_LIMITS)
        self.audio_encoder = AudioEncoder(config.audio_codec) if config.audio else None
        self.audio_source = (open_audio_source(config.audio_source, self.audio_encoder.rate)
                             if self.audio_encoder else None)
        self.talkback = config.talkback
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-capture")
        self.done = asyncio.Event()
        self.last_close: tuple[int | None, str] = (None, "")
        self.last_server_error: dict | None = None
        self._send_lock = asyncio.Lock()
        self._ping_id = 0
        self._oversized_warned = False
        self.ssl_context = client_context(config.url, config.ca_file, config.insecure)
        self.keyframe_requested = False  # set by the server's "keyframe" request, read by _video
        # Per connection, from the welcome's limits (None with --no-pacing, or before a welcome).
        self.pacer: Pacer | None = None
        self.adapter: Adapter | None = None
        self._full_quality = getattr(encoder, "quality", None)  # --jpeg-quality, before any adapting
        self._skip_warned = False

    # -- the whole run -------------------------------------------------------------

    def stop(self) -> None:
        self.done.set()

    async def run(self) -> int:
        """Connect, stream, reconnect until --duration/--frames or stop(); returns the exit code."""
        loop = asyncio.get_running_loop()
        if self.config.duration is not None:
            loop.call_later(self.config.duration, self.done.set)
        try:
            while not self.done.is_set():
                started = time.monotonic()
                close_code, welcomed = await self._session_until_done()
                if self.done.is_set():
                    break
                if welcomed and time.monotonic() - started >= STABLE_SESSION_SECONDS:
                    self.backoff.reset()
                delay = retry_delay(close_code, self.backoff, self.replaced_backoff)
                self.counters.state = "waiting"
                self.status.event(retry_message(close_code, delay))
                try:
                    await asyncio.wait_for(self.done.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                if not self.done.is_set():
                    self.counters.reconnects += 1
            return EXIT_OK
        finally:
            self.counters.state = "stopped"
            await loop.run_in_executor(self.executor, self._close_media)
            self.executor.shutdown(wait=False)

    def _close_media(self) -> None:
        self.encoder.close()
        self.source.close()

    async def _session_until_done(self) -> tuple[int | None, bool]:
        session = asyncio.create_task(self._session())
        finished = asyncio.create_task(self.done.wait())
        try:
            await asyncio.wait({session, finished}, return_when=asyncio.FIRST_COMPLETED)
            if not session.done():
                # Done while connecting or streaming: the session closes itself on `done`;
                # a handshake stuck on a dead network is cut short.
                try:
                    return await asyncio.wait_for(session, 3)
                except asyncio.TimeoutError:
                    return None, False
            return session.result()
        finally:
            finished.cancel()
            if not session.done():
                session.cancel()

    # -- one connection --------------------------------------------------------------

    async def _session(self) -> tuple[int | None, bool]:
        """One connection. Returns (close code or None, whether a welcome arrived)."""
        self.counters.state = "connecting"
        self.last_server_error = None
        tls = {"ssl": self.ssl_context} if self.ssl_context is not None else {}
        try:
            ws = await websockets.connect(
                self.config.url, compression=None, open_timeout=10, close_timeout=2,
                max_size=1024 * 1024, user_agent_header=AGENT_NAME, **self.config.connect_arguments(), **tls,
            )
        except InvalidURI as error:
            raise AgentExit(EXIT_USAGE, f"bad --url: {error}") from None
        except InvalidStatus as error:
            self.status.error(f"the server refused the WebSocket handshake with HTTP "
                              f"{error.response.status_code} (is --url the /ws/device/ endpoint?)")
            return None, False
        except ssl.SSLCertVerificationError as error:  # retried with backoff, like any failed connection
            self.status.error(untrusted_message(self.config.url, error, self.config.ca_file))
            return None, False
        except ssl.SSLError as error:
            self.status.error(handshake_failed_message(self.config.url, error))
            return None, False
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as error:
            self.status.error(f"cannot connect to {self.config.url}: {error or type(error).__name__}")
            return None, False
        welcomed = False
        try:
            await self._send_text(ws, self._hello())
            welcome = await self._await_welcome(ws)
            if welcome is None:
                return self._ended(ws), False
            welcomed = True
            self._apply_welcome(welcome)
            # In the worker thread: a frame of the previous connection may still be encoding there.
            await asyncio.get_running_loop().run_in_executor(self.executor, self.encoder.restart)
            await self._stream(ws)
        except ConnectionClosed:
            pass
        finally:
            if self.done.is_set():
                await ws.close(1000, "agent finished")
            else:
                await ws.close()
        return self._ended(ws), welcomed

    def _ended(self, ws) -> int | None:
        code, reason = ws.close_code, ws.close_reason or ""
        if self.last_server_error and self.last_server_error.get("code") == code:
            reason = str(self.last_server_error.get("message") or reason)
        self.last_close = (code, reason)
        if not self.done.is_set():
            self.counters.state = "disconnected"
            if code in FINAL_CLOSES:
                self.status.error(f"server closed the connection: {code} {reason}")
            else:
                self.status.event(f"connection closed ({code if code is not None else 'no close frame'}"
                                  f"{': ' + reason if reason else ''})")
        # 1006 is what websockets reports when the TCP connection just vanished.
        return None if code == 1006 else code

    def _hello(self) -> dict:
        agent = AGENT_NAME + (f" ({self.config.name[:100]})" if self.config.name else "")
        return {"type": "hello", "protocol": 1, "codecs": [self.encoder.codec],
                "resolution": self.settings.resolution, "fps": self.settings.fps,
                "audio": self.audio_encoder.hello() if self.audio_encoder else None,
                "talkback": self.talkback.hello() if self.talkback else None, "agent": agent,
                "source": {"kind": getattr(self.source, "kind", "pattern")}}

    async def _await_welcome(self, ws) -> dict | None:
        deadline = time.monotonic() + WELCOME_TIMEOUT_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.status.error(f"no welcome within {WELCOME_TIMEOUT_SECONDS:.0f} s of hello")
                return None
            try:
                message = await asyncio.wait_for(ws.recv(), remaining)
            except asyncio.TimeoutError:
                continue  # the deadline check above reports it
            if isinstance(message, bytes):
                continue
            data = _json_object(message)
            if data.get("type") == "welcome":
                return data
            if data.get("type") == "error":
                self.last_server_error = data
            elif data.get("type") == "ping":
                await self._send_text(ws, {"type": "pong", "id": data.get("id"), "ts": data.get("ts")})

    def _apply_welcome(self, welcome: dict) -> None:
        limits = welcome.get("limits")
        if isinstance(limits, dict):
            for key, default in DEFAULT_LIMITS.items():
                value = limits.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                    self.limits[key] = value
        if self.config.use_server_settings:
            applied, rejected = apply_welcome(self.settings, welcome.get("settings"), self.limits["max_fps"])
            for key, reason in rejected.items():
                self.status.error(f"ignored the server's setting {key}: {reason}")
        self.settings.fps = max(1, min(self.settings.fps, int(self.limits["max_fps"])))
        if self.config.pacing:
            # The server's buckets are new and full on every connection: so are ours.
            now = time.monotonic()
            self.pacer = Pacer(self.limits, now)
            self.adapter = self._make_adapter(now)
            self._skip_warned = False
            self._set_quality(self._full_quality)
            self.counters.paced = ""
        self.counters.state = "streaming"
        self.counters.resolution = self.settings.resolution
        self.status.event(f"connected: device {welcome.get('device_id')}, {self.settings.resolution} "
                          f"at {self.settings.fps} fps, recording {'on' if welcome.get('recording') else 'off'}")

    async def _stream(self, ws) -> None:
        self.last_heard = time.monotonic()
        tasks = [asyncio.create_task(self._receive(ws), name="receive"),
                 asyncio.create_task(self._video(ws), name="video"),
                 asyncio.create_task(self._heartbeat(ws), name="heartbeat"),
                 asyncio.create_task(self._report(ws), name="report"),
                 asyncio.create_task(self.done.wait(), name="done")]
        if self.audio_encoder is not None:
            tasks.append(asyncio.create_task(self._audio(ws), name="audio"))
        if self.config.metadata:
            tasks.append(asyncio.create_task(self._metadata(ws), name="metadata"))
        try:
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                if not task.cancelled() and task.exception() is not None:
                    error = task.exception()
                    if not isinstance(error, (ConnectionClosed, AgentExit)):
                        self.status.error(f"{task.get_name()} failed: {error!r}")
                    if isinstance(error, AgentExit):
                        raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- sending --------------------------------------------------------------------

    async def _send_text(self, ws, message: dict) -> None:
        """Text messages wait for the lock too: they may not fall between a frame's chunks."""
        async with self._send_lock:
            await ws.send(json.dumps(message, separators=(",", ":")))

    async def _send_frame(self, ws, frame: EncodedFrame, timestamp_us: int) -> bool:
        if len(frame.payload) > self.limits["max_frame_bytes"]:
            if not self._oversized_warned:
                self._oversized_warned = True
                self.status.error(f"skipping a {len(frame.payload)}-byte frame: above the server's "
                                  f"max_frame_bytes={self.limits['max_frame_bytes']} (lower --jpeg-quality or resolution)")
            return False
        stream = {KIND_AUDIO: "audio", KIND_METADATA: "metadata"}.get(frame.kind, "video")
        seq = (self.seqs[stream] + 1) & 0xFFFFFFFF
        messages = encode_frame(frame.kind, frame.payload, seq, timestamp_us, frame.keyframe,
                                max_message_bytes=int(self.limits["max_message_bytes"]))
        if not self._admit(frame, stream, messages):
            return False  # its seq is not used: viewers see consecutive numbers, no loss counted
        self.seqs[stream] = seq
        async with self._send_lock:
            for message in messages:
                await ws.send(message)
        if stream == "video":
            self.counters.on_video_frame(seq, len(frame.payload), time.monotonic())
        elif stream == "audio":
            self.counters.on_audio_frame(seq, len(frame.payload))
        return True

    def _admit(self, frame: EncodedFrame, stream: str, messages: list[bytes]) -> bool:
        if self.pacer is None:
            return True
        now, sizes = time.monotonic(), [len(message) for message in messages]
        if stream == "video":
            admitted = self.pacer.admit_video(sizes, frame.keyframe, frame.kind == KIND_H264, now)
        else:
            admitted = self.pacer.admit_other(sizes, now)
        if self.adapter is not None:
            self.adapter.on_offered(sum(sizes), skipped=stream == "video" and not admitted)
        if not admitted and stream == "video":
            self.counters.frames_skipped += 1
            if not self._skip_warned and (self.adapter is None or self.adapter.index == len(self.adapter.levels) - 1):
                self._skip_warned = True
                self.status.warning(self._skip_message(now))
        return admitted

    def _skip_message(self, now: float) -> str:
        """Once a connection, when skipping is all the agent can do: what is over which limit."""
        pacer = self.pacer
        if pacer.limited_by == "frames":
            over = f"more than the server's max_fps={self.limits['max_fps']}"
        elif pacer.limited_by == "messages":
            over = f"more than the server's max_messages_per_second={self.limits['max_messages_per_second']}"
        else:
            over = (f"{rate_text(pacer.offered_rate(now))}, above the "
                    f"{rate_text(self.limits['max_bytes_per_second'])} the server allows (max_bytes_per_second)")
        return (f"{getattr(self.source, 'description', 'the source')} offers {over}: skipping frames"
                f"{' to the next keyframe' if self.encoder.codec == 'h264' else ''} so the server does not "
                f"close the connection (viewers see pauses); lower the source's bitrate, frame rate or resolution")

    def _make_adapter(self, now: float) -> Adapter | None:
        return Adapter(self.settings.fps, self._full_quality, now)

    def _set_quality(self, quality: int | None) -> None:
        # An int attribute read by the worker thread at its next encode: no lock needed.
        if quality is not None and hasattr(self.encoder, "quality"):
            self.encoder.quality = quality

    def _video_fps(self) -> int:
        """The frame rate to capture at now: the operator's, or less while adapting."""
        adapter = self.adapter
        if adapter is None:
            return self.settings.fps
        if adapter.wanted[0] != self.settings.fps:  # a command or welcome changed it: start from the top
            adapter.reset(self.settings.fps, self._full_quality, time.monotonic())
            self._set_quality(self._full_quality)
        return min(self.settings.fps, adapter.level.fps)

    def _adapt(self) -> None:
        """After each video frame: maybe move along the ladder, and say so in one line."""
        adapter, pacer = self.adapter, self.pacer
        if adapter is None or pacer is None or not adapter.decide(pacer.budget, time.monotonic()):
            return
        level = adapter.level
        self._set_quality(level.quality)
        quality = f" at quality {level.quality}" if level.quality is not None else ""
        limit = rate_text(self.limits["max_bytes_per_second"])
        if adapter.reduced:
            self.counters.paced = f"{level.fps} fps{quality} under {limit}"
            self.status.event(f"sending {level.fps} fps{quality} to stay under {limit} announced by the server")
        else:
            self.counters.paced = ""
            self.status.event(f"back to {level.fps} fps{quality}: {limit} announced by the server leaves room")

    def _produce(self, captured_at: float, width: int, height: int, fps: int,
                 brightness: int, contrast: int, force_keyframe: bool = False) -> list[EncodedFrame]:
        """Capture, adjust and encode one image (runs in the worker thread)."""
        try:
            image = self.source.capture(width, height, captured_at)
        except SourceUnavailable as error:
            # Reconnecting would not bring a webcam back; exit so a supervisor can restart us.
            raise AgentExit(EXIT_ERROR, str(error)) from None
        return self.encoder.encode(adjust(image, brightness, contrast), fps, force_keyframe)

    async def _video(self, ws) -> None:
        loop = asyncio.get_running_loop()
        next_due = time.monotonic()
        while not self.done.is_set():
            delay = next_due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            s = self.settings
            fps = self._video_fps()
            captured_at = time.time()
            force_keyframe, self.keyframe_requested = self.keyframe_requested, False
            frames = await loop.run_in_executor(self.executor, self._produce, captured_at, s.width, s.height,
                                                fps, s.brightness, s.contrast, force_keyframe)
            timestamp_us = int(captured_at * 1_000_000)
            for frame in frames:
                await self._send_frame(ws, frame, timestamp_us)
            self._adapt()
            self.counters.resolution = s.resolution
            if self.config.frames is not None and self.counters.frames_sent >= self.config.frames:
                self.done.set()
                return
            # The schedule advances by whole frame intervals from its anchor, so sleep
            # jitter does not accumulate; after a stall we skip ahead instead of bursting.
            interval = 1.0 / self._video_fps()
            next_due += interval
            if next_due < time.monotonic() - interval:
                next_due = time.monotonic()

    async def _audio(self, ws) -> None:
        """20 ms of the source every 20 ms, encoded; each payload stamped with the capture
        time of its first sample (AAC and Opus encoders hold some samples back)."""
        next_due = time.monotonic()
        encoder, source = self.audio_encoder, self.audio_source
        while not self.done.is_set():
            delay = next_due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            captured_at = time.time()
            pcm = source.read(encoder.chunk_samples)
            for payload, timestamp_us in encoder.encode(pcm, int(captured_at * 1_000_000)):
                await self._send_frame(ws, EncodedFrame(KIND_AUDIO, payload, False), timestamp_us)
            next_due += AUDIO_CHUNK_SECONDS
            if next_due < time.monotonic() - AUDIO_CHUNK_SECONDS:
                next_due = time.monotonic()

    async def _metadata(self, ws) -> None:
        """Once a second, a kind-4 frame describing the camera (what a real one might send:
        its settings and the last video frame's number), so metadata relaying can be watched."""
        while not self.done.is_set():
            captured_at = time.time()
            document = {"agent": AGENT_NAME, "name": self.config.name, "video_seq": self.seqs["video"],
                        "settings": self.settings.as_dict()}
            payload = json.dumps(document, separators=(",", ":")).encode()
            await self._send_frame(ws, EncodedFrame(KIND_METADATA, payload, False), int(captured_at * 1_000_000))
            await asyncio.sleep(METADATA_EVERY_SECONDS)

    # -- receiving ------------------------------------------------------------------

    async def _receive(self, ws) -> None:
        async for message in ws:
            self.last_heard = time.monotonic()
            if isinstance(message, bytes):
                if self.talkback is not None:  # an operator talking (docs/protocol.md section 4a)
                    self.talkback.on_audio(message)
                continue
            data = _json_object(message)
            kind = data.get("type")
            if kind == "talk" and self.talkback is not None:
                self.talkback.on_talk(data)
            elif kind == "ping":
                await self._send_text(ws, {"type": "pong", "id": data.get("id"), "ts": data.get("ts")})
            elif kind == "command":
                ack = self.handle_command(data)
                if inspect.isawaitable(ack):  # a relayed camera may ask the camera itself (ONVIF)
                    ack = await ack
                await self._send_text(ws, ack)
            elif kind == "keyframe":
                # A viewer path needs a picture to start from (protocol "keyframe"): the next
                # captured frame is encoded as one. The server already rate-limits these.
                self.keyframe_requested = True
                self.counters.keyframe_requests += 1
            elif kind == "persisted":
                self.counters.persisted += 1
            elif kind == "recording" and data.get("state") == "degraded":
                self.status.error(f"server: recording degraded ({str(data.get('reason'))[:200]}); live continues")
            elif kind == "error":
                self.last_server_error = data
                self.status.error(f"server: {data.get('code')} {str(data.get('message'))[:200]}")

    def handle_command(self, message: dict) -> dict:
        """Validate and apply a command's settings (all or nothing); return the ack."""
        command_id = message.get("id")
        self.counters.commands += 1
        try:
            applied = apply_command(self.settings, message.get("settings"), max_fps=int(self.limits["max_fps"]))
        except InvalidSetting as error:
            self.status.event(f"refused command {command_id}: {error}")
            return {"type": "ack", "id": command_id, "ok": False, "error": str(error)}
        self.status.event(f"applied command {command_id}: {json.dumps(applied, sort_keys=True)}")
        return {"type": "ack", "id": command_id, "ok": True, "applied": applied}

    async def _heartbeat(self, ws) -> None:
        heartbeat = float(self.limits["heartbeat_seconds"])
        dead_after = float(self.limits["dead_after_seconds"])
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, heartbeat / 4))
            now = time.monotonic()
            if now - self.last_heard > dead_after:
                self.status.error(f"nothing from the server for {dead_after:.0f} s: the connection is dead")
                return
            if now - last_ping >= heartbeat:
                last_ping = now
                self._ping_id += 1
                await self._send_text(ws, {"type": "ping", "id": self._ping_id, "ts": time.time()})

    async def _report(self, ws) -> None:
        """The status line every second; a stats message to the server every few seconds."""
        last_stats = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            self.status.tick(now)
            if now - last_stats >= STATS_EVERY_SECONDS:
                last_stats = now
                fps, kbps = self.counters.rates(now)
                await self._send_text(ws, {"type": "stats", "encoder_fps": round(fps, 2),
                                           "kbit_per_second": round(kbps, 1), "reconnects": self.counters.reconnects,
                                           "resolution": self.settings.resolution})


def _json_object(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
