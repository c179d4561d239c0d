"""The recording pipeline with a real Celery worker process and a real Redis broker.

Each test starts its own worker on a private queue (and private Redis
prefixes), sharing this run's database file and var directory, and kills it
in a finaliser.
"""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import av
import pytest
from asgiref.sync import async_to_sync

from tests.support import start_recorder, subprocess_database_url, wait_until

from recordings import archive, constants, recorder, synthetic
from recordings.models import Segment, SegmentState
from streams.groups import device_group
from sightline_agent.protocol import KIND_JPEG

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class Child:
    """A subprocess in its own session, so it and its children are killed together."""

    def __init__(self, args, env, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture
def stack(settings, tmp_path):
    """Environment for child processes + a worker factory. Spool tasks go to a private queue."""
    run = uuid.uuid4().hex[:10]
    queue = f"test-rec-{run}"
    settings.SIGHTLINE = {**settings.SIGHTLINE, "SPOOL_QUEUE": queue}
    from celery import current_app

    default_queue = current_app.conf.task_default_queue
    current_app.conf.task_default_queue = queue  # exports and the like, sent from this process
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": settings.SECRET_KEY,
        "SIGHTLINE_VAR_DIR": str(settings.VAR_DIR), "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_PREFIX": f"test-{run}", "CACHE_PREFIX": f"test-{run}", "CELERY_QUEUE": queue,
        "SPOOL_QUEUE": queue, "LOG_FORMAT": "console", "PYTHONUNBUFFERED": "1",
    })
    env["DATABASE_URL"] = subprocess_database_url()
    children = []

    def start_worker(**extra_env) -> Child:
        child = Child([str(VENV_BIN / "celery"), "-A", "project", "worker", "-Q", queue, "--pool=prefork",
                       "-c", "1", "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat",
                       "-n", f"rec-{uuid.uuid4().hex[:6]}@%h"],
                      {**env, **extra_env}, tmp_path / f"worker-{len(children)}.log")
        children.append(child)
        wait_until(lambda: (child.alive() or pytest.fail(f"worker exited:\n{child.output()}"))
                   and " ready." in child.output(), 60, "the Celery worker to be ready")
        return child

    def start_python(code: str, **extra_env) -> Child:
        child = Child([sys.executable, "-c", code], {**env, **extra_env}, tmp_path / f"py-{len(children)}.log")
        children.append(child)
        return child

    yield type("Stack", (), {"env": env, "queue": queue, "start_worker": staticmethod(start_worker),
                             "start_python": staticmethod(start_python)})
    for child in children:
        child.kill()
    current_app.conf.task_default_queue = default_queue
    with current_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def stored_bytes(key: str) -> bytes:
    with archive.recordings_storage().open(key, "rb") as f:
        return f.read()


def states(ids):
    return dict(Segment.objects.filter(pk__in=ids).values_list("id", "state"))


def test_recorded_segments_become_playable_mp4s_through_a_real_worker(stack, acme_camera, client, personas):
    from channels.layers import get_channel_layer

    stack.start_worker()
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(device_group(acme_camera.id), channel)

    rec = recorder.DeviceRecorder(acme_camera.id, acme_camera.organisation_id, segment_seconds=2)
    rec.start()
    t0 = int(time.time() * 1_000_000)
    for i in range(60):  # 6 s of capture at 10 fps -> three 2-s segments
        rec.submit(synthetic.frame(KIND_JPEG, synthetic.jpeg_frame(i), i, t0 + i * 100_000), time.time())
    rec.close()
    assert rec.join(20)

    ids = list(Segment.objects.order_by("start").values_list("id", flat=True))
    assert len(ids) == 3
    wait_until(lambda: set(states(ids).values()) == {SegmentState.ARCHIVED}, 90, "all segments archived")
    for segment in Segment.objects.filter(pk__in=ids).order_by("start"):
        data = stored_bytes(segment.storage_key)
        assert decoded_frames(data) == segment.frames == 20
        assert archive.sha256_file(archive.recordings_storage().path(segment.storage_key)) == segment.checksum
        assert stored_bytes(segment.poster_key)[:2] == b"\xff\xd8"
        assert stored_bytes(segment.strip_key)[:2] == b"\xff\xd8"
        assert not Path(segment.spool_path).exists()

    # A clip across the three segments, exported by the worker.
    first = Segment.objects.get(pk=ids[0])
    client.force_login(personas["operator"])
    response = client.post(f"/api/devices/{acme_camera.id}/exports/", json.dumps(
        {"start": first.start.isoformat(), "end": (first.start + timedelta(seconds=6)).isoformat()}),
        content_type="application/json")
    assert response.status_code == 202
    status_url = response.json()["status_url"]
    status = wait_until(lambda: (lambda s: s if s["state"] in ("done", "failed") else None)(
        client.get(status_url).json()), 60, "the export to finish")
    assert status["state"] == "done" and status["progress"] == 1.0
    clip = b"".join(client.get(status["download_url"]).streaming_content)
    assert hashlib.sha256(clip).hexdigest() == status["checksum"] and decoded_frames(clip) == 60

    persisted = [async_to_sync(layer.receive)(channel) for _ in ids]
    assert [m["segment_id"] for m in persisted] == [str(i) for i in ids]
    assert {(m["type"], m["frames"]) for m in persisted} == {("segment.persisted", 20)}
    assert persisted[0]["first_seq"] == 0 and persisted[2]["last_seq"] == 59


