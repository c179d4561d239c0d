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

    # Play from the start of the first segment (the same call a timeline click makes).
    first, last = segments[0], segments[-1]
    page.evaluate("(ms) => window.sightline.seekTo(ms)", (first.start + timedelta(seconds=0.5)).timestamp() * 1000)
    wait_for_state(page, "s.playing && s.lastSeek")
    start_time = page.evaluate("window.sightline.currentTime")
    wait_for_state(page, f"s.currentTime > {start_time + 1.0}")  # currentTime advances

    # Seek into the last segment: lands within 0.5 s of the target; measure seek -> playing.
    target_ms = (last.start + timedelta(seconds=last.duration / 2)).timestamp() * 1000
    seek_times = []
    for _ in range(3):
        page.evaluate("window.sightline.lastSeek = null")
        page.evaluate("(ms) => window.sightline.seekTo(ms)", target_ms)
        seek = wait_for_state(page, "s.lastSeek")
        assert abs(seek["landedWallMs"] - target_ms) <= 500, seek
        seek_times.append(seek["ms"])
        page.evaluate("(ms) => window.sightline.seekTo(ms)", (first.start + timedelta(seconds=0.3)).timestamp() * 1000)
        wait_for_state(page, "s.lastSeek && s.lastSeek.targetWallMs < %d" % target_ms)
    print(f"\nSEEK -> PLAYING: {', '.join(f'{ms:.0f}' for ms in seek_times)} ms "
          f"(worst {max(seek_times):.0f} ms; bar 300 ms)")

    if any(s.has_audio for s in segments):
        decoded = wait_for_state(page, "document.getElementById('video').webkitAudioDecodedByteCount > 0 "
                                       "&& document.getElementById('video').webkitAudioDecodedByteCount")
        print(f"audio decoded while playing: {decoded} bytes")

    # Timeline click path: zoomed in to one minute, a click on a segment plays that segment.
    page.evaluate("window.sightline.lastSeek = null")
    for _ in range(len(page.evaluate("window.sightline.zoomSpans")) - 1):
        page.click("#zoom-in")
    box = page.locator(f'.segment[data-segment-id="{last.pk}"]').bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    clicked = wait_for_state(page, "s.lastSeek")
    assert abs(clicked["landedWallMs"] - target_ms) <= last.duration * 1000, clicked
    page.screenshot(path=str(artifacts / "timeline.png"), full_page=True)

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
    assert max(seek_times) <= 300, f"seek to playing took {max(seek_times):.0f} ms"
    assert browser.console_errors == []
