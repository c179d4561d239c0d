"""What every Sightline socket shares: refusing with a documented close code, heartbeats,
a dispatch without Channels' per-message database clean-up, and clean-up that runs
exactly once however the socket ends (a client close, a refusal, or a handler that raised)."""
from __future__ import annotations

import asyncio
import logging
import time

from channels.consumer import get_handler_name
from channels.db import aclose_old_connections
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from streams import metrics
from streams.limits import BURST_SECONDS, MAX_VIEWER_TEXT_PER_SECOND, TokenBucket
from sightline_agent.protocol import Close, ProtocolError, dump, parse_text

log = logging.getLogger("streams.consumers")


class ClientGone(Exception):
    """Sending failed because the client has gone (uvicorn raises its ClientDisconnected, an
    OSError, for a send after the connection closed: e.g. a message queued before a 1009)."""


def _guarded(send):
    async def send_or_client_gone(message):
        try:
            await send(message)
        except OSError as error:
            raise ClientGone() from error

    return send_or_client_gone


class SightlineSocket(AsyncWebsocketConsumer):
    endpoint = "socket"
    subprotocol: str | None = None
    text_per_second = MAX_VIEWER_TEXT_PER_SECOND  # text messages a client may send (close 4009 beyond)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accepted = False
        self.closing = False
        self.last_heard = time.monotonic()
        self.heartbeat_seconds: float = 10
        self.dead_after_seconds: float = 30
        self._tasks: list[asyncio.Task] = []
        self._cleaned_up = False
        self.text_bucket = TokenBucket(self.text_per_second, self.text_per_second * BURST_SECONDS)

    async def __call__(self, scope, receive, send):
        await super().__call__(scope, receive, _guarded(send))

    async def dispatch(self, message):
        # Channels' dispatch runs close_old_connections() through a thread hop
        # before every handler: a quarter of the cost of a frame. Handlers here
        # reach the database only via database_sync_to_async, which cleans up itself.
        try:
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {message['type']!r}")
            await handler(message)
        except StopConsumer:
            raise
        except ClientGone:
            # Nothing to tell a client that is gone; its websocket.disconnect may never be read.
            log.debug("%s socket: client gone while handling %r", self.endpoint, str(message.get("type"))[:60])
            self.closing = True
            await self.clean_up(1006)
            raise StopConsumer() from None
        except Exception:
            # Left to Channels, the exception would end the ASGI call: the server
            # drops the TCP connection (the client sees 1006) and disconnect()
            # never runs, so the hub, groups and tasks would keep this socket forever.
            await self.handler_failed(message)
            raise StopConsumer() from None

    async def handler_failed(self, message) -> None:
        """A handler raised: log it once, close with 1011 after an error message, clean up."""
        log.exception(
            "%s socket: handler for %r raised; closing with %s",
            self.endpoint, str(message.get("type"))[:60], Close.SERVER_ERROR,
        )
        await self.refuse(Close.SERVER_ERROR, "internal server error")
        await self.clean_up(Close.SERVER_ERROR)

    async def websocket_disconnect(self, message):
        await self.clean_up(message.get("code", 1006))
        await aclose_old_connections()
        raise StopConsumer()

    async def clean_up(self, code: int) -> None:
        """Leave groups, run disconnect() and stop tasks: once, whatever ended the socket."""
        if self._cleaned_up:
            return
        self._cleaned_up = True
        self.closing = True
        for group in self.groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # the group entry expires with the channel layer's group_expiry
                log.warning("%s socket: could not leave group %s", self.endpoint, group, exc_info=True)
        try:
            await self.disconnect(code)
        except Exception:
            log.exception("%s socket: disconnect() raised", self.endpoint)
        await self.stop_tasks()

    async def accept_socket(self) -> None:
        await self.accept(self.subprotocol)
        self.accepted = True
        self.last_heard = time.monotonic()
        self.start_task(self._heartbeat(), "heartbeat")

    def start_task(self, coroutine, name: str) -> asyncio.Task:
        task = asyncio.create_task(coroutine, name=f"sightline-{self.endpoint}-{name}")
        self._tasks.append(task)
        return task

    async def stop_tasks(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._tasks = []

    async def send_message(self, message: dict) -> None:
        """Send a JSON message (viewers override this to go through their outbox)."""
        await self.send(text_data=dump(message))

    async def before_close(self) -> None:
        """Hook: stop anything else writing to the socket before the closing messages."""

    async def refuse(self, code: int, message: str) -> None:
        """Close with a documented code, after an {"type":"error"} saying why.

        Refusals happen after the handshake, since a close before accept
        reaches a browser as a bare HTTP 403 with no code.
        """
        if self.closing:
            return
        self.closing = True
        metrics.CLOSES.labels(self.endpoint, str(code)).inc()
        try:
            await self.before_close()
            if not self.accepted:
                await self.accept(self.subprotocol)
                self.accepted = True
            await self.send(text_data=dump({"type": "error", "code": code, "message": message}))
            await self.close(code)
        except Exception:  # the client may already be gone; nothing else to do
            log.debug("error while closing %s socket", self.endpoint, exc_info=True)

    async def _heartbeat(self) -> None:
        """Ping every heartbeat_seconds; close 4011 when nothing was heard for dead_after_seconds."""
        ping_id = 0
        next_ping = time.monotonic() + self.heartbeat_seconds
        while not self.closing:
            now = time.monotonic()
            dead_at = self.last_heard + self.dead_after_seconds
            if now >= dead_at:
                await self.refuse(Close.HEARTBEAT_TIMEOUT, f"nothing received for {self.dead_after_seconds} s")
                return
            if now >= next_ping:
                ping_id += 1
                next_ping = now + self.heartbeat_seconds
                await self.send_message({"type": "ping", "id": ping_id, "ts": time.time()})
            await asyncio.sleep(max(0.01, min(next_ping, dead_at) - time.monotonic()))

    def check_text_rate(self) -> None:
        if not self.text_bucket.take():
            raise ProtocolError(Close.RATE_LIMITED, f"more than {self.text_per_second} text messages/s")

    def parse_browser_text(self, text_data: str | None, allowed: set[str]) -> dict:
        """A browser socket's message: text only, within the rate, JSON of an allowed type."""
        if text_data is None:
            raise ProtocolError(Close.UNEXPECTED_TEXT, f"the {self.endpoint} socket takes text messages only")
        self.check_text_rate()
        return parse_text(text_data, allowed)

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    @staticmethod
    def pong_for(message: dict) -> dict:
        return {"type": "pong", "id": message.get("id"), "ts": message.get("ts"), "server_ts": time.time()}
