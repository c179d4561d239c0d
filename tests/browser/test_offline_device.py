"""An offline device's page: no picture labelled "live", controls disabled, last seen shown;
it goes live by itself when the device connects."""
from datetime import datetime, timedelta, timezone

import pytest

from tests.browser.conftest import wait_for_state

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_an_offline_device_shows_offline_with_disabled_controls_then_goes_live_when_it_connects(
        personas, acme_camera, start_agent, portal, artifacts):
    from streams.models import Device

    seen = datetime.now(timezone.utc) - timedelta(minutes=5)
    Device.objects.filter(pk=acme_camera.pk).update(online=False, last_seen=seen)
    browser = portal()
    page = browser.login("bob")  # an operator: the controls are rendered
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.connected && s.timings.welcome")

    conn = page.locator("#conn").inner_text()
    assert "live" not in conn and conn.startswith("offline"), conn
    assert "5 min ago" in conn
    assert page.locator("#offline-panel").is_visible()
    assert "last seen 5 min ago" in page.locator("#offline-panel").inner_text()
    assert not page.locator("#live").is_visible()  # no black picture
    assert page.locator("#presence").inner_text() == "offline"
    for control in ("#ctl-brightness", "#ctl-contrast", "#ctl-fps", "#ctl-resolution", "#controls button[type=submit]"):
        assert page.locator(control).is_disabled(), control
    assert page.locator("#snapshot").is_disabled()
    page.screenshot(path=str(artifacts / "device-offline.png"))

    # The device connects: the same page goes live without a reload.
    start_agent(acme_camera, "--fps", "10", "--resolution", "320x180")
    wait_for_state(page, "s.online && s.framesDrawn >= 2")
    wait_for_state(page, "s.liveLabel === 'live' && s.controlsEnabled")
    assert page.locator("#conn").inner_text() == "live"
    assert page.locator("#live").is_visible() and not page.locator("#offline-panel").is_visible()
    assert page.locator("#ctl-brightness").is_enabled()
    assert browser.console_errors == []
