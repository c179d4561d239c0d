"""Who is on the other end of a socket: device tokens, browser sessions, Origin, failure limits.

Tokens come from the `Authorization: Bearer` header or, for clients that cannot
set headers, from the offered subprotocols ["sightline.v1", "sightline.token.<token>"];
never from the URL. Log tokens only through tokens.redact().
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from http.cookies import CookieError, SimpleCookie
from types import SimpleNamespace
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from streams import admission, groups, limits
from sightline_agent.protocol import Close

log = logging.getLogger(__name__)

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
    """Failed authentications per client address: counted in this process at once, shared
    with every process through Redis in batches (one pipeline per FLUSH_SECONDS at most).

    Nothing here waits for Redis before or during a handshake: `blocked` and `record`
    only touch the process-local FailureCounts; a background task adds the new
    failures to the shared counts and brings those counts back. So a flood of
    failed handshakes costs Redis one round trip per interval, however large.
    """

    FLUSH_SECONDS = 0.5

    def __init__(self, client_factory, allowed: int | None = None, window: int | None = None):
        self.client_factory = client_factory
        self.counts = admission.FailureCounts(
            allowed if allowed is not None else limits.AUTH_FAILURES_ALLOWED,
            window if window is not None else limits.AUTH_FAILURE_WINDOW_SECONDS,
        )
        self._flusher: asyncio.Task | None = None

    def is_blocked(self, address: str) -> bool:
        return self.counts.blocked(address)

    async def record(self, address: str) -> None:
        self.counts.record(address)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_while_needed(), name="sightline-auth-failures")

    async def refusal(self, address: str, code: int, reason: str) -> tuple[int, str]:
        """Record a failed authentication; the code to refuse it with (4429 once over the limit)."""
        blocked = self.is_blocked(address)
        await self.record(address)
        if blocked:
            return Close.AUTH_RATE_LIMITED, "too many failed authentications from your address"
        if self.is_blocked(address):
            log.warning("address %s is over the limit of %s failed authentications in %s s; its failures "
                        "are refused with 4429 until the window ends", address, self.counts.allowed,
                        int(self.counts.window_seconds))
        return code, reason

    async def flush(self) -> None:
        """Add this process's new failures to the shared counts and learn the shared counts."""
        unsent = self.counts.take_unsent()
        if not unsent:
            return
        window = int(self.counts.window_seconds)
        async with self.client_factory().pipeline(transaction=False) as pipe:
            for address, count in unsent.items():
                key = groups.auth_failures_key(address)
                pipe.incrby(key, count)
                pipe.expire(key, window, nx=True)
                pipe.ttl(key)
            results = await pipe.execute()
        for index, address in enumerate(unsent):
            shared, _expire, ttl = results[3 * index: 3 * index + 3]
            self.counts.merge(address, int(shared), ttl if ttl and ttl > 0 else None)

    async def _flush_while_needed(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_SECONDS)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down: the local counts still limit this process
                log.warning("could not share auth failure counts", exc_info=True)
            if not self.counts.has_unsent():
                return

    async def aclose(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            try:
                await self._flusher
            except (asyncio.CancelledError, Exception):
                pass
        self._flusher = None


# Per event loop (tests run one loop per test): the failure view and the handshake gate.
_failures: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AuthFailures]" = weakref.WeakKeyDictionary()
_gates: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, admission.HandshakeGate]" = weakref.WeakKeyDictionary()


def auth_failures() -> AuthFailures:
    """This process's failure counts (the limit is read again each time, for tests that lower it)."""
    from streams.broadcast import redis_client

    loop = asyncio.get_running_loop()
    failures = _failures.get(loop)
    if failures is None:
        failures = _failures[loop] = AuthFailures(redis_client)
    failures.counts.allowed = limits.AUTH_FAILURES_ALLOWED
    failures.counts.window_seconds = limits.AUTH_FAILURE_WINDOW_SECONDS
    return failures


def handshake_gate() -> admission.HandshakeGate:
    """This process's cap on handshakes being authenticated (settings read each time)."""
    conf = settings.SIGHTLINE
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = admission.HandshakeGate(0, 0)
    gate.per_address = conf.get("HANDSHAKES_PER_ADDRESS", limits.HANDSHAKES_PER_ADDRESS)
    gate.total = conf.get("HANDSHAKES_IN_PROGRESS", limits.HANDSHAKES_IN_PROGRESS)
    return gate


async def aclose_loop_state() -> None:
    """Forget the running loop's failure counts and gate (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    _gates.pop(loop, None)
    failures = _failures.pop(loop, None)
    if failures is not None:
        await failures.aclose()
