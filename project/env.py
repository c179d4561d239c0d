"""Typed readers for environment variables.

Every setting comes from the environment. A value that cannot be parsed raises
ImproperlyConfigured naming the variable, so a typo fails at start-up rather
than as a confusing error on the first request.
"""
from __future__ import annotations

import os
import re
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """The value, or `default` when unset or empty (an empty line in an env file means "default")."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def csp_sources(name: str, extra_url: str = "") -> list[str]:
    """Origins for a Content-Security-Policy source list: the variable's comma-separated
    origins, plus the origin of extra_url (e.g. S3_ENDPOINT_URL). Each must be scheme://host[:port]."""
    sources = []
    for value in [*env_list(name, []), *([extra_url] if extra_url else [])]:
        parsed = urlparse(value)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise ImproperlyConfigured(f"{name} must list origins like https://media.example.com, got {value!r}")
        sources.append(f"{parsed.scheme}://{parsed.netloc}")
    return list(dict.fromkeys(sources))


def database_from_url(name: str, default: str) -> dict:
    """Parse DATABASE_URL into a Django DATABASES entry (sqlite or postgres only)."""
    import dj_database_url

    raw = os.environ.get(name) or default
    scheme = urlparse(raw).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"{name} must be sqlite:///path or postgres://user@host:port/db, got scheme {scheme!r}"
        )
    try:
        config = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj_database_url raises several types
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    if scheme != "sqlite" and not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgres://host:5432/sightline")
    return config


def redact_url(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def redis_url(name: str, default: str) -> str:
    raw = os.environ.get(name) or default
    parsed = urlparse(raw)
    shown = redact_url(raw)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"{name} must be redis://host:port/db, got {shown!r}")
    if parsed.scheme != "unix":
        if not parsed.hostname:
            raise ImproperlyConfigured(f"{name} must name a host, got {shown!r}")
        try:
            parsed.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has an invalid port: {shown!r}") from None
        db = parsed.path.lstrip("/")
        if db and not db.isdigit():
            raise ImproperlyConfigured(f"{name} database must be a number, got {db!r}")
    return raw
