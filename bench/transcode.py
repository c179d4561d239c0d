"""Transcode benchmark (issue 4): 60 s of 1280x720 JPEG frames at 15 fps -> H.264 MP4.

    .venv/bin/python -m bench.transcode           # 3 runs each, median; about 2-4 minutes
    .venv/bin/python -m bench.transcode --runs 1  # smoke run

Sightline's transcoder (recordings.transcode.transcode_jpeg_directory, PyAV) and
the ffmpeg command line (the binary shipped in the imageio-ffmpeg package) encode
the same 900 JPEGs with the same encoder settings, read from recordings.constants
and recordings.transcode (libx264 preset/crf, yuv420p, GOP, an IDR forced every
KEYFRAME_INTERVAL_SECONDS, fragmented-MP4 flags, 1/90000 time base). Each run is
a fresh process; the time is the encoder's own wall time (ffmpeg's -benchmark
rtime; the Python call's perf_counter), so process start-up is left out of both.
Both outputs are decoded with PyAV and must hold 900 frames.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import media
from bench.procs import PYTHON, REPO

FRAMES = 900
FPS = 15
WIDTH, HEIGHT = 1280, 720
BAR_RATIO = 0.9  # Sightline's frames/s >= 0.9 x ffmpeg CLI's

# Runs recordings' own benchmark entry point in a fresh interpreter and prints
# its wall and CPU time (all threads) as JSON.
SIGHTLINE_CHILD = r"""
import json, sys, time, os
import django
django.setup()
from recordings.transcode import transcode_jpeg_directory
directory, out, fps = sys.argv[1], sys.argv[2], float(sys.argv[3])
cpu0, t0 = time.process_time(), time.perf_counter()
result = transcode_jpeg_directory(directory, out, fps=fps)
wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "frames": result.frames, "corrupt": result.corrupt_frames}))
"""


def encoder_settings() -> dict:
    """The settings recordings.transcode gives libx264, so ffmpeg gets the same."""
    sys.path.insert(0, str(REPO))
    from recordings import constants
    from recordings.transcode import x264_options

    conf = {k: os.environ[k] for k in ("TRANSCODE_X264_PRESET", "TRANSCODE_X264_CRF", "TRANSCODE_THREADS") if k in os.environ}
    return {
        "x264": dict(x264_options(conf), **{"forced-idr": "1"}),  # as in transcode._add_video_stream
        "gop": int(FPS * 10) or 150,  # transcode._add_video_stream: IDRs are forced by time instead
        "keyframe_interval_s": constants.KEYFRAME_INTERVAL_SECONDS,
        "movflags": constants.MP4_MOVFLAGS,
        "timescale": constants.VIDEO_TIME_BASE,
        "pix_fmt": "yuv420p",
    }


def ffmpeg_argv(ffmpeg: str, frames_dir: Path, out: Path, s: dict) -> list[str]:
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-benchmark", "-nostats", "-loglevel", "info",
            "-framerate", str(FPS), "-i", str(frames_dir / "frame_%05d.jpg"),
            "-c:v", "libx264", "-pix_fmt", s["pix_fmt"], "-g", str(s["gop"])]
    for key, value in s["x264"].items():
        argv += [f"-{key}", str(value)]
    argv += ["-force_key_frames", f"expr:gte(t,n_forced*{s['keyframe_interval_s']})",
             "-video_track_timescale", str(s["timescale"]), "-movflags", s["movflags"], "-f", "mp4", str(out)]
    return argv


def run_ffmpeg(ffmpeg: str, frames_dir: Path, out: Path, settings: dict) -> dict:
    done = subprocess.run(ffmpeg_argv(ffmpeg, frames_dir, out, settings), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr[-2000:]}")
    # -benchmark prints e.g. "bench: utime=20.1s stime=0.6s rtime=12.3s"
    match = re.search(r"utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s", done.stdout + done.stderr)
    if not match:
        raise RuntimeError(f"no -benchmark line in ffmpeg output: {done.stderr[-500:]}")
    utime, stime, rtime = map(float, match.groups())
    return {"wall_s": rtime, "cpu_s": utime + stime}


def run_sightline(frames_dir: Path, out: Path, env: dict) -> dict:
    done = subprocess.run([PYTHON, "-c", SIGHTLINE_CHILD, str(frames_dir), str(out), str(FPS)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"Sightline transcode failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def count_frames(path: Path) -> tuple[int, float]:
    """Decoded video frames and the duration (s) of the stream, with PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, last = 0, 0.0
        for frame in container.decode(stream):
            frames += 1
            last = float(frame.pts * frame.time_base) if frame.pts is not None else last
    return frames, last + 1 / FPS


