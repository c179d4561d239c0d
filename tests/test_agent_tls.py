"""The agent over wss:// against a real uvicorn serving TLS with a local CA (project/tls.py):
the wrong CA is refused with one clear line and retried, the right CA streams, --insecure
connects but says so. Plus the options' usage errors, and what TLS turns on in the portal."""
import asyncio
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets

from project import tls as local_ca
from sightline_agent import protocol
from sightline_agent import cli
from sightline_agent.reconnect import EXIT_USAGE
from sightline_agent.tls import (
    INSECURE_MARK,
    TlsSetupError,
    client_context,
    handshake_failed_message,
    untrusted_message,
)
from tests.integration.test_live_two_processes import free_port, next_json, wait_for_port
from tests.support import wait_until
from tests.test_agent_integration import PYTHON, ROOT, UVICORN, next_frame, rows, server_env, stop  # noqa: F401

TOKEN_SHAPE = "sl_abcdefgh_" + "A" * 43


# -- the options, without a server ---------------------------------------------------

def test_ca_file_and_insecure_are_refused_for_plain_ws_and_together(tmp_path):
    with pytest.raises(TlsSetupError, match="wss:// URLs only"):
        client_context("ws://127.0.0.1/ws/device/", ca_file=str(tmp_path / "ca.pem"))
    with pytest.raises(TlsSetupError, match="wss:// URLs only"):
        client_context("ws://127.0.0.1/ws/device/", insecure=True)
    with pytest.raises(TlsSetupError, match="contradict"):
        client_context("wss://127.0.0.1/ws/device/", ca_file="x", insecure=True)
    assert client_context("ws://127.0.0.1/ws/device/") is None


def test_a_missing_or_non_pem_ca_file_is_a_usage_error(tmp_path):
    with pytest.raises(TlsSetupError, match="no such file"):
        client_context("wss://h/ws/device/", ca_file=str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TlsSetupError, match="holds no PEM certificate"):
        client_context("wss://h/ws/device/", ca_file=str(junk))


def test_the_default_checks_the_certificate_and_the_host_name_and_insecure_checks_nothing(tmp_path):
    default = client_context("wss://h/ws/device/")
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    insecure = client_context("wss://h/ws/device/", insecure=True)
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname


def test_the_cli_exits_with_the_usage_code_for_a_ca_file_on_plain_ws(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text(TOKEN_SHAPE)
    code = cli.main(["--url", "ws://127.0.0.1:9/ws/device/", "--token-file", str(token), "--ca-file", "x.pem"])
    assert code == EXIT_USAGE
    assert "--ca-file applies to wss:// URLs only" in capsys.readouterr().err


def test_the_untrusted_message_says_what_to_do_in_one_line():
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    without = untrusted_message("wss://cams.lan:8443/ws/device/", error, None)
    assert without.startswith("the server's certificate at cams.lan:8443 is not trusted "
                              "(unable to get local issuer certificate)")
    assert "--ca-file PATH" in without and "\n" not in without
    assert "is not the CA that signed" in untrusted_message("wss://h/ws/device/", error, "/etc/other.pem")
    error.verify_message = "Hostname mismatch, certificate is not valid for 'h'."
    assert "use the host name the certificate was made for" in untrusted_message("wss://h/ws/device/", error, None)


# -- against a real server -------------------------------------------------------------

@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """The server's CA and files, and an unrelated CA (what a wrong --ca-file holds)."""
    base = tmp_path_factory.mktemp("tls")
    files = local_ca.ensure_self_signed(base / "server", local_ca.server_names("127.0.0.1"))
    other = local_ca.ensure_self_signed(base / "other", local_ca.server_names("127.0.0.1"))
    return {"files": files, "wrong_ca": other.ca}


@pytest.fixture
def tls_server(server_env, certificates, tmp_path):
    """uvicorn serving HTTPS/WSS as scripts/run does with TLS=self-signed."""
    files = certificates["files"]
    port = free_port()
    env = {**server_env, "SECURE_COOKIES": "1", "HSTS_SECONDS": "3600"}
    log_path = tmp_path / "uvicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(UVICORN), "project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--lifespan", "off", "--ws-per-message-deflate", "false", "--no-access-log",
             "--ssl-certfile", str(files.cert), "--ssl-keyfile", str(files.key)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop(process)


@pytest.fixture
def start_tls_agent(tls_server, server_env, rows, tmp_path):
    started = []

    def start(*args):
        token_file = tmp_path / "device.token"
        token_file.write_text(rows["token"])
        log_path = tmp_path / f"agent-{len(started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(PYTHON), "-m", "sightline_agent", "--url", f"wss://127.0.0.1:{tls_server}/ws/device/",
                 "--token-file", str(token_file), "--duration", "60", "--fps", "10", *args],
                cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT,
            )
        started.append((process, log_path))
        return process, log_path

    yield start
    for process, log_path in started:
        stop(process)
        assert rows["token"] not in log_path.read_text(errors="replace"), "the agent printed its token"


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def secure_viewer(port: int, device_id, sessionid: str, ca: Path):
    return websockets.connect(f"wss://127.0.0.1:{port}/ws/view/{device_id}/", origin=f"https://127.0.0.1:{port}",
                              additional_headers={"Cookie": f"sessionid={sessionid}"},
                              compression=None, max_size=None, ssl=trusting(ca))


