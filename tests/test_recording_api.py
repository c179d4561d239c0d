"""Playback API: segment list, HLS playlist, ranged media, hold/release, clip export -- and the outsider."""
import hashlib
import io
import json

import av
import pytest

from recordings import archive, exports, pipeline, synthetic
from recordings.models import ClipExport, Segment

T0 = 1_763_700_000_000_000  # 2025-11-21T04:40:00Z


def recorded(device, count=3, frames=20):
    """`count` archived 2-s segments of `device`, 1 s apart."""
    segments = []
    for n in range(count):
        segment = synthetic.write_closed_segment(device, synthetic.jpeg_frames(frames, T0 + n * 3_000_000,
                                                                               start_seq=n * frames))
        pipeline.transcode_segment(segment.id)
        pipeline.make_thumbnails(segment.id)
        pipeline.archive_segment(segment.id)
        segments.append(Segment.objects.get(pk=segment.id))
    return segments


RANGE = {"start": "2025-11-21T04:39:00Z", "end": "2025-11-21T04:41:00Z"}


@pytest.fixture
def segments(acme_camera):
    return recorded(acme_camera)


def body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.django_db
def test_members_list_a_devices_segments_in_a_time_range(client, personas, acme_camera, segments):
    client.force_login(personas["viewer"])
    response = client.get(f"/api/devices/{acme_camera.id}/segments/", RANGE)
    assert response.status_code == 200
    listed = response.json()["segments"]
    assert [s["id"] for s in listed] == [str(s.id) for s in segments]
    first = listed[0]
    assert first["state"] == "archived" and first["frames"] == 20 and first["codec"] == "jpeg"
    assert first["duration"] == pytest.approx(2.0) and first["held"] is False and first["has_audio"] is False
    assert first["media_url"] == f"/media/segments/{segments[0].id}/video.mp4"
    assert first["poster_url"].endswith("poster.jpg") and first["strip_url"].endswith("strip.jpg")
    outside = client.get(f"/api/devices/{acme_camera.id}/segments/",
                         {"start": "2025-11-21T05:00:00Z", "end": "2025-11-21T06:00:00Z"})
    assert outside.json()["segments"] == []


@pytest.mark.django_db
def test_a_malformed_range_is_a_bad_request(client, personas, acme_camera):
    client.force_login(personas["owner"])
    assert client.get(f"/api/devices/{acme_camera.id}/segments/", {"start": "yesterday"}).status_code == 400
    assert client.get(f"/api/devices/{acme_camera.id}/segments/",
                      {"start": RANGE["end"], "end": RANGE["start"]}).status_code == 400


@pytest.mark.django_db
def test_the_playlist_covers_the_range_with_byte_ranges_into_each_segment(client, personas, acme_camera, segments):
    client.force_login(personas["viewer"])
    response = client.get(f"/api/devices/{acme_camera.id}/playlist.m3u8", RANGE)
    assert response.status_code == 200 and response["Content-Type"] == "application/vnd.apple.mpegurl"
    text = response.content.decode()
    for s in segments:
        assert f'#EXT-X-MAP:URI="/media/segments/{s.id}/video.mp4",BYTERANGE="{s.init_bytes}@0"' in text
        assert f"#EXT-X-BYTERANGE:{s.bytes - s.init_bytes}@{s.init_bytes}" in text
    assert text.count("#EXT-X-DISCONTINUITY") == 2 and text.count("#EXT-X-PROGRAM-DATE-TIME:") == 3
    assert "#EXT-X-PROGRAM-DATE-TIME:2025-11-21T04:40:03.000Z" in text