def child_env(workdir: Path) -> dict:
    env = dict(os.environ)
    env.update({"DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "bench-transcode-not-secret",
                "DEBUG": "0", "SIGHTLINE_VAR_DIR": str(workdir / "var"), "PYTHONPATH": str(REPO),
                "DATABASE_URL": f"sqlite:///{workdir / 'unused.sqlite3'}"})
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=FRAMES, help="smoke runs only: fewer frames")
    parser.add_argument("--keep", action="store_true", help="keep the output MP4s")
    args = parser.parse_args(argv)

    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    print(f"bench: preparing {args.frames} frames (cached after the first run)...", file=sys.stderr, flush=True)
    frames = args.frames
    frames_dir = media.camera_frames(frames, FPS, WIDTH, HEIGHT)
    input_bytes = sum(p.stat().st_size for p in frames_dir.glob("*.jpg"))
    settings = encoder_settings()
    workdir = Path(tempfile.mkdtemp(prefix="sightline-transcode-"))
    env = child_env(workdir)
    runs = {"sightline": [], "ffmpeg": []}
    outputs = {}
    try:
        for i in range(args.runs):
            # Alternate the order so neither side always runs on a warmer cache.
            order = ["sightline", "ffmpeg"] if i % 2 == 0 else ["ffmpeg", "sightline"]
            for side in order:
                out = workdir / f"{side}-{i}.mp4"
                result = run_sightline(frames_dir, out, env) if side == "sightline" else run_ffmpeg(ffmpeg, frames_dir, out, settings)
                result["bytes"] = out.stat().st_size
                runs[side].append(result)
                outputs[side] = out
                print(f"bench:   run {i + 1} {side}: {result['wall_s']:.2f} s wall, {result['cpu_s']:.2f} s CPU",
                      file=sys.stderr, flush=True)
        checks = {side: count_frames(path) for side, path in outputs.items()}
    finally:
        if args.keep:
            print(f"bench: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = {}
    for side, results in runs.items():
        wall = statistics.median(r["wall_s"] for r in results)
        rows[side] = {
            "wall_s": wall,
            "fps": frames / wall,
            "realtime": (frames / FPS) / wall,
            "cpu_s": statistics.median(r["cpu_s"] for r in results),
            "mb": statistics.median(r["bytes"] for r in results) / 1e6,
            "frames": checks[side][0],
            "duration": checks[side][1],
        }
    x264 = " ".join(f"{k}={v}" for k, v in settings["x264"].items())
    print(f"\n### Transcode: {frames} JPEG frames {WIDTH}x{HEIGHT} at {FPS} fps ({frames / FPS:g} s, "
          f"{input_bytes / 1e6:.0f} MB in) → H.264 MP4, median of {args.runs}\n")
    print(f"Encoder settings (both): libx264 {x264}, pix_fmt {settings['pix_fmt']}, gop {settings['gop']}, "
          f"IDR every {settings['keyframe_interval_s']:g} s, movflags {settings['movflags']}, timescale {settings['timescale']}\n")
    print("| transcoder | wall s | frames/s | × real-time | CPU s | output MB | frames decoded | duration s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    names = {"sightline": "Sightline (PyAV, recordings.transcode)", "ffmpeg": f"ffmpeg CLI ({Path(ffmpeg).name})"}
    for side in ("sightline", "ffmpeg"):
        r = rows[side]
        print(f"| {names[side]} | {r['wall_s']:.2f} | {r['fps']:.1f} | {r['realtime']:.1f} | {r['cpu_s']:.1f} | {r['mb']:.1f} "
              f"| {r['frames']} | {r['duration']:.2f} |")
    ratio = rows["sightline"]["fps"] / rows["ffmpeg"]["fps"]
    frames_ok = all(rows[s]["frames"] == frames for s in rows)
    ok = ratio >= BAR_RATIO and frames_ok
    print(f"\n{'PASS' if ok else 'FAIL'}: Sightline at {ratio:.2f}x ffmpeg CLI speed (need >= {BAR_RATIO}x); "
          f"frames decoded {rows['sightline']['frames']} / {rows['ffmpeg']['frames']} (need {frames} each)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
