"""DATABASE_CONNECT_TIMEOUT_SECONDS: a PostgreSQL host that drops packets costs a connection attempt that
many seconds, not the OS's TCP timeout (minutes). The recorder retries owed segment rows from its writer
thread while the database is away (recordings/pending_rows.py); that thread must not hang."""
import os
import subprocess
import sys
from pathlib import Path

from tests.test_s3_timeouts import full_backlog  # noqa: F401 (a fixture: a port that drops new connections)

ROOT = Path(__file__).resolve().parent.parent

CONNECT = """
import time, django
django.setup()
from django.db import connection
print("options", connection.settings_dict["OPTIONS"].get("connect_timeout"), flush=True)
started = time.monotonic()
try:
    connection.ensure_connection()
except Exception as exc:
    print("failed", type(exc).__name__, round(time.monotonic() - started, 2), flush=True)
else:
    print("connected", flush=True)
"""


def _connect(url: str, **variables) -> list[str]:
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                   "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "db-timeout-test",
                   "DATABASE_URL": url, **variables}
    done = subprocess.run([sys.executable, "-c", CONNECT], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout + done.stderr[-2000:]
    return lines


def test_a_database_host_that_drops_connections_costs_the_connect_timeout(full_backlog):  # noqa: F811
    options, outcome = _connect(f"postgres://sightline@127.0.0.1:{full_backlog}/sightline",
                                DATABASE_CONNECT_TIMEOUT_SECONDS="1")
    assert options == "options 1"
    assert outcome.startswith("failed OperationalError")
    assert 0.9 <= float(outcome.split()[-1]) <= 4.0  # libpq may try IPv4 and IPv6; without it: minutes


def test_the_default_is_five_seconds_and_the_url_may_set_its_own(full_backlog):  # noqa: F811
    base = f"postgres://sightline@127.0.0.1:{full_backlog}/sightline"
    assert _connect(base)[0] == "options 5"
    assert _connect(base + "?connect_timeout=2")[0] == "options 2"
