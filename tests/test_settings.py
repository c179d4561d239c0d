"""Settings come from the environment; a bad value stops the start with a message naming it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from project import env

ROOT = Path(__file__).resolve().parent.parent


def _start(**overrides):
    """Start Django as a server process would, with `overrides` in a clean environment."""
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": "settings-test",
    }
    environment.update({key: value for key, value in overrides.items() if value is not None})
    for key, value in overrides.items():
        if value is None:
            environment.pop(key, None)
    code = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "variable, value",
    [
        ("DATABASE_URL", "mysql://root@localhost/sightline"),
        ("DATABASE_URL", "postgres://sightline@db:5432/"),
        ("REDIS_URL", "http://localhost:6379"),
        ("TRANSCODE_X264_PRESET", "turbo"),
        ("REDIS_URL", "redis://:hunter2@localhost:notaport/0"),
        ("DEBUG", "maybe"),
        ("MAX_FPS", "fast"),
        ("WS_MAX_SIZE_BYTES", "1000"),  # not above MAX_MESSAGE_BYTES: clients would get 1009, not 4006
        ("WS_MAX_SIZE_BYTES", "big"),
        ("WEBRTC_PORT_MIN", "50000"),  # without WEBRTC_PORT_MAX
    ],
)
def test_a_bad_value_fails_at_start_naming_the_variable(variable, value):
    result = _start(**{variable: value})
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert variable in last_line
    assert "hunter2" not in result.stderr  # a password in a URL is never echoed


def test_without_secret_key_production_refuses_to_start():
    result = _start(SECRET_KEY=None)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_good_values_start_with_postgresql_and_without_touching_it():
    result = _start(DATABASE_URL="postgres://sightline@db.invalid:5432/sightline", REDIS_URL="redis://redis.invalid:6379/1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.postgresql"


# -- the typed helpers, directly ------------------------------------------------------------------
def test_booleans_accept_the_usual_spellings(monkeypatch):
    for raw, expected in [("1", True), ("yes", True), ("ON", True), ("0", False), ("false", False), ("", False)]:
        monkeypatch.setenv("SL_FLAG", raw)
        assert env.env_bool("SL_FLAG") is expected
    monkeypatch.delenv("SL_FLAG")
    assert env.env_bool("SL_FLAG", True) is True


def test_integers_are_checked_against_their_minimum(monkeypatch):
    monkeypatch.setenv("SL_NUMBER", "0")
    with pytest.raises(ImproperlyConfigured, match="SL_NUMBER must be >= 1"):
        env.env_int("SL_NUMBER", 5, minimum=1)
    monkeypatch.setenv("SL_NUMBER", "")
    assert env.env_int("SL_NUMBER", 5) == 5


def test_lists_are_comma_separated_and_trimmed(monkeypatch):
    monkeypatch.setenv("SL_HOSTS", " a.example , b.example,,")
    assert env.env_list("SL_HOSTS", []) == ["a.example", "b.example"]


def test_database_urls_become_django_settings(monkeypatch):
    monkeypatch.setenv("SL_DB", "postgres://u:p@db:5433/sightline")
    config = env.database_from_url("SL_DB", "sqlite:///x")
    assert (config["ENGINE"], config["HOST"], config["PORT"], config["NAME"]) == (
        "django.db.backends.postgresql", "db", 5433, "sightline"
    )
    monkeypatch.delenv("SL_DB")
    assert env.database_from_url("SL_DB", "sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"


def test_redis_urls_are_checked_and_redacted(monkeypatch):
    monkeypatch.setenv("SL_REDIS", "rediss://:secret@cache:6380/2")
    assert env.redis_url("SL_REDIS", "redis://x") == "rediss://:secret@cache:6380/2"
    monkeypatch.setenv("SL_REDIS", "redis://:secret@cache/db2")
    with pytest.raises(ImproperlyConfigured) as caught:
        env.redis_url("SL_REDIS", "redis://x")
    assert "SL_REDIS" in str(caught.value) and "secret" not in str(caught.value)


def test_an_empty_value_means_the_default(monkeypatch):
    monkeypatch.setenv("SL_TEXT", "")
    assert env.env_str("SL_TEXT", "fallback") == "fallback"


def test_every_variable_the_settings_read_is_documented():
    source = (ROOT / "project/settings.py").read_text()
    names = set(re.findall(r'(?:env_\w+|database_from_url|redis_url)\(\s*"([A-Z][A-Z0-9_]+)"', source))
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DEBUG"} <= names
    readme, example = (ROOT / "README.md").read_text(), (ROOT / ".env.example").read_text()
    assert not {name for name in names if f"`{name}`" not in readme}, "missing from README's configuration table"
    assert not {name for name in names if not re.search(rf"^#? ?{name}=", example, re.M)}, "missing from .env.example"
