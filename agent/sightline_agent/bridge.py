"""``sightline-agent bridge --config bridge.toml``: many RTSP cameras, one process.

Each camera is isolated: its own demux thread (rtsp.RtspCamera: a camera that
hangs blocks only its thread) and its own asyncio task with its own portal
connection (passthrough.PassthroughAgent: a camera whose token is refused
stops alone). A table of every camera (state, fps, bitrate, frames skipped to stay
under the server's limits, reconnects) is
printed every ``status_every`` seconds; SIGINT/SIGTERM close every portal
connection cleanly (close code 1000) and stop the threads. docs/agent.md,
"Bridge mode", documents the file:

    status_every = 10                       # seconds between status tables; 0: never

    [defaults]                              # any camera key, for every camera
    sightline_url = "wss://portal.example.com/ws/device/"
    transport = "tcp"                       # or "udp"

    [[camera]]
    name = "front-door"
    url = "rtsp://viewer:secret@192.168.1.10:554/Streaming/Channels/101"
    token_file = "front-door.token"         # relative to this file's directory

Keys of a camera: name, url, token_file, sightline_url, transport, auth (header or
subprotocol), open_timeout_seconds, read_timeout_seconds, retry_max_seconds,
refused_retry_seconds, and for brightness/contrast through the camera's ONVIF imaging
service: onvif ("host[:port]"), onvif_user, onvif_password_file (relative to this
file; without onvif_user, the credentials of the camera's url are used).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sightline_agent import AGENT_NAME
from sightline_agent.onvif_camera import onvif_for, parse_onvif_address
from sightline_agent.passthrough import PassthroughAgent
from sightline_agent.reconnect import EXIT_ERROR, EXIT_OK, EXIT_USAGE, AgentExit
from sightline_agent.rtsp import (
    OPEN_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    REFUSED_RETRY_SECONDS,
    RETRY_CAP_SECONDS,
    RtspCamera,
    redact_url,
    url_secrets,
)
from sightline_agent.session import AgentConfig
from sightline_agent.status import Counters, StatusLine
from sightline_agent.tokens import redact

CAMERA_KEYS = {"name", "url", "token_file", "sightline_url", "transport", "auth", "open_timeout_seconds",
               "read_timeout_seconds", "retry_max_seconds", "refused_retry_seconds",
               "onvif", "onvif_user", "onvif_password_file"}
NUMBERS = {"open_timeout_seconds": OPEN_TIMEOUT_SECONDS, "read_timeout_seconds": READ_TIMEOUT_SECONDS,
           "retry_max_seconds": RETRY_CAP_SECONDS, "refused_retry_seconds": REFUSED_RETRY_SECONDS}


class BridgeConfigError(Exception):
    pass


@dataclass(frozen=True)
class CameraConfig:
    name: str
    url: str
    token_file: Path
    sightline_url: str
    transport: str = "tcp"
    auth: str = "header"
    open_timeout_seconds: float = OPEN_TIMEOUT_SECONDS
    read_timeout_seconds: float = READ_TIMEOUT_SECONDS
    retry_max_seconds: float = RETRY_CAP_SECONDS
    refused_retry_seconds: float = REFUSED_RETRY_SECONDS
    onvif: str = ""
    onvif_user: str = ""
    onvif_password_file: str = ""


def parse_config(text: str, base_dir: Path) -> tuple[list[CameraConfig], float]:
    """(cameras, status_every) from the TOML text. Errors name the camera and key; a camera
    URL is never quoted in them (it holds credentials)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise BridgeConfigError(f"not valid TOML: {error}") from None
    status_every = document.get("status_every", 10)
    if isinstance(status_every, bool) or not isinstance(status_every, (int, float)) or status_every < 0:
        raise BridgeConfigError("status_every must be a number of seconds >= 0")
    defaults = document.get("defaults", {})
    entries = document.get("camera")
    if not isinstance(defaults, dict):
        raise BridgeConfigError("[defaults] must be a table")
    if not isinstance(entries, list) or not entries:
        raise BridgeConfigError("no cameras: add at least one [[camera]] table")
    cameras, names = [], set()
    for index, entry in enumerate(entries, 1):
        merged = {**defaults, **entry}
        label = f"camera {merged.get('name') or index}"
        unknown = set(merged) - CAMERA_KEYS
        if unknown:
            raise BridgeConfigError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("name", "url", "token_file", "sightline_url"):
            if not isinstance(merged.get(key), str) or not merged[key]:
                raise BridgeConfigError(f"{label}: '{key}' is required (a string)")
        if merged["name"] in names:
            raise BridgeConfigError(f"{label}: the name is used twice")
        names.add(merged["name"])
        if not merged["url"].startswith(("rtsp://", "rtsps://")):
            raise BridgeConfigError(f"{label}: url must start with rtsp:// or rtsps://")
        if not merged["sightline_url"].startswith(("ws://", "wss://")):
            raise BridgeConfigError(f"{label}: sightline_url must start with ws:// or wss://")
        if merged.get("transport", "tcp") not in ("tcp", "udp"):
            raise BridgeConfigError(f"{label}: transport must be tcp or udp")
        if merged.get("auth", "header") not in ("header", "subprotocol"):
            raise BridgeConfigError(f"{label}: auth must be header or subprotocol")
        for key in NUMBERS:
            value = merged.get(key, NUMBERS[key])
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise BridgeConfigError(f"{label}: {key} must be a positive number")
            merged[key] = float(value)
        for key in ("onvif", "onvif_user", "onvif_password_file"):
            if not isinstance(merged.get(key, ""), str):
                raise BridgeConfigError(f"{label}: {key} must be a string")
        if merged.get("onvif"):
            try:
                parse_onvif_address(merged["onvif"])
            except ValueError as error:
                raise BridgeConfigError(f"{label}: onvif: {error}") from None
        if merged.get("onvif_password_file") and not Path(merged["onvif_password_file"]).is_absolute():
            merged["onvif_password_file"] = str(base_dir / merged["onvif_password_file"])
        token_file = Path(merged["token_file"])
        merged["token_file"] = token_file if token_file.is_absolute() else base_dir / token_file
        cameras.append(CameraConfig(**merged))
    return cameras, float(status_every)


