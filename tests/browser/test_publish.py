"""A browser is a device: the publish page streams Chromium's fake camera; another page views it."""
import pytest

from tests.browser.conftest import wait_for_state

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CANVAS_HASH = """() => {
    const c = document.getElementById('live');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 37) h = (h * 31 + d[i]) >>> 0;
    return h;
}"""


def test_the_webcam_page_publishes_and_a_second_page_views_it(personas, acme_camera, portal):
    operator = portal()
    publisher = operator.login("bob")
    publisher.goto(f"/publish/?device={acme_camera.pk}")
    publisher.click("#pub-start")
    wait_for_state(publisher, "s.connected && s.welcome && s.framesSent >= 5")

    viewer = portal().login("carol")
    viewer.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(viewer, "s.framesDrawn >= 3 && s.online")
    first = viewer.evaluate(CANVAS_HASH)
    drawn = viewer.evaluate("window.sightline.framesDrawn")
    wait_for_state(viewer, f"s.framesDrawn >= {drawn + 5}")
    assert viewer.evaluate(CANVAS_HASH) != first, "the viewed frames did not change"
    # Drawn at the device's configured resolution, which the welcome gave the browser-device.
    width, height = map(int, acme_camera.stream_settings["resolution"].split("x"))
    assert viewer.evaluate("[document.getElementById('live').width, document.getElementById('live').height]") == [width, height]

    # The operator's brightness command reaches the browser-device, which acks it.
    control = operator.new_page()
    control.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(control, "s.framesDrawn >= 1")
    control.locator("#ctl-brightness").fill("40")
    result = wait_for_state(control, "s.lastCommandResult")
    assert result["ok"] is True and result["applied"]["brightness"] == 40
    assert wait_for_state(publisher, "s.lastAck")["ok"] is True

    publisher.click("#pub-stop")
    wait_for_state(viewer, "s.online === false")
    assert operator.console_errors == []
