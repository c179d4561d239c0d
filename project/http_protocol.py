"""uvicorn's HTTP protocol with a deadline for the request head (`--http project.http_protocol:HeaderDeadlineProtocol`).

uvicorn (0.54, both its httptools and h11 protocols) arms no timer while a
request's line and headers arrive: its keep-alive timeout only runs between
requests, and every byte received cancels it. A client that sends
"GET /ws/device/ HTTP/1.1" and a few headers, then nothing, holds its
connection (and a file descriptor) until it goes away; 200 such upgrades held
for 30 s were never dropped. uvicorn has no setting for this (its issue #157,
"--timeout-request-start", is still open), so this subclass closes a
connection whose request head is not complete within HANDSHAKE_TIMEOUT_SECONDS
(env, default 10 s) of the connection opening or of the request's first byte.

Only the head is timed: a WebSocket upgrade is handed over as soon as its head
is complete, and request bodies and responses are not limited here. It extends
uvicorn's httptools protocol (installed with uvicorn[standard], pinned in
requirements.txt) through its parser callbacks; tests/integration/test_flood.py
checks it against the pinned version.
"""
from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from project.env import env_float

log = logging.getLogger("sightline.http")

HANDSHAKE_TIMEOUT_SECONDS = env_float("HANDSHAKE_TIMEOUT_SECONDS", 10.0)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    head_timeout = HANDSHAKE_TIMEOUT_SECONDS
    dropped = 0  # connections closed for an incomplete head, in this process

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_deadline()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None and self.head_timeout > 0:
            self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            HeaderDeadlineProtocol.dropped += 1
            log.debug("closing a connection whose request head was not complete within %s s", self.head_timeout)
            self.transport.close()