class CameraLog(StatusLine):
    """One camera's event and error lines, prefixed with its name; no status line of its
    own (the bridge prints one table for all)."""

    def __init__(self, name: str, quiet: bool, stream=None):
        super().__init__(Counters(), quiet=quiet, stream=stream)
        self.name = name

    def tick(self, now: float | None = None) -> None:
        pass

    def event(self, message: str) -> None:
        super().event(f"[{self.name}] {message}")

    def error(self, message: str) -> None:
        super().error(f"[{self.name}] {message}")


def status_table(rows: list[tuple[str, Counters, RtspCamera]], now: float) -> str:
    """The periodic table: one line per camera."""
    lines = [f"{'camera':<16} {'portal':<12} {'camera state':<12} {'fps':>5} {'kbit/s':>8} {'skipped':>8} "
             f"{'reconnects':>10} {'camera reconnects':>17}  last camera error"]
    for name, counters, camera in rows:
        fps, kbps = counters.rates(now)
        # skipped: frames the pacer held back because the camera is above the server's limits.
        lines.append(f"{name[:16]:<16} {counters.state[:12]:<12} {camera.state[:12]:<12} {fps:5.1f} {kbps:8.1f} "
                     f"{counters.frames_skipped:>8} {counters.reconnects:>10} {camera.reconnects:>17}  "
                     f"{camera.last_error[:80]}")
    return "\n".join(lines) + "\n"


