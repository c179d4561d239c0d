"""A clip exported across a change of resolution plays in Chromium from its first frame to its
last: the re-encoded part's SPS/PPS (other ids, added into the MP4's one avcC) decode in the
browser as they do in FFmpeg, at the clip's picture size, letterboxed. The export's panel says
what the clip covers: picture size, segments joined, which were re-encoded and why, and whose
audio was left out."""
import math
from datetime import datetime

import pytest

from tests.browser.conftest import wait_for_state
from tests.test_recording_export_reencode import jpeg_segment

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Plays the clip in a <video> of its own (muted: autoplay), and records for every frame Chromium
# presents its media time and the colour of the pixel at (2, 2), drawn through a canvas: black there
# is the letterbox of the re-encoded part. Everything the test waits on is in window.clipCheck.
PLAY_CLIP = """
(url) => {
  const check = window.clipCheck = { frames: [], readyStates: [], errors: [], ended: false, size: null,
                                     duration: null, currentTime: 0, rvfc: 'requestVideoFrameCallback' in HTMLVideoElement.prototype };
  const video = document.createElement('video');
  video.id = 'clip-check';
  video.muted = true;
  video.preload = 'auto';
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const note = () => { check.readyStates.push(video.readyState); check.currentTime = video.currentTime; };
  for (const name of ['loadedmetadata', 'loadeddata', 'canplay', 'canplaythrough', 'timeupdate', 'playing']) {
    video.addEventListener(name, note);
  }
  video.addEventListener('loadedmetadata', () => {
    check.size = [video.videoWidth, video.videoHeight];
    check.duration = video.duration;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
  });
  video.addEventListener('error', () => check.errors.push(video.error && `${video.error.code} ${video.error.message}`));
  video.addEventListener('ended', () => { note(); check.ended = true; check.errorAtEnd = video.error; });
  const onFrame = (now, meta) => {
    ctx.drawImage(video, 0, 0);
    const [r, g, b] = ctx.getImageData(2, 2, 1, 1).data;
    check.frames.push([meta.mediaTime, r, g, b, meta.width, meta.height]);
    video.requestVideoFrameCallback(onFrame);
  };
  if (check.rvfc) video.requestVideoFrameCallback(onFrame);
  video.src = url;
  document.body.append(video);
  video.play().catch((error) => check.errors.push(`play(): ${error.message}`));
}
"""


def test_a_clip_with_a_reencoded_part_plays_to_its_end_in_chromium_and_the_panel_says_what_it_covers(
        personas, acme_camera, celery_worker, portal, artifacts):
    # 4:3 for 2 s, 16:9 (smaller) for 2 s, 4:3 again with other audio: a 320x240 clip whose middle is
    # re-encoded and letterboxed, and whose last 2 s have no sound (the clip's audio is the first's).
    first = jpeg_segment(acme_camera, 0, 320, 240)
    middle = jpeg_segment(acme_camera, 1, 256, 144, seq=20)
    last = jpeg_segment(acme_camera, 2, 320, 240, seq=40, rate=8000)
    start, end = first.start.astimezone(), last.end.astimezone()  # 04:40:00-06 UTC: one day in any zone

    browser = portal()
    page = browser.login("bob")
    page.goto(f"/devices/{acme_camera.pk}/recordings/?date={start.date().isoformat()}")
    wait_for_state(page, "s.segments.length === 3")
    page.fill("#export-start", start.strftime("%H:%M:%S"))
    page.fill("#export-end", datetime.fromtimestamp(math.ceil(end.timestamp())).astimezone().strftime("%H:%M:%S"))
    page.click("#export button[type=submit]")
    done = wait_for_state(page, "s.export && (s.export.state === 'done' || s.export.state === 'failed') && s.export",
                          timeout_ms=90_000)
    assert done["state"] == "done", done
    report = done["coverage"]
    assert report["picture"] == [320, 240]
    assert report["segments"] == [str(first.id), str(middle.id), str(last.id)]
    assert report["reencoded"] == [{"id": str(middle.id), "reason": "256x144, the clip is 320x240"}]
    assert report["audio_left_out"] == [str(last.id)]

    # -- the clip, through the portal's own download URL, in a <video> ---------------------------
    href = page.get_attribute("#export-download", "href")
    assert href == done["download_url"]
    page.evaluate(PLAY_CLIP, href)
    page.wait_for_function("() => window.clipCheck.ended || window.clipCheck.errors.length > 0", timeout=30_000)
    check = page.evaluate("window.clipCheck")
    assert check["errors"] == [] and check["errorAtEnd"] is None, check["errors"]
    assert max(check["readyStates"]) == 4  # HAVE_ENOUGH_DATA
    assert check["size"] == report["picture"]
    assert check["duration"] == pytest.approx(6.0, abs=0.15)
    assert check["currentTime"] == pytest.approx(check["duration"], abs=0.05)  # played to its end
    frames = check["frames"]
    print(f"\nRE-ENCODED CLIP IN CHROMIUM: {len(frames)} of 60 frames presented, duration "
          f"{check['duration']:.3f} s, ended at {check['currentTime']:.3f} s")
    assert check["rvfc"], "this Chromium has no requestVideoFrameCallback"
    assert len(frames) >= 30  # headless Chromium may drop some at 10 fps, never most
    assert {(w, h) for *_, w, h in frames} == {(320, 240)}
    # Black at (2, 2) exactly in the re-encoded part (2..4 s): bars above and below its 16:9 picture.
    barred = {round(t, 1): max(r, g, b) < 40 for t, r, g, b, _w, _h in frames}
    assert barred == {t: 2.0 <= t < 4.0 for t in barred}, barred
    assert any(barred.values()) and not all(barred.values())
    assert any(t >= 4.0 for t in barred)  # frames of the part after the re-encoded one, too
    page.screenshot(path=str(artifacts / "export-reencoded.png"), full_page=True)

    # -- what the panel says, under the download link ------------------------------------------
    details = page.locator("#export-details")
    assert details.is_visible()
    text = details.inner_text()
    clock = lambda segment: segment.start.astimezone().strftime("%H:%M:%S")  # noqa: E731
    assert "320×240" in text and "3 segments joined" in text, text
    assert f"Re-encoded to fit: {clock(middle)} (256x144, the clip is 320x240)" in text, text
    assert f"Audio left out: {clock(last)}" in text, text
    # Below the download link, in the page's order.
    assert page.evaluate("""() => Boolean(document.getElementById('export-download').compareDocumentPosition(
        document.getElementById('export-details')) & Node.DOCUMENT_POSITION_FOLLOWING)""")
    # Another day: nothing of this export is left on screen.
    page.click("#day-next")
    wait_for_state(page, "s.export === null")
    assert not details.is_visible() and details.inner_text() == ""
    assert browser.console_errors == []