async def first_frames(port: int, rows, ca: Path, count: int = 3):
    async with secure_viewer(port, rows["device"].pk, rows["sessions"]["owner"], ca) as ws:
        await next_json(ws, "welcome")
        return [await next_frame(ws, protocol.KIND_JPEG) for _ in range(count)]


def log_lines(path: Path, needle: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if needle in line]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_an_agent_given_the_wrong_ca_or_none_is_refused_with_one_clear_line_and_retries(
        start_tls_agent, certificates):
    wrong, wrong_log = start_tls_agent("--ca-file", str(certificates["wrong_ca"]))
    system, system_log = start_tls_agent()
    # Two refusals each: it retried with backoff rather than exiting.
    wait_until(lambda: len(log_lines(wrong_log, "not trusted")) >= 2 and len(log_lines(system_log, "not trusted")) >= 2,
               20, "two refusals from each agent")
    assert wrong.poll() is None and system.poll() is None
    line = log_lines(wrong_log, "not trusted")[0]
    assert "error: the server's certificate at 127.0.0.1:" in line
    assert f"--ca-file {certificates['wrong_ca']} is not the CA that signed the server's certificate" in line
    assert "pass --ca-file PATH with the CA that signed it" in log_lines(system_log, "not trusted")[0]
    for log in (wrong_log, system_log):
        text = log.read_text()
        assert "Traceback" not in text and "connected: device" not in text
        assert "reconnecting in" in text


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_an_agent_trusting_the_servers_ca_streams_over_wss(start_tls_agent, tls_server, rows, certificates):
    agent, log = start_tls_agent("--ca-file", str(certificates["files"].ca))
    frames = asyncio.run(first_frames(tls_server, rows, certificates["files"].ca))
    seqs = [header.seq for header, _ in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert all(payload.startswith(b"\xff\xd8") for _, payload in frames)
    assert agent.poll() is None
    assert "not trusted" not in log.read_text() and INSECURE_MARK not in log.read_text()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_an_insecure_agent_connects_and_warns_at_start_and_in_its_status_line(
        start_tls_agent, tls_server, rows, certificates):
    agent, log = start_tls_agent("--insecure")
    asyncio.run(first_frames(tls_server, rows, certificates["files"].ca, count=1))
    wait_until(lambda: log_lines(log, f"{INSECURE_MARK} [streaming]"), 15, "the status line marked INSECURE")
    start = log.read_text().splitlines()[0]
    assert "WARNING: --insecure: the server's certificate is NOT checked" in start
    assert agent.poll() is None


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_served_over_tls_the_portal_sends_hsts_and_secure_cookies(tls_server, certificates):
    with urllib.request.urlopen(f"https://127.0.0.1:{tls_server}/login/", timeout=10,
                                context=trusting(certificates["files"].ca)) as response:
        assert response.headers["Strict-Transport-Security"] == "max-age=3600"
        cookies = response.headers.get_all("Set-Cookie")
    assert cookies and all("; Secure" in cookie for cookie in cookies), cookies
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://127.0.0.1:{tls_server}/healthz", timeout=10,
                               context=trusting(certificates["wrong_ca"]))


def test_a_tls_handshake_with_a_plain_server_says_the_port_may_not_serve_tls():
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")
    error.reason = "WRONG_VERSION_NUMBER"
    message = handshake_failed_message("wss://127.0.0.1:8000/ws/device/", error)
    assert message == ("TLS handshake with 127.0.0.1:8000 failed (WRONG_VERSION_NUMBER): the server does not "
                       "seem to serve TLS on this port (a plain ws:// endpoint?)")
