"""Issue 12 acceptance: one camera through the whole multi-host deployment, on real engines.

A camera (the reference agent) enters through the TLS proxy and lands on web host A; an owner
watching through the proxy on web host B sees its frames; the recorder host records it, the worker
host transcodes it, SeaweedFS holds the archive, and playback through host B redirects to a
presigned SeaweedFS URL whose MP4 decodes to the recorded frames.
"""
import io
import json
import time
from urllib.parse import urlsplit

import av
import pytest

from tests.multihost import clients, topology
from tests.multihost.hosts import wait_until

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(150)]


def archived_segments(lab, device_id, cookie):
    status, _, body = clients.https_get(lab, f"{lab.web_url('b')}/api/devices/{device_id}/segments/", cookie)
    assert status == 200, body[:300]
    return [s for s in json.loads(body)["segments"] if s["state"] == "archived"]


def test_a_camera_on_host_a_is_watched_on_b_recorded_transcoded_archived_to_s3_and_played_through_b(lab):
    began = time.monotonic()
    seeded = lab.seed()
    camera, owner = seeded["cameras"][0], seeded["owner"]

    agent = clients.start_camera(lab, camera["token"], which="a", fps=5, duration=9)
    viewer = clients.Viewer(lab, camera["id"], owner, which="b")
    try:
        seqs = viewer.wait_frames(10, timeout=20)
    finally:
        viewer.stop()
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "frames arrive once each, in order"
    welcome = next(m for m in viewer.messages if m["type"] == "welcome")
    assert welcome["role"] == "owner"

    wait_until(lambda: not agent.alive(), 20, "the camera to finish its 9 s")
    sent = clients.camera_frames_sent(agent)
    assert sent and sent >= 30, agent.output()

    # The proxy's log names the upstream of each socket: the camera on A, the viewer on B.
    access = (lab.lab.root / "nginx" / "access.log").read_text()
    a, b = (f"upstream={lab.address(h)}:{topology.WEB_PORT}" for h in ("web-a", "web-b"))
    assert any("/host-a/ws/device/" in line and " 101 " in line and a in line for line in access.splitlines()), access
    assert any("/host-b/ws/view/" in line and " 101 " in line and b in line for line in access.splitlines()), access

    segments = wait_until(lambda: len(archived_segments(lab, camera["id"], owner)) >= 3
                          and archived_segments(lab, camera["id"], owner), 40, "three archived segments")
    assert sum(s["frames"] for s in segments) <= sent

    # Which host did what, from each process's own log.
    assert f"recording device {camera['id']}" in lab.children["recorder/record"].output(200_000)
    worker_log = lab.children["worker/celery"].output(400_000)
    assert all(f"transcoded segment {s['id']}" in worker_log for s in segments)

    keys = lab.bucket_keys()
    segment = max(segments, key=lambda s: s["frames"])
    status, headers, _ = clients.https_get(lab, f"{lab.web_url('b')}{segment['media_url']}", owner)
    assert status == 302, status
    presigned = headers["location"]
    parts = urlsplit(presigned)
    assert parts.netloc == f"{lab.address('s3')}:{topology.S3_PORT}" and "Signature=" in presigned
    key = parts.path.removeprefix(f"/{topology.BUCKET}/")
    assert key in keys, (key, keys)

    status, _, data = clients.https_get(lab, presigned)
    assert status == 200
    with av.open(io.BytesIO(data)) as container:
        decoded = [frame for frame in container.decode(video=0)]
    assert len(decoded) == segment["frames"] > 0
    assert (decoded[0].width, decoded[0].height) == (160, 96)

    outsider = clients.https_get(lab, f"{lab.web_url('b')}{segment['media_url']}", seeded["outsider"])
    assert outsider[0] == 404, "another organisation gets no presigned URL"
    print(f"\nmulti-host: {sent} frames sent by the camera via A, {len(seqs)} seen on B, "
          f"{len(segments)} segments archived ({sum(s['frames'] for s in segments)} frames), "
          f"{len(keys)} objects in SeaweedFS; {time.monotonic() - began:.1f} s after the lab was up")
