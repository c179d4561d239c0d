"""Fan-out benchmark: 1 device -> N viewers, 100 KB frames at 30 fps (issue 3).

    .venv/bin/python -m bench.fanout            # full run, about 5-6 minutes
    .venv/bin/python -m bench.fanout --quick    # smoke run: N=1,10, 3 s windows

Servers compared in one run (each started and stopped here):
  node      bench/node_relay/relay.js, the npm `ws` baseline (no auth, no Redis)
  uvicorn   project.asgi:application under uvicorn, one process (production)
  daphne    the same application under daphne, one process (development server)
  uvicorn-2 device on uvicorn process A, viewers on uvicorn process B (fan-out via Redis)

The load generator (bench/node_relay/loadgen.js) runs in its own process; see
bench/README.md for what each column means and why the generator is in Node.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import media
from bench.procs import (
    NODE_DIR, PYTHON, Profiler, base_env, ensure_node_modules, free_port, redis_cleanup,
    redis_server_pids, run_loadgen, start_server,
)

SERVERS = ["node", "uvicorn", "daphne", "uvicorn-2"]
VIEWER_COUNTS = [1, 10, 50, 100, 200]
FRAME_BYTES = 100 * 1024
FPS = 30
# The production command (docs/deployment.md, "ASGI servers"), one process, with
# permessage-deflate off as docs/protocol.md tells operators: browsers offer it,
# and uvicorn's default accepts it, compressing every JPEG for every viewer
# (measured: ~25x the CPU per frame; try --viewer-deflate --uvicorn-args "--lifespan off").
UVICORN_ARGS = ["--lifespan", "off", "--ws-per-message-deflate", "false"]
DAPHNE_ARGS: list[str] = []
# The bar (issue 3), for uvicorn at N=200 on one process.
BAR_N = 200
BAR_MIN_DELIVERED_PCT = 99.9  # "no loss": >= 99.9 % of all (frame, viewer) pairs of the window delivered
BAR_P99_MS = 50.0
BAR_CPU_RATIO = 2.0


def uvicorn_argv(port: int, extra: list[str]) -> list[str]:
    return [PYTHON, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", str(port), *extra]


def daphne_argv(port: int, extra: list[str]) -> list[str]:
    return [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *extra, "project.asgi:application"]


class Target:
    """One server set-up under test: its processes and where device/viewers connect."""

    def __init__(self, kind: str, install, log_dir: Path, uvicorn_args: list[str]):
        self.kind = kind
        self.install = install
        self.servers = []
        env = base_env(install.env if install else {})
        if kind == "node":
            port = free_port()
            self.servers.append(start_server("node-relay", ["node", str(NODE_DIR / "relay.js"), "--port", str(port)], port, env, log_dir))
            self.device_port = self.viewer_port = port
        elif kind == "uvicorn":
            port = free_port()
            self.servers.append(start_server("uvicorn", uvicorn_argv(port, uvicorn_args), port, env, log_dir))
            self.device_port = self.viewer_port = port
        elif kind == "daphne":
            port = free_port()
            self.servers.append(start_server("daphne", daphne_argv(port, DAPHNE_ARGS), port, env, log_dir))
            self.device_port = self.viewer_port = port
        elif kind == "uvicorn-2":
            a, b = free_port(), free_port()
            self.servers.append(start_server("uvicorn-A", uvicorn_argv(a, uvicorn_args), a, env, log_dir))
            self.servers.append(start_server("uvicorn-B", uvicorn_argv(b, uvicorn_args), b, env, log_dir))
            self.device_port, self.viewer_port = a, b
        else:
            raise ValueError(f"unknown server {kind!r}")

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    def loadgen_config(self, viewers: int, payload: Path, timing: dict, viewer_deflate: bool) -> dict:
        sightline = self.kind != "node"
        if sightline:
            from bench.sightline_env import cookie_header

            device_id, token = self.install.devices[0]
            headers = {"Cookie": cookie_header(self.install), "Origin": f"http://127.0.0.1:{self.viewer_port}"}
        else:
            device_id, token, headers = "relay", None, {}
        return {
            "devices": [{"url": f"ws://127.0.0.1:{self.device_port}/ws/device/", "token": token}],
            "viewers": {"url": f"ws://127.0.0.1:{self.viewer_port}/ws/view/{device_id}/", "count": viewers,
                        "headers": headers, "expectWelcome": sightline},
            "deviceExpectWelcome": sightline,
            "viewerDeflate": viewer_deflate,
            "payloadFile": str(payload),
            "fps": FPS,
            "hello": {"type": "hello", "protocol": 1, "codecs": ["jpeg"], "resolution": "1280x720", "fps": FPS,
                      "audio": None, "agent": "sightline-bench-loadgen"},
            "connectConcurrency": 25,
            "connectTimeoutS": 30,
            **timing,
        }

    def alive(self) -> bool:
        return all(s.proc.poll() is None for s in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def run_cell(target: Target, viewers: int, payload: Path, timing: dict, viewer_deflate: bool, redis_pids: list[int],
             profile_dir: Path | None = None) -> dict:
    config = target.loadgen_config(viewers, payload, timing, viewer_deflate)
    budget = timing["warmupS"] + timing["measureS"] + timing["drainS"] + 2 * config["connectTimeoutS"] + 10
    groups = {"server": target.pids, "redis": redis_pids if target.kind != "node" else []}
    profiler = Profiler(profile_dir, f"{target.kind}-n{viewers}", target.pids) if profile_dir and target.kind != "node" else None
    run = run_loadgen(config, groups, timeout=budget, on_measure=profiler)
    if profiler:
        print(profiler.summary(), file=sys.stderr, flush=True)
    r = run.result
    server = run.usage.get("server")
    cell = {"server": target.kind, "n": viewers, **r}
    if server:
        cell["server_cpu_pct"] = server.cpu_pct
        cell["server_sys_pct"] = 100 * server.sys_s / server.wall_s if server.wall_s else None
        cell["server_rss_mb"] = server.rss_max_bytes / 2**20
        delivered = r.get("delivered_frames") or 0
        cell["cpu_us_per_frame"] = 1e6 * server.cpu_s / delivered if delivered else None
        cell["server_cpu_by_pid"] = server.per_process
    if "redis" in run.usage:
        cell["redis_cpu_pct"] = run.usage["redis"].cpu_pct
    if "loadgen" in run.usage:
        cell["loadgen_cpu_pct_psutil"] = run.usage["loadgen"].cpu_pct
    if r.get("error"):
        cell["loadgen_stderr"] = run.stderr[-2000:]
    return cell


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(cells: list[dict]) -> str:
    node = {c["n"]: c.get("cpu_us_per_frame") for c in cells if c["server"] == "node"}
    lines = [
        "| server | N | delivered fps | loss % | p50 ms | p99 ms | server CPU % | CPU µs/frame | RSS MB | CPU/frame vs Node | Redis CPU % | loadgen CPU % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        if c.get("error"):
            lines.append(f"| {c['server']} | {c['n']} | error: {c['error']} |" + " |" * 9)
            continue
        base = node.get(c["n"])
        ratio = c["cpu_us_per_frame"] / base if base and c.get("cpu_us_per_frame") else None
        lines.append(
            f"| {c['server']} | {c['n']} | {fmt(c.get('delivered_fps_per_viewer'), '.1f')} | {fmt(c.get('loss_pct'), '.2f')} "
            f"| {fmt(c.get('latency_p50_ms'), '.1f')} | {fmt(c.get('latency_p99_ms'), '.1f')} | {fmt(c.get('server_cpu_pct'), '.0f')} "
            f"| {fmt(c.get('cpu_us_per_frame'), '.0f')} | {fmt(c.get('server_rss_mb'), '.0f')} "
            f"| {'1.00 (baseline)' if c['server'] == 'node' else fmt(ratio, '.2f')} "
            f"| {fmt(c.get('redis_cpu_pct') if c['server'] != 'node' else None, '.0f')} | {fmt(c.get('loadgen_cpu_pct'), '.0f')} |"
        )
    return "\n".join(lines)


def notes(cells: list[dict]) -> list[str]:
    out = []
    for c in cells:
        problems = []
        if c.get("viewers_connected") is not None and c["viewers_connected"] < c["n"]:
            problems.append(f"only {c['viewers_connected']}/{c['n']} viewers connected")
        if c.get("device_close_codes"):
            problems.append(f"device closed with {c['device_close_codes']} {c.get('device_close_reasons')}")
        if c.get("viewer_close_codes"):
            codes = sorted(set(c["viewer_close_codes"]))
            problems.append(f"{len(c['viewer_close_codes'])} viewer socket(s) closed early, codes {codes}")
        if c.get("device_backlog_drops"):
            problems.append(f"device could not send {c['device_backlog_drops']} frames (server not reading)")
        if c.get("device_late_ticks"):
            problems.append(f"load generator late on {c['device_late_ticks']} frame ticks")
        if (c.get("loadgen_cpu_pct") or 0) > 85:
            problems.append(f"load generator at {c['loadgen_cpu_pct']:.0f} % of a core: may be the bottleneck")
        if any(e for e in c.get("viewer_extensions", []) if e):
            problems.append(f"viewer sockets negotiated {c['viewer_extensions']}")
        if c.get("out_of_order"):
            problems.append(f"{c['out_of_order']} frames out of order or duplicated")
        if c.get("error"):
            problems.append(f"error: {c['error']}")
        if problems:
            out.append(f"- {c['server']} N={c['n']}: " + "; ".join(problems))
    return out


def verdict(cells: list[dict]) -> tuple[bool | None, str]:
    """(True/False, line) for the bar; (None, line) when this run did not include it."""
    cell = next((c for c in cells if c["server"] == "uvicorn" and c["n"] == BAR_N), None)
    node = next((c for c in cells if c["server"] == "node" and c["n"] == BAR_N), None)
    if cell is None or node is None:
        return None, f"Bar not evaluated: this run has no uvicorn and node cells at N={BAR_N}"
    if cell.get("error") or not cell.get("cpu_us_per_frame") or not node.get("cpu_us_per_frame"):
        return False, f"FAIL: the uvicorn or node measurement at N={BAR_N} is incomplete (see notes)"
    delivered = 100.0 - cell["loss_pct"]
    ratio = cell["cpu_us_per_frame"] / node["cpu_us_per_frame"]
    checks = [
        (delivered >= BAR_MIN_DELIVERED_PCT, f"delivered {delivered:.2f} % (need >= {BAR_MIN_DELIVERED_PCT} %)"),
        (cell["latency_p99_ms"] is not None and cell["latency_p99_ms"] <= BAR_P99_MS, f"p99 {fmt(cell['latency_p99_ms'], '.1f')} ms (need <= {BAR_P99_MS:.0f})"),
        (ratio <= BAR_CPU_RATIO, f"CPU/frame {ratio:.2f}x Node's (need <= {BAR_CPU_RATIO:.0f}x)"),
    ]
    ok = all(passed for passed, _ in checks)
    detail = "; ".join(("ok " if passed else "NOT ") + text for passed, text in checks)
    return ok, f"{'PASS' if ok else 'FAIL'}: uvicorn, 1 process, N={BAR_N}: {detail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma list from {SERVERS}")
    parser.add_argument("--viewers", default=",".join(map(str, VIEWER_COUNTS)), help="comma list of N")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after all viewers connected, not measured")
    parser.add_argument("--measure", type=float, default=10.0, help="seconds measured per N")
    parser.add_argument("--drain", type=float, default=1.0, help="seconds to wait for the window's last frames")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=1,10, 1 s warm-up, 3 s windows")
    parser.add_argument("--viewer-deflate", action="store_true", help="viewers offer permessage-deflate, as browsers do")
    parser.add_argument("--uvicorn-args", default=" ".join(UVICORN_ARGS), help="extra uvicorn arguments")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--profile", type=Path, help="py-spy each Python server over each window into this directory "
                        "(CPU figures of a profiled run are not valid)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = parser.parse_args(argv)
    if args.quick:
        args.viewers, args.warmup, args.measure = "1,10", 1.0, 3.0
    kinds = [k for k in args.servers.split(",") if k]
    counts = [int(n) for n in args.viewers.split(",") if n]
    timing = {"warmupS": args.warmup, "measureS": args.measure, "drainS": args.drain}

    started = time.monotonic()
    per_cell = args.warmup + args.measure + args.drain + 2.5  # + connect, teardown, pause (measured ≈ 1.5-2.5 s)
    print(f"bench: {len(kinds)} servers × {len(counts)} N, about {len(kinds) * len(counts) * per_cell / 60:.1f} min",
          file=sys.stderr, flush=True)
    ensure_node_modules()
    payload = media.exact_size_jpeg(FRAME_BYTES)
    workdir = Path(tempfile.mkdtemp(prefix="sightline-fanout-"))
    install = None
    cells: list[dict] = []
    try:
        if any(k != "node" for k in kinds):
            from bench import sightline_env

            install = sightline_env.create(workdir, devices=1, recording=False, device_fps=FPS)
        redis_pids = redis_server_pids(install.redis_url) if install else []
        for kind in kinds:
            print(f"bench: {kind} ...", file=sys.stderr, flush=True)
            try:
                target = Target(kind, install, workdir, args.uvicorn_args.split())
            except Exception as error:  # report it and go on with the other servers
                print(f"bench: {kind} did not start: {error}", file=sys.stderr, flush=True)
                cells.extend({"server": kind, "n": n, "error": "server did not start"} for n in counts)
                continue
            try:
                for n in counts:
                    cell_started = time.monotonic()
                    cell = run_cell(target, n, payload, timing, args.viewer_deflate, redis_pids, args.profile)
                    if not target.alive():
                        cell["error"] = "server process died"
                    cells.append(cell)
                    print(f"bench:   N={n}: loss {fmt(cell.get('loss_pct'), '.2f')} %, p99 {fmt(cell.get('latency_p99_ms'), '.1f')} ms, "
                          f"server {fmt(cell.get('server_cpu_pct'), '.0f')} % CPU, {fmt(cell.get('cpu_us_per_frame'), '.0f')} µs/frame "
                          f"({time.monotonic() - cell_started:.1f} s)",
                          file=sys.stderr, flush=True)
                    time.sleep(0.2)
            finally:
                target.stop()
    finally:
        if install:
            redis_cleanup(install.redis_url, install.redis_patterns())
        if args.json:
            args.json.write_text(json.dumps(cells, indent=2, default=str))
        if args.keep:
            print(f"bench: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n### Fan-out: 1 device → N viewers, {FRAME_BYTES // 1024} KB frames at {FPS} fps, "
          f"{args.measure:.0f} s measured per N after {args.warmup:.0f} s warm-up\n")
    print(table(cells))
    extra = notes(cells)
    if extra:
        print("\nNotes:\n" + "\n".join(extra))
    ok, line = verdict(cells)
    print(f"\n{line}")
    print(f"\n(total {time.monotonic() - started:.0f} s; uvicorn args: {args.uvicorn_args or '(none)'}; "
          f"viewers {'offer' if args.viewer_deflate else 'do not offer'} permessage-deflate)")
    errors = any(c.get("error") for c in cells)
    return 1 if ok is False or errors else 0


if __name__ == "__main__":
    sys.exit(main())
