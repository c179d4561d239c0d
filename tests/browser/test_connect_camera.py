"""Connecting a camera: the token page's snippets copy as shown, and a relayed RTSP camera shows
on its device page as "RTSP bridge", with an fps command answered "unsupported" in words."""
import asyncio
import re
import threading

import pytest

from sightline_agent.onvif_camera import OnvifCamera
from sightline_agent.passthrough import PassthroughAgent
from sightline_agent.session import AgentConfig
from sightline_agent.status import Counters, StatusLine
from tests.browser.conftest import wait_for_state
from tests.onvif_camera import FakeOnvifCamera, StillRtspCamera

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_token_page_copies_the_command_bridge_entry_unit_and_container_snippets(personas, acme, portal, server):
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="alice").update(is_staff=True)
    owner = portal()
    owner.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server["url"])
    page = owner.login("alice")
    page.goto("/admin/streams/device/add/")
    page.select_option("#id_organisation", str(acme.pk))
    page.fill("#id_name", "Loading bay")
    with page.expect_navigation():
        page.click("input[name=_save]")
    token = page.inner_text("#token-1").strip()
    device_url = f"{server['ws']}/ws/device/"  # the page's own scheme: ws:// or wss://
    for snippet in ("command-1", "bridge-config", "systemd-unit", "container-command"):
        page.click(f"button[data-copy={snippet}]")
        page.wait_for_function(f"() => window.sightline && window.sightline.copied === '{snippet}'")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.inner_text(f"#{snippet}").strip() and token not in copied, snippet
    assert re.fullmatch(rf"sightline-agent --url {re.escape(device_url)} --token-file loading-bay-\w+\.token",
                        page.inner_text("#command-1").strip())
    assert f'sightline_url = "{device_url}"' in page.inner_text("#bridge-config")
    assert [e for e in owner.console_errors if "Failed to load resource" not in e] == []


@pytest.fixture
def relayed_camera(server):
    """A relayed RTSP camera (the bridge's PassthroughAgent, with ONVIF) on its own loop and thread."""
    started = []

    def start(device):
        clear, _ = device.issue_token(label="browser test")
        onvif_camera = FakeOnvifCamera().start()
        agent = PassthroughAgent(AgentConfig(url=f"{server['ws']}/ws/device/", token=clear, name="bay",
                                             ca_file=str(server["ca"]) if server["ca"] else None),
                                 StillRtspCamera("rtsp://127.0.0.1/still"), StatusLine(Counters(), quiet=True),
                                 onvif=OnvifCamera("127.0.0.1", onvif_camera.port, "admin", "s3cret"))
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=lambda: loop.run_until_complete(agent.run()), daemon=True)
        thread.start()
        started.append((agent, loop, thread, onvif_camera))
        return onvif_camera

    yield start
    for agent, loop, thread, onvif_camera in started:
        loop.call_soon_threadsafe(agent.stop)
        thread.join(10)
        onvif_camera.stop()


def test_a_relayed_camera_shows_as_rtsp_bridge_and_an_fps_command_shows_unsupported(
        personas, acme_camera, relayed_camera, portal):
    browser = portal()
    page = browser.login("bob")  # an operator: the controls are rendered
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.connected && s.timings.welcome")
    onvif_camera = relayed_camera(acme_camera)
    wait_for_state(page, "s.online && s.source === 'RTSP bridge'")
    assert page.locator("#source").inner_text() == "via RTSP bridge"

    page.locator("#ctl-fps").fill("5")
    page.click("#controls button[type=submit]")  # the form sends all four settings
    result = wait_for_state(page, "s.lastCommandResult")
    assert result["ok"] is False and result["error"].startswith("device: unsupported:"), result
    shown = page.locator("#command-result").inner_text()
    assert "Not applied" in shown and "the device refused: unsupported:" in shown, shown
    assert "camera's fps, resolution cannot" in shown and "only brightness, contrast, through ONVIF" in shown, shown
    assert onvif_camera.set_requests == []  # all or nothing: brightness was not sent either

    page.locator("#ctl-brightness").fill("50")
    result = wait_for_state(page, "s.lastCommandResult && s.lastCommandResult.ok && s.lastCommandResult")
    assert result["applied"] == {"brightness": 50}
    assert onvif_camera.set_requests[-1] == {"token": "vs0", "Brightness": 191.0}

    wall = browser.new_page()
    wall.goto("/")
    wall.wait_for_function(f"""() => {{ const t = window.sightline && window.sightline.tiles
        && window.sightline.tiles['{acme_camera.pk}']; return t && t.source === 'RTSP bridge'; }}""")
    assert browser.console_errors == []
