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
from django.utils.http import is_same_domain

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


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a serialised origin, default port filled in; None if it is not one."""
    try:
        parts = urlsplit(origin.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        return None
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, host.lower(), port or _DEFAULT_PORTS[scheme]


def _origin_matches(origin: tuple[str, str, int], allowed: str) -> bool:
    """Exact scheme, host and port; a CSRF_TRUSTED_ORIGINS wildcard like https://*.example.com
    matches subdomains (as Django's CSRF check does), still with the same scheme and port."""
    wildcard = "://*." in allowed
    wanted = _origin_parts(allowed.replace("://*.", "://", 1) if wildcard else allowed)
    if wanted is None:
        return False
    scheme, host, port = origin
    if (scheme, port) != (wanted[0], wanted[2]):
        return False
    return is_same_domain(host, "." + wanted[1]) if wildcard else host == wanted[1]


def origin_allowed(origin: str | None, allowed_origins: list[str]) -> bool:
    """A browser socket's Origin must equal one of allowed_origins in scheme, host and port."""
    if not origin or origin == "null":
        return False
    parts = _origin_parts(origin)
    return parts is not None and any(_origin_matches(parts, allowed) for allowed in allowed_origins)


def own_origin(scope, allowed_hosts: list[str]) -> str | None:
    """The portal's origin as this socket reached it: the Host header (if it names one of
    ALLOWED_HOSTS) with the scheme the socket came in on, ws -> http, wss -> https. The ASGI
    server sets the scheme from X-Forwarded-Proto only for TRUSTED_PROXIES."""
    host = header(scope, b"host")
    if not host and scope.get("server"):
        server_host, server_port = scope["server"][0], scope["server"][1]
        host = f"{server_host}:{server_port}" if server_port else str(server_host)
    if not host:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    return f"{scheme}://{host}"


def allowed_origins_for_scope(scope) -> list[str]:
    """What Django's CSRF check allows for a request: its own origin, and CSRF_TRUSTED_ORIGINS."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    own = own_origin(scope, hosts)
    return ([own] if own else []) + list(settings.CSRF_TRUSTED_ORIGINS)


def origin_allowed_for_scope(scope) -> bool:
    return origin_allowed(header(scope, b"origin"), allowed_origins_for_scope(scope))


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
