"""WebRTC end to end: a real uvicorn server, Redis, the WebRTC process (manage.py webrtc) and the
reference agent streaming H.264; the aiortc example (examples/webrtc_viewer.py) logs in, negotiates
over the viewer socket and decodes frames. The server's encoder counter stays 0 (no re-encode)."""
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.browser.conftest import use_server_password_hasher
from tests.support import child_redis_names, free_port, subprocess_database_url, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def start(args, env, log_path):
    log = open(log_path, "ab")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    return process


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def webrtc_stats(env) -> dict:
    """Counters of every WebRTC process of this run, summed (from their Redis heartbeats)."""
    prefix = child_redis_names(env).channel_prefix
    client = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    try:
        totals = {}
        for key in client.scan_iter(f"{prefix}:webrtc:stats:*"):
            for name, value in client.hgetall(key).items():
                totals[name] = totals.get(name, 0) + float(value)
        return totals
    finally:
        client.close()


@pytest.fixture
def stack(django_db_setup, tmp_path, request):
    """The processes; parametrize indirectly with a dict to add environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    run = uuid.uuid4().hex[:10]
    env.update({
        "REDIS_URL": settings.REDIS_URL, "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": settings.SECRET_KEY, "SIGHTLINE_VAR_DIR": str(settings.VAR_DIR),
        "CHANNEL_PREFIX": f"it-{run}", "CACHE_PREFIX": f"it-{run}", "CELERY_QUEUE": f"it-{run}",
        "ALLOWED_HOSTS": "localhost,127.0.0.1", "LOG_FORMAT": "console", "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": subprocess_database_url(), "WEBRTC_MAX_PEERS": "4",
        **getattr(request, "param", {}),
    })
    port = free_port()
    processes = {"web": start([str(Path(PY).parent / "uvicorn"), "project.asgi:application", "--host", "127.0.0.1",
                               "--port", str(port), "--lifespan", "off", "--no-access-log"], env,
                              tmp_path / "web.log"),
                 "webrtc": start([PY, "manage.py", "webrtc"], env, tmp_path / "webrtc.log")}
    try:
        wait_until(lambda: "serving up to" in (tmp_path / "webrtc.log").read_text(), 60, "the WebRTC process")
        yield {"env": env, "url": f"http://127.0.0.1:{port}", "port": port, "processes": processes,
               "tmp": tmp_path}
    finally:
        for process in processes.values():
            stop(process)
        for log in sorted(tmp_path.glob("*.log")):
            sys.stderr.write(f"--- {log.name} ---\n{log.read_text(errors='replace')[-2500:]}\n")


def start_agent(stack, device, codec="h264", audio=()):
    clear, _ = device.issue_token(label="webrtc test")
    token_file = stack["tmp"] / f"token-{device.pk}"
    token_file.write_text(clear)
    token_file.chmod(0o600)
    process = start([PY, "-m", "sightline_agent", "--url", f"ws://127.0.0.1:{stack['port']}/ws/device/",
                     "--token-file", str(token_file), "--codec", codec, "--fps", "15", "--resolution", "320x180", "--local-settings", *audio],
                    stack["env"], stack["tmp"] / f"agent-{device.pk}.log")
    stack["processes"][f"agent-{device.pk}"] = process
    return process


def run_example(stack, username, device, frames=100, timeout=40, extra=()):
    use_server_password_hasher(username, "password")
    password_file = stack["tmp"] / "password"
    password_file.write_text("password")
    return subprocess.run([PY, "examples/webrtc_viewer.py", "--url", stack["url"], "--user", username,
                           "--password-file", str(password_file), "--device", str(device.pk),
                           "--frames", str(frames), "--timeout", str(timeout), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout + 30)


def test_the_aiortc_example_decodes_a_hundred_frames_and_the_server_never_encodes(stack, personas, acme_camera):
    import json

    start_agent(stack, acme_camera)
    wait_until(lambda: "connected: device" in (stack["tmp"] / f"agent-{acme_camera.pk}.log").read_text(), 30,
               "the agent to connect")
    began = time.monotonic()
    result = run_example(stack, personas["viewer"].username, acme_camera)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\naiortc example: {summary['frames']} frames decoded, first after {summary['first_frame_ms']} ms, "
          f"{time.monotonic() - began:.1f} s in all")
    assert summary["frames"] >= 100 and (summary["width"], summary["height"]) == (320, 180)
    # Heartbeats carry the counters every 2 s.
    stats = wait_until(lambda: (s := webrtc_stats(stack["env"])).get("packets_sent", 0) >= 100 and s, 10, "WebRTC stats")
    assert stats["encoder_frames"] == 0 and stats["answers"] == 1
    # The example said bye and closed its socket: the process closed the peer.
    wait_until(lambda: webrtc_stats(stack["env"]).get("peers", 1) == 0, 10, "the peer to be closed")


def test_a_jpeg_device_is_refused_with_not_h264_and_the_process_keeps_serving(stack, personas, acme_camera):
    start_agent(stack, acme_camera, codec="jpeg")
    wait_until(lambda: "connected: device" in (stack["tmp"] / f"agent-{acme_camera.pk}.log").read_text(), 30,
               "the agent to connect")
    result = run_example(stack, personas["viewer"].username, acme_camera, frames=5, timeout=20)
    assert result.returncode == 1
    assert '"not_h264"' in result.stdout
    assert stack["processes"]["webrtc"].poll() is None


def wav_samples(path):
    """(rate, the first channel's samples) of a 16-bit WAV file."""
    import wave
    from array import array

    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        samples = array("h", wav.readframes(wav.getnframes()))
    return rate, samples[::channels]


@pytest.mark.parametrize("audio_codec, rtp_codec, rate, route", [
    ("opus", "audio/opus", 48000, "passthrough"),
    ("pcm_alaw", "audio/PCMA", 8000, "passthrough"),
    ("pcm_s16le", "audio/opus", 48000, "transcode"),
])
def test_the_device_tone_reaches_an_aiortc_viewer_over_webrtc_audio(stack, personas, acme_camera, audio_codec,
                                                                   rtp_codec, rate, route):
    import json

    from tests.test_webrtc_audio import strongest_frequency

    start_agent(stack, acme_camera, audio=("--audio-codec", audio_codec, "--audio-source", "tone:440"))
    wait_until(lambda: "connected: device" in (stack["tmp"] / f"agent-{acme_camera.pk}.log").read_text(), 30,
               "the agent to connect")
    wav = stack["tmp"] / "received.wav"
    result = run_example(stack, personas["viewer"].username, acme_camera, frames=30,
                         extra=("--audio-frames", "100", "--audio-wav", str(wav)))  # 2 s of 20 ms frames
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["audio_codec"], summary["audio_rate"]) == (rtp_codec, rate)
    wav_rate, samples = wav_samples(wav)
    assert wav_rate == rate and len(samples) >= rate * 1.5
    step = rate // 8000  # one second at 8 kHz is plenty for a 440 Hz tone
    found = strongest_frequency(samples[-rate:][::step], rate // step)
    print(f"\n{audio_codec} device -> WebRTC {rtp_codec} ({route}): {summary['audio_frames']} audio frames, "
          f"tone found at {found} Hz; {summary['frames']} video frames")
    assert abs(found - 440) <= 10
    stats = wait_until(lambda: (s := webrtc_stats(stack["env"])).get("audio_packets_sent", 0) >= 100 and s, 10,
                       "WebRTC stats")
    assert stats["video_encoder_frames"] == 0  # H.264 still passed through
    assert stats[f"audio_{route}_peers"] == 1
    if route == "passthrough":
        assert stats["encoder_frames"] == 0  # no encoder ran at all
    else:
        assert stats["audio_encoder_frames"] >= 100 and stats["encoder_frames"] == stats["audio_encoder_frames"]


def test_a_device_without_audio_gets_its_audio_section_answered_inactive(stack, personas, acme_camera):
    import json

    start_agent(stack, acme_camera)
    wait_until(lambda: "connected: device" in (stack["tmp"] / f"agent-{acme_camera.pk}.log").read_text(), 30,
               "the agent to connect")
    result = run_example(stack, personas["viewer"].username, acme_camera, frames=15, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["audio_codec"] is None and summary["audio_frames"] == 0 and summary["frames"] >= 15


PORT_MIN = 20000 + 40 * random.randrange(100)  # below Linux's ephemeral ports (32768-60999): never the OS's pick
PORT_MAX = PORT_MIN + 19


@pytest.mark.parametrize("stack", [{"WEBRTC_PORT_MIN": str(PORT_MIN), "WEBRTC_PORT_MAX": str(PORT_MAX)}],
                         indirect=True)
def test_with_a_port_range_every_udp_socket_of_the_webrtc_process_is_inside_it(stack, personas, acme_camera):
    """WEBRTC_PORT_MIN/MAX: the host candidates (and so all of a peer's media) use ports of that range."""
    import json

    import psutil

    start_agent(stack, acme_camera)
    wait_until(lambda: "connected: device" in (stack["tmp"] / f"agent-{acme_camera.pk}.log").read_text(), 30,
               "the agent to connect")
    use_server_password_hasher(personas["viewer"].username, "password")
    (stack["tmp"] / "password").write_text("password")
    example = subprocess.Popen([PY, "examples/webrtc_viewer.py", "--url", stack["url"], "--user",
                                personas["viewer"].username, "--password-file", str(stack["tmp"] / "password"),
                                "--device", str(acme_camera.pk), "--frames", "60", "--timeout", "30"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    webrtc = psutil.Process(stack["processes"]["webrtc"].pid)
    ports = set()
    while example.poll() is None:  # the peer's sockets exist while the example plays
        ports |= {c.laddr.port for c in webrtc.net_connections(kind="udp")}
        time.sleep(0.05)
    stdout, stderr = example.communicate()
    assert example.returncode == 0, stdout + stderr
    assert json.loads(stdout.strip().splitlines()[-1])["frames"] >= 60  # ICE and media went through those ports
    print(f"\nWebRTC process UDP ports with WEBRTC_PORT_MIN/MAX {PORT_MIN}-{PORT_MAX}: {sorted(ports)}")
    assert ports and all(PORT_MIN <= port <= PORT_MAX for port in ports), sorted(ports)


def test_a_device_back_with_another_audio_codec_gets_its_viewer_to_offer_again_and_hear_it(
        stack, personas, acme_camera):
    """Opus passed through, then the device reconnects sending 8 kHz A-law: the peer is ended with
    webrtc_bye format_changed, the example offers again and receives PCMA holding the same tone."""
    import json

    from tests.test_webrtc_audio import strongest_frequency

    log = stack["tmp"] / f"agent-{acme_camera.pk}.log"
    tone = ("--audio-source", "tone:440")
    start_agent(stack, acme_camera, audio=("--audio-codec", "opus", *tone))
    wait_until(lambda: "connected: device" in log.read_text(), 30, "the agent to connect")
    use_server_password_hasher(personas["viewer"].username, "password")
    (stack["tmp"] / "password").write_text("password")
    wav = stack["tmp"] / "received.wav"
    example = subprocess.Popen([PY, "examples/webrtc_viewer.py", "--url", stack["url"], "--user",
                                personas["viewer"].username, "--password-file", str(stack["tmp"] / "password"),
                                "--device", str(acme_camera.pk), "--frames", "150", "--audio-frames", "100",
                                "--audio-wav", str(wav), "--timeout", "40"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: webrtc_stats(stack["env"]).get("audio_packets_sent", 0) >= 25, 15, "Opus to flow")
        stop(stack["processes"].pop(f"agent-{acme_camera.pk}"))
        log.write_text("")
        start_agent(stack, acme_camera, audio=("--audio-codec", "pcm_alaw", *tone))
        wait_until(lambda: "connected: device" in log.read_text(), 30, "the agent to reconnect")
        stdout, stderr = example.communicate(timeout=60)
    finally:
        if example.poll() is None:
            example.kill()
    assert example.returncode == 0, stdout + stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["reoffers"] == 1 and summary["error"] is None
    assert (summary["audio_codec"], summary["audio_rate"]) == ("audio/PCMA", 8000)
    rate, samples = wav_samples(wav)
    assert rate == 8000 and abs(strongest_frequency(samples[-8000:], 8000) - 440) <= 10
    stats = webrtc_stats(stack["env"])
    assert stats["format_changed_byes"] == 1 and stats["answers"] == 2