@pytest.mark.django_db
def test_init_and_media_byte_ranges_decode_to_every_frame(client, personas, segments):
    client.force_login(personas["viewer"])
    s = segments[0]
    url = f"/media/segments/{s.id}/video.mp4"
    init = body(client.get(url, HTTP_RANGE=f"bytes=0-{s.init_bytes - 1}"))
    media = body(client.get(url, HTTP_RANGE=f"bytes={s.init_bytes}-"))
    with av.open(io.BytesIO(init + media)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 20


@pytest.mark.django_db
def test_media_is_served_with_range_support(client, personas, segments):
    client.force_login(personas["viewer"])
    s = segments[0]
    url = f"/media/segments/{s.id}/video.mp4"
    whole = client.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    data = body(whole)
    assert len(data) == s.bytes and hashlib.sha256(data).hexdigest() == s.checksum
    part = client.get(url, HTTP_RANGE="bytes=100-299")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-299/{s.bytes}"
    assert part["Content-Length"] == "200" and body(part) == data[100:300]
    tail = client.get(url, HTTP_RANGE="bytes=-10")
    assert tail.status_code == 206 and body(tail) == data[-10:]
    bad = client.get(url, HTTP_RANGE=f"bytes={s.bytes}-")
    assert bad.status_code == 416 and bad["Content-Range"] == f"bytes */{s.bytes}"


@pytest.mark.django_db
def test_poster_and_strip_are_jpegs(client, personas, segments):
    client.force_login(personas["viewer"])
    for name in ("poster.jpg", "strip.jpg"):
        response = client.get(f"/media/segments/{segments[0].id}/{name}")
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
        assert body(response)[:2] == b"\xff\xd8"


@pytest.mark.django_db
def test_only_the_owner_can_hold_and_release_a_segment(client, personas, segments):
    s = segments[0]
    client.force_login(personas["operator"])
    assert client.post(f"/api/segments/{s.id}/hold").status_code == 404
    client.force_login(personas["owner"])
    assert client.post(f"/api/segments/{s.id}/hold").json() == {"id": str(s.id), "held": True}
    assert Segment.objects.get(pk=s.id).held
    assert client.post(f"/api/segments/{s.id}/release").json()["held"] is False
    assert client.get(f"/api/segments/{s.id}/hold").status_code == 405


@pytest.mark.django_db
def test_an_operator_exports_a_clip_as_one_mp4_with_its_checksum(client, personas, acme_camera, segments,
                                                                django_capture_on_commit_callbacks):
    client.force_login(personas["operator"])
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/api/devices/{acme_camera.id}/exports/",
                               json.dumps({"start": "2025-11-21T04:40:01Z", "end": "2025-11-21T04:40:07Z"}),
                               content_type="application/json")
    assert response.status_code == 202 and len(callbacks) == 1  # the Celery job is queued after commit
    export_id = response.json()["id"]
    assert response.json()["status_url"] == f"/api/exports/{export_id}/"
    assert client.get(f"/api/exports/{export_id}/").json()["state"] == "queued"
    assert exports.run_export(export_id) == "done"  # what the worker runs
    status = client.get(f"/api/exports/{export_id}/").json()
    assert status["state"] == "done" and status["progress"] == 1.0
    download = client.get(status["download_url"])
    data = body(download)
    assert hashlib.sha256(data).hexdigest() == status["checksum"] and len(data) == status["bytes"]
    with av.open(io.BytesIO(data)) as container:
        frames = [f for f in container.decode(video=0)]
    # 04:40:01 .. 04:40:07 -> from the keyframe at 04:40:01 to the end: 10 + 20 + 10 frames.
    assert len(frames) == 40
    assert float(frames[-1].time) == pytest.approx(5.9, abs=0.05)


@pytest.mark.django_db
def test_a_viewer_cannot_export(client, personas, acme_camera, segments):
    client.force_login(personas["viewer"])
    response = client.post(f"/api/devices/{acme_camera.id}/exports/", json.dumps(RANGE),
                           content_type="application/json")
    assert response.status_code == 404 and not ClipExport.objects.exists()


