"""Small probes used by scripts/run and scripts/test (stdlib, plus redis-py and
psycopg from the project's virtualenv when a probe needs them).

    probe.py redis URL                 exit 0 if Redis at URL answers PING
    probe.py postgres URL              exit 0 if PostgreSQL at URL accepts a connection
    probe.py drop-postgres URL NAME    drop database NAME (left over by an interrupted run)
    probe.py free-port                 print a free TCP port on 127.0.0.1
    probe.py port-free HOST PORT       exit 0 if HOST:PORT can be bound
    probe.py wait-http URL SECONDS     wait until URL answers 200 (prints the last answer otherwise)
    probe.py smoke BASE_URL USER PASSWORD [DEVICE_NAME ...] [--seconds N]
                                       log in to the admin, check the demo devices are listed,
                                       wait for each named device to come online and for
                                       one of its segments to be archived

HTTPS: certificates are checked against the system's CAs, or SSL_CERT_FILE when set
(scripts/run points it at the local CA of TLS=self-signed). SIGHTLINE_PROBE_TLS_NO_VERIFY=1
checks none: scripts/run with your own certificate probes its own server over loopback,
a name that certificate does not carry.

Exit codes: 0 yes/ok, 1 no/failed, 2 usage.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def postgres_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def drop_postgres(url: str, name: str) -> bool:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _opener(*handlers):
    if os.environ.get("SIGHTLINE_PROBE_TLS_NO_VERIFY") == "1":
        handlers += (urllib.request.HTTPSHandler(context=ssl._create_unverified_context()),)
    return urllib.request.build_opener(*handlers)


def _get(opener, url: str, data: dict | None = None, headers: dict | None = None):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.geturl(), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, url, exc.read().decode("utf-8", "replace")


def wait_http(url: str, seconds: float) -> bool:
    opener = _opener()
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _, body = _get(opener, url)
            if status == 200:
                return True
            last = f"HTTP {status}: {body[:500]}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    print(f"{url} did not answer 200 within {seconds:.0f}s; last answer: {last}", file=sys.stderr)
    return False


def smoke(base: str, username: str, password: str, devices: list[str], seconds: float = 45) -> bool:
    """What a person does first: log in to the admin and look at the devices."""
    jar = http.cookiejar.CookieJar()
    opener = _opener(urllib.request.HTTPCookieProcessor(jar))
    login_url = f"{base}/admin/login/?next=/admin/"
    status, _, page = _get(opener, login_url)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if status != 200 or not token:
        print(f"smoke: admin login page answered {status}", file=sys.stderr)
        return False
    status, final_url, page = _get(
        opener,
        login_url,
        {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password, "next": "/admin/"},
        {"Referer": login_url},
    )
    if status != 200 or "/admin/login/" in final_url:
        print(f"smoke: login as {username!r} failed (HTTP {status}, at {final_url})", file=sys.stderr)
        return False
    print(f"smoke: logged in to the admin as {username}")
    deadline = time.monotonic() + seconds
    pending = list(devices)
    while True:
        status, _, page = _get(opener, f"{base}/admin/streams/device/?online__exact=1")
        if status != 200:
            print(f"smoke: device list answered HTTP {status}", file=sys.stderr)
            return False
        pending = [name for name in devices if name not in page]
        if not pending:
            break
        if time.monotonic() > deadline:
            print(f"smoke: still offline after {seconds:.0f}s: {', '.join(pending)}", file=sys.stderr)
            return False
        time.sleep(1)
    if devices:
        print(f"smoke: online in the admin: {', '.join(devices)}")
    if devices and not _wait_for_recordings(opener, base, devices, seconds + 60):
        return False
    status, _, body = _get(opener, f"{base}/healthz")
    print(f"smoke: /healthz -> {status} {json.loads(body).get('status')}")
    return status == 200


def _wait_for_recordings(opener, base: str, devices: list[str], seconds: float) -> bool:
    """Each named device has a segment that went through the whole chain: recorded by the
    recorder process, transcoded, thumbnailed and archived by the worker."""
    status, _, body = _get(opener, f"{base}/api/devices/")
    if status != 200:
        print(f"smoke: /api/devices/ answered HTTP {status}", file=sys.stderr)
        return False
    ids = {d["name"]: d["id"] for d in json.loads(body)["devices"] if d["name"] in devices}
    now = time.time()
    window = urllib.parse.urlencode({
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
    })
    deadline = time.monotonic() + seconds
    pending = dict(ids)
    while pending:
        for name, device_id in list(pending.items()):
            status, _, body = _get(opener, f"{base}/api/devices/{device_id}/segments/?{window}")
            answer = json.loads(body) if status == 200 else {}
            if any(s.get("state") == "archived" for s in answer.get("segments", [])):
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            print(f"smoke: no archived recording after {seconds:.0f}s for: {', '.join(pending)} "
                  f"(see var/log/recorder.log and var/log/worker.log)", file=sys.stderr)
            return False
        time.sleep(1)
    print(f"smoke: recorded, transcoded and archived: {', '.join(sorted(ids))}")
    return True


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command == "redis" and len(args) == 1:
        return 0 if redis_answers(args[0]) else 1
    if command == "postgres" and len(args) == 1:
        return 0 if postgres_answers(args[0]) else 1
    if command == "drop-postgres" and len(args) == 2:
        return 0 if drop_postgres(*args) else 1
    if command == "free-port" and not args:
        print(free_port())
        return 0
    if command == "port-free" and len(args) == 2:
        return 0 if port_free(args[0], int(args[1])) else 1
    if command == "wait-http" and len(args) == 2:
        return 0 if wait_http(args[0], float(args[1])) else 1
    if command == "smoke" and len(args) >= 3:
        seconds = 45.0
        if len(args) >= 5 and args[-2] == "--seconds":
            seconds, args = float(args[-1]), args[:-2]
        return 0 if smoke(args[0].rstrip("/"), args[1], args[2], args[3:], seconds) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
