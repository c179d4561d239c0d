"""Live audio on the device page, in Chromium against the real server, Redis and the agent:
the agent sends a 440 Hz tone; muted (the default) is silence; after unmute an AnalyserNode
on the playback path finds 440 Hz and the level meter moves; the wall stays muted."""
import pytest

from tests.browser.conftest import wait_for_state

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ANALYSIS = "window.sightline.audio.analysis()"


@pytest.mark.parametrize("codec", ["opus", "pcm_alaw", "aac"])
def test_the_device_page_plays_the_agents_tone_after_unmute(personas, acme_camera, start_agent, portal, codec):
    agent = start_agent(acme_camera, "--fps", "5", "--resolution", "320x180", "--audio-codec", codec,
                        "--audio-source", "tone:440")
    browser = portal()
    page = browser.login("carol")  # a viewer may listen
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.framesDrawn >= 1 && s.audio.available")
    assert page.evaluate("window.sightline.audio.muted") is True
    assert page.locator("#audio-mute").inner_text() == "Unmute"
    # Muted: nothing is played and nothing reaches the speakers.
    assert page.evaluate("window.sightline.audio.framesPlayed") == 0
    assert page.evaluate(ANALYSIS)["rms"] == 0

    page.click("#audio-mute")
    wait_for_state(page, "s.audio.framesPlayed >= 25", 15_000)
    wait_for_state(page, "s.audio.analysis().rms > 0.05", 10_000)
    peaks = [page.evaluate(ANALYSIS)["peakHz"] for _ in range(3)]
    assert all(abs(peak - 440) <= 10 for peak in peaks), peaks
    moves = page.evaluate("window.sightline.audio.meterMoves")
    wait_for_state(page, f"s.audio.meterMoves > {moves} && s.audio.level > 0.3", 5_000)
    latency = wait_for_state(page, "s.audio.latencyMs")
    assert 0 < latency < 1000, latency
    assert page.locator("#stat-audio-latency").inner_text().endswith("ms")
    print(f"\nLIVE AUDIO {codec}: peak {peaks} Hz, capture -> played {latency:.0f} ms")

    page.click("#audio-mute")  # muted again: silence
    wait_for_state(page, "s.audio.muted && s.audio.analysis().rms === 0", 5_000)
    assert agent.alive()
    assert browser.console_errors == []


def test_the_wall_stays_muted(personas, acme_camera, start_agent, portal):
    start_agent(acme_camera, "--fps", "5", "--resolution", "320x180", "--audio-codec", "opus")
    browser = portal()
    page = browser.login("carol")
    wait_for_state(page, f"s.tiles && s.tiles['{acme_camera.pk}'] && s.tiles['{acme_camera.pk}'].framesDrawn >= 2")
    assert page.evaluate("typeof AudioContext !== 'undefined' && !window.sightline.audio")
    assert page.locator("#audio-mute").count() == 0