@pytest.mark.django_db
def test_the_outsider_gets_404_from_every_recording_url(client, personas, acme_camera, segments):
    s = segments[0]
    export = ClipExport.objects.create(device=acme_camera, start=s.start, end=s.end, state="done",
                                       storage_key=s.storage_key, checksum=s.checksum, bytes=s.bytes)
    client.force_login(personas["outsider"])
    gets = [f"/api/devices/{acme_camera.id}/segments/", f"/api/devices/{acme_camera.id}/playlist.m3u8",
            f"/media/segments/{s.id}/video.mp4", f"/media/segments/{s.id}/poster.jpg",
            f"/media/segments/{s.id}/strip.jpg", f"/api/exports/{export.id}/", f"/api/exports/{export.id}/download"]
    for url in gets:
        assert client.get(url, RANGE).status_code == 404, url
    assert client.get(f"/media/segments/{s.id}/video.mp4", HTTP_RANGE="bytes=0-10").status_code == 404
    posts = [f"/api/devices/{acme_camera.id}/exports/", f"/api/segments/{s.id}/hold", f"/api/segments/{s.id}/release"]
    for url in posts:
        assert client.post(url, json.dumps(RANGE), content_type="application/json").status_code == 404, url
    assert ClipExport.objects.count() == 1 and not Segment.objects.get(pk=s.id).held


@pytest.mark.django_db
def test_anonymous_users_get_404_too(client, acme_camera, segments):
    assert client.get(f"/api/devices/{acme_camera.id}/segments/").status_code == 404
    assert client.get(f"/media/segments/{segments[0].id}/video.mp4").status_code == 404


@pytest.mark.django_db
def test_the_outsiders_own_playlist_never_lists_another_organisations_segments(client, personas, globex_camera,
                                                                              segments):
    client.force_login(personas["outsider"])
    text = client.get(f"/api/devices/{globex_camera.id}/playlist.m3u8", RANGE).content.decode()
    assert "#EXTINF" not in text
    listed = client.get(f"/api/devices/{globex_camera.id}/segments/", RANGE).json()["segments"]
    assert listed == []


@pytest.mark.django_db
def test_a_degraded_recorder_is_visible_in_the_segment_list(client, personas, acme_camera):
    from recordings import alerts

    alerts.set_recording_degraded(acme_camera.id, "spool write failed: No space left on device")
    try:
        client.force_login(personas["owner"])
        data = client.get(f"/api/devices/{acme_camera.id}/segments/").json()
        assert data["recording"]["degraded"]["reason"].endswith("No space left on device")
    finally:
        alerts.clear_recording_degraded(acme_camera.id)


@pytest.mark.django_db
def test_an_export_of_segments_with_audio_keeps_the_audio(acme_camera, bob):
    from sightline_agent.protocol import KIND_AUDIO

    for n in range(2):
        frames = []
        for i, f in enumerate(synthetic.jpeg_frames(20, T0 + n * 2_000_000, start_seq=n * 20)):
            frames.append(f)
            frames.append(synthetic.frame(KIND_AUDIO, synthetic.pcm_chunk(1600, start_sample=(n * 20 + i) * 1600),
                                          i, f.header.timestamp_us))
        segment = synthetic.write_closed_segment(acme_camera, frames, audio={"codec": "pcm_s16le", "rate": 16000,
                                                                             "channels": 1})
        for step in (pipeline.transcode_segment, pipeline.make_thumbnails, pipeline.archive_segment):
            step(segment.id)
    export = ClipExport.objects.create(device=acme_camera, requested_by=bob, start=Segment.objects.first().start,
                                       end=Segment.objects.last().end)
    assert exports.run_export(export.id) == "done"
    export.refresh_from_db()
    with archive.recordings_storage().open(export.storage_key, "rb") as f, av.open(f) as container:
        assert container.streams.audio and container.streams.video
        audio_seconds = sum(frame.samples for frame in container.decode(audio=0)) / 16000
    assert audio_seconds == pytest.approx(4.0, abs=0.2)


