"""WebRTC fan-out benchmark (issue 11): 1 H.264 device (720p, 15 fps) → N WebRTC viewers, beside
N WebSocket viewers of the same stream, on one uvicorn process and one WebRTC process.

    python -m bench.webrtc                       # N = 1, 10, 20; 10 s windows
    python -m bench.webrtc --viewers 20 --seconds 20

The device is played by this script: a 720p clip encoded once up front (libx264, 1 s GOP), sent
at 15 fps, each access unit carrying its capture time in an SEI NAL unit (user data, ignored by
decoders, passed through untouched by the server). WebRTC viewers are aiortc peers in this
process that count frames from RTP (a frame is received when its last packet, marker bit set,
arrives; its capture time is the SEI's) and decode nothing, so two cores suffice; WebSocket viewers read the capture time from the frame header. Reported per cell:
delivered fps per viewer, loss, capture → received latency p50/p99, CPU of the WebRTC process
(and of the web process) per viewer. Bar: passthrough (encoder frames 0), no loss at N = 20,
p99 ≤ 100 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import psutil

from bench.procs import PYTHON, REPO, UsageMeter, base_env, free_port, redis_cleanup, start_server

FPS = 15
SIZE = (1280, 720)
SEI_UUID = b"SightlineBenchTs"  # 16 bytes, no zero bytes (no emulation prevention needed)


def encode_clip(frames: int) -> list[tuple[bytes, bool]]:
    sys.path.insert(0, str(REPO))
    from sightline_agent.encoders import H264Encoder
    from sightline_agent.sources import PatternSource

    encoder, source = H264Encoder(), PatternSource()
    clip = []
    for i in range(frames):
        [frame] = encoder.encode(source.capture(*SIZE, i / FPS), FPS)
        clip.append((frame.payload, frame.keyframe))
    encoder.close()
    return clip


def with_capture_time(payload: bytes, capture_us: int) -> bytes:
    """The access unit with an SEI (user data unregistered) holding the capture time, before its first slice."""
    from streams.fmp4 import split_annexb

    body = SEI_UUID + b"%016d" % capture_us
    sei = bytes([0x06, 0x05, len(body)]) + body + b"\x80"
    units = split_annexb(payload)
    first_slice = next(i for i, u in enumerate(units) if u[0] & 0x1F in (1, 5))
    units.insert(first_slice, sei)
    return b"".join(b"\x00\x00\x00\x01" + u for u in units)


def capture_time(access_unit: bytes) -> int | None:
    at = access_unit.find(SEI_UUID)
    return int(access_unit[at + 16:at + 32]) if at >= 0 else None


class Tally:
    def __init__(self):
        self.frames = 0
        self.latencies: list[float] = []
        self.measuring = False
        self.pending: dict[int, int] = {}  # RTP timestamp -> capture µs, until the frame's last packet
        self.seen = deque(maxlen=64)  # RTP timestamps of frames already counted

    def note(self, capture_us: int | None) -> None:
        if not self.measuring:
            return
        self.frames += 1
        if capture_us:
            self.latencies.append(time.time() * 1000 - capture_us / 1000)


RECEIVER_TALLIES: dict = {}  # aiortc RTCRtpReceiver -> Tally


def count_frames_from_rtp() -> None:
    """Count frames as their last RTP packet (marker bit) arrives, with the capture time from the
    SEI in their first packets; and give aiortc receivers a decoder that decodes nothing."""
    import aiortc.rtcrtpreceiver as receiver

    if getattr(receiver.RTCRtpReceiver, "_bench_counting", False):
        return
    original_handle, original_decoder = receiver.RTCRtpReceiver._handle_rtp_packet, receiver.get_decoder

    async def handle(self, packet, arrival_time_ms):
        tally = RECEIVER_TALLIES.get(self)
        if tally is not None and packet.payload:
            capture = capture_time(packet.payload)
            if capture is not None:
                tally.pending[packet.timestamp] = capture
            if packet.marker and packet.timestamp not in tally.seen:  # a retransmission is not a new frame
                tally.seen.append(packet.timestamp)
                tally.note(tally.pending.pop(packet.timestamp, None))
                if len(tally.pending) > 64:
                    tally.pending.clear()
        return await original_handle(self, packet, arrival_time_ms)

    class NullDecoder:
        def decode(self, encoded_frame):
            return []

    receiver.RTCRtpReceiver._handle_rtp_packet = handle
    receiver.get_decoder = lambda codec: NullDecoder() if codec.mimeType.lower() == "video/h264" else original_decoder(codec)
    receiver.RTCRtpReceiver._bench_counting = True


def _origin_of(url: str) -> str:
    """The page origin a browser would send for this socket URL (scheme, host and port are compared)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


