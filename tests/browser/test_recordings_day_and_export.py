"""Replay while the device is still recording: an export across the segment being recorded
waits for it (with visible progress) and delivers the whole range; the next day's timeline
does not show today's segment in progress, and changing day clears the export result."""
import io
import os
import signal
from datetime import datetime, timedelta, timezone

import pytest

from tests.browser.conftest import wait_for_state, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_an_export_across_the_segment_being_recorded_waits_for_it_and_the_next_day_is_clean(
        personas, acme_camera, start_agent, celery_worker, portal, server, artifacts):
    import av

    from recordings.models import Segment

    agent = start_agent(acme_camera, "--fps", "10", "--resolution", "320x180")
    # SEGMENT_SECONDS=2 for the server under test.
    first = wait_until(lambda: (agent.alive() or pytest.fail(agent.output()))
                       and Segment.objects.filter(device=acme_camera, state__in=("ready", "archived"))
                       .order_by("start").first(), 90, "a playable segment")
    browser = portal()
    page = browser.login("bob")
    today = datetime.now().astimezone().date()
    if first.start.astimezone().date() != today or (datetime.now().astimezone() + timedelta(seconds=30)).date() != today:
        pytest.skip("too close to midnight for a today/tomorrow test")
    page.goto(f"/devices/{acme_camera.pk}/recordings/?date={today.isoformat()}")
    wait_for_state(page, "s.segments.length >= 1")

    # From the first playable segment to a second from now: the last part is still being recorded.
    # The recorder is held (SIGSTOP) until the export is seen waiting: otherwise, on a busy machine,
    # that segment could be closed and transcoded before the export task first looks (one solo
    # worker, first in first out), and the export would rightly not wait. Its frames wait in the
    # hand-off stream meanwhile and are recorded when it goes on.
    recorder = server["recorder"]
    os.kill(recorder.pid, signal.SIGSTOP)
    try:
        start = first.start.astimezone().replace(microsecond=0) + timedelta(seconds=1)
        end = datetime.now().astimezone().replace(microsecond=0) + timedelta(seconds=1)
        assert Segment.objects.filter(device=acme_camera, state="recording", start__lt=end).exists()
        page.fill("#export-start", start.strftime("%H:%M:%S"))
        page.fill("#export-end", end.strftime("%H:%M:%S"))
        page.click("#export button[type=submit]")
        wait_for_state(page, "s.exportWaitedFor > 0", timeout_ms=30_000)
        assert page.locator("#export-status").inner_text().startswith("Waiting for")
    finally:
        os.kill(recorder.pid, signal.SIGCONT)
    done = wait_for_state(page, "s.export && (s.export.state === 'done' || s.export.state === 'failed') && s.export",
                          timeout_ms=90_000)
    assert done["state"] == "done" and done["complete"] is True, done
    status = page.locator("#export-status").inner_text()
    assert status.startswith("Export ready") and "the whole range asked" in status, status
    clip = page.request.get(done["download_url"]).body()
    with av.open(io.BytesIO(clip)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    length = float(frames[-1].time - frames[0].time)
    asked = (end - start).total_seconds()
    print(f"\nEXPORT ACROSS A SEGMENT BEING RECORDED: asked {asked:.0f} s, clip {length:.1f} s, "
          f"waited for up to {page.evaluate('window.sightline.exportWaitedFor')} segment(s)")
    assert length >= asked - 1.0, f"the clip holds {length:.1f} s of the {asked:.0f} s asked"
    page.screenshot(path=str(artifacts / "export-waited.png"), full_page=True)

    # The next day: nothing recorded there, not even the segment in progress now.
    assert agent.alive()
    page.click("#day-next")
    tomorrow = (today + timedelta(days=1)).isoformat()
    wait_for_state(page, f"s.day === '{tomorrow}' && document.getElementById('timeline-status').textContent !== 'loading…'")
    assert page.evaluate("window.sightline.segments") == []
    assert page.locator(".segment").count() == 0
    assert "No recordings on this day." in page.inner_text("#timeline-status")
    # ...and nothing of today's export or clock is left on screen.
    assert page.locator("#export-status").inner_text() == ""
    assert not page.locator("#export-download").is_visible() and not page.locator("#export-checksum-row").is_visible()
    assert page.locator("#video-clock").inner_text() == ""
    assert page.evaluate("window.sightline.export") is None
    assert browser.console_errors == []
