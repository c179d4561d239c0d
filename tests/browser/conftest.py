"""Browser tests: a real daphne server, the recorder process, Redis, a Celery worker and the
reference device agent, against the test database, driven through Playwright with Debian's Chromium.

The whole tier runs twice (test ids end in [http] and [https]): over plain HTTP/WS with daphne,
then over HTTPS/WSS with uvicorn serving a local CA's certificate as `TLS=self-signed bash
scripts/run` does. Chromium trusts that CA for real, through an NSS database in a private HOME
(certutil, Debian's libnss3-tools); agents get --ca-file; Playwright's own requests
(page.request) trust it through NODE_EXTRA_CA_CERTS. Without certutil the [https] half is
skipped, said in the skip reason. `-k "not https"` runs one half only.

Everything the tests wait for is state the pages expose on window.sightline; there are no
sleeps. Every process started here is stopped in a finaliser.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.support import free_port, start_recorder, subprocess_database_url, wait_until

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
PASSWORD = "password"  # tests/conftest.py personas
SCHEMES = ("http", "https")


class Process:
    """A child process with its output in a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture(scope="session")
def stack_env(django_db_setup, tmp_path_factory):
    """Environment for every child process: same database, var dir and secret as this test
    run; private Redis key prefixes and Celery queue so parallel runs never share work."""
    run = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "SIGHTLINE_VAR_DIR": str(settings.VAR_DIR),
        "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_PREFIX": f"test-{run}",
        "CACHE_PREFIX": f"test-{run}",
        "CELERY_QUEUE": f"test-{run}",
        "SEGMENT_SECONDS": "2",
        "LOG_FORMAT": "console",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    })
    env["DATABASE_URL"] = subprocess_database_url()  # the test database, SQLite file or PostgreSQL
    env["_LOG_DIR"] = str(tmp_path_factory.mktemp("stack-logs"))
    # Invitation emails land as files the tests read (tests/browser/test_members.py).
    env["EMAIL_BACKEND"] = "django.core.mail.backends.filebased.EmailBackend"
    env["EMAIL_FILE_PATH"] = str(tmp_path_factory.mktemp("mail"))  # one per scheme: see server()
    return env


@pytest.fixture(scope="session", params=SCHEMES)
def scheme(request):
    if request.param == "https" and not shutil.which("certutil"):
        pytest.skip("the [https] browser tier needs certutil to make Chromium trust the test CA: "
                    "as root, apt-get install libnss3-tools (bash scripts/test does when it may)")
    return request.param


@pytest.fixture(scope="session")
def browser_tls(tmp_path_factory):
    """A local CA and server certificate (project/tls.py, as TLS=self-signed makes them), and a
    HOME whose NSS database trusts the CA: Chromium on Linux reads $HOME/.pki/nssdb."""
    from project import tls

    base = tmp_path_factory.mktemp("browser-tls")
    files = tls.ensure_self_signed(base / "tls", tls.server_names("127.0.0.1"))
    nssdb = base / "home" / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for args in (["-N", "--empty-password"], ["-A", "-t", "C,,", "-n", "Sightline test CA", "-i", str(files.ca)]):
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", *args], check=True, capture_output=True, timeout=30)
    return {"ca": files.ca, "cert": files.cert, "key": files.key, "home": base / "home"}


@pytest.fixture(scope="session")
def static_files(stack_env):
    subprocess.run([str(VENV_BIN / "python"), "manage.py", "collectstatic", "--noinput", "-v", "0"],
                   cwd=ROOT, env=stack_env, check=True, timeout=120)


