"""Talk-back in Chromium against the real server, Redis and the agent: the fake microphone
plays a 440 Hz WAV this module writes; an operator holds Talk; the agent decodes what
reaches it and reports the tone's frequency. A second operator sees "talking: bob" and
cannot talk over; a viewer has no Talk control and a forged talk from its socket is refused."""
import math
import re
import struct
import wave

import pytest

from tests.browser.conftest import wait_for_state
from tests.support import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TONE_HZ = 440


def write_tone_wav(path, seconds=4, rate=48000, hz=TONE_HZ):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate)))
                                 for i in range(seconds * rate)))


@pytest.fixture(scope="module")
def chromium_extra_args(tmp_path_factory):
    """This module's Chromium (the shared playwright_browser, over HTTP and HTTPS): its fake
    microphone plays a known tone."""
    wav = tmp_path_factory.mktemp("mic") / "tone.wav"
    write_tone_wav(wav)
    return [f"--use-file-for-fake-audio-capture={wav}"]


def hold(page, selector):
    box = page.locator(selector).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()


def test_an_operator_talks_and_the_agent_hears_the_tone_while_a_second_operator_waits(
        personas, acme_camera, start_agent, portal, tmp_path):
    out = tmp_path / "talkback.wav"
    agent = start_agent(acme_camera, "--fps", "5", "--resolution", "320x180", "--talkback-wav", str(out))
    bob_browser, alice_browser = portal(), portal()
    bob = bob_browser.login("bob")
    alice = alice_browser.login("alice")
    for page in (bob, alice):
        page.goto(f"/devices/{acme_camera.pk}/")
        wait_for_state(page, "s.talk.offered && s.connected")

    hold(bob, "#talk")
    wait_for_state(bob, "s.talk.me && s.talk.framesSent >= 100", 20_000)  # about 2 s of microphone
    wait_for_state(alice, "s.talk.talking === 'bob'")
    assert alice.locator("#talk-state").inner_text() == "talking: bob"
    assert alice.locator("#talk").is_disabled()
    # Even forcing a start past the disabled button, the server keeps the floor for bob.
    alice.evaluate("window.sightline.talk.talking = null")
    result = alice.evaluate("""() => new Promise((resolve) => {
        const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/view/${window.sightline.deviceId}/`);
        ws.onmessage = (e) => { if (typeof e.data !== 'string') return; const m = JSON.parse(e.data);
            if (m.type === 'welcome') ws.send(JSON.stringify({type: 'talk', action: 'start', codec: 'opus', rate: 48000}));
            if (m.type === 'talk_result') { ws.close(); resolve(m); } };
    })""")
    assert result == {"type": "talk_result", "ok": False, "error": "busy", "talking": "bob"}
    bob.mouse.up()
    wait_for_state(alice, "s.talk.talking === null")

    wait_until(lambda: "talk-back from bob ended" in agent.output(), 15, "the agent to report the talk")
    report = re.search(r"talk-back from bob ended: ([\d.]+) s, peak level ([\d.]+), tone (\d+) Hz(.*)", agent.output())
    seconds, peak, hz = float(report[1]), float(report[2]), int(report[3])
    print(f"\nTALK-BACK: {seconds} s, peak {peak}, tone {hz} Hz{report[4]}")
    assert abs(hz - TONE_HZ) <= 10 and seconds > 1 and peak > 0.05
    assert out.stat().st_size > 48000 * 2  # the agent wrote what it heard to its WAV
    assert bob_browser.console_errors == [] and alice_browser.console_errors == []


def test_a_viewer_has_no_talk_control_and_a_forged_talk_is_refused(personas, acme_camera, start_agent, portal, tmp_path):
    start_agent(acme_camera, "--fps", "5", "--resolution", "320x180", "--talkback-wav", str(tmp_path / "t.wav"))
    page = portal().login("carol")
    page.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(page, "s.connected && s.online")
    assert page.locator("#talk").count() == 0
    result = page.evaluate("""() => new Promise((resolve) => {
        const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/view/${window.sightline.deviceId}/`);
        ws.binaryType = 'arraybuffer';
        const seen = [];
        ws.onmessage = (e) => { if (typeof e.data !== 'string') return; const m = JSON.parse(e.data); seen.push(m.type);
            if (m.type === 'welcome') ws.send(JSON.stringify({type: 'talk', action: 'start', codec: 'pcm_s16le', rate: 48000}));
            if (m.type === 'talk_result') {
                const frame = new Uint8Array(24 + 4); frame.set([0x53, 1, 3, 6]); frame[23] = 4;
                ws.send(frame.buffer);
                seen.push(m.error);
            } };
        ws.onclose = (e) => resolve({seen, code: e.code});
    })""")
    assert "forbidden" in result["seen"]  # the talk start was refused, the socket stayed open
    assert result["code"] == 4007


def test_browser_publishing_sends_the_microphone_and_a_second_page_hears_it(personas, acme_camera, portal):
    operator = portal()
    publisher = operator.login("bob")
    publisher.goto(f"/publish/?device={acme_camera.pk}")
    assert publisher.locator("#pub-audio").is_checked()
    publisher.click("#pub-start")
    wait_for_state(publisher, "s.connected && s.welcome && s.framesSent >= 3 && s.audioFramesSent >= 20")
    codec = publisher.evaluate("window.sightline.audio.codec")

    listener = portal().login("carol")
    listener.goto(f"/devices/{acme_camera.pk}/")
    wait_for_state(listener, "s.framesDrawn >= 1 && s.audio.available")
    listener.click("#audio-mute")
    wait_for_state(listener, "s.audio.framesPlayed >= 25 && s.audio.analysis().rms > 0.02", 15_000)
    peak = listener.evaluate("window.sightline.audio.analysis().peakHz")
    latency = wait_for_state(listener, "s.audio.latencyMs")
    print(f"\nPUBLISHED MICROPHONE ({codec}): heard peak {peak:.0f} Hz, capture -> played {latency:.0f} ms")
    assert abs(peak - TONE_HZ) <= 10
    publisher.click("#pub-stop")
    assert operator.console_errors == []
