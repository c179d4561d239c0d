"""The malloc tuning every ASGI server process applies at start (project/memory.py)."""
import subprocess
import sys

import pytest

from project import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_the_tuning(monkeypatch):
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert memory.tune_malloc() is True


def test_an_operators_own_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert memory.tune_malloc() is False


def test_the_asgi_module_applies_it():
    # A fresh interpreter whose tune_malloc reports being called; importing the app must call it.
    script = "import project.memory as m, sys; m.tune_malloc = lambda: sys.stdout.write('tuned'); import project.asgi"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60,
        env={"DJANGO_SETTINGS_MODULE": "project.settings_test", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tuned" in done.stdout
