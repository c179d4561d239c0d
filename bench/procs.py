"""Process plumbing shared by the benchmarks: free ports, servers that are always
stopped, the Node tools, and CPU/RSS accounting of the measured window."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
NODE_DIR = BENCH_DIR / "node_relay"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def ensure_node_modules() -> None:
    """npm ci (exact versions from package-lock.json) the first time."""
    if (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        return
    print("bench: installing bench/node_relay dependencies (npm ci)", file=sys.stderr)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)


@dataclass
class Server:
    """A server process we started; stop() is idempotent and always reaps it."""

    name: str
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def start_server(name: str, argv: list[str], port: int, env: dict, log_dir: Path, cwd: Path = REPO) -> Server:
    log_path = log_dir / f"{name}-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    server = Server(name, proc, port, log_path)
    try:
        wait_for_port(port, proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"{name} did not start:\n{server.log_tail()}") from None
    return server


@dataclass
class Usage:
    """CPU (user+sys) and peak RSS of a set of processes over a window."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    sys_s: float = 0.0  # the kernel's share of cpu_s (socket copies, writes, fsync)
    rss_max_bytes: int = 0
    per_process: dict = field(default_factory=dict)
    main_thread_s: float = 0.0  # CPU of the processes' main threads (the event loop); the rest is other threads

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s else 0.0


class UsageMeter:
    """start() .. stop() around the measured window; samples RSS every 0.25 s.

    CPU includes all threads of each process (recorder writer threads, thread
    pools); RSS is the sum over the processes of each one's peak."""

    def __init__(self, pids: list[int], interval: float = 0.25):
        self.procs = []
        for pid in pids:  # a process found by name may be gone already (e.g. a Redis another run restarted)
            with contextlib.suppress(psutil.NoSuchProcess):
                self.procs.append(psutil.Process(pid))
        self.interval = interval
        self._stop = threading.Event()
        self._rss_max = {p.pid: 0 for p in self.procs}
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _cpu(self) -> dict:
        out = {}
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                main = next((th for th in p.threads() if th.id == p.pid), None)
                out[p.pid] = (t.user + t.system, t.system, (main.user_time + main.system_time) if main else 0.0)
        return out

    def _sample(self) -> None:
        while not self._stop.is_set():
            for p in self.procs:
                with contextlib.suppress(psutil.Error):
                    self._rss_max[p.pid] = max(self._rss_max[p.pid], p.memory_info().rss)
            self._stop.wait(self.interval)

    def start(self) -> "UsageMeter":
        self._cpu0 = self._cpu()
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> Usage:
        cpu1 = self._cpu()
        wall = time.monotonic() - self._t0
        self._stop.set()
        self._thread.join()
        zero = (0.0, 0.0, 0.0)
        per = {pid: cpu1.get(pid, zero)[0] - self._cpu0[pid][0] for pid in self._cpu0}
        sys_s = sum(cpu1.get(pid, zero)[1] - self._cpu0[pid][1] for pid in self._cpu0)
        main_s = sum(cpu1.get(pid, zero)[2] - self._cpu0[pid][2] for pid in self._cpu0)
        return Usage(sum(per.values()), wall, sys_s, sum(self._rss_max.values()), per, main_s)


@dataclass
class LoadResult:
    result: dict
    usage: dict  # group name -> Usage over the measured window; "loadgen" is the generator itself
    stderr: str


def run_loadgen(config: dict, groups: dict[str, list[int]], timeout: float, on_measure=None) -> LoadResult:
    """Run bench/node_relay/loadgen.js with `config` on stdin; measure each group of
    processes (e.g. {"server": [pid], "redis": [pid]}) between its MEASURE_START
    and MEASURE_END lines. on_measure(True/False) is called at both (e.g. to profile)."""
    proc = subprocess.Popen(
        ["node", str(NODE_DIR / "loadgen.js")], cwd=NODE_DIR, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    meters: dict[str, UsageMeter] = {}
    usage: dict[str, Usage] = {}
    result: dict = {}
    try:
        proc.stdin.write(json.dumps(config))
        proc.stdin.close()
        for line in proc.stdout:
            line = line.strip()
            if line == "MEASURE_START":
                meters = {name: UsageMeter(pids).start() for name, pids in groups.items() if pids}
                meters["loadgen"] = UsageMeter([proc.pid]).start()
                if on_measure:
                    on_measure(True)
            elif line == "MEASURE_END" and meters:
                usage = {name: meter.stop() for name, meter in meters.items()}
                meters = {}
                if on_measure:
                    on_measure(False)
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
        proc.wait(10)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for meter in meters.values():
            meter.stop()
    reader.join(2)
    if not result:
        result = {"error": f"load generator exited with {proc.returncode}"}
    return LoadResult(result, usage, "".join(stderr_lines))


def redis_server_pids(redis_url: str) -> list[int]:
    """PIDs of the local redis-server, to report its CPU beside the servers' (best effort)."""
    from urllib.parse import urlparse

    port = urlparse(redis_url).port or 6379
    pids = []
    for p in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(p.info["cmdline"] or [])
            if (p.info["name"] or "").startswith("redis-server") and f":{port}" in cmd:
                pids.append(p.pid)
    return pids


def redis_cleanup(redis_url: str, patterns: list[str]) -> int:
    """Delete the keys a run left in Redis (its channel/cache prefix, its Celery queue)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deleted = 0
    try:
        for pattern in patterns:
            batch = list(client.scan_iter(match=pattern, count=500))
            for start in range(0, len(batch), 500):
                deleted += client.delete(*batch[start:start + 500])
    finally:
        client.close()
    return deleted


def base_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Profiler:
    """py-spy over the measured window of each server process (--profile DIR).

    Writes collapsed stacks (<name>-<pid>.txt, flamegraph.pl / speedscope input)
    and prints the functions with the most own samples. py-spy takes some CPU of
    its own, so never read the CPU columns of a profiled run."""

    def __init__(self, directory: Path, label: str, pids: list[int], rate: int = 200):
        self.directory, self.label, self.pids, self.rate = directory, label, pids, rate
        self.procs: list[tuple[int, Path, subprocess.Popen]] = []

    def __call__(self, starting: bool) -> None:
        if starting:
            self.directory.mkdir(parents=True, exist_ok=True)
            for pid in self.pids:
                out = self.directory / f"{self.label}-{pid}.txt"
                argv = [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(pid), "--rate", str(self.rate),
                        "--format", "raw", "--threads", "--nonblocking", "--output", str(out)]
                if os.environ.get("BENCH_PYSPY_NATIVE") == "1":  # C frames too (uvloop, websockets speedups)
                    argv.remove("--nonblocking")  # py-spy reads native stacks only with the process paused
                    argv.append("--native")
                self.procs.append((pid, out, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        else:
            for _, _, proc in self.procs:
                proc.send_signal(signal.SIGINT)
            for _, _, proc in self.procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def summary(self, top: int = 15) -> str:
        lines = []
        for pid, out, _ in self.procs:
            lines.append(f"profile {out} (own samples, top {top}):")
            lines.extend("  " + line for line in top_frames(out, top))
        return "\n".join(lines)


def top_frames(collapsed: Path, top: int = 15) -> list[str]:
    """Leaf functions by own samples, and top-level buckets, from py-spy raw output."""
    from collections import Counter

    own: Counter = Counter()
    total = 0
    try:
        text = collapsed.read_text(errors="replace")
    except OSError:
        return ["(no profile written)"]
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1] if stack else "?"
        own[leaf] += n
    if not total:
        return ["(no samples)"]
    return [f"{100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
