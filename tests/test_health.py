"""GET /healthz, as a load balancer and a compose health check use it."""
import socket
from types import SimpleNamespace

import pytest
from django.core.files.storage import storages
from django.test import override_settings

from project import health


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_it_answers_ok_without_a_login_when_everything_answers(client):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and "failing" not in body
    assert set(body["checks"]) == {"database", "redis", "storage", "spool"}
    assert all(check["ok"] and check["ms"] >= 0 for check in body["checks"].values())
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_it_answers_503_naming_redis_when_redis_is_down(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unhealthy" and body["failing"] == ["redis"]
    assert "Connection" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"]


@pytest.mark.django_db
def test_it_answers_503_naming_storage_when_the_archive_is_not_writable(client, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    recordings = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(blocker / "archive")}}
    with override_settings(STORAGES={**storages.backends, "recordings": recordings}):
        response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["storage"]


@pytest.mark.django_db
def test_it_answers_503_naming_the_database_when_it_fails(client, monkeypatch):
    def broken():
        raise ConnectionError("database is down")

    monkeypatch.setitem(health.CHECKS, "database", broken)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["database"]
    assert response.json()["checks"]["database"]["error"] == "ConnectionError: database is down"


@pytest.mark.django_db
def test_it_refuses_writes(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_low_spool_space_is_reported_as_a_warning_not_a_failure(client, settings, monkeypatch):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "FREE_DISK_WATERMARK_BYTES": 1000}
    for free, warning in [(5000, None), (900, "retention is deleting"), (400, "recording paused")]:
        monkeypatch.setattr(health.shutil, "disk_usage", lambda path, free=free: SimpleNamespace(free=free))
        response = client.get("/healthz")
        spool = response.json()["checks"]["spool"]
        assert response.status_code == 200 and spool["ok"] and spool["free_bytes"] == free
        assert (warning is None and "warning" not in spool) or warning in spool["warning"]