@pytest.mark.django_db
def test_listing_and_playlist_queries_do_not_grow_with_the_number_of_segments(
        client, personas, acme_camera):
    def queries_for(path):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert client.get(path, RANGE).status_code == 200
        return len(captured)

    client.force_login(personas["viewer"])
    recorded(acme_camera, count=1, frames=5)
    few = [queries_for(f"/api/devices/{acme_camera.id}/{p}") for p in ("segments/", "playlist.m3u8")]
    recorded(acme_camera, count=4, frames=5)
    many = [queries_for(f"/api/devices/{acme_camera.id}/{p}") for p in ("segments/", "playlist.m3u8")]
    assert few == many


@pytest.mark.django_db
def test_media_answers_head_requests_with_its_size(client, personas, segments):
    client.force_login(personas["viewer"])
    response = client.head(f"/media/segments/{segments[0].id}/video.mp4")
    assert response.status_code == 200 and response["Content-Length"] == str(segments[0].bytes)


@pytest.mark.django_db
def test_the_segment_being_recorded_now_is_on_todays_list_and_not_on_tomorrows(client, personas, acme_camera):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    recording = Segment.objects.create(device=acme_camera, start=now - timedelta(seconds=5), codec="jpeg",
                                       state="recording")
    client.force_login(personas["viewer"])
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def listed(start, end):
        response = client.get(f"/api/devices/{acme_camera.id}/segments/",
                              {"start": start.isoformat(), "end": end.isoformat()})
        assert response.status_code == 200
        return [s["id"] for s in response.json()["segments"]]

    assert listed(midnight, midnight + timedelta(days=1)) == [str(recording.id)]
    assert listed(midnight + timedelta(days=1), midnight + timedelta(days=2)) == []
    assert listed(now + timedelta(seconds=1), now + timedelta(hours=1)) == []
    assert listed(now - timedelta(hours=1), now - timedelta(seconds=10)) == []  # began before it started


def _closed_third_segment(device):
    """Two archived segments (04:40:00-02, 03-05) and a third (06-08) recorded but not transcoded yet."""
    done = recorded(device, count=2)
    pending = synthetic.write_closed_segment(device, synthetic.jpeg_frames(20, T0 + 6_000_000, start_seq=40))
    return done, pending


def _post_export(client, device, start, end):
    response = client.post(f"/api/devices/{device.id}/exports/", json.dumps({"start": start, "end": end}),
                           content_type="application/json")
    assert response.status_code == 202
    return response.json()["id"]


@pytest.mark.django_db
def test_an_export_across_a_segment_still_processing_waits_for_it_with_progress_then_covers_the_range(
        client, personas, acme_camera):
    _done, pending = _closed_third_segment(acme_camera)
    client.force_login(personas["operator"])
    export_id = _post_export(client, acme_camera, "2025-11-21T04:40:01Z", "2025-11-21T04:40:07Z")

    assert exports.run_export(export_id) == "waiting"  # the task looks again EXPORT_POLL_SECONDS later
    status = client.get(f"/api/exports/{export_id}/").json()
    assert status["state"] == "running" and status["waiting_for"] == 1 and status["download_url"] is None
    assert 0 < status["progress"] < 0.25 and status["coverage"]["segments"] == 3

    pipeline.transcode_segment(pending.id)  # the worker catches up: transcode, then thumbnails -> ready
    pipeline.make_thumbnails(pending.id)
    assert exports.run_export(export_id) == "done"
    status = client.get(f"/api/exports/{export_id}/").json()
    assert status["state"] == "done" and status["complete"] is True and status["waiting_for"] == 0
    assert status["coverage"]["missing"] == [] and status["coverage"]["note"] == ""
    with av.open(io.BytesIO(body(client.get(status["download_url"])))) as container:
        assert len(list(container.decode(video=0))) == 40  # 04:40:01 .. 04:40:07, as asked


