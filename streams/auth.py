"""Who is on the other end of a socket: device tokens, browser sessions, Origin, failure limits.

Tokens come from the `Authorization: Bearer` header or, for clients that cannot
set headers, from the offered subprotocols ["sightline.v1", "sightline.token.<token>"];
never from the URL. Log tokens only through tokens.redact().
"""
from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from types import SimpleNamespace
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from streams import groups, limits

SUBPROTOCOL = "sightline.v1"
TOKEN_SUBPROTOCOL_PREFIX = "sightline.token."


def header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def token_from_scope(scope) -> str | None:
    value = header(scope, b"authorization")
    if value:
        scheme, _, credential = value.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
    for offered in scope.get("subprotocols") or []:
        if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return offered[len(TOKEN_SUBPROTOCOL_PREFIX):]
    return None


def chosen_subprotocol(scope) -> str | None:
    """Echo sightline.v1 if the client offered it (never echo the token subprotocol)."""
    return SUBPROTOCOL if SUBPROTOCOL in (scope.get("subprotocols") or []) else None


def client_address(scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def origin_allowed(origin: str | None, allowed_hosts: list[str], trusted_origins: list[str]) -> bool:
    """A browser socket's Origin must name one of ALLOWED_HOSTS (or a CSRF trusted origin)."""
    if not origin or origin == "null":
        return False
    if origin in trusted_origins:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return False
    domain, _port = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, allowed_hosts)


def origin_allowed_for_scope(scope) -> bool:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return origin_allowed(header(scope, b"origin"), hosts, list(settings.CSRF_TRUSTED_ORIGINS))


def _session_key(scope) -> str | None:
    raw = header(scope, b"cookie")
    if not raw:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(raw)
    except CookieError:
        return None
    morsel = cookie.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel else None


def _user_for_session_key(session_key: str | None):
    from importlib import import_module

    from django.contrib.auth import get_user
    from django.contrib.auth.models import AnonymousUser

    if not session_key:
        return AnonymousUser()
    engine = import_module(settings.SESSION_ENGINE)
    request = SimpleNamespace(session=engine.SessionStore(session_key))
    return get_user(request)  # also verifies the session's password hash


async def user_from_scope(scope):
    """The logged-in user for a browser socket (AnonymousUser if none), from the session cookie.

    Done here rather than with AuthMiddlewareStack so that frame sends to viewers
    do not pass through the session middleware's send wrapper.
    """
    return await database_sync_to_async(_user_for_session_key)(_session_key(scope))


class AuthFailures:
    """Failed authentications per client address, in Redis so every process counts together."""

    def __init__(self, client, allowed: int | None = None, window: int | None = None):
        self.client = client
        self.allowed = allowed if allowed is not None else limits.AUTH_FAILURES_ALLOWED
        self.window = window if window is not None else limits.AUTH_FAILURE_WINDOW_SECONDS

    async def blocked(self, address: str) -> bool:
        count = await self.client.get(groups.auth_failures_key(address))
        return count is not None and int(count) >= self.allowed

    async def record(self, address: str) -> int:
        key = groups.auth_failures_key(address)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window, nx=True)
            count, _ = await pipe.execute()
        return int(count)
