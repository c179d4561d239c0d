"""RTSP bridge benchmark (issue 13): CPU per camera, passthrough vs decode + re-encode.

    .venv/bin/python -m bench.bridge            # 1080p 15 fps; 1, 4, 16 cameras; about 4 min
    .venv/bin/python -m bench.bridge --quick    # smoke run: 320x240, 1 and 4 cameras, 5 s windows

One RTSP camera (GStreamer's RTSP server, scripts/lib/rtsp_test_camera.py, run by
Debian's python3) serves a pre-encoded H.264 MP4 as stored, so the camera itself
costs little; every bridged camera is its own RTSP session of that stream. The
bridge (`sightline-agent bridge`) relays N cameras to a WebSocket sink in
this process that answers hello/ping like Sightline and counts what arrives (the
portal's own cost is not what is measured here). Measured: the bridge process's
CPU (user + system, all threads) over a window after every camera streams, as a
percentage of one core, divided by N. Beside it, the same stream decoded and
re-encoded (libx264 ultrafast/zerolatency at the same size and rate: what the
agent's --codec h264 path would cost) by one process, for one camera.
Bar: passthrough <= 2 % of one core per camera.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import websockets

from bench.procs import PYTHON, REPO, free_port

CAMERA_SCRIPT = REPO / "scripts" / "lib" / "rtsp_test_camera.py"
BAR_PERCENT_PER_CAMERA = 2.0
CLIP_CACHE = REPO / "var" / "bench"

REENCODE_CHILD = r"""
import sys, av
src = av.open(sys.argv[1], options={"rtsp_transport": "tcp"}, timeout=(10, 10))
video = src.streams.video[0]
enc = None
for frame in src.decode(video):
    if enc is None:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, "yuv420p"
        from fractions import Fraction
        fps = int(round(float(video.average_rate or 15)))
        enc.time_base, enc.framerate, enc.gop_size, enc.max_b_frames = Fraction(1, fps), Fraction(fps, 1), fps, 0
        enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
        enc.open()
        n = 0
    frame = frame.reformat(format="yuv420p")
    frame.pts, n = n, n + 1
    for packet in enc.encode(frame):
        bytes(packet)
"""


def make_clip(path: Path, width: int, height: int, fps: int, seconds: int) -> Path:
    """A moving picture, H.264 in MP4, a keyframe a second, ~4 Mbit/s at 1080p (once; cached)."""
    if path.exists():
        return path
    import av
    from PIL import Image, ImageChops, ImageDraw

    print(f"bench: encoding the {width}x{height} {fps} fps clip once ({seconds} s) -> {path}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    out = av.open(str(partial), "w")
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"preset": "veryfast", "b": str(4_000_000 * width * height // (1920 * 1080)),
                      "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes=0"}
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    ImageDraw.Draw(base).ellipse((width // 4, height // 4, width // 2, height // 2), fill=(200, 40, 40))
    for index in range(seconds * fps):
        frame = av.VideoFrame.from_image(ImageChops.offset(base, index * 8, index * 2))
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    partial.rename(path)
    return path


class Sink:
    """Answers like Sightline's device endpoint (hello -> welcome, ping -> pong); counts video frames."""

    def __init__(self):
        self.frames: dict[str, int] = {}
        self.connected = 0

    async def handler(self, ws) -> None:
        name = None
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    if message[2] == 2 and message[16:18] == b"\x00\x00":  # H.264, first chunk
                        self.frames[name] = self.frames.get(name, 0) + 1
                    continue
                data = json.loads(message)
                if data.get("type") == "hello":
                    name = data.get("agent", "")
                    self.connected += 1
                    await ws.send(json.dumps({"type": "welcome", "device_id": name, "recording": False, "limits": {
                        "max_message_bytes": 1 << 20, "max_frame_bytes": 4 << 20, "max_fps": 60,
                        "heartbeat_seconds": 10, "dead_after_seconds": 30}}))
                elif data.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "id": data.get("id"), "ts": data.get("ts")}))
        except websockets.ConnectionClosed:
            pass


