"""Live viewing in a real browser: the wall and the device page, as a viewer and an operator."""
import pytest

from tests.browser.conftest import wait_for_state

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CANVAS_HASH = """(selector) => {
    const c = document.querySelector(selector);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 37) h = (h * 31 + d[i]) >>> 0;
    return h;
}"""


def test_a_viewer_sees_live_frames_on_the_wall_and_no_controls(personas, acme_camera, start_agent, portal, artifacts):
    start_agent(acme_camera, "--fps", "10", "--resolution", "320x180")
    browser = portal()
    page = browser.login("carol")
    tile = f'.tile[data-device-id="{acme_camera.pk}"] canvas'
    wait_for_state(page, f"s.tiles['{acme_camera.pk}'] && s.tiles['{acme_camera.pk}'].framesDrawn >= 2")
    first = page.evaluate(CANVAS_HASH, tile)
    drawn = page.evaluate(f"window.sightline.tiles['{acme_camera.pk}'].framesDrawn")
    wait_for_state(page, f"s.tiles['{acme_camera.pk}'].framesDrawn >= {drawn + 3}")
    assert page.evaluate(CANVAS_HASH, tile) != first, "the tile's pixels did not change between two reads"
    wait_for_state(page, f"s.tiles['{acme_camera.pk}'].online === true")
    assert page.locator(f'.tile[data-device-id="{acme_camera.pk}"] [data-field=online]').inner_text() == "online"
    page.screenshot(path=str(artifacts / "wall.png"))

    page.click(f'.tile[data-device-id="{acme_camera.pk}"] a')
    page.wait_for_url(f"**/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.framesDrawn >= 2")
    assert page.locator("#controls, #ctl-brightness, #ctl-fps, #ctl-resolution").count() == 0
    assert page.evaluate("window.sightline.canControl") is False
    assert browser.console_errors == []


def test_time_to_first_live_frame_on_the_device_page(personas, acme_camera, start_agent, portal, artifacts):
    start_agent(acme_camera, "--fps", "10", "--resolution", "640x360")
    browser = portal()
    page = browser.login("bob")
    # Warm-up: the device is live and the server holds its latest frame before we time.
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.framesDrawn >= 1")
    samples = []
    for _ in range(3):
        page.goto(f"/devices/{acme_camera.pk}/")
        samples.append(wait_for_state(page, "s.firstFrameMs"))
        steps = page.evaluate("""() => {
            const n = performance.getEntriesByType('navigation')[0];
            const t = window.sightline.timings;
            return {html: n.responseEnd, module: t.moduleStart, socket_open: t.socketOpen,
                    welcome: t.welcome, first_frame_received: t.firstBinary, drawn: window.sightline.firstFrameMs};
        }""")
        print("  breakdown (ms since navigation start): " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()))
    median = sorted(samples)[1]
    print(f"\nTIME TO FIRST LIVE FRAME (navigation start -> first frame drawn): "
          f"{', '.join(f'{s:.0f}' for s in samples)} ms (median {median:.0f}; bar 300 ms)")
    wait_for_state(page, "s.latencyMs !== null && s.fps > 0")
    page.screenshot(path=str(artifacts / "device.png"))
    # The median of three, so one slow sample on a busy 2-core machine does not fail the run.
    assert median <= 300, f"first live frame took {median:.0f} ms (median of {samples})"
    assert browser.console_errors == []


def test_an_operator_raises_brightness_and_the_drawn_frame_gets_brighter(personas, acme_camera, start_agent, portal):
    start_agent(acme_camera, "--fps", "10", "--resolution", "320x180")
    browser = portal()
    page = browser.login("bob")
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.framesDrawn >= 3")
    before = page.evaluate("window.sightline.meanBrightness()")
    page.locator("#ctl-brightness").fill("80")  # fires input and change: the command is sent
    result = wait_for_state(page, "s.lastCommandResult")
    assert result["ok"] is True, result
    assert result["applied"]["brightness"] == 80
    assert "Applied" in page.locator("#command-result").inner_text()
    brighter = wait_for_state(page, f"s.meanBrightness() > {before + 25} && s.meanBrightness()")
    print(f"\nmean brightness of the drawn frame: {before:.1f} -> {brighter:.1f}")
    assert browser.console_errors == []