class Bridge:
    def __init__(self, cameras: list[CameraConfig], tokens: dict[str, str], status_every: float,
                 quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.status_every = status_every
        self.quiet = quiet
        self.agents: list[tuple[str, PassthroughAgent]] = []
        for camera_config in cameras:
            log = CameraLog(camera_config.name, quiet, self.stream)
            for secret in url_secrets(camera_config.url):
                log.hide(secret, redact_url(camera_config.url) if secret == camera_config.url else "***")
            token = tokens[camera_config.name]
            log.hide(token, redact(token))
            camera = RtspCamera(
                camera_config.url, transport=camera_config.transport,
                open_timeout=camera_config.open_timeout_seconds, read_timeout=camera_config.read_timeout_seconds,
                retry_cap=camera_config.retry_max_seconds, refused_retry=camera_config.refused_retry_seconds,
                on_message=lambda text, error, log=log: (log.error if error else log.event)(text))
            config = AgentConfig(url=camera_config.sightline_url, token=token, auth=camera_config.auth,
                                 name=camera_config.name)
            onvif = None
            if camera_config.onvif:
                try:
                    onvif = onvif_for(camera_config.onvif, camera_config.onvif_user or None,
                                      camera_config.onvif_password_file or None, camera_config.url, os.environ)
                except ValueError as error:
                    raise AgentExit(EXIT_USAGE, f"camera {camera_config.name}: {error}") from None
            self.agents.append((camera_config.name, PassthroughAgent(config, camera, log, onvif=onvif)))

    def stop(self) -> None:
        for _, agent in self.agents:
            agent.stop()

    def table(self) -> str:
        return status_table([(name, agent.counters, agent.camera) for name, agent in self.agents], time.monotonic())

    async def _camera(self, name: str, agent: PassthroughAgent) -> None:
        """One camera's whole life; whatever ends it ends it alone."""
        try:
            await agent.run()
        except AgentExit as error:
            agent.status.error(f"stopped: {error.message}")
            agent.counters.state = "failed"
        except Exception as error:  # noqa: BLE001 -- one camera's bug must not stop the others
            agent.status.error(f"stopped: unexpected {type(error).__name__}: {error}")
            agent.counters.state = "failed"

    async def _tables(self) -> None:
        while True:
            await asyncio.sleep(self.status_every)
            self._write(self.table())

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    async def run(self, duration: float | None = None) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self.stop)
            except (NotImplementedError, RuntimeError):
                pass
        if duration is not None:
            loop.call_later(duration, self.stop)
        self._write(f"{AGENT_NAME} bridge: {len(self.agents)} camera(s)\n")
        tables = asyncio.create_task(self._tables()) if self.status_every > 0 else None
        await asyncio.gather(*(self._camera(name, agent) for name, agent in self.agents))
        if tables is not None:
            tables.cancel()
        self._write(self.table())
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sightline-agent bridge",
                                     description="Relay many RTSP cameras to Sightline from one process "
                                                 "(H.264 as received). See docs/agent.md, 'Bridge mode'.")
    parser.add_argument("--config", required=True, metavar="PATH", help="the bridge's TOML file")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (exit 0)")
    parser.add_argument("--quiet", action="store_true", help="errors only: no events, no status table")
    return parser


def main(argv: list[str] | None = None) -> int:
    from sightline_agent.cli import read_token

    args = build_parser().parse_args(argv)
    try:
        path = Path(args.config)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise AgentExit(EXIT_USAGE, f"cannot read --config {path}: {error.strerror}") from None
        try:
            cameras, status_every = parse_config(text, path.resolve().parent)
        except BridgeConfigError as error:
            raise AgentExit(EXIT_USAGE, f"{path}: {error}") from None
        tokens = {}
        for camera in cameras:
            try:
                tokens[camera.name] = read_token(os.fspath(camera.token_file))
            except AgentExit as error:
                raise AgentExit(error.code, f"camera {camera.name}: {error.message}") from None
        bridge = Bridge(cameras, tokens, status_every, quiet=args.quiet)
        return asyncio.run(bridge.run(args.duration))
    except AgentExit as error:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} error: {error.message}\n")
        return error.code
    except Exception as error:  # noqa: BLE001
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} error: unexpected {type(error).__name__}: {error}\n")
        return EXIT_ERROR