@pytest.fixture(scope="session")
def server(stack_env, static_files, scheme, request):
    """The portal on a free port with static files collected (DEBUG is off), and the recorder
    process that records what it publishes: daphne over HTTP, or uvicorn over HTTPS."""
    log_dir = Path(stack_env["_LOG_DIR"])
    port = free_port()
    ca = None
    # Each half invites the same addresses: its server writes mail to a directory of its own
    # (tests read stack_env["EMAIL_FILE_PATH"]).
    stack_env["EMAIL_FILE_PATH"] = str(request.getfixturevalue("tmp_path_factory").mktemp(f"mail-{scheme}"))
    if scheme == "https":
        tls = request.getfixturevalue("browser_tls")
        ca = tls["ca"]
        # What scripts/run does when it serves TLS.
        env = {**stack_env, "SECURE_COOKIES": "1"}
        proc = Process("uvicorn-tls", [str(VENV_BIN / "uvicorn"), "project.asgi:application", "--host", "127.0.0.1",
                                       "--port", str(port), "--lifespan", "off", "--ws-per-message-deflate", "false",
                                       "--ssl-certfile", str(tls["cert"]), "--ssl-keyfile", str(tls["key"])],
                       env, log_dir)
    else:
        proc = Process("daphne", [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                  "project.asgi:application"], stack_env, log_dir)
    url = f"{scheme}://127.0.0.1:{port}"

    def answers():
        assert proc.alive(), f"{proc.name} exited:\n{proc.output()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    recorder = None
    try:
        wait_until(answers, 30, f"{proc.name} to listen")
        recorder = start_recorder(stack_env, log_dir / f"recorder-{scheme}.log")
        yield {"url": url, "port": port, "ws": f"{'wss' if ca else 'ws'}://127.0.0.1:{port}", "process": proc,
               "scheme": scheme, "ca": ca, "recorder": recorder}
    finally:
        proc.stop()
        if recorder is not None:
            recorder.terminate()
            try:
                recorder.wait(timeout=15)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait(timeout=5)


@pytest.fixture(scope="session")
def celery_worker(stack_env):
    log_dir = Path(stack_env["_LOG_DIR"])
    proc = Process("celery", [str(VENV_BIN / "celery"), "-A", "project", "worker", "-Q", stack_env["CELERY_QUEUE"],
                              "-P", "solo", "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat",
                              "-l", "info"], stack_env, log_dir)
    try:
        wait_until(lambda: (proc.alive() or pytest.fail(f"celery exited:\n{proc.output()}")) and " ready." in proc.output(),
                   60, "the Celery worker to be ready")
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def start_agent(server, stack_env, tmp_path):
    """Start the reference device agent for a device; returns the Process."""
    started = []

    def start(device, *extra):
        clear, _ = device.issue_token(label="browser test")
        token_file = tmp_path / f"token-{device.pk}"
        token_file.write_text(clear)
        token_file.chmod(0o600)
        proc = Process(f"agent-{device.pk}", [str(VENV_BIN / "python"), "-m", "sightline_agent",
                                              "--url", f"{server['ws']}/ws/device/", "--token-file", str(token_file),
                                              *(["--ca-file", str(server["ca"])] if server["ca"] else []),
                                              *extra], stack_env, Path(stack_env["_LOG_DIR"]))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def chromium_extra_args():
    """Extra Chromium flags for one test module (e.g. a fake microphone's WAV); override per module."""
    return []


@pytest.fixture(scope="module")
def playwright_browser(server, request, chromium_extra_args):
    """One Chromium per test module (and scheme): closed (and Playwright's loop stopped) before
    the next module, so tests outside tests/browser never run beside it. Over HTTPS it trusts
    the test CA the way a person would: in its NSS database, no --ignore-certificate-errors."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in this thread, which makes Django
    # refuse the ORM calls the tests make between browser steps. Those calls are ordinary
    # blocking test code, so allow them while the browser is up (this process, this module only).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    launch_env, node_ca = None, os.environ.get("NODE_EXTRA_CA_CERTS")
    if server["ca"]:
        launch_env = {**os.environ, "HOME": str(request.getfixturevalue("browser_tls")["home"])}
        # Playwright's driver (Node) makes page.request's requests: it reads this at its start.
        os.environ["NODE_EXTRA_CA_CERTS"] = str(server["ca"])
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *chromium_extra_args],
                                         env=launch_env)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        if node_ca is None:
            os.environ.pop("NODE_EXTRA_CA_CERTS", None)
        else:
            os.environ["NODE_EXTRA_CA_CERTS"] = node_ca


def use_server_password_hasher(username: str, password: str):
    """The test settings hash passwords with MD5 for speed, which the server under test
    (project.settings) does not accept: store a PBKDF2 hash it does, with few iterations."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    encoded = PBKDF2PasswordHasher().encode(password, uuid.uuid4().hex, iterations=1000)
    get_user_model().objects.filter(username=username).update(password=encoded)


