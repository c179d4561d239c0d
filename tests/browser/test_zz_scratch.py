import pytest, time, hashlib
from datetime import timedelta
from tests.browser.conftest import wait_for_state, wait_until
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def test_scratch(personas, acme_camera, portal, artifacts, celery_worker):
    from recordings.models import Segment
    operator = portal()
    publisher = operator.login("bob")
    publisher.goto(f"/publish/?device={acme_camera.pk}")
    publisher.click("#pub-start")
    wait_for_state(publisher, "s.connected && s.welcome && s.framesSent >= 5")
    segs = wait_until(lambda: len(s := list(Segment.objects.filter(device=acme_camera, state__in=("ready","archived")).order_by("start"))) >= 3 and s, 90, "segs")
    publisher.click("#pub-stop")
    v = portal().login("bob")
    v.goto(f"/devices/{acme_camera.pk}/recordings/?date={segs[0].start.date().isoformat()}")
    wait_for_state(v, "s.playlistLoaded && s.fragments")
    first, last = segs[0], segs[-1]
    box = v.locator(f'.segment[data-segment-id="{first.pk}"]').bounding_box()
    print(box)
    v.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    print(wait_for_state(v, "s.playing && s.lastSeek"))
    print(v.evaluate("document.getElementById('video').muted"))
    v.fill("#export-start", first.start.astimezone().strftime("%H:%M:%S"))
    v.fill("#export-end", (last.end + timedelta(seconds=1)).astimezone().strftime("%H:%M:%S"))
    v.click("#export button[type=submit]")
    try:
        done = wait_for_state(v, "s.export && (s.export.state === 'done' || s.export.state === 'failed') && s.export", timeout_ms=120_000)
        print(done)
        wait_for_state(v, "s.export.verified !== undefined")
    finally:
        print(v.evaluate("JSON.stringify(window.sightline.export)"), v.inner_text("#export"))
        v.screenshot(path=str(artifacts / f"scratch-rec3.png"), full_page=True)
    print(operator.console_errors)