def noisy_segment(device, count=300):
    """A segment that takes a few seconds to encode (noise does not compress)."""
    from PIL import Image

    images = []
    for _ in range(20):
        out = io.BytesIO()
        Image.effect_noise((480, 360), 64).convert("RGB").save(out, "JPEG", quality=85)
        images.append(out.getvalue())
    t0 = int(time.time() * 1_000_000)
    frames = [synthetic.frame(KIND_JPEG, images[i % 20], i, t0 + i * 66_666) for i in range(count)]
    return synthetic.write_closed_segment(device, frames, queue=True)


def wait_for_claim(segment_id) -> str:
    return wait_until(lambda: Segment.objects.filter(pk=segment_id, state=SegmentState.TRANSCODING)
                      .exclude(claimed_by="").values_list("claimed_by", flat=True).first(), 60,
                      "a worker to claim the segment")


def assert_finished_exactly_once(segment_id, killed_claim):
    wait_until(lambda: states([segment_id]).get(segment_id) == SegmentState.ARCHIVED, 90,
               "the redelivered chain to archive the segment")
    done = Segment.objects.get(pk=segment_id)
    assert done.claimed_by != killed_claim  # re-claimed after the kill
    assert decoded_frames(stored_bytes(done.storage_key)) == 300 == done.frames
    _, files = archive.recordings_storage().listdir(os.path.dirname(done.storage_key))
    assert sorted(files) == [f"{done.id}.mp4", f"{done.id}.poster.jpg", f"{done.id}.strip.jpg"]
    spool_dir = Path(done.spool_path).parent
    assert not [p for p in spool_dir.iterdir() if p.name.startswith(str(done.id))], "spool and temp files gone"


def test_a_pool_process_killed_mid_transcode_is_redelivered_and_finishes_exactly_once(stack, acme_camera):
    worker = stack.start_worker()
    segment = noisy_segment(acme_camera)
    claimed = wait_for_claim(segment.id)
    os.kill(int(claimed.split(":")[1]), signal.SIGKILL)  # the process running the task, mid-encode
    killed = Segment.objects.get(pk=segment.id)
    assert killed.state == SegmentState.TRANSCODING and killed.init_bytes == 0, "killed before it finished"
    # reject_on_worker_lost: the worker requeues the task and its new pool process runs it again.
    assert_finished_exactly_once(segment.id, claimed)
    assert "WorkerLostError" in worker.output()


def test_a_whole_worker_killed_mid_transcode_finishes_exactly_once_after_restart(stack, acme_camera):
    from celery import current_app

    first = stack.start_worker()
    segment = noisy_segment(acme_camera)
    claimed = wait_for_claim(segment.id)
    first.kill(signal.SIGKILL)  # parent and pool process: nobody is left to requeue the task
    assert Segment.objects.get(pk=segment.id).init_bytes == 0, "killed before it finished"
    # Redis hands an unacknowledged task out again once visibility_timeout has passed; kombu
    # sweeps for those every ~100 s. Do that sweep now, as if the timeout had run out.
    with current_app.connection_for_write() as conn:
        qos = conn.default_channel.qos
        conn.default_channel.visibility_timeout = 0
        qos.restore_visible(num=100, interval=1)
    stack.start_worker()
    assert_finished_exactly_once(segment.id, claimed)


