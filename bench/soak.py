"""Soak (issue 12): N cameras for M minutes across the multi-host topology, then the bars.

    sudo .venv/bin/python -m bench.soak [--cameras 10] [--minutes 10] [--sample-seconds 30]

Root only (network namespaces, like tests/multihost). It builds the same topology as the
multi-host tests (tests/multihost/topology.py: data host with PostgreSQL + Redis, SeaweedFS,
nginx TLS proxy, two web hosts, recorder + standby, worker), streams N simulated cameras
(tests/multihost/clients.Camera, 5 fps) through the proxy, camera i pinned to web host a or b
alternately, with one owner viewer per camera on the OTHER web host. Every `--sample-seconds`
it samples the RSS and open file-descriptor count of every process of the lab (each started
process and its descendants, read through psutil; the namespaces share the PID namespace).

At the end it compares frames accepted (published on the device's Redis channel, or seen by a
viewer; as the fault suite counts them) with frames recorded (Segment.frames of every segment
not failed, archived or still in the spool) and prints Markdown tables and PASS/FAIL lines:
- recorded = accepted: no faults are applied, so 0 frames lost;
- RSS growth per process <= 5 %, from the warm-up sample (the first sample at or after
  --warmup-minutes, default 2: caches, pools and the allocator settle first) to the last.
  Judged on the process's own pages: RSS less RssShmem (/proc/<pid>/status). Shared memory is
  PostgreSQL's buffer pool: every backend that touches another of its pages counts it in its RSS,
  so a checkpointer's RSS climbs towards shared_buffers while no byte is allocated. The pool's
  size is fixed by configuration; it is shown (RSS column) but not judged per process;
- open fds flat: the peak over the later half of the judged samples <= the peak over the earlier
  half + FD_SLACK (8). A leak raises the peak; a process whose descriptors come and go (the
  checkpointer opens the relation files of the checkpoint in progress) keeps it.
Processes born after the warm-up (e.g. a PostgreSQL backend for a new connection) are listed
but not judged. Everything is removed at the end (processes, namespaces, files), as the
harness fixtures do, whatever happened.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from dataclasses import dataclass, field

RSS_GROWTH_MAX_PERCENT = 5.0
FD_SLACK = 8
CAMERA_FPS = 5


# -- pure helpers (unit tests: tests/test_bench_soak.py) -----------------------------------------------
def growth_percent(first: float, last: float) -> float:
    """(last - first) / first in percent; 0 when there was nothing at first (nothing to grow from)."""
    if first <= 0:
        return 0.0
    return (last - first) * 100.0 / first


def rss_ok(first: int, last: int, limit_percent: float = RSS_GROWTH_MAX_PERCENT) -> bool:
    return growth_percent(first, last) <= limit_percent


def fds_flat(counts: list[int], slack: int = FD_SLACK) -> bool:
    """Open descriptors (in sample order) are flat when the peak over the later half is at most the
    peak over the earlier half plus `slack`: sockets, pooled connections and a checkpoint's files
    come and go, while a leak grows without bound and so raises the peak."""
    if len(counts) < 2:
        return True
    half = len(counts) // 2
    return max(counts[half:]) <= max(counts[:half]) + slack


def warmup_index(times: list[float], warmup_seconds: float) -> int:
    """Index of the first sample taken at or after the warm-up (the last sample if none is)."""
    if not times:
        raise ValueError("no samples")
    start = times[0]
    for i, at in enumerate(times):
        if at - start >= warmup_seconds:
            return i
    return len(times) - 1


@dataclass
class Series:
    """One process's samples; a sample is missing while it did not exist."""
    label: str
    samples: dict = field(default_factory=dict)  # sample index -> (rss, fds[, shared memory bytes])


def _own_rss(sample: tuple) -> int:
    """RSS less the shared memory it maps (0 when the sample did not read it)."""
    return sample[0] - (sample[2] if len(sample) > 2 else 0)


def judge(series: Series, base: int, last: int) -> dict | None:
    """The row of one process from sample `base` (warm-up) to `last`; None if it was not alive at both."""
    if base not in series.samples or last not in series.samples:
        return None
    first, final = series.samples[base], series.samples[last]
    own0, own1 = _own_rss(first), _own_rss(final)
    fds_seen = [series.samples[i][1] for i in sorted(series.samples) if base <= i <= last]
    return {"process": series.label, "rss_first": first[0], "rss_last": final[0],
            "own_first": own0, "own_last": own1, "growth": growth_percent(own0, own1),
            "fds_first": first[1], "fds_last": final[1], "fds_max": max(fds_seen),
            "rss_ok": rss_ok(own0, own1), "fds_ok": fds_flat(fds_seen)}