# Reported as a console error by the page itself (every page, from before its own scripts run), so
# that a Content-Security-Policy violation is seen even where Chromium's own message is not.
REPORT_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.cspViolations.push(e.violatedDirective);
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`);
});
"""


def is_csp_violation(text: str) -> bool:
    return text.startswith("CSP violation:") or ("Refused to" in text and "Content Security Policy" in text)


class Portal:
    """One logged-in browser context; collects console errors so tests can assert there are none,
    and Content-Security-Policy violations, which fail every browser test (the portal fixture)."""

    def __init__(self, browser, base_url: str, viewport=None):
        self.base_url = base_url
        self.context = browser.new_context(base_url=base_url, viewport=viewport or {"width": 1280, "height": 800},
                                           accept_downloads=True)
        self.context.set_default_timeout(20_000)
        self.console_errors: list[str] = []
        self.csp_violations: list[str] = []
        self.csp_violations_expected = False  # only tests/browser/test_csp.py, which provokes one
        self.context.add_init_script(REPORT_CSP_VIOLATIONS)

    def _console(self, page, message) -> None:
        if is_csp_violation(message.text):
            self.csp_violations.append(f"{page.url}: {message.text}")
        if message.type == "error":
            self.console_errors.append(f"{page.url}: {message.text}")

    def new_page(self):
        page = self.context.new_page()
        page.on("console", lambda m: self._console(page, m))
        page.on("pageerror", lambda e: self.console_errors.append(f"{page.url}: {e}"))
        return page

    def login(self, username: str, password: str = PASSWORD):
        use_server_password_hasher(username, password)
        page = self.new_page()
        page.goto("/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert "/login/" not in page.url, f"login as {username} failed"
        return page

    def close(self):
        self.context.close()


@pytest.fixture
def portal(playwright_browser, server):
    opened = []

    def open_portal(viewport=None) -> Portal:
        p = Portal(playwright_browser, server["url"], viewport)
        opened.append(p)
        return p

    yield open_portal
    violations = [violation for p in opened if not p.csp_violations_expected for violation in p.csp_violations]
    for p in opened:
        p.close()
    assert violations == [], "the portal broke its own Content-Security-Policy:\n" + "\n".join(violations)


@pytest.fixture
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def wait_for_state(page, expression: str, timeout_ms: int = 20_000):
    """Wait until a JS expression over window.sightline is truthy; returns its value."""
    handle = page.wait_for_function(f"() => {{ const s = window.sightline; return s && ({expression}); }}",
                                    timeout=timeout_ms)
    return handle.json_value()


def pytest_collection_modifyitems(items):
    """Every browser test flushes with sequences reset. The test server lives across tests and
    caches content type ids (ContentType.objects), which the admin writes into its log entries;
    the flush re-creates the content types, and only with sequences reset do they get the same ids."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.django_db(transaction=True, reset_sequences=True), append=False)


@pytest.fixture(scope="session", autouse=True)
def flush_survives_a_deadlock():
    """The flush between browser tests TRUNCATEs tables while the long-lived test server's processes
    (web, recorder, worker) still query them; PostgreSQL may then pick the flush as a deadlock victim,
    which rolls it back whole. Flushing again is then exactly right (nothing of it was applied)."""
    from django.core.management.commands import flush

    original = flush.Command.handle

    def handle(self, *args, **options):
        for attempt in range(3):
            try:
                return original(self, *args, **options)
            except Exception as error:  # flush wraps the database error in a CommandError
                if attempt == 2 or "deadlock detected" not in str(error.__cause__ or error).lower():
                    raise
                time.sleep(0.5)

    flush.Command.handle = handle
    yield
    flush.Command.handle = original
