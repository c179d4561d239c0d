"""Browser sockets compare Origin by scheme, host and port with the portal's own origin (the Host
the socket came in on, ws -> http, wss -> https) and CSRF_TRUSTED_ORIGINS, as Django's CSRF
check does for forms."""
import pytest
from django.test import override_settings

from streams import auth

ALLOWED_HOSTS = ["localhost", "127.0.0.1", "portal.example.org"]


def scope(origin: str | None, host: str | None = "127.0.0.1:8000", scheme: str = "ws", server=None) -> dict:
    headers = []
    if host is not None:
        headers.append((b"host", host.encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    result = {"type": "websocket", "scheme": scheme, "headers": headers}
    if server is not None:
        result["server"] = server
    return result


@pytest.mark.parametrize("origin, allowed", [
    ("http://127.0.0.1:8000", True),
    ("HTTP://127.0.0.1:8000", True),  # scheme and host compare case-insensitively
    ("http://127.0.0.1:9999", False),  # another port on the same host
    ("https://127.0.0.1", False),  # https when the server was reached over http
    ("https://127.0.0.1:8000", False),
    ("http://localhost:3000", False),  # an allowed host, but not this origin
    ("http://localhost:8000", False),  # Host said 127.0.0.1
    ("http://127.0.0.1", False),  # port 80, not 8000
    ("http://evil.example", False),
    ("null", False), (None, False), ("", False),
    ("file://127.0.0.1:8000", False),
    ("http://127.0.0.1:8000/path", False),  # not a serialised origin
    ("http://user@127.0.0.1:8000", False),
    ("http://127.0.0.1:80000", False),  # port out of range
])
@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS=[])
def test_a_socket_over_http_accepts_only_its_own_origin(origin, allowed):
    assert auth.origin_allowed_for_scope(scope(origin)) is allowed


@pytest.mark.parametrize("origin, allowed", [
    ("https://portal.example.org", True),
    ("https://portal.example.org:443", True),  # the default port, spelled out
    ("http://portal.example.org", False),  # http when the socket came over TLS
    ("https://portal.example.org:8443", False),
])
@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS=[])
def test_a_socket_over_tls_accepts_its_https_origin(origin, allowed):
    assert auth.origin_allowed_for_scope(scope(origin, host="portal.example.org", scheme="wss")) is allowed


@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS=[])
def test_a_host_header_outside_allowed_hosts_gives_no_own_origin():
    assert not auth.origin_allowed_for_scope(scope("http://evil.example:8000", host="evil.example:8000"))


@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS=[])
def test_without_a_host_header_the_servers_address_is_the_own_origin():
    assert auth.origin_allowed_for_scope(scope("http://127.0.0.1:8000", host=None, server=("127.0.0.1", 8000)))
    assert not auth.origin_allowed_for_scope(scope("http://127.0.0.1:9999", host=None, server=("127.0.0.1", 8000)))
    assert not auth.origin_allowed_for_scope(scope("http://127.0.0.1:8000", host=None))


@pytest.mark.parametrize("origin, allowed", [
    ("https://cams.example.com", True),
    ("https://a.b.example.com", True),
    ("http://cams.example.com", False),
    ("https://cams.example.com:8443", False),
    ("https://example.net", False),
    ("https://app.example.net:8443", True),
    ("https://app.example.net", False),
])
@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS,
                   CSRF_TRUSTED_ORIGINS=["https://*.example.com", "https://app.example.net:8443"])
def test_csrf_trusted_origins_are_also_compared_by_scheme_host_and_port(origin, allowed):
    assert auth.origin_allowed_for_scope(scope(origin)) is allowed


def test_the_pure_check_needs_an_exact_match():
    assert auth.origin_allowed("http://localhost:8000", ["http://localhost:8000"])
    assert not auth.origin_allowed("http://localhost:8001", ["http://localhost:8000"])
    assert not auth.origin_allowed("http://localhost:8000", [])
    assert not auth.origin_allowed("http://localhost:8000", ["not an origin"])