async def device(url: str, token: str, clip, stop: asyncio.Event):
    import websockets

    from sightline_agent import protocol

    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                  subprotocols=["sightline.v1"], max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["h264"], "resolution": "1280x720",
                                  "fps": FPS, "agent": "bench-webrtc"}))
        seq, next_due = 0, time.monotonic()
        while not stop.is_set():
            payload, key = clip[seq % len(clip)]
            now_us = int(time.time() * 1e6)
            for message in protocol.encode_frame(protocol.KIND_H264, with_capture_time(payload, now_us), seq + 1,
                                                 now_us, key, max_message_bytes=1024 * 1024):
                await ws.send(message)
            seq += 1
            next_due += 1 / FPS
            try:
                message = await asyncio.wait_for(ws.recv(), max(0.0, next_due - time.monotonic()))
                data = json.loads(message) if isinstance(message, str) else {}
                if data.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "id": data.get("id"), "ts": data.get("ts")}))
            except asyncio.TimeoutError:
                pass


async def webrtc_viewer(url: str, cookie: str, tally: Tally, tally_ready: asyncio.Event, stop: asyncio.Event):
    import websockets
    from aiortc import RTCPeerConnection, RTCSessionDescription

    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": _origin_of(url)},
                                  max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "kinds": []}))
        pc = RTCPeerConnection()
        transceiver = pc.addTransceiver("video", direction="recvonly")
        RECEIVER_TALLIES[transceiver.receiver] = tally
        await pc.setLocalDescription(await pc.createOffer())
        await ws.send(json.dumps({"type": "webrtc_offer", "sdp": pc.localDescription.sdp}))
        try:
            while not stop.is_set():
                try:
                    text = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                message = json.loads(text) if isinstance(text, str) else {}
                if message.get("type") == "webrtc_answer":
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="answer"))
                    tally_ready.set()
                elif message.get("type") in ("webrtc_error", "webrtc_bye"):
                    raise RuntimeError(f"WebRTC viewer refused: {message}")
                elif message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "id": message.get("id"), "ts": message.get("ts")}))
        finally:
            RECEIVER_TALLIES.pop(transceiver.receiver, None)
            await pc.close()


async def ws_viewer(url: str, cookie: str, tally: Tally, stop: asyncio.Event):
    import struct

    import websockets

    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": _origin_of(url)},
                                  max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "kinds": ["h264"]}))
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            if isinstance(message, bytes):
                tally.note(struct.unpack_from(">Q", message, 8)[0])
            else:
                data = json.loads(message)
                if data.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "id": data.get("id"), "ts": data.get("ts")}))


def summary(path: str, n: int, tallies: list[Tally], seconds: float, usage, pid: int) -> dict:
    loadgen = usage.per_process.get(os.getpid(), 0.0) / seconds * 100
    latencies = sorted(x for t in tallies for x in t.latencies)
    fps = [t.frames / seconds for t in tallies]
    cpu = usage.per_process.get(pid, 0.0) / seconds * 100
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")  # noqa: E731
    return {"path": path, "viewers": n, "fps_min": round(min(fps), 2), "fps_mean": round(statistics.mean(fps), 2),
            "delivered_pct": round(100 * sum(t.frames for t in tallies) / (n * FPS * seconds), 1),
            "p50_ms": round(pct(0.5), 1), "p99_ms": round(pct(0.99), 1),
            "server_cpu_pct": round(cpu, 1), "cpu_pct_per_viewer": round(cpu / n, 2), "loadgen_cpu_pct": round(loadgen)}


async def cell(path, n, base_ws, install, seconds, warmup, pids):
    from bench import sightline_env

    cookie = sightline_env.cookie_header(install)
    url = f"{base_ws}/ws/view/{install.devices[0][0]}/"
    tallies = [Tally() for _ in range(n)]
    stop = asyncio.Event()
    if path == "webrtc":
        count_frames_from_rtp()
        ready = [asyncio.Event() for _ in range(n)]
        tasks = [asyncio.create_task(webrtc_viewer(url, cookie, tallies[i], ready[i], stop)) for i in range(n)]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
        except asyncio.TimeoutError:
            stop.set()
            errors = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()]
            for task in tasks:
                task.cancel()
            raise RuntimeError(f"{sum(r.is_set() for r in ready)} of {n} WebRTC viewers answered; {errors[:3]}")
    else:
        tasks = [asyncio.create_task(ws_viewer(url, cookie, t, stop)) for t in tallies]
    await asyncio.sleep(warmup)
    meter = UsageMeter([*pids.values(), os.getpid()]).start()
    for t in tallies:
        t.measuring = True
    await asyncio.sleep(seconds)
    for t in tallies:
        t.measuring = False
    usage = meter.stop()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    server = pids["webrtc"] if path == "webrtc" else pids["web"]
    return summary(path, n, tallies, usage.wall_s, usage, server)