def test_the_device_page_works_at_phone_width_and_by_keyboard(personas, acme_camera, start_agent, portal):
    start_agent(acme_camera, "--fps", "10", "--resolution", "320x180")
    browser = portal(viewport={"width": 375, "height": 740})
    page = browser.login("bob")
    for url in ("/", f"/devices/{acme_camera.pk}/", f"/devices/{acme_camera.pk}/recordings/", "/publish/"):
        page.goto(url)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{url} scrolls sideways by {overflow}px at 375px"
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.framesDrawn >= 1")
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert {"snapshot", "ctl-brightness", "ctl-contrast", "ctl-fps", "ctl-resolution"} <= reached, reached
    page.focus("#ctl-brightness")
    page.keyboard.press("ArrowRight")  # a keyboard change is a command like a drag
    result = wait_for_state(page, "s.lastCommandResult")
    assert result["ok"] is True and result["applied"]["brightness"] == 5
    assert browser.console_errors == []


def test_the_player_reconnects_after_a_dropped_connection_and_saves_snapshots(
        personas, acme_camera, start_agent, portal, tmp_path):
    start_agent(acme_camera, "--fps", "10", "--resolution", "320x180")
    browser = portal()
    page = browser.login("carol")
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.framesDrawn >= 2")
    page.evaluate("window.sightline.dropConnection()")
    wait_for_state(page, "s.connection === 'waiting' || s.connection === 'reconnecting' || s.reconnects > 0")
    drawn = page.evaluate("window.sightline.framesDrawn")
    wait_for_state(page, f"s.connected && s.reconnects >= 1 && s.framesDrawn > {drawn + 3}")
    assert page.locator("#conn").inner_text() == "live"

    with page.expect_download() as download:
        page.click("#snapshot")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.suffix == ".jpg" and saved.read_bytes()[:2] == b"\xff\xd8"
    assert browser.console_errors == []


def test_live_h264_is_decoded_with_webcodecs(personas, acme_camera, start_agent, portal):
    acme_camera.expected_media = "h264"
    acme_camera.save(update_fields=["expected_media"])
    start_agent(acme_camera, "--codec", "h264", "--fps", "10", "--resolution", "320x180")
    browser = portal()
    page = browser.login("carol")
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.framesDrawn >= 5")
    assert page.evaluate("window.sightline.decoder") == "webcodecs"
    first = page.evaluate(CANVAS_HASH, "#live")
    drawn = page.evaluate("window.sightline.framesDrawn")
    wait_for_state(page, f"s.framesDrawn >= {drawn + 5}")
    assert page.evaluate(CANVAS_HASH, "#live") != first
    assert browser.console_errors == []


def test_wall_tiles_follow_devices_coming_and_going(personas, acme, acme_camera, start_agent, portal):
    from streams.models import Device

    browser = portal()
    page = browser.login("carol")
    wait_for_state(page, f"s.wallConnected && s.tiles['{acme_camera.pk}'] && s.tiles['{acme_camera.pk}'].online === false")
    agent = start_agent(acme_camera, "--fps", "5", "--resolution", "320x180")
    wait_for_state(page, f"s.tiles['{acme_camera.pk}'].online === true && s.tiles['{acme_camera.pk}'].framesDrawn > 0")

    # A device added after the page loaded appears when it first connects.
    newcomer = Device.objects.create(organisation=acme, name="Side gate")
    start_agent(newcomer, "--fps", "5", "--resolution", "320x180")
    wait_for_state(page, f"s.tiles['{newcomer.pk}'] && s.tiles['{newcomer.pk}'].framesDrawn > 0")
    assert page.locator(f'.tile[data-device-id="{newcomer.pk}"] .tile-name').inner_text() == "Side gate"

    agent.stop()
    wait_for_state(page, f"s.tiles['{acme_camera.pk}'].online === false")
    assert page.locator(f'.tile[data-device-id="{acme_camera.pk}"]').get_attribute("data-online") == "false"
    assert browser.console_errors == []