PUBLISHER = """
import asyncio, os, signal, time, django
django.setup()
from recordings import sessions, synthetic
from sightline_agent import protocol
from streams import broadcast, groups, presence
device, org = os.environ["DEVICE_ID"], os.environ["ORG_ID"]


async def main():
    # What the device consumer does (streams/consumers/device.py): the session in the presence
    # hash, the presence event, then one IngestPublisher.frame per frame (live + recorder hand-off).
    # SIGTERM: the device goes offline, as when its socket closes.
    session = sessions.encode_session(org, None)
    await broadcast.redis_client().hset(groups.presence_key(device), mapping={"gen": 1, "rec": session})
    publisher = broadcast.IngestPublisher(device, recording_session=session)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await publisher.event(presence.presence_event(device, True, time.time()))
    jpeg = synthetic.jpeg_frame(1)
    seq = 0
    while not stop.is_set():
        now = time.time()
        message = protocol.encode_frame(protocol.KIND_JPEG, jpeg, seq, int(now * 1_000_000), True)[0]
        await publisher.frame(message, protocol.KIND_JPEG, True, now)
        print(f"sent {seq} {now:.3f}", flush=True)
        seq += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
    await publisher.event(presence.presence_event(device, False, time.time()))
    print("offline", flush=True)


asyncio.run(main())
"""


def recorder_mid_segment(stack, device, log_path, frames: int):
    """A `manage.py record` process (30-s segments) and a publisher, once `frames` frames were
    published and the segment is being recorded: (recorder Popen, publisher Child, env)."""
    env = {**stack.env, "SEGMENT_SECONDS": "30"}
    recorder_process = start_recorder(env, log_path)
    publisher = stack.start_python(PUBLISHER, DEVICE_ID=str(device.id), ORG_ID=str(device.organisation_id))
    try:
        wait_until(lambda: f"sent {frames} " in publisher.output(), 30, f"{frames} frames to be published")
        wait_until(lambda: Segment.objects.filter(device=device, state=SegmentState.RECORDING).exists(), 10,
                   "the segment row")
    except BaseException:
        publisher.kill()
        recorder_process.kill()
        raise
    return recorder_process, publisher, env


def test_a_recorder_killed_mid_segment_is_recovered_within_the_crash_window(stack, acme_camera, tmp_path):
    recorder_process, publisher, env = recorder_mid_segment(stack, acme_camera, tmp_path / "recorder.log", 30)
    try:
        os.killpg(recorder_process.pid, signal.SIGKILL)
        killed_at = time.time()
        recorder_process.wait(10)
    finally:
        publisher.kill()
    sent = {int(line.split()[1]): float(line.split()[2])
            for line in publisher.output().splitlines() if line.startswith("sent ")}

    # The restarted recorder runs spool recovery at start (so do the beat task and this command).
    subprocess.run([sys.executable, "manage.py", "recover_spool"], cwd=ROOT, env=env, check=True,
                   timeout=60, capture_output=True)
    segment = Segment.objects.get(device=acme_camera)
    assert segment.state == SegmentState.CLOSED
    assert segment.frames == segment.last_seq - segment.first_seq + 1  # nothing missing inside
    assert segment.first_seq <= 2  # recorded from (about) the first frame
    # Lost: what arrived after the last fsync -- one part plus one writer poll (the
    # documented window). The slack absorbs scheduling delays of a busy 2-core machine
    # (the writer thread is starved, not wrong), and is still far below the 3 s sent.
    window = constants.PART_SECONDS + constants.WRITER_POLL_SECONDS
    slack = 0.8
    lost = [seq for seq, at in sent.items() if seq > segment.last_seq and at <= killed_at]
    assert all(sent[seq] >= killed_at - window - slack for seq in lost), (lost, killed_at)
    assert len(lost) <= (window + slack) * 10 + 1

    stack.start_worker()
    wait_until(lambda: states([segment.id]).get(segment.id) == SegmentState.ARCHIVED, 60, "recovered segment archived")
    segment.refresh_from_db()
    assert decoded_frames(stored_bytes(segment.storage_key)) == segment.frames


def test_a_recorder_stopped_with_sigterm_closes_its_open_segment_durably(stack, acme_camera, tmp_path):
    recorder_process, publisher, _ = recorder_mid_segment(stack, acme_camera, tmp_path / "recorder.log", 10)
    try:
        recorder_process.send_signal(signal.SIGTERM)  # what systemd or docker stop sends
        assert recorder_process.wait(20) == 0
    finally:
        publisher.kill()
        if recorder_process.poll() is None:
            recorder_process.kill()
            recorder_process.wait(5)
    segment = Segment.objects.get(device=acme_camera)  # no recovery run: the recorder closed it itself
    assert segment.state == SegmentState.CLOSED
    assert segment.frames >= 10 and segment.frames == segment.last_seq - segment.first_seq + 1
    assert "segments closed durably" in (tmp_path / "recorder.log").read_text()