@pytest.mark.django_db
def test_an_export_that_may_not_wait_longer_says_exactly_what_it_covers(client, personas, acme_camera, settings):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "EXPORT_WAIT_SECONDS": 0}
    _closed_third_segment(acme_camera)
    client.force_login(personas["operator"])
    export_id = _post_export(client, acme_camera, "2025-11-21T04:40:01Z", "2025-11-21T04:40:08Z")

    assert exports.run_export(export_id) == "done"
    status = client.get(f"/api/exports/{export_id}/").json()
    assert status["state"] == "done" and status["complete"] is False
    report = status["coverage"]
    assert report["requested_seconds"] == 7 and report["covered_seconds"] == 4
    assert report["covered"] == [["2025-11-21T04:40:01+00:00", "2025-11-21T04:40:05+00:00"]]
    assert report["missing"] == [["2025-11-21T04:40:05+00:00", "2025-11-21T04:40:08+00:00"]]
    assert report["note"] == ("covers 4.0 s of the 7.0 s asked (04:40:01–04:40:05 UTC); missing 04:40:05–04:40:08 UTC: "
                              "1 segment still being recorded or processed")


def test_coverage_names_holes_at_the_start_and_where_nothing_was_recorded():
    from datetime import datetime, timedelta, timezone

    from recordings import coverage

    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    report = coverage.describe([(at(3), at(6)), (at(6.5), at(8))], at(0), at(10))
    assert report["covered"] == [[at(3).isoformat(), at(8).isoformat()]]  # a half-second cut is no hole
    assert report["missing"] == [[at(0).isoformat(), at(3).isoformat()], [at(8).isoformat(), at(10).isoformat()]]
    assert report["note"].endswith("nothing was recorded then") and report["complete"] is False
    assert coverage.describe([(at(-1), at(11))], at(0), at(10))["complete"] is True
    assert coverage.should_wait(1, 5, 120) and not coverage.should_wait(1, 120, 120) and not coverage.should_wait(0, 0, 120)


@pytest.mark.django_db
def test_a_segment_ready_on_another_hosts_spool_waits_for_its_archive_rather_than_failing_mid_playlist(
        client, personas, acme_camera, monkeypatch):
    from recordings import constants

    ready = synthetic.write_closed_segment(acme_camera, synthetic.jpeg_frames(20, T0, start_seq=0))
    pipeline.transcode_segment(ready.id)
    pipeline.make_thumbnails(ready.id)
    ready.refresh_from_db()
    assert ready.state == "ready" and ready.spool_host == constants.host_name()
    client.force_login(personas["viewer"])

    def listed():
        return client.get(f"/api/devices/{acme_camera.id}/segments/", RANGE).json()["segments"][0]

    def playlist():
        return client.get(f"/api/devices/{acme_camera.id}/playlist.m3u8", RANGE).content.decode()

    here = listed()  # the recording host serves it from its spool
    assert here["media_url"] and here["archiving_elsewhere"] is False and str(ready.id) in playlist()
    assert client.get(here["media_url"]).status_code == 200

    monkeypatch.setattr(constants, "host_name", lambda: "web-b")  # another web host asks
    elsewhere = listed()
    assert elsewhere["state"] == "ready" and elsewhere["archiving_elsewhere"] is True
    assert elsewhere["media_url"] is None and str(ready.id) not in playlist()
    refused = client.get(here["media_url"])
    assert refused.status_code == 503 and refused["Retry-After"] == str(constants.NOT_HERE_RETRY_AFTER_SECONDS)
    assert "another host" in refused.json()["error"]

    pipeline.archive_segment(ready.id)  # once archived, any host serves it
    archived = listed()
    assert archived["media_url"] and archived["archiving_elsewhere"] is False and str(ready.id) in playlist()
    assert client.get(archived["media_url"]).status_code == 200