def fake_token() -> str:
    # The prefix is letters and digits only (sightline_agent.tokens.TOKEN_RE): token_urlsafe may give "-" or "_",
    # which made a 16-camera run fail 98 times in 100 with "does not hold a Sightline device token".
    prefix = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
    return f"sl_{prefix}_{secrets.token_urlsafe(32)[:43]}"


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def measure_bridge(cameras: int, camera_url: str, sink: Sink, sink_port: int, workdir: Path,
                         warmup: float, window: float) -> dict:
    lines = ["status_every = 0", "[defaults]", f'sightline_url = "ws://127.0.0.1:{sink_port}/ws/device/"']
    for index in range(cameras):
        token = workdir / f"cam{index}.token"
        token.write_text(fake_token())
        lines += ["[[camera]]", f'name = "cam{index}"', f'url = "{camera_url}"', f'token_file = "{token}"']
    config = workdir / f"bridge-{cameras}.toml"
    config.write_text("\n".join(lines) + "\n")
    sink.frames.clear()
    before = sink.connected
    log = open(workdir / f"bridge-{cameras}.log", "wb")
    process = subprocess.Popen([PYTHON, "-m", "sightline_agent", "bridge", "--config", str(config), "--quiet"],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while sink.connected - before < cameras:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"only {sink.connected - before} of {cameras} cameras connected; "
                                   f"see {log.name}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(warmup)
        ps = psutil.Process(process.pid)
        frames_before = dict(sink.frames)
        cpu_before, started = cpu_seconds(ps), time.monotonic()
        await asyncio.sleep(window)
        cpu, elapsed = cpu_seconds(ps) - cpu_before, time.monotonic() - started
        rates = [(sink.frames.get(k, 0) - frames_before.get(k, 0)) / elapsed for k in sink.frames]
        return {"cameras": cameras, "cpu_percent": 100 * cpu / elapsed,
                "per_camera": 100 * cpu / elapsed / cameras, "rss_mb": ps.memory_info().rss / 2**20,
                "min_fps": min(rates) if rates else 0.0}
    finally:
        process.terminate()
        process.wait(10)
        log.close()


async def measure_reencode(camera_url: str, warmup: float, window: float) -> dict:
    process = subprocess.Popen([PYTHON, "-c", REENCODE_CHILD, camera_url], cwd=REPO)
    try:
        await asyncio.sleep(warmup + 2)
        ps = psutil.Process(process.pid)
        cpu_before, started = cpu_seconds(ps), time.monotonic()
        await asyncio.sleep(window)
        cpu, elapsed = cpu_seconds(ps) - cpu_before, time.monotonic() - started
        if process.poll() is not None:
            raise RuntimeError("the re-encoding process died")
        return {"cameras": 1, "cpu_percent": 100 * cpu / elapsed, "per_camera": 100 * cpu / elapsed}
    finally:
        process.terminate()
        process.wait(10)


async def main_async(args) -> int:
    width, height = (int(v) for v in args.size.split("x"))
    counts = [int(n) for n in args.cameras.split(",")]
    # The shared media restarts from the top when its last client leaves: one run's length is enough.
    seconds = int(args.warmup + args.window + 40)
    clip = make_clip(CLIP_CACHE / f"bridge-{width}x{height}-{args.fps}fps-{seconds}s.mp4", width, height, args.fps, seconds)
    sink = Sink()
    sink_port = free_port()
    results, reencode = [], None
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        workdir = Path(tmp)
        camera_port = free_port()
        camera = subprocess.Popen(["/usr/bin/python3", str(CAMERA_SCRIPT), "--port", str(camera_port),
                                   "--audio", "none", "--file", str(clip)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            if b"READY" not in camera.stdout.readline():
                raise RuntimeError("the RTSP camera did not start (is gir1.2-gst-rtsp-server-1.0 installed?)")
            camera_url = f"rtsp://127.0.0.1:{camera_port}/cam"
            camera_ps = psutil.Process(camera.pid)
            async with websockets.serve(sink.handler, "127.0.0.1", sink_port, compression=None, max_size=None):
                for count in counts:
                    camera_before = cpu_seconds(camera_ps)
                    started = time.monotonic()
                    result = await measure_bridge(count, camera_url, sink, sink_port, workdir, args.warmup, args.window)
                    result["camera_cpu_percent"] = 100 * (cpu_seconds(camera_ps) - camera_before) / (time.monotonic() - started)
                    results.append(result)
                    print(f"bench: {count} camera(s): {result['per_camera']:.2f} % of a core each", file=sys.stderr)
                if not args.no_reencode:
                    reencode = await measure_reencode(camera_url, args.warmup, args.window)
        finally:
            camera.terminate()
            camera.wait(10)

    print(f"\nBridge CPU, {width}x{height} {args.fps} fps H.264 (~{clip.stat().st_size * 8 / seconds / 1000:.0f} kbit/s), "
          f"{args.window:.0f} s window, {psutil.cpu_count()} cores\n")
    print("| mode | cameras | bridge CPU (% of one core) | per camera | bridge RSS | slowest camera fps | RTSP server CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| passthrough | {r['cameras']} | {r['cpu_percent']:.1f} | {r['per_camera']:.2f} | "
              f"{r['rss_mb']:.0f} MB | {r['min_fps']:.1f} | {r['camera_cpu_percent']:.1f} |")
    if reencode:
        print(f"| decode + re-encode (libx264 ultrafast) | 1 | {reencode['cpu_percent']:.1f} | "
              f"{reencode['per_camera']:.2f} | – | – | – |")
    worst = max(r["per_camera"] for r in results)
    verdict = "PASS" if worst <= BAR_PERCENT_PER_CAMERA and all(r["min_fps"] >= args.fps * 0.8 for r in results) else "FAIL"
    print(f"\n{verdict}: passthrough costs at most {worst:.2f} % of one core per camera "
          f"(bar {BAR_PERCENT_PER_CAMERA} %), every camera at >= 80 % of {args.fps} fps")
    return 0 if verdict == "PASS" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--cameras", default="1,4,16", help="comma-separated camera counts (default 1,4,16)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--no-reencode", action="store_true", help="skip the decode + re-encode comparison")
    parser.add_argument("--quick", action="store_true", help="smoke run: 320x240, 1 and 4 cameras, 5 s windows")
    args = parser.parse_args()
    if args.quick:
        args.size, args.cameras, args.warmup, args.window = "320x240", "1,4", 2.0, 5.0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