def sent_frames(publisher) -> dict[int, float]:
    return {int(line.split()[1]): float(line.split()[2])
            for line in publisher.output().splitlines() if line.startswith("sent ")}


def recorded_seqs(device) -> list[int]:
    """Sequence numbers of every video frame in the device's spool files, segment after segment."""
    from recordings import spool

    seqs = []
    for segment in Segment.objects.filter(device=device).order_by("start", "created_at"):
        assert segment.state == SegmentState.CLOSED, (segment.id, segment.state)
        seqs += [r.header.seq for r in spool.read_spool(segment.spool_path).records if r.header.kind == KIND_JPEG]
    return seqs


def writer_records(device, process) -> bool:
    return Segment.objects.filter(device=device, writer__contains=f":{process.pid}:").exists()


def stop_cleanly(publisher, recorder_process, env):
    """The device goes offline, the recorder closes and acknowledges its segment on SIGTERM, and
    recovery closes what a killed recorder left: then every segment is closed."""
    publisher.kill(signal.SIGTERM)
    assert "offline" in publisher.output()
    recorder_process.send_signal(signal.SIGTERM)
    assert recorder_process.wait(30) == 0
    subprocess.run([sys.executable, "manage.py", "recover_spool"], cwd=ROOT, env=env, check=True,
                   timeout=60, capture_output=True)


def test_a_recorder_killed_and_restarted_while_the_device_streams_records_every_frame_exactly_once(
        stack, acme_camera, tmp_path):
    first, publisher, env = recorder_mid_segment(stack, acme_camera, tmp_path / "first.log", 20)
    second = None
    try:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        killed_at = len(sent_frames(publisher))
        time.sleep(3)  # the device goes on streaming; no recorder runs
        second = start_recorder(env, tmp_path / "second.log")
        # It waits for the dead recorder's lease to expire (LEASE_SECONDS), then resumes.
        wait_until(lambda: writer_records(acme_camera, second), 30, "the restarted recorder to record")
        wait_until(lambda: len(sent_frames(publisher)) > killed_at + 60, 30, "more frames")
        stop_cleanly(publisher, second, env)
    finally:
        publisher.kill()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(5)
    sent = sent_frames(publisher)
    seqs = recorded_seqs(acme_camera)
    assert len(seqs) == len(set(seqs)), "a frame was recorded twice"
    assert seqs == sorted(sent), f"missing: {sorted(set(sent) - set(seqs))[:20]}"
    assert resumed_entries(tmp_path / "second.log")[0] > 0


def resumed_entries(log_path) -> tuple[int, int]:
    """(entries claimed from a dead recorder, of which already in its spool), from the recorder's log."""
    import re

    found = re.search(r"resuming (\d+) unacknowledged entries \((\d+) already in the spool\)",
                      Path(log_path).read_text())
    assert found, "the recorder resumed no pending entries"
    return int(found[1]), int(found[2])


def test_a_standby_takes_over_a_killed_recorders_lease_and_resumes_from_its_pending_frames(
        stack, acme_camera, tmp_path):
    env = {**stack.env, "SEGMENT_SECONDS": "30"}
    recorders = [start_recorder(env, tmp_path / "a.log"), start_recorder(env, tmp_path / "b.log")]
    publisher = stack.start_python(PUBLISHER, DEVICE_ID=str(acme_camera.id), ORG_ID=str(acme_camera.organisation_id))
    try:
        owner = wait_until(lambda: next((p for p in recorders if writer_records(acme_camera, p)), None), 30,
                           "one of the recorders to record")
        standby = recorders[1 - recorders.index(owner)]
        wait_until(lambda: len(sent_frames(publisher)) > 25, 30, "frames")
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(10)
        killed_at = len(sent_frames(publisher))
        wait_until(lambda: writer_records(acme_camera, standby), 30, "the standby to take over")
        wait_until(lambda: len(sent_frames(publisher)) > killed_at + 40, 30, "more frames")
        stop_cleanly(publisher, standby, env)
        assert resumed_entries(tmp_path / ("b.log" if standby is recorders[1] else "a.log"))[0] > 0
    finally:
        publisher.kill()
        for process in recorders:
            if process.poll() is None:
                process.kill()
                process.wait(5)
    sent = sent_frames(publisher)
    seqs = recorded_seqs(acme_camera)
    assert len(seqs) == len(set(seqs)), "a frame was recorded twice"
    assert seqs == sorted(sent), f"missing: {sorted(set(sent) - set(seqs))[:20]}"
