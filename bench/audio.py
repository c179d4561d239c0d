"""Audio benchmark (issue 10): live audio latency, talk-back latency, server CPU per audio stream.

    .venv/bin/python -m bench.audio [--seconds 10] [--keep]

A throwaway installation (bench/sightline_env.py), one uvicorn process, the reference agent
(H.264 320x180 at 5 fps; Opus audio, a 440 Hz tone; talk-back into a WAV file) and Debian's
Chromium (Playwright) whose fake microphone plays a 440 Hz WAV, logged in as an operator.

1. baseline: the agent streams video only, the device page is open (muted); server CPU.
2. live audio: the agent streams video + Opus audio, the page is unmuted; server CPU, and per
   played audio frame the latency capture timestamp -> AudioContext output time
   (lib/audio/player.js: the scheduled start mapped through getOutputTimestamp()).
   CPU per audio stream = (2) - (1): ingest, fan-out to one listener, nothing else changed.
3. talk-back: the operator holds Talk for the window; the agent reports capture (browser
   microphone block) -> received-and-decoded latency p50/p99 when the talk ends.

Bars (issue 10): live audio p99 <= 150 ms on loopback, talk-back p99 <= 200 ms.
"""
from __future__ import annotations

import argparse
import math
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

from bench import sightline_env
from bench.procs import REPO, UsageMeter, base_env, free_port, redis_cleanup, start_server

CHROMIUM = "/usr/bin/chromium"
LIVE_P99_BAR_MS = 150
TALK_P99_BAR_MS = 200


def tone_wav(path: Path, seconds: int = 5, rate: int = 48000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / rate)))
                                 for i in range(seconds * rate)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def start_agent(install, port: int, workdir: Path, audio: bool, log_name: str) -> subprocess.Popen:
    device_id, token = install.devices[0]
    token_file = workdir / "device.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    args = [sys.executable, "-m", "sightline_agent", "--url", f"ws://127.0.0.1:{port}/ws/device/",
            "--token-file", str(token_file), "--codec", "h264", "--fps", "5", "--resolution", "320x180",
            "--local-settings", "--talkback-wav", str(workdir / "talkback.wav")]
    if audio:
        args += ["--audio-codec", "opus", "--audio-source", "tone:440"]
    log = open(workdir / log_name, "wb")
    return subprocess.Popen(args, cwd=REPO, env=base_env(install.env), stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audio")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured window")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sightline-bench-audio-"))
    install = sightline_env.create(workdir, devices=1, recording=False, device_fps=5, resolution=(320, 180))
    from accounts.models import Membership, Role

    Membership.objects.filter(organisation__slug=install.prefix).update(role=Role.OPERATOR)
    env = base_env(install.env)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO, env=env,
                   check=True, timeout=120)
    port = free_port()
    server = start_server("uvicorn", [sys.executable, "-m", "uvicorn", "project.asgi:application", "--lifespan", "off",
                                      "--ws-per-message-deflate", "false", "--port", str(port)], port, env, workdir)
    wav = workdir / "mic.wav"
    tone_wav(wav)
    agent = None
    rows, ok = {}, True
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}"])
            context = browser.new_context(base_url=f"http://127.0.0.1:{port}")
            context.add_cookies([{"name": "sessionid", "value": install.session_key, "domain": "127.0.0.1", "path": "/"}])
            page = context.new_page()
            device_id = install.devices[0][0]

            def wait(expression: str, timeout_ms: int = 30_000):
                return page.wait_for_function(f"() => {{ const s = window.sightline; return s && ({expression}); }}",
                                              timeout=timeout_ms).json_value()

            # 1. baseline: video only, page open
            agent = start_agent(install, port, workdir, audio=False, log_name="agent-video.log")
            page.goto(f"/devices/{device_id}/")
            wait("s.framesDrawn >= 5")
            time.sleep(2)
            meter = UsageMeter([server.pid]).start()
            time.sleep(args.seconds)
            baseline = meter.stop()
            stop(agent)

            # 2. live audio: video + Opus, unmuted
            agent = start_agent(install, port, workdir, audio=True, log_name="agent-audio.log")
            page.goto(f"/devices/{device_id}/")
            wait("s.framesDrawn >= 5 && s.audio.available")
            page.click("#audio-mute")
            wait("s.audio.framesPlayed >= 50")
            meter = UsageMeter([server.pid]).start()
            time.sleep(args.seconds)
            with_audio = meter.stop()
            latencies = page.evaluate("window.sightline.audio.latencies()")[-int(args.seconds * 50):]
            analysis = page.evaluate("window.sightline.audio.analysis()")

            # 3. talk-back: hold Talk for the window
            wait("s.talk.offered")
            box = page.locator("#talk").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            wait("s.talk.me && s.talk.framesSent > 10")
            time.sleep(args.seconds)
            page.mouse.up()
            deadline = time.monotonic() + 15
            report = None
            while time.monotonic() < deadline and report is None:
                report = re.search(r"talk-back from .* ended: ([\d.]+) s, peak level ([\d.]+), tone (\d+) Hz, "
                                   r"latency p50 (\d+) ms p99 (\d+) ms", (workdir / "agent-audio.log").read_text())
                time.sleep(0.2)
            browser.close()
        per_stream = (with_audio.cpu_s - baseline.cpu_s) / args.seconds * 100
        rows = {
            "live audio latency p50 (capture -> AudioContext output)": f"{percentile(latencies, 0.5):.0f} ms",
            "live audio latency p99": f"{percentile(latencies, 0.99):.0f} ms (bar {LIVE_P99_BAR_MS} ms)",
            "live audio frames measured": f"{len(latencies)} (peak {analysis['peakHz']:.0f} Hz)",
            "talk-back latency p50 (browser mic block -> agent decoded)": f"{report[4]} ms" if report else "n/a",
            "talk-back latency p99": f"{report[5]} ms (bar {TALK_P99_BAR_MS} ms)" if report else "n/a",
            "talk-back tone heard by the agent": f"{report[3]} Hz over {report[1]} s" if report else "n/a",
            "server CPU, video only (5 fps H.264, 1 viewer)": f"{baseline.cpu_pct:.2f} %",
            "server CPU, video + Opus audio, 1 listener": f"{with_audio.cpu_pct:.2f} %",
            "server CPU per audio stream (difference)": f"{per_stream:.2f} % of one core",
        }
        ok = (bool(report) and percentile(latencies, 0.99) <= LIVE_P99_BAR_MS and int(report[5]) <= TALK_P99_BAR_MS)
    finally:
        if agent is not None:
            stop(agent)
        server.stop()
        redis_cleanup(install.redis_url, install.redis_patterns())
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n| measurement | value |\n|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value} |")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
