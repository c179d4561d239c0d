"""The fault suite's scenario (issue 12): a camera streams and an owner watches through the proxy,
one fault is applied while live and then healed, and the cost is measured.

Every figure comes from outside the code under test:
- sent: frames the camera wrote to its socket (clients.Camera);
- accepted: frames a web host published on the device's Redis channel (clients.FrameTap), or that
  the viewer received;
- live: distinct frames the viewer received;
- recorded: frames in the device's segments (archived, or closed and waiting in the spool; the
  segment API via the proxy), after waiting for every segment to come to rest;
- lost: accepted but not recorded; persisted lost: segments the camera was told were durable (or
  that reached `archived`) that are failed, gone, or archived without their MP4 in SeaweedFS (must
  be 0; a segment still pending at the end is shown in the segment states, not counted lost);
- told: the messages and close codes the camera (device) and the viewer (owner) received.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

from tests.multihost import clients
from tests.multihost.hosts import wait_until

AT_REST = {"archived", "failed"}


@dataclass
class Row:
    fault: str
    resumed_s: float | None = None  # from the fault's end to the first live frame on the viewer
    longest_gap_s: float = 0.0  # longest pause between two live frames on the viewer
    sent: int = 0
    accepted: int = 0
    live: int = 0
    recorded: int = 0
    lost: int = 0
    persisted_lost: int = 0
    segments: dict = field(default_factory=dict)
    device_told: str = ""
    owner_told: str = ""
    queued: dict = field(default_factory=dict)  # tasks left in the broker's queues at the end
    failures: list = field(default_factory=list)  # failure_reason of each failed segment

    HEADER = ("fault", "live resumes", "longest gap", "sent", "accepted", "live", "recorded", "lost",
              "persisted lost", "segments", "device was told", "owner was told")

    def cells(self) -> tuple:
        resumed = "never" if self.resumed_s is None else f"{self.resumed_s:.1f} s"
        return (self.fault, resumed, f"{self.longest_gap_s:.1f} s", self.sent, self.accepted, self.live,
                self.recorded, self.lost, self.persisted_lost,
                ", ".join(f"{n} {state}" for state, n in sorted(self.segments.items())),
                self.device_told, self.owner_told)

    def print(self) -> None:
        line = " | ".join(str(cell) for cell in self.cells())
        sys.stdout.write(f"\nFAULT ROW | {line}\n")
        for reason in self.failures:
            sys.stdout.write(f"  failed segment: {reason}\n")
        if any(state not in AT_REST for state in self.segments):
            sys.stdout.write(f"  (still pending at the end; broker queues: {self.queued})\n")
        sys.stdout.flush()


def segments(lab, device_id: str, cookie: str) -> list[dict]:
    status, _, body = clients.https_get(lab, f"{lab.web_url()}/api/devices/{device_id}/segments/", cookie)
    if status != 200:
        raise AssertionError(f"segment list answered {status}: {body[:200]!r}")
    return json.loads(body)["segments"]


def summarise(messages: list[dict], closes: list) -> str:
    """What a socket was told, in order and compressed: 'recording:recording x2, closed 1012, ...'."""
    said = []
    for message in messages:
        kind = message.get("type")
        if kind in {"welcome", "pong", "stats", "command_result"}:
            continue
        text = kind
        if kind == "recording":
            reason = " ".join(str(message.get("reason") or "").split())[:70]
            text = f"recording:{message.get('state')}" + (f" ({reason})" if reason else "")
        elif kind == "presence":
            text = f"presence:{'online' if message.get('online') else 'offline'}"
        elif kind == "error":
            text = f"error {message.get('code')}"
        elif kind == "persisted":
            text = "persisted"
        said.append(text)
    said += [f"closed {code}" if code else "connection lost" for _, code in closes]
    counted: list[str] = []
    for text in said:
        if counted and counted[-1].split(" x")[0] == text:
            head, _, n = counted[-1].partition(" x")
            counted[-1] = f"{head} x{int(n or 1) + 1}"
        else:
            counted.append(text)
    return ", ".join(counted) or "nothing"


def longest_gap(arrivals: list[float], start: float) -> float:
    times = [t for t in arrivals if t >= start]
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def run(lab, name: str, apply, heal, hold: float = 10.0, after: float = 3.0, settle: float = 20.0,
        before_fault=None) -> Row:
    """Stream, apply(), hold, heal(), stream `after` more seconds, stop, wait until every segment
    is at rest, measure. `before_fault(camera)` runs once live (e.g. to find the camera's host)."""
    seeded = lab.seed()
    camera_row, owner = seeded["cameras"][0], seeded["owner"]
    tap = clients.FrameTap(lab, camera_row["id"])
    camera = clients.Camera(lab, camera_row["token"], which=None, fps=5, device_id=camera_row["id"])
    viewer = clients.Viewer(lab, camera_row["id"], owner, which=None, reconnect=True)
    row = Row(name)
    try:
        viewer.wait_frames(8, timeout=30)
        # A first segment is durable before the fault: the persisted-segment check covers it.
        wait_until(lambda: any(m.get("type") == "persisted" for m in camera.messages), 30,
                   "a first persisted segment")
        context = before_fault(camera) if before_fault else None
        fault_at = time.monotonic()
        apply(context) if context is not None else apply()
        time.sleep(hold)
        heal(context) if context is not None else heal()
        healed_at = time.monotonic()
        try:
            viewer.wait_frames(1, timeout=30, after=healed_at)
            row.resumed_s = min(at for at, _ in viewer.frames if at > healed_at) - healed_at
        except AssertionError:
            row.resumed_s = None
        time.sleep(after)
    finally:
        camera.stop()
        viewer.stop()
    time.sleep(1)  # the last published frames reach the tap
    tap.stop()

    def at_rest():
        found = segments(lab, camera_row["id"], owner)
        return found if found and all(s["state"] in AT_REST for s in found) else None

    try:
        found = wait_until(at_rest, settle, "every segment at rest (archived or failed)", interval=0.5)
    except AssertionError:
        found = segments(lab, camera_row["id"], owner)
    keys = lab.bucket_keys()
    persisted = {m["segment_id"] for m in camera.messages if m.get("type") == "persisted"}
    archived = {s["id"] for s in found if s["state"] == "archived"}
    stored = {s for s in archived if any(s in key and key.endswith(".mp4") for key in keys)}
    pending = {s["id"] for s in found if s["state"] not in AT_REST}  # not lost: its spool is still there

    row.longest_gap_s = longest_gap([at for at, _ in viewer.frames], fault_at - 1)
    row.sent = len({seq for _, seq in camera.sent})
    # A frame any viewer saw was accepted too (the tap re-subscribes a moment after Redis is back).
    row.accepted = len(tap.seqs | {seq for _, seq in viewer.frames})
    row.live = len({seq for _, seq in viewer.frames})
    # Recorded: durable, whether archived already or still in the spool waiting for the worker.
    row.recorded = sum(s["frames"] or 0 for s in found if s["state"] != "failed")
    row.lost = row.accepted - row.recorded
    row.failures = [f"{s['id']} {s['frames']} frames: {s['failure_reason']}" for s in found if s["state"] == "failed"]
    lost_ids = (persisted | archived) - stored - pending
    row.persisted_lost = len(lost_ids)
    states = {s["id"]: s["state"] for s in found}
    row.failures += [f"persisted segment {i} lost: state {states.get(i, 'not listed')}" for i in sorted(lost_ids)]
    row.segments = {}
    for s in found:
        row.segments[s["state"]] = row.segments.get(s["state"], 0) + 1
    row.queued = lab.queue_lengths()
    row.device_told = summarise(camera.messages, camera.closes)
    row.owner_told = summarise(viewer.messages, viewer.closes)
    row.print()
    for segment_id in sorted(pending):  # say why, from the logs of the processes that handled it
        for key, child in lab.children.items():
            lines = [line for line in child.output(400_000).splitlines() if segment_id in line]
            for line in lines[-6:]:
                sys.stdout.write(f"  {key}: {line[:300]}\n")
    if camera.error or viewer.error:
        raise AssertionError(f"client failed: camera {camera.error!r}, viewer {viewer.error!r}")
    return row
