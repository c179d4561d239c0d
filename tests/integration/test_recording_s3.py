"""Archive to S3-compatible storage (a real local moto server) and play back through presigned URLs."""
import hashlib
import io
import json
import urllib.request

import av
import boto3
import pytest

from recordings import exports, pipeline, synthetic
from recordings.models import Segment, SegmentState
from tests.support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = 1_763_700_000_000_000  # 2025-11-21T04:40:00Z
BUCKET = "sightline-test"


@pytest.fixture
def s3(settings):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    settings.STORAGES = {**settings.STORAGES, "recordings": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": endpoint, "access_key": "test", "secret_key": "test",
                    "region_name": "us-east-1", "querystring_auth": True, "querystring_expire": 60,
                    "file_overwrite": True, "default_acl": None},
    }}
    yield endpoint
    server.stop()


def fetch(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def archived_segment(device, n=0):
    segment = synthetic.write_closed_segment(device, synthetic.jpeg_frames(20, T0 + n * 3_000_000,
                                                                           start_seq=n * 20))
    for step in (pipeline.transcode_segment, pipeline.make_thumbnails, pipeline.archive_segment):
        step(segment.id)
    return Segment.objects.get(pk=segment.id)


def test_segments_archive_to_s3_with_checksum_and_play_through_short_lived_presigned_urls(
        s3, client, personas, acme_camera):
    segment = archived_segment(acme_camera)
    assert segment.state == SegmentState.ARCHIVED
    head = boto3.client("s3", endpoint_url=s3, aws_access_key_id="test", aws_secret_access_key="test",
                        region_name="us-east-1").head_object(Bucket=BUCKET, Key=segment.storage_key)
    assert head["ContentLength"] == segment.bytes
    assert not any(p.exists() for p in pipeline.local_outputs(segment).values()), "spool cleaned after confirm"

    client.force_login(personas["viewer"])
    response = client.get(f"/media/segments/{segment.id}/video.mp4")
    assert response.status_code == 302 and response["Cache-Control"] == "no-store"
    url = response["Location"]
    assert url.startswith(s3) and "Signature=" in url and "Expires=" in url
    status, _, data = fetch(url)
    assert status == 200 and hashlib.sha256(data).hexdigest() == segment.checksum
    with av.open(io.BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 20
    status, headers, part = fetch(url, {"Range": f"bytes=0-{segment.init_bytes - 1}"})
    assert status == 206 and part == data[: segment.init_bytes]  # hls.js's EXT-X-MAP request works too

    poster = client.get(f"/media/segments/{segment.id}/poster.jpg")
    assert poster.status_code == 302 and fetch(poster["Location"])[2][:2] == b"\xff\xd8"


def test_the_outsider_gets_no_presigned_url(s3, client, personas, acme_camera):
    segment = archived_segment(acme_camera)
    client.force_login(personas["outsider"])
    for name in ("video.mp4", "poster.jpg", "strip.jpg"):
        assert client.get(f"/media/segments/{segment.id}/{name}").status_code == 404


def test_a_clip_export_from_s3_segments_downloads_through_a_presigned_url(s3, client, personas, acme_camera):
    for n in range(2):
        archived_segment(acme_camera, n)
    client.force_login(personas["operator"])
    response = client.post(f"/api/devices/{acme_camera.id}/exports/",
                           json.dumps({"start": "2025-11-21T04:40:00Z", "end": "2025-11-21T04:40:06Z"}),
                           content_type="application/json")
    export_id = response.json()["id"]
    assert exports.run_export(export_id) == "done"
    status = client.get(f"/api/exports/{export_id}/").json()
    redirect = client.get(status["download_url"])
    assert redirect.status_code == 302
    _, _, data = fetch(redirect["Location"])
    assert hashlib.sha256(data).hexdigest() == status["checksum"]
    with av.open(io.BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 40


def test_archive_failures_against_unreachable_storage_keep_the_spool(settings, acme_camera):
    settings.STORAGES = {**settings.STORAGES, "recordings": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": f"http://127.0.0.1:{free_port()}", "access_key": "t",
                    "secret_key": "t", "region_name": "us-east-1"},
    }}
    segment = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(5, T0))
    pipeline.transcode_segment(segment.id)
    pipeline.make_thumbnails(segment.id)
    with pytest.raises(Exception) as failure:
        pipeline.archive_segment(segment.id)
    from recordings.tasks import TRANSIENT

    assert isinstance(failure.value, TRANSIENT), "unreachable storage is retried with backoff, not fatal"
    segment.refresh_from_db()
    assert segment.state == SegmentState.READY
    assert all(p.exists() for p in pipeline.local_outputs(segment).values())
