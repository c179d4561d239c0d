"""Every portal page sends a Content-Security-Policy the page actually passes (no inline script
without the nonce, no inline styles); cookies are Secure over TLS; HSTS when enabled; the
session lifetime comes from the environment."""
import re
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.test import Client, override_settings

pytestmark = [pytest.mark.django_db]


def portal_pages(device, organisation) -> list[str]:
    return [
        "/",
        f"/devices/{device.pk}/",
        f"/devices/{device.pk}/recordings/",
        "/publish/",
        "/devices/00000000-0000-0000-0000-000000000000/",  # the 404 page
        "/admin/",
        f"/admin/streams/device/{device.pk}/change/",
        "/admin/accounts/membership/",
    ]


class InlineCode(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' refuses: inline scripts and their nonces,
    style attributes and elements, inline event handlers and javascript: links."""

    def __init__(self):
        super().__init__()
        self.inline_scripts: list[str | None] = []  # the nonce of each, None if it has none
        self.violations: list[str] = []
        self._in_script = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self.inline_scripts.append(attrs.get("nonce"))
        if tag == "style":
            self.violations.append("<style> element")
        for name, value in attrs.items():
            if name == "style":
                self.violations.append(f"style attribute on <{tag}>")
            if name.startswith("on"):
                self.violations.append(f"{name} handler on <{tag}>")
            if name in {"href", "src", "action"} and (value or "").strip().lower().startswith("javascript:"):
                self.violations.append(f"javascript: URL on <{tag}>")


def policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.parametrize("who", ["owner", "viewer"])
def test_every_portal_page_sends_a_policy_it_passes(personas, acme, acme_camera, who):
    personas[who].is_staff = personas[who].is_superuser = who == "owner"
    personas[who].save()
    client = Client()
    client.force_login(personas[who])
    pages = portal_pages(acme_camera, acme) if who == "owner" else portal_pages(acme_camera, acme)[:4]
    for path in pages:
        response = client.get(path)
        assert response.status_code in (200, 404), (path, response.status_code)
        directives = policy(response)
        assert directives["default-src"] == ["'self'"], path
        assert "'unsafe-inline'" not in directives["script-src"] + directives["style-src"], path
        assert "'unsafe-eval'" not in directives["script-src"], path
        assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
        page = InlineCode()
        page.feed(response.content.decode())
        assert page.violations == [], (path, page.violations)
        nonces = [value[len("'nonce-"):-1] for value in directives["script-src"] if value.startswith("'nonce-")]
        for nonce in page.inline_scripts:
            assert nonce is not None and nonces == [nonce], (path, "inline script without the page's nonce")


def test_the_login_page_and_static_errors_send_the_policy_too(db):
    for path in ("/login/", "/no-such-page/"):
        response = Client().get(path)
        assert "Content-Security-Policy" in response.headers, path


def test_the_device_page_opens_its_early_socket_with_a_fresh_nonce_per_request(personas, acme_camera):
    client = Client()
    client.force_login(personas["viewer"])
    first, second = (client.get(f"/devices/{acme_camera.pk}/") for _ in range(2))
    nonces = [re.search(r'<script nonce="([^"]+)">', r.content.decode()).group(1) for r in (first, second)]
    assert nonces[0] != nonces[1]
    assert f"'nonce-{nonces[0]}'" in first.headers["Content-Security-Policy"]


def test_cookies_are_secure_when_the_request_came_over_tls(personas):
    secure = Client()
    response = secure.post("/login/", {"username": "carol", "password": "password"}, secure=True)
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] is True
    assert secure.get("/login/", secure=True).cookies.get("csrftoken", {"secure": True})["secure"] is True

    plain = Client()
    response = plain.post("/login/", {"username": "carol", "password": "password"})
    assert response.status_code == 302
    assert not response.cookies["sessionid"]["secure"]  # plain http (development): no TLS, no Secure


@override_settings(SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
def test_sightline_tls_makes_cookies_secure_even_on_requests_that_look_like_http(personas):
    response = Client().post("/login/", {"username": "carol", "password": "password"})
    assert response.cookies["sessionid"]["secure"] is True


@override_settings(SECURE_HSTS_SECONDS=31536000)
def test_hsts_is_sent_over_tls_when_enabled(db):
    assert Client().get("/login/", secure=True).headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in Client().get("/login/").headers


def test_hsts_is_off_by_default(db):
    assert settings.SECURE_HSTS_SECONDS == 0
    assert "Strict-Transport-Security" not in Client().get("/login/", secure=True).headers


def test_the_session_lifetime_comes_from_the_environment():
    from tests.test_settings import _start

    code_result = _start_printing("SESSION_COOKIE_AGE", SESSION_COOKIE_AGE="3600")
    assert code_result == "3600"
    assert _start_printing("SESSION_COOKIE_AGE") == str(24 * 3600)
    bad = _start(SESSION_COOKIE_AGE="a day")
    assert bad.returncode != 0 and "SESSION_COOKIE_AGE" in bad.stderr.strip().splitlines()[-1]


def test_sightline_tls_and_csp_media_sources_come_from_the_environment():
    assert _start_printing("SESSION_COOKIE_SECURE", SIGHTLINE_TLS="1") == "True"
    assert _start_printing("CSRF_COOKIE_SECURE", SIGHTLINE_TLS="1") == "True"
    assert _start_printing("SESSION_COOKIE_SECURE") == "False"
    media = _start_printing("CONTENT_SECURITY_POLICY['DIRECTIVES']['media-src']",
                            STORAGE_BACKEND="s3", S3_ENDPOINT_URL="https://minio.example.com:9000/bucket")
    assert "https://minio.example.com:9000" in media


def _start_printing(expression: str, **env) -> str:
    import os
    import subprocess
    import sys

    from tests.test_settings import ROOT

    environment = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                   "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "settings-test", **env}
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{expression})"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
