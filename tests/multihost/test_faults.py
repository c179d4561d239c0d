"""The fault suite (issue 12): one fault per test, applied while a camera streams and an owner
watches through the proxy. Each prints its row ("FAULT ROW | ..."; run with -s to see them):
time until live resumes, frames sent/accepted/live/recorded/lost, persisted segments lost, and
what the device and the owner were told.

Bars checked here: no segment that was persisted (told to the device, or archived) is lost, and
live resumes within 5 s of the fault's end.
"""
import re
import signal

import pytest

from tests.multihost import faults, topology
from tests.multihost.hosts import tcp_open, wait_until

pytestmark = [pytest.mark.multihost, pytest.mark.faults, pytest.mark.timeout(180)]

LIVE_RESUMES_WITHIN_S = 5.0


FPS = 5  # faults.run's camera


def check_bars(row: faults.Row, unrecorded_window_s: float) -> None:
    """Issue 12's bars: no persisted segment lost, live back within 5 s, and accepted-but-unrecorded
    frames within the fault's documented window (docs/deployment.md, "What a fault costs")."""
    assert row.persisted_lost == 0, row
    assert row.resumed_s is not None and row.resumed_s <= LIVE_RESUMES_WITHIN_S, row
    assert row.sent > 0 and row.recorded > 0, row
    assert row.lost <= FPS * unrecorded_window_s, row


def wait_port(lab, host: str, port: int, timeout: float = 30) -> None:
    wait_until(lambda: lab["client"].call(tcp_open, lab.address(host), port), timeout, f"{host}:{port}")


def test_redis_restarted_while_live(lab):
    def restart():
        lab.start_redis()
        wait_port(lab, "data", topology.REDIS_PORT)

    row = faults.run(lab, "Redis restarted", apply=lambda: lab.stop("data/redis", signal.SIGTERM),
                     heal=restart, hold=1.0)
    # Recorders read a Redis stream (recordings/handoff.py): entries written before the restart are in
    # Redis's append-only file (fsynced every second), so at most the last second can be lost.
    check_bars(row, unrecorded_window_s=1.0 + 2.0)


def camera_host(lab, _camera) -> str:
    """The web host holding the camera's socket: of the proxy's connections, the one that received the
    most bytes (the camera uploads; the viewer only downloads)."""
    best, best_bytes = None, -1
    for which in ("a", "b"):
        shown = lab[f"web-{which}"].exec(["ss", "-tni", "state", "established", f"( sport = :{topology.WEB_PORT} )"])
        for received in re.findall(r"bytes_received:(\d+)", shown):
            if int(received) > best_bytes:
                best, best_bytes = which, int(received)
    assert best is not None, "no socket on either web host"
    return best


def test_the_web_host_holding_the_camera_killed_both_reconnect_through_the_proxy(lab):
    killed = {}

    def kill(which):
        killed["host"] = which
        lab.stop(f"web-{which}/uvicorn", signal.SIGKILL)

    row = faults.run(lab, "web host killed", before_fault=lambda camera: camera_host(lab, camera), apply=kill,
                     heal=lambda which: None, hold=0.0)
    check_bars(row, unrecorded_window_s=1.0)  # at most what was in flight on the killed host
    assert "closed" in row.device_told or "connection lost" in row.device_told, row


def test_postgresql_stopped_for_10_s_while_live(lab):
    def start_again():
        lab.start_postgres()
        wait_port(lab, "data", topology.PG_PORT)

    row = faults.run(lab, "PostgreSQL stopped 10 s", apply=lambda: lab.stop("data/postgres", signal.SIGINT),
                     heal=start_again, hold=10.0)
    # The recorder degrades while it cannot open or close a segment and tries again every 10 s.
    check_bars(row, unrecorded_window_s=10.0 + 10.0 + 2.0)


def test_the_worker_host_cut_off_for_10_s_while_live(lab):
    row = faults.run(lab, "worker host link down 10 s", apply=lambda: lab["worker"].link(False),
                     heal=lambda: lab["worker"].link(True), hold=10.0)
    check_bars(row, unrecorded_window_s=0.0)  # recording does not need the worker
    assert row.segments.get("failed", 0) == 0, row


def test_s3_unreachable_during_archive(lab):
    def start_again():
        lab.start_seaweedfs()
        wait_port(lab, "s3", topology.S3_PORT)

    row = faults.run(lab, "S3 down 10 s during archive", apply=lambda: lab.stop("s3/seaweedfs", signal.SIGKILL),
                     heal=start_again, hold=10.0)
    check_bars(row, unrecorded_window_s=0.0)  # recording does not need S3
    assert row.segments.get("failed", 0) == 0, "archives are retried until S3 is back, never failed"


def lease_holder(lab, camera_id: str) -> str:
    """The host whose recorder holds the camera's lease (its value names the recorder's pid)."""
    import redis

    def read():
        client = redis.Redis(host=lab.address("data"), port=topology.REDIS_PORT, socket_timeout=2)
        try:
            return (client.get(f"{lab.namespace}:recorder:lease:{camera_id}") or b"").decode()
        finally:
            client.close()

    holder = wait_until(lambda: lab["client"].call(read), 10, "the recorder lease")
    for host in ("recorder", "standby"):
        if f":{lab.children[f'{host}/record'].pid}:" in holder:
            return host
    raise AssertionError(f"lease held by {holder!r}, none of the lab's recorders")


def test_the_recorder_holding_the_camera_killed_and_the_standby_takes_over(lab):
    lab.start_recorder("standby")
    lab.wait_recorder(host="standby", count=2)

    def restart(host):  # as a service manager would; its start-up recovery closes the killed writer's segment
        lab.start_recorder(host)

    row = faults.run(lab, "recorder killed, standby takes over",
                     before_fault=lambda camera: lease_holder(lab, camera.device_id),
                     apply=lambda host: lab.stop(f"{host}/record", signal.SIGKILL), heal=restart, hold=8.0)
    # The durable hand-off (recordings/handoff.py): the standby claims the killed recorder's unacknowledged
    # entries (its last ~1.2 s not yet fsynced included) and reads on from there, so nothing accepted is lost.
    check_bars(row, unrecorded_window_s=0.0)


def fill(path) -> None:
    """Take every free byte of the file system holding `path` (written until ENOSPC: the recorder
    keeps writing meanwhile, so a size measured first would not be the last free byte)."""
    import errno

    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as handle:
        while chunk:
            try:
                handle.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2] if len(chunk) > 512 else b""


@pytest.mark.lab_options(spool_tmpfs_mb=48)
def test_the_spool_disk_full_for_10_s_while_live(lab):
    filler = lab.spool / "filler"
    row = faults.run(lab, "spool disk full 10 s", apply=lambda: fill(filler),
                     heal=lambda: filler.unlink(), hold=10.0)
    # Live goes on; recording pauses (degraded) with the frames left unacknowledged in the hand-off,
    # free space is probed every second, and once it is back they are written in order: 10 s is well
    # within the stream's bound (RECORDING_HANDOFF_SECONDS, 30 s), so nothing accepted is lost.
    check_bars(row, unrecorded_window_s=0.0)
    assert "degraded" in row.device_told, row