def encoder_frames(install) -> float:
    import redis

    client = redis.Redis.from_url(install.redis_url, decode_responses=True)
    try:
        return sum(float(client.hget(k, "encoder_frames") or 0) for k in client.scan_iter(f"*{install.prefix}*webrtc:stats:*"))
    finally:
        client.close()


async def run(args, install, port, pids):
    clip = encode_clip(FPS * 4)
    kbps = sum(len(p) for p, _ in clip) * 8 / (len(clip) / FPS) / 1000
    print(f"clip: {len(clip)} access units of {SIZE[0]}x{SIZE[1]} at {FPS} fps, {kbps:.0f} kbit/s", flush=True)
    stop = asyncio.Event()
    base_ws = f"ws://127.0.0.1:{port}"
    dev = asyncio.create_task(device(f"{base_ws}/ws/device/", install.devices[0][1], clip, stop))
    await asyncio.sleep(1.0)
    rows = []
    for n in args.viewers:
        for path in ("webrtc", "websocket"):
            rows.append(await cell(path, n, base_ws, install, args.seconds, args.warmup, pids))
            print(json.dumps(rows[-1]), flush=True)
    stop.set()
    await asyncio.gather(dev, return_exceptions=True)
    return rows


def table(rows, encoded) -> str:
    lines = ["| path | N | fps/viewer (min / mean) | delivered | p50 ms | p99 ms | server CPU % | CPU %/viewer | loadgen CPU % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['path']} | {r['viewers']} | {r['fps_min']} / {r['fps_mean']} | {r['delivered_pct']} % | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['server_cpu_pct']} | {r['cpu_pct_per_viewer']} | {r['loadgen_cpu_pct']} |")
    lines.append(f"\nWebRTC process encoder frames during the run: {encoded:.0f} (0 = passthrough)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 20])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    from bench import sightline_env

    workdir = Path(tempfile.mkdtemp(prefix="bench-webrtc-"))
    install = sightline_env.create(workdir, devices=1, device_fps=FPS, resolution=SIZE)
    env = base_env(install.env)
    env["WEBRTC_MAX_PEERS"] = str(max(args.viewers) + 5)
    env["HANDSHAKES_PER_ADDRESS"] = "1000"  # every viewer comes from 127.0.0.1
    env["LOG_LEVEL"] = "WARNING"
    port = free_port()
    web = start_server("uvicorn", [PYTHON, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1",
                                   "--port", str(port), "--no-access-log", "--ws-per-message-deflate", "false"],
                       port, env, workdir)
    log = open(workdir / "webrtc.log", "wb")
    rtc = subprocess.Popen([PYTHON, "manage.py", "webrtc"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "serving up to" not in (workdir / "webrtc.log").read_text(errors="replace"):
            if time.monotonic() > deadline or rtc.poll() is not None:
                raise RuntimeError((workdir / "webrtc.log").read_text(errors="replace")[-2000:])
            time.sleep(0.2)
        rows = asyncio.run(run(args, install, port, {"web": web.pid, "webrtc": rtc.pid}))
        encoded = encoder_frames(install)
        print("\n" + table(rows, encoded))
        print(f"\n{psutil.cpu_count()} CPUs; load generator (device + all viewers) in this process")
        top = [r for r in rows if r["path"] == "webrtc" and r["viewers"] == max(args.viewers)]
        ok = encoded == 0 and all(r["delivered_pct"] >= 99.9 and r["p99_ms"] <= 100 for r in top)
        print(f"{'PASS' if ok else 'FAIL'}: passthrough (encoder frames {encoded:.0f}), WebRTC at N = "
              f"{max(args.viewers)}: delivered ≥ 99.9 % and p99 ≤ 100 ms")
        return 0 if ok else 1
    finally:
        rtc.terminate()
        try:
            rtc.wait(10)
        except subprocess.TimeoutExpired:
            rtc.kill()
        web.stop()
        redis_cleanup(install.redis_url, install.redis_patterns())
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
