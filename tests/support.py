"""Helpers shared by tests that start server or worker processes."""
from urllib.parse import quote

from django.conf import settings


def subprocess_database_url() -> str:
    """DATABASE_URL pointing a child process at the database this test run uses
    (under pytest-django: the test database, SQLite file or PostgreSQL)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user, password = quote(db.get("USER") or ""), quote(db.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll predicate until it returns something truthy (returned), or fail naming `what`."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class RedisServer:
    """A private redis-server on a free port that a test may stop and start again (same port, empty)."""

    def __init__(self):
        self.port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        import subprocess

        import redis

        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        wait_until(lambda: _pings(client), 10, "the test's redis-server")
        return client

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def child_redis_names(env: dict):
    """The Redis names (project.namespace.RedisNames) a child process started with `env` uses."""
    from project import namespace

    return namespace.redis_names(namespace.default_var_dir(env), env)


def start_recorder(env: dict, log_path, timeout: float = 60, extra_args=()):
    """`manage.py record` as a child process with `env`; returns the Popen once it has
    subscribed (its heartbeat is in Redis under env's channel prefix)."""
    import subprocess
    import sys
    from pathlib import Path

    import redis

    from recordings import sessions

    root = Path(__file__).resolve().parents[1]
    log = open(log_path, "ab")
    process = subprocess.Popen([sys.executable, "manage.py", "record", *extra_args], cwd=root, env=env,
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log.close()
    client = redis.Redis.from_url(env["REDIS_URL"])
    key = sessions.recorders_key(child_redis_names(env).channel_prefix)

    def ready():
        if process.poll() is not None:
            raise AssertionError(f"the recorder exited:\n{Path(log_path).read_text(errors='replace')[-3000:]}")
        return client.zcard(key) > 0

    try:
        wait_until(ready, timeout, "the recorder process to subscribe")
    finally:
        client.close()
    return process
