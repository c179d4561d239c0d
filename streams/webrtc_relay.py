"""The viewer socket's side of WebRTC signalling: relays between one browser and a WebRTC process.

    browser ─webrtc_offer─► ViewerConsumer ─► WebrtcRelay ─channel layer "webrtc.offers"─► any WebRTC process
    browser ◄─webrtc_answer── ViewerConsumer ◄── channel layer (this socket's channel) ◄── that process
    browser ─webrtc_candidate/bye─► … ─► the answering process's own channel
    browser ─webrtc_bye before the answer─► channel-layer group "webrtc.processes" (every WebRTC process)

The socket already passed the tenant lookup for this device (accounts/tenancy.py), so a
relay only ever asks for the device of its own socket: an outsider never gets this far
(4404). When the socket closes for any reason (a revoked membership included) the relay
sends bye, and the WebRTC process closes the peer. State lives here, not in the consumer.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid

from streams import groups, signalling
from streams.signalling import SignallingError

log = logging.getLogger(__name__)

OFFERS_CHANNEL = "webrtc.offers"  # a channel-layer queue every WebRTC process reads
PROCESSES_GROUP = "webrtc.processes"  # a channel-layer group every WebRTC process's own channel joins
PEER_STALE_SECONDS = 6.0  # a WebRTC process beats every 2 s; beyond this it is taken for gone


async def webrtc_processes_alive(redis, now: float) -> int:
    return await redis.zcount(groups.webrtc_peers_key(), now - PEER_STALE_SECONDS, "+inf")


class WebrtcRelay:
    """One viewer socket's WebRTC session (at most one at a time; a new offer replaces it)."""

    def __init__(self, device_id, reply_to: str, channel_layer, redis, send, answer_timeout: float):
        self.device_id = str(device_id)
        self.reply_to = reply_to
        self.layer = channel_layer
        self.redis = redis
        self.send = send  # async callable taking a dict, to the browser
        self.answer_timeout = answer_timeout
        self.session: str | None = None
        self.peer: str | None = None  # the answering process's channel
        self.early: list[dict | None] = []
        self._deadline: asyncio.Task | None = None

    async def handle(self, message: dict) -> None:
        """A webrtc_* message from the browser. Errors are replied, never raised."""
        kind = message["type"]
        try:
            if kind == "webrtc_offer":
                await self._offer(signalling.check_offer(message))
            elif kind == "webrtc_candidate":
                await self._candidate(signalling.check_candidate(message))
            elif kind == "webrtc_bye":
                await self.close("viewer said bye")
        except SignallingError as error:
            await self.send(error.as_message(self.session))

    async def _offer(self, sdp: str) -> None:
        if self.session is not None:
            await self.close("a new offer replaced this session")
        if not await webrtc_processes_alive(self.redis, time.time()):
            raise SignallingError(signalling.UNAVAILABLE, "no WebRTC process is running (python manage.py webrtc)")
        self.session = uuid.uuid4().hex
        self._deadline = asyncio.create_task(self._expire(self.session), name="sightline-webrtc-answer")
        await self.layer.send(OFFERS_CHANNEL, {
            "type": "webrtc.offer", "session": self.session, "reply_to": self.reply_to,
            "device_id": self.device_id, "sdp": sdp,
            # A process that reads it later (it was down, or busy) drops it: the viewer gave up.
            "expires": time.time() + self.answer_timeout,
        })

    async def _candidate(self, candidate: dict | None) -> None:
        if self.session is None:
            raise SignallingError(signalling.NO_SESSION, "send webrtc_offer first")
        if self.peer is None:  # trickled before the answer: kept until we know who answered
            # Beyond the cap they are dropped, not refused: the process learns the browser's
            # address from its connectivity checks anyway (peer-reflexive candidates).
            if len(self.early) < signalling.MAX_EARLY_CANDIDATES:
                self.early.append(candidate)
            return
        await self.layer.send(self.peer, {"type": "webrtc.candidate", "session": self.session, "candidate": candidate})

    async def _expire(self, session: str) -> None:
        await asyncio.sleep(self.answer_timeout)
        if self.session == session and self.peer is None:
            self._forget()
            await self.send(SignallingError(signalling.TIMEOUT, f"no answer within {self.answer_timeout:g} s")
                            .as_message(session))

    async def on_signal(self, event: dict) -> None:
        """A message from the WebRTC process for this socket (answer, candidate, error, bye)."""
        session, message = event.get("session"), event.get("message") or {}
        if session is None or session != self.session:
            return  # an old session's late message
        kind = message.get("type")
        if kind == "webrtc_answer":
            self.peer = event.get("peer")
            self._cancel_deadline()
            early, self.early = self.early, []
            for candidate in early:
                await self.layer.send(self.peer, {"type": "webrtc.candidate", "session": session, "candidate": candidate})
        elif kind in ("webrtc_error", "webrtc_bye"):
            self._forget()
        await self.send({**message, "session": session})

    async def close(self, reason: str) -> None:
        """End the session (browser bye, new offer, socket closed): the WebRTC process closes the peer."""
        session, peer = self.session, self.peer
        self._forget()
        if session is None:
            return
        bye = {"type": "webrtc.bye", "session": session, "device_id": self.device_id, "reason": reason}
        try:
            if peer is not None:
                await self.layer.send(peer, bye)
            else:
                # Not answered yet: we do not know which process took the offer (if any did: it may
                # still be queued), so every process is told. The one holding the peer closes it at
                # once; the others remember the session and drop its offer should it reach them.
                await self.layer.group_send(PROCESSES_GROUP, bye)
        except Exception:
            log.warning("could not send bye for WebRTC session %s", session, exc_info=True)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline is not asyncio.current_task():
            self._deadline.cancel()
        self._deadline = None

    def _forget(self) -> None:
        self._cancel_deadline()
        self.session, self.peer, self.early = None, None, []