def markdown_table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def process_table(judged: list[dict]) -> str:
    """Per process: own RSS (less shared memory) first/last/growth, whole RSS, fds; then totals."""
    own0, own1 = sum(r["own_first"] for r in judged), sum(r["own_last"] for r in judged)
    rows = [(r["process"], mib(r["own_first"]), mib(r["own_last"]), f"{r['growth']:+.1f}",
             f"{mib(r['rss_first'])} → {mib(r['rss_last'])}", r["fds_first"], r["fds_last"], r["fds_max"])
            for r in judged]
    rows.append(("**total**", mib(own0), mib(own1), f"{growth_percent(own0, own1):+.1f}",
                 f"{mib(sum(r['rss_first'] for r in judged))} → {mib(sum(r['rss_last'] for r in judged))}",
                 sum(r["fds_first"] for r in judged), sum(r["fds_last"] for r in judged), ""))
    return markdown_table(("process", "own RSS first MiB", "own RSS last MiB", "growth %",
                           "RSS incl. shared memory MiB", "fds first", "fds last", "fds max"), rows)


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def verdict(passed: bool, text: str) -> str:
    return f"{'PASS' if passed else 'FAIL'}: {text}"


# -- sampling --------------------------------------------------------------------------------------------
def shared_memory_bytes(pid: int) -> int:
    """RssShmem of /proc/<pid>/status (shared memory pages this process has touched), 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssShmem:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_label(key: str, name: str, cmdline: list[str], pid: int) -> str:
    """`data/postgres checkpointer[42]`: PostgreSQL writes each child's role into its command line
    ("postgres: [cluster: ]checkpointer", "postgres: user db host(port) idle" for a backend)."""
    words = [word for word in cmdline if word]
    if name == "postgres" and len(words) == 1 and words[0].startswith("postgres: "):
        role = words[0].removeprefix("postgres: ").strip()
        if ": " in role:  # a cluster name ("15/main: checkpointer")
            role = role.split(": ", 1)[1]
        name = "backend" if "(" in role else role.replace(" ", "-") or name
    return f"{key} {name}[{pid}]"


def sample(children: dict, series: dict, index: int) -> None:
    """RSS, fd count and shared memory of every lab process and its descendants into `series` (by pid)."""
    import psutil

    for key, child in children.items():
        try:
            root = psutil.Process(child.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                with proc.oneshot():
                    rss, fds, name, cmdline = proc.memory_info().rss, proc.num_fds(), proc.name(), proc.cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            entry = series.setdefault(proc.pid, Series(process_label(key, name, cmdline, proc.pid)))
            entry.samples[index] = (rss, fds, shared_memory_bytes(proc.pid))


def segments_since(lab, device_id: str, cookie: str, since: datetime.datetime) -> list[dict]:
    """The device's segments from `since` on (the list API's default range is only the last hour)."""
    import json
    from urllib.parse import quote

    from tests.multihost import clients

    url = f"{lab.web_url()}/api/devices/{device_id}/segments/?start={quote(since.strftime('%Y-%m-%dT%H:%M:%SZ'))}"
    status, _, body = clients.https_get(lab, url, cookie)
    if status != 200:
        raise AssertionError(f"segment list answered {status}: {body[:200]!r}")
    return json.loads(body)["segments"]


# -- the soak --------------------------------------------------------------------------------------------
def soak(lab, cameras: int, minutes: float, sample_seconds: float, warmup_minutes: float) -> bool:
    from tests.multihost import clients, faults
    from tests.multihost.hosts import wait_until

    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    seeded = lab.seed(cameras)
    owner = seeded["owner"]
    streams = []
    for n, row in enumerate(seeded["cameras"]):
        camera_host, viewer_host = ("a", "b") if n % 2 == 0 else ("b", "a")
        streams.append({
            "id": row["id"], "tap": clients.FrameTap(lab, row["id"]),
            "camera": clients.Camera(lab, row["token"], which=camera_host, fps=CAMERA_FPS, device_id=row["id"]),
            "viewer": clients.Viewer(lab, row["id"], owner, which=viewer_host, reconnect=True)})
    for stream in streams:
        stream["viewer"].wait_frames(3, timeout=60)
    print(f"{cameras} cameras live ({CAMERA_FPS} fps each), one viewer each on the other web host; "
          f"soaking {minutes} min, a sample every {sample_seconds} s", flush=True)

    series: dict = {}
    times: list[float] = []
    started = time.monotonic()
    end = started + minutes * 60
    try:
        while True:
            times.append(time.monotonic())
            sample(lab.children, series, len(times) - 1)
            frames = sum(len(s["viewer"].frames) for s in streams)
            print(f"  t={times[-1] - started:6.0f} s  {len(series)} processes  viewer frames so far {frames}",
                  flush=True)
            if time.monotonic() >= end:
                break
            time.sleep(max(0.0, min(sample_seconds, end - time.monotonic())))
    finally:
        for stream in streams:
            stream["camera"].stop()
            stream["viewer"].stop()
        time.sleep(1)  # the last published frames reach the taps
        for stream in streams:
            stream["tap"].stop()

    # Frames: accepted vs recorded, per camera, once every segment is at rest (as faults.run does).
    # One deadline for all cameras; a segment still pending after it counts as recorded (it is in the spool).
    frame_rows, accepted_total, recorded_total = [], 0, 0
    settle_until = time.monotonic() + 180
    for n, stream in enumerate(streams):
        def at_rest(device_id=stream["id"]):
            found = segments_since(lab, device_id, owner, since)
            return found if found and all(s["state"] in faults.AT_REST for s in found) else None

        try:
            found = wait_until(at_rest, max(1.0, settle_until - time.monotonic()), "every segment at rest", interval=1)
        except AssertionError:
            found = segments_since(lab, stream["id"], owner, since)
        accepted = len(stream["tap"].seqs | {seq for _, seq in stream["viewer"].frames})
        recorded = sum(s["frames"] or 0 for s in found if s["state"] != "failed")
        states: dict = {}
        for s in found:
            states[s["state"]] = states.get(s["state"], 0) + 1
        frame_rows.append((f"camera {n}", len({seq for _, seq in stream["camera"].sent}), accepted, recorded,
                           accepted - recorded, ", ".join(f"{v} {k}" for k, v in sorted(states.items()))))
        accepted_total += accepted
        recorded_total += recorded
    frame_rows.append(("**total**", sum(r[1] for r in frame_rows), accepted_total, recorded_total,
                       accepted_total - recorded_total, ""))

    base, last = warmup_index(times, warmup_minutes * 60), len(times) - 1
    judged = [row for row in (judge(s, base, last) for s in series.values()) if row]
    unjudged = [s.label for s in series.values() if judge(s, base, last) is None]
    print(f"\n## Soak: {cameras} cameras x {minutes} min, samples every {sample_seconds} s\n")
    print(markdown_table(("stream", "sent", "accepted", "recorded", "lost", "segments"), frame_rows))
    window = f"t={times[base] - times[0]:.0f} s to t={times[last] - times[0]:.0f} s"
    print(f"\n### Processes (from the warm-up sample at {window})\n")
    print(process_table(judged))
    if unjudged:
        print(f"\nNot judged (not alive at both the warm-up and the last sample): {', '.join(unjudged)}")
    if base == last:
        print(f"\nWARNING: the soak was shorter than the warm-up ({warmup_minutes} min): "
              "growth is measured over nothing.")

    losing = [row[0] for row in frame_rows[:-1] if row[4] > 0]
    rss_bad = [r["process"] for r in judged if not r["rss_ok"]]
    fd_bad = [r["process"] for r in judged if not r["fds_ok"]]
    lines = [
        verdict(not losing and accepted_total > 0,
                f"recorded = accepted ({recorded_total} of {accepted_total}; no faults, so no camera may lose any)"
                + (f"; lost frames: {', '.join(losing)}" if losing else "")),
        verdict(not rss_bad, f"RSS growth per process <= {RSS_GROWTH_MAX_PERCENT:g} % from the warm-up sample, "
                             f"shared memory apart ({len(judged)} processes)" + (f"; over: {', '.join(rss_bad)}" if rss_bad else "")),
        verdict(not fd_bad, f"open fds flat: peak of the later half <= peak of the earlier half + {FD_SLACK}, "
                            "per process"
                            + (f"; over: {', '.join(fd_bad)}" if fd_bad else "")),
    ]
    print("\n" + "\n".join(lines), flush=True)
    return all(line.startswith("PASS") for line in lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-seconds", type=float, default=10.0,
                        help="sampling period (default 10: short-lived peaks of fds are seen in both halves)")
    parser.add_argument("--warmup-minutes", type=float, default=2.0,
                        help="RSS and fds are judged from the first sample after this (default 2)")
    parser.add_argument("--segment-seconds", type=int, default=10,
                        help="SEGMENT_SECONDS of the lab (default 10: the one worker keeps up on a small machine)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.soak needs root: it builds network namespaces (ip netns) like tests/multihost. "
              "Run it as root: sudo .venv/bin/python -m bench.soak", file=sys.stderr)
        return 2

    from tests.multihost import hosts, topology

    missing = topology.missing_tools()
    if missing:
        print("bench.soak cannot build the topology: missing " + "; ".join(missing), file=sys.stderr)
        return 2
    try:
        made = hosts.Lab()
    except hosts.Unavailable as reason:
        print(f"bench.soak cannot build hosts here: {reason}", file=sys.stderr)
        return 2
    lab = None
    try:  # always clean up, as the lab fixture does (tests/multihost/conftest.py)
        lab = topology.Topology(made, segment_seconds=args.segment_seconds)
        lab.start()
        lab.start_recorder("standby")  # the hot standby runs too: the soak samples it like the rest
        lab.wait_recorder(host="standby", count=2)
        passed = soak(lab, args.cameras, args.minutes, args.sample_seconds, args.warmup_minutes)
    except BaseException:
        if lab is not None:
            sys.stderr.write(f"\n--- lab logs ---\n{lab.logs(4000)}\n")
        raise
    finally:
        made.close()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
