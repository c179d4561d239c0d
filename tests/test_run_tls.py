"""`TLS=self-signed bash scripts/run --check`: the portal serves HTTPS/WSS with a local CA it makes,
the smoke check logs in over HTTPS trusting that CA, and the demo cameras stream over wss://
verifying it (a recording of each is archived)."""
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_the_run_command_serves_https_and_wss_with_a_self_signed_ca(tmp_path):
    # A new installation of its own (as in tests/test_commands.py), with short segments so
    # the first recording is archived quickly.
    env = {key: value for key, value in os.environ.items() if key not in {
        "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "SIGHTLINE_NAMESPACE", "SIGHTLINE_TEST_RUN",
        "CHANNEL_PREFIX", "CACHE_PREFIX", "CELERY_QUEUE", "SECURE_COOKIES", "TLS_CERT_FILE", "TLS_KEY_FILE"}}
    port = closed_port()
    env.update(SIGHTLINE_VAR_DIR=str(tmp_path / "var"), PORT=str(port), SIGHTLINE_APT="0", CI="true",
               TLS="self-signed", SEGMENT_SECONDS="2")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts/run"), "--check"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=55)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output[-4000:]
    tls_dir = tmp_path / "var/tls"
    assert f"TLS: made a local CA: {tls_dir / 'ca.pem'}" in output
    assert "smoke: recorded, transcoded and archived: Lobby camera, Yard camera" in output
    assert "everything answered" in output
    assert stat.S_IMODE((tls_dir / "ca-key.pem").stat().st_mode) == 0o600
    web = (tmp_path / "var/log/web.log").read_text()
    assert f"Uvicorn running on https://127.0.0.1:{port}" in web
    camera = (tmp_path / "var/log/camera-lobby.log").read_text()
    assert f"--url wss://127.0.0.1:{port}/ws/device/" in camera and f"--ca-file {tls_dir / 'ca.pem'}" in camera
    assert "connected: device" in camera and "not trusted" not in camera


@pytest.mark.parametrize("settings, message", [
    ({"TLS": "yes"}, "TLS=yes: the only value is self-signed"),
    ({"TLS_CERT_FILE": "/etc/hostname"}, "set both TLS_CERT_FILE and TLS_KEY_FILE (or neither)"),
])
def test_the_run_command_refuses_an_unclear_tls_setting_before_starting_anything(tmp_path, settings, message):
    env = {key: value for key, value in os.environ.items() if key not in {"TLS", "TLS_CERT_FILE", "TLS_KEY_FILE"}}
    env.update(SIGHTLINE_VAR_DIR=str(tmp_path / "var"), PORT=str(closed_port()), SIGHTLINE_APT="0", **settings)
    result = subprocess.run(["bash", str(ROOT / "scripts/run")], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=50)
    assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
    assert "migrating" not in result.stdout and not (tmp_path / "var/log/web.log").exists()
