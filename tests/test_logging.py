"""Structured logs: with LOG_FORMAT=json every line a process writes is one JSON object."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EMIT = """
import logging, logging.config, django, structlog
from uvicorn.config import LOGGING_CONFIG
logging.config.dictConfig(LOGGING_CONFIG)  # as uvicorn does before importing the application
django.setup()
logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
logging.getLogger("uvicorn.access").warning("127.0.0.1 - GET /slow 200")
logging.getLogger("django.request").warning("slow request %s", "/healthz")
structlog.get_logger("streams.consumers").info("device_connected", device_id="d-1", frames=3)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("recordings.tasks").exception("transcode failed\\nsecond line")
"""


def _emit(log_format):
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": "logging-test",
        "LOG_FORMAT": log_format,
    }
    result = subprocess.run([sys.executable, "-c", EMIT], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_json_format_writes_one_object_per_line_even_for_tracebacks():
    lines = _emit("json")
    records = [json.loads(line) for line in lines]  # raises on any line that is not one object
    assert len(records) == 5
    server, access, stdlib, structured, failure = records
    assert server["event"] == "Started server process [42]" and server["logger"] == "uvicorn.error"
    assert access["logger"] == "uvicorn.access"
    assert stdlib["event"] == "slow request /healthz" and stdlib["level"] == "warning"
    assert stdlib["logger"] == "django.request" and stdlib["timestamp"].endswith("Z")
    assert structured["event"] == "device_connected" and structured["device_id"] == "d-1" and structured["frames"] == 3
    assert failure["level"] == "error" and "ZeroDivisionError" in failure["exception"]
    assert failure["event"] == "transcode failed\nsecond line"


def test_console_format_is_for_people():
    lines = _emit("console")
    assert any("device_connected" in line and "device_id=d-1" in line for line in lines)
    assert not lines[0].startswith("{")


def test_uvicorn_lines_for_every_websocket_opened_and_closed_are_dropped_but_its_other_lines_kept():
    import logging

    from project.logging import DropPerConnectionLines

    def record(level, msg, *args):
        return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, args, None)

    keep = DropPerConnectionLines().filter
    assert not keep(record(logging.INFO, "connection open"))
    assert not keep(record(logging.INFO, "connection closed"))
    assert not keep(record(logging.INFO, '%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/ws/device/"))
    assert keep(record(logging.INFO, "Started server process [%d]", 42))
    assert keep(record(logging.WARNING, "connection closed"))
