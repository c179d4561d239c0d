"""S3 timeouts (settings S3_CONNECT_TIMEOUT_SECONDS, S3_READ_TIMEOUT_SECONDS, S3_MAX_ATTEMPTS): an endpoint
that never answers costs an archive attempt about timeout x attempts, not botocore's 60 s x 5.

Each case starts Django as a worker would (STORAGE_BACKEND=s3 from the environment) and saves a file
through storages["recordings"] against a local endpoint that is silent in one way.
"""
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SAVE = """
import time, django
django.setup()
from django.core.files.base import ContentFile
from django.core.files.storage import storages
storage = storages["recordings"]
config = storage.connection.meta.client.meta.config
print("config", config.connect_timeout, config.read_timeout, config.retries, flush=True)
started = time.monotonic()
try:
    storage.save("probe/segment.mp4", ContentFile(b"x" * 1000))
except Exception as exc:
    print("failed", type(exc).__name__, round(time.monotonic() - started, 2), flush=True)
else:
    print("saved", flush=True)
"""


def _save_against(port: int, **variables) -> tuple[str, float]:

    environment = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                   "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "s3-timeouts-test",
                   "STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                   "S3_ACCESS_KEY_ID": "k", "S3_SECRET_ACCESS_KEY": "s", **variables}
    result = subprocess.run([sys.executable, "-c", SAVE], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert lines and lines[0].startswith("config "), result.stderr[-2000:]
    assert len(lines) > 1 and lines[1].startswith("failed "), result.stdout + result.stderr[-2000:]
    return lines[0], float(lines[1].split()[-1])


@pytest.fixture
def full_backlog():
    """A port whose listen queue is full: the kernel drops new SYNs, as a cut link would."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.5)
    with pytest.raises(OSError):  # the premise: a connection is not accepted
        probe.connect(("127.0.0.1", port))
    probe.close()
    yield port
    for sock in (*fillers, listener):
        sock.close()


@pytest.fixture
def mute_server():
    """A port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for sock in (*held, listener):
        sock.close()


def test_the_client_carries_the_default_timeouts_and_attempts(full_backlog):
    config, _ = _save_against(full_backlog, S3_CONNECT_TIMEOUT_SECONDS="0.5")
    assert config == "config 0.5 30.0 {'total_max_attempts': 2, 'mode': 'standard'}"


def test_an_endpoint_dropping_connections_costs_the_connect_timeout_per_attempt(full_backlog):
    _, elapsed = _save_against(full_backlog, S3_CONNECT_TIMEOUT_SECONDS="1", S3_MAX_ATTEMPTS="2")
    # Two attempts of 1 s and standard mode's first back-off (under 1 s); botocore's defaults: minutes.
    assert 1.9 <= elapsed <= 5.0


def test_an_endpoint_that_never_replies_costs_the_read_timeout(mute_server):
    _, elapsed = _save_against(mute_server, S3_READ_TIMEOUT_SECONDS="1", S3_MAX_ATTEMPTS="1")
    assert 0.9 <= elapsed <= 4.0


@pytest.mark.parametrize("variable, value", [("S3_CONNECT_TIMEOUT_SECONDS", "0"), ("S3_READ_TIMEOUT_SECONDS", "soon"),
                                             ("S3_MAX_ATTEMPTS", "0")])
def test_a_bad_timeout_fails_at_start_naming_the_variable(variable, value):

    environment = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                   "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "s3-timeouts-test",
                   "STORAGE_BACKEND": "s3", variable: value}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=60)
    last_line = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "ImproperlyConfigured" in last_line and variable in last_line
