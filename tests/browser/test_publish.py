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


def test_the_publish_page_never_preselects_a_camera_that_is_streaming_and_asks_before_a_takeover(
        personas, acme_camera, start_agent, portal):
    agent = start_agent(acme_camera, "--fps", "5", "--resolution", "320x180")
    from tests.support import wait_until

    wait_until(lambda: (agent.alive() or pytest.fail(agent.output())) and "connected: device" in agent.output(),
               30, "the agent to connect")
    browser = portal()
    page = browser.login("bob")
    page.goto(f"/publish/?device={acme_camera.pk}")  # asked for by URL, yet online: not preselected
    assert page.locator("#pub-device").input_value() == ""
    option = page.locator(f'#pub-device option[value="{acme_camera.pk}"]')
    assert "online now" in option.inner_text() and option.get_attribute("data-online") == "true"

    # Choosing it and declining the confirmation publishes nothing: the camera keeps the device.
    page.select_option("#pub-device", str(acme_camera.pk))
    assert "online now" in page.locator("#pub-device-note").inner_text()
    dialogs = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.click("#pub-start")
    assert dialogs and "connected and streaming now" in dialogs[0]
    assert page.evaluate("window.sightline.framesSent") == 0 and page.locator("#pub-start").is_enabled()

    # Confirming takes it over: the camera is told 4012 and says it backs off.
    page.once("dialog", lambda d: d.accept())
    page.click("#pub-start")
    wait_for_state(page, "s.connected && s.welcome && s.takeover && s.framesSent >= 3")
    wait_until(lambda: "another connection of this device took over" in agent.output(), 20,
               "the agent to report the takeover")
    assert "reconnecting in 6" in agent.output()  # 60-66 s, not a quick retry
    assert browser.console_errors == []
