"""Replay in a real browser: timeline, continuous HLS playback, seek, export with checksum."""
import hashlib
from datetime import timedelta

import pytest

from tests.browser.conftest import wait_for_state, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PLAYABLE = ("ready", "archived")


def playable_segments(device):
    from recordings.models import Segment

    return list(Segment.objects.filter(device=device, state__in=PLAYABLE).order_by("start"))


def test_a_recording_plays_seeks_and_exports_with_a_matching_checksum(
        personas, acme_camera, start_agent, celery_worker, portal, artifacts):
    agent = start_agent(acme_camera, "--fps", "10", "--resolution", "320x180", "--audio")
    # SEGMENT_SECONDS=2 for the server under test: three playable segments in well under a minute.
    segments = wait_until(lambda: (agent.alive() or pytest.fail(agent.output()))
                          and len(s := playable_segments(acme_camera)) >= 3 and s, 90,
                          "three playable segments")
    agent.stop()  # the timeline and playlist stay still from here

    browser = portal()
    page = browser.login("bob")
    day = segments[0].start.date().isoformat()
    page.goto(f"/devices/{acme_camera.pk}/recordings/?date={day}")
    wait_for_state(page, "s.playlistLoaded && s.fragments >= 3")
    assert page.locator(".segment").count() >= 3

    # Click a segment on the timeline (zoomed to fit the recordings): it plays, time advances.
    first, last = segments[0], segments[-1]
    box = page.locator(f'.segment[data-segment-id="{first.pk}"]').bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    clicked = wait_for_state(page, "s.playing && s.lastSeek")
    assert first.start.timestamp() * 1000 - 500 <= clicked["landedWallMs"] <= first.end.timestamp() * 1000 + 500, clicked
    start_time = page.evaluate("window.sightline.currentTime")
    wait_for_state(page, f"s.currentTime > {start_time + 1.0}")  # currentTime advances
    page.screenshot(path=str(artifacts / "timeline.png"), full_page=True)

    # Scrub: press on the first segment, drag to the last, release: plays the last one.
    page.evaluate("window.sightline.lastSeek = null")
    end_box = page.locator(f'.segment[data-segment-id="{last.pk}"]').bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(end_box["x"] + end_box["width"] / 2, end_box["y"] + end_box["height"] / 2, steps=8)
    page.mouse.up()
    scrubbed = wait_for_state(page, "s.lastSeek")
    assert last.start.timestamp() * 1000 - 500 <= scrubbed["landedWallMs"] <= last.end.timestamp() * 1000 + 500, scrubbed

    # Seek into the last segment: lands within 0.5 s of the target; measure seek -> playing.
    target_ms = (last.start + timedelta(seconds=last.duration / 2)).timestamp() * 1000
    back_ms = (first.start + timedelta(seconds=0.3)).timestamp() * 1000
    seek_times = []
    for _ in range(3):
        page.evaluate("window.sightline.lastSeek = null")
        page.evaluate("(ms) => window.sightline.seekTo(ms)", target_ms)
        seek = wait_for_state(page, "s.lastSeek")
        assert abs(seek["landedWallMs"] - target_ms) <= 500, seek
        seek_times.append(seek["ms"])
        page.evaluate("window.sightline.lastSeek = null")
        page.evaluate("(ms) => window.sightline.seekTo(ms)", back_ms)
        wait_for_state(page, "s.lastSeek")
    seek_median = sorted(seek_times)[1]
    print(f"\nSEEK -> PLAYING: first play from the timeline (nothing buffered) {clicked['ms']:.0f} ms; "
          f"seeks across segments {', '.join(f'{ms:.0f}' for ms in seek_times)} ms "
          f"(median {seek_median:.0f} ms; bar 300 ms)")

    if any(s.has_audio for s in segments):  # recorded with --audio: it is decoded and not muted
        decoded = wait_for_state(page, "document.getElementById('video').webkitAudioDecodedByteCount > 0 "
                                       "&& document.getElementById('video').webkitAudioDecodedByteCount")
        assert page.evaluate("document.getElementById('video').muted") is False
        print(f"audio decoded while playing: {decoded} bytes")

    # Export the recorded range; the page shows progress, then the SHA-256.
    page.fill("#export-start", first.start.astimezone().strftime("%H:%M:%S"))
    page.fill("#export-end", (last.end + timedelta(seconds=1)).astimezone().strftime("%H:%M:%S"))
    page.click("#export button[type=submit]")
    done = wait_for_state(page, "s.export && (s.export.state === 'done' || s.export.state === 'failed') && s.export",
                          timeout_ms=120_000)
    assert done["state"] == "done", done
    shown = page.locator("#export-checksum").inner_text().strip()
    assert shown == done["checksum"]
    response = page.request.get(done["download_url"])
    assert response.status == 200
    assert hashlib.sha256(response.body()).hexdigest() == shown
    wait_for_state(page, "s.export.verified === true")

    # Jump to the previous day (nothing recorded) and back.
    page.click("#day-prev")
    wait_for_state(page, f"s.day !== '{day}' && s.segments.length === 0")
    assert "No recordings" in page.inner_text("#timeline-status")
    page.click("#day-next")
    wait_for_state(page, f"s.day === '{day}' && s.segments.length >= 3 && s.playlistLoaded")
    assert seek_median <= 300, f"seek to playing took {seek_median:.0f} ms (median of {seek_times})"
    assert browser.console_errors == []
