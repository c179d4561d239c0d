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

    moves = page.evaluate("window.sightline.audio.meterMoves")  # muted: the meter rests at 0
    page.click("#audio-mute")
    wait_for_state(page, "s.audio.framesPlayed >= 25", 15_000)
    wait_for_state(page, "s.audio.analysis().rms > 0.05", 10_000)
    peaks = [page.evaluate(ANALYSIS)["peakHz"] for _ in range(3)]
    assert all(abs(peak - 440) <= 10 for peak in peaks), peaks
    # The meter rose from rest with the sound (a steady tone then holds it still: no further moves needed).
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


def test_a_device_with_sound_and_no_picture_shows_audio_only(personas, acme_camera, server, portal):
    """A device that sends only audio (a doorbell intercom, a microphone): the page says so."""
    import asyncio
    import json
    import threading
    import time

    import websockets

    from sightline_agent import protocol
    from sightline_agent.audio import AudioEncoder, Tone

    token, _ = acme_camera.issue_token(label="audio only")
    stop = threading.Event()
    # Over HTTPS the device trusts the test CA, like the agent's --ca-file.
    tls = {"ssl": __import__("ssl").create_default_context(cafile=str(server["ca"]))} if server.get("ca") else {}

    async def device():
        encoder = AudioEncoder("pcm_mulaw")
        tone = Tone(encoder.rate)
        async with websockets.connect(f"{server['ws']}/ws/device/", subprotocols=["sightline.v1"],
                                      additional_headers={"Authorization": f"Bearer {token}"}, **tls) as ws:
            await ws.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "audio": encoder.hello()}))
            await ws.recv()
            seq = 0
            while not stop.is_set():
                for payload, ts in encoder.encode(tone.read(encoder.chunk_samples), int(time.time() * 1e6)):
                    seq += 1
                    await ws.send(protocol.encode_frame(protocol.KIND_AUDIO, payload, seq, ts)[0])
                await asyncio.sleep(0.02)

    thread = threading.Thread(target=asyncio.run, args=(device(),), daemon=True)
    thread.start()
    try:
        page = portal().login("carol")
        page.goto(f"/devices/{acme_camera.pk}/")
        wait_for_state(page, "s.online && s.audio.available && s.audio.audioOnly", 15_000)
        assert page.locator("#audio-only").is_visible()
        page.click("#audio-mute")
        wait_for_state(page, "s.audio.framesPlayed >= 20 && s.audio.analysis().rms > 0.05", 15_000)
        assert abs(page.evaluate("window.sightline.audio.analysis().peakHz") - 440) <= 10
    finally:
        stop.set()
        thread.join(10)
