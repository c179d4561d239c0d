"""A real RTSP camera for tests: scripts/lib/rtsp_test_camera.py run by Debian's python3.

``rtsp_server_missing()`` says why the camera cannot run (packages not installed);
tests then skip with that reason (scripts/test installs the packages as root, or
says loudly at start and end that these tests will not run).
"""
from __future__ import annotations

import functools
import os
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = ROOT / "scripts" / "lib" / "rtsp_test_camera.py"
PACKAGES = "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good " \
           "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly python3-gi"
_PROBE = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("videotestsrc", "x264enc", "rtph264pay", "alawenc", "rtppcmapay")
           if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""


@functools.cache
def rtsp_server_missing() -> str | None:
    """None when the GStreamer RTSP server and its plugins are installed, else why not."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {SYSTEM_PYTHON}: {error}"
    if result.returncode != 0:
        return f"GStreamer's RTSP server is not importable from {SYSTEM_PYTHON} (apt-get install {PACKAGES})"
    if result.stdout.strip():
        return f"GStreamer elements missing: {result.stdout.strip()} (apt-get install {PACKAGES})"
    return None


class TestCamera:
    """The camera process; start() and stop() may be called again to simulate a reboot."""

    __test__ = False  # not a pytest class

    def __init__(self, port: int, log_dir: Path, path: str = "/cam", user: str | None = None,
                 password: str | None = None, audio: str = "alaw", extra: tuple[str, ...] = ()):
        self.port, self.path, self.user, self.password = port, path, user, password
        self.audio, self.extra, self.log_dir = audio, extra, log_dir
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def url(self, user: str | None = None, password: str | None = None, path: str | None = None) -> str:
        user = self.user if user is None else user
        password = self.password if password is None else password
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
        return f"rtsp://{credentials}127.0.0.1:{self.port}{path or self.path}"

    def start(self, timeout: float = 15) -> None:
        self.starts += 1
        log_path = self.log_dir / f"rtsp-camera-{self.port}-{self.starts}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        if self.user:
            env.update(RTSP_TEST_USER=self.user, RTSP_TEST_PASSWORD=self.password or "")
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port), "--path", self.path,
                 "--audio", self.audio, *self.extra],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while b"READY" not in log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the RTSP test camera did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2):
            pass

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
