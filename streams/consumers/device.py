"""/ws/device/ (a camera, token auth) and /ws/publish/<device_id>/ (a browser publishing as a device)."""
from __future__ import annotations

import asyncio
import logging
import time

from channels.db import database_sync_to_async

from accounts.permissions import CONTROL
from accounts.tenancy import NotFound, devices_for, get_device_for
from project.logging import printable
from recordings import alerts, lifecycle, sessions
from sightline_agent import tokens
from streams import auth, control, devicemedia, keyframes, metrics, presence
from streams.broadcast import INGEST_STATS_INTERVAL, IngestPublisher, redis_client
from streams.consumers.access import AccessWatcher
from streams.consumers.base import SightlineSocket
from streams.groups import device_group, org_group, prefix
from streams.limits import MAX_DEVICE_TEXT_PER_SECOND, IngestLimiter, Limits
from streams.models import AuthResult, RecordingPolicy, authenticate_token
from sightline_agent.protocol import (
    DEVICE_MESSAGE_TYPES,
    HEADER_SIZE,
    Close,
    ProtocolError,
    Reassembler,
    parse_text,
    validate_hello,
)
from streams.stats import StreamStats, kind_name
from sightline_agent.tokens import redact

log = logging.getLogger("streams.consumers.device")

WALL_STATS_EVERY = 2  # ingest-stats ticks per wall update
_AUTH_CODES = {
    AuthResult.MALFORMED: (Close.BAD_TOKEN, "malformed token"),
    AuthResult.UNKNOWN: (Close.BAD_TOKEN, "unknown token"),
    AuthResult.REVOKED: (Close.TOKEN_REVOKED, "token revoked"),
    AuthResult.DISABLED: (Close.DEVICE_DISABLED, "device disabled"),
}
_DISCONNECT_CODES = {"token_revoked": Close.TOKEN_REVOKED, "disabled": Close.DEVICE_DISABLED}
# Refusals that count towards the per-address limit (guessing credentials or ids).
_COUNTED = {Close.BAD_TOKEN, Close.TOKEN_REVOKED, Close.NOT_AUTHENTICATED, Close.NOT_FOUND}


def _device_for_publisher(user, device_id):
    """The device a browser may publish as, else (None, close code, reason)."""
    try:
        device = get_device_for(user, device_id, CONTROL)
    except NotFound:
        visible = devices_for(user, "view").filter(pk=device_id).exists() if _is_uuid(device_id) else False
        if visible:
            return None, Close.FORBIDDEN, "your role may not publish as this device"
        return None, Close.NOT_FOUND, "no such device"
    if not device.enabled:
        return None, Close.DEVICE_DISABLED, "device disabled"
    return device, None, None


def takeover_confirmed(query_string: bytes) -> bool:
    """True if the publisher's URL carries takeover=1: the publish page sets it only after the
    person confirmed, in a dialog, that the device connected now is to be replaced."""
    from urllib.parse import parse_qs

    values = parse_qs(query_string.decode("latin-1")).get("takeover", [])
    return bool(values) and values[-1] in ("1", "true", "yes")


def busy_refusal(online: bool, confirmed: bool) -> tuple[int, str] | None:
    """Publishing to a device that is connected replaces it (4012 for the camera, its viewers
    and recording get the browser's frames): refused with 4014 unless the takeover was confirmed."""
    if online and not confirmed:
        return Close.DEVICE_BUSY, ("this device is connected and streaming now; publishing would replace it. "
                                   "Confirm a takeover to do so")
    return None


def _printable(value: str) -> str:
    """A client-chosen value for a log line: control characters escaped, so it stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))[:150]


def _is_uuid(value) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class DeviceConsumer(AccessWatcher, SightlineSocket):
    endpoint = "device"
    text_per_second = MAX_DEVICE_TEXT_PER_SECOND  # pings, acks, stats: each may cost a reply

    async def connect(self):
        self.limits = Limits.from_settings()
        self.heartbeat_seconds = self.limits.heartbeat_seconds
        self.dead_after_seconds = self.limits.dead_after_seconds
        self.subprotocol = auth.chosen_subprotocol(self.scope)
        self.device = None
        self.token_id = None
        self.hello = None
        self.media = None
        self.presence = None
        self.publisher = None
        self.reassembler = Reassembler(self.limits.max_frame_bytes)
        self.limiter = IngestLimiter(self.limits)
        self.stats = StreamStats()
        self.device_stats: dict = {}
        self.pending_commands: dict[str, tuple[str, float, dict]] = {}  # id -> (reply_to, ack deadline, settings)
        self._counted = False
        self.keyframe_limiter = keyframes.KeyframeLimiter()

        address = auth.client_address(self.scope)
        # Nothing shared (Redis, the database thread) is used before the gate admits
        # the handshake; refusals for failed credentials never wait for Redis.
        with auth.handshake_gate().admit(address) as admitted:
            if not admitted:
                metrics.AUTH_FAILURES.labels(self._endpoint_name(), "overloaded").inc()
                return await self.refuse(Close.TRY_AGAIN_LATER, "too many connection attempts in progress; try again later")
            try:
                device, code, reason, token_hint = await self._authenticate()
            except Exception:  # database or Redis unavailable: a documented close, never HTTP 500
                log.warning("could not check a device socket's credentials (address %s)", address, exc_info=True)
                device, code, reason = None, Close.TRY_AGAIN_LATER, "the server could not check your credentials; try again later"
                token_hint = "<unchecked>"
        # The place is given back before refusing: a refusal waits for the client's close.
        if device is None:
            if code in _COUNTED:
                # Only failures count and only failures are refused: a valid token from an
                # address over the limit (one NAT, many cameras) is still accepted above.
                code, reason = await auth.auth_failures().refusal(address, code, reason)
            # Beyond the limit a flood would write a line per attempt: the address going
            # over the limit was logged once (AuthFailures.refusal).
            log.log(
                logging.DEBUG if code == Close.AUTH_RATE_LIMITED else logging.WARNING,
                "device socket refused: %s (address %s, token %s)", reason, address, token_hint,
            )
            metrics.AUTH_FAILURES.labels(self._endpoint_name(), reason).inc()
            return await self.refuse(code, reason)
        self.device = device
        await self.accept_socket()

    async def _authenticate(self):
        device_id = self.scope["url_route"]["kwargs"].get("device_id")
        if device_id is None:
            return await self._authenticate_token()
        return await self._authenticate_publisher(device_id)

    def _endpoint_name(self) -> str:
        return "publish" if self.scope["url_route"]["kwargs"].get("device_id") else "device"

    async def _authenticate_token(self):
        token = auth.token_from_scope(self.scope)
        if not token:
            return None, Close.BAD_TOKEN, "missing token", "<none>"
        if not tokens.TOKEN_RE.match(token):  # the format is public: refuse without the database
            return None, Close.BAD_TOKEN, "malformed token", "<malformed>"
        result, row = await database_sync_to_async(authenticate_token)(token)
        if result != AuthResult.OK:
            code, reason = _AUTH_CODES[result]
            return None, code, reason, redact(token)
        self.token_id = row.pk
        return row.device, None, None, redact(token)

    async def _authenticate_publisher(self, device_id):
        if not auth.origin_allowed_for_scope(self.scope):
            return None, Close.FORBIDDEN, "origin not allowed", "<session>"
        user = await auth.user_from_scope(self.scope)
        if not user.is_authenticated:
            return None, Close.NOT_AUTHENTICATED, "log in first", "<session>"
        await self.watch_access(user)  # a browser publishing: revoking the user closes it (4013)
        device, code, reason = await database_sync_to_async(_device_for_publisher)(user, device_id)
        if device is None:
            return None, code, reason, "<session>"
        online = (await presence.snapshot(redis_client(), [device.pk]))[str(device.pk)][0]
        confirmed = takeover_confirmed(self.scope.get("query_string", b""))
        refusal = busy_refusal(online, confirmed)
        if refusal is not None:
            return None, *refusal, "<session>"
        if online:
            log.warning("device %s taken over from the browser by user %s (id %s)", device.pk,
                        _printable(user.get_username()), user.pk)
        return device, None, None, "<session>"

    async def access_allows(self, user) -> bool:
        """A browser publishing: may the user still publish as this device?"""
        device, _code, _reason = await database_sync_to_async(_device_for_publisher)(user, self.device.pk)
        return device is not None

    # -- messages from the device -------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        self.heard()
        try:
            if bytes_data is not None:
                await self._on_binary(bytes_data)
            else:
                await self._on_text(text_data)
            if self.hello is not None:
                await self._periodic(time.time())
        except ProtocolError as error:
            await self.refuse(error.code, error.message)

    async def _on_binary(self, data: bytes) -> None:
        if self.hello is None:
            raise ProtocolError(Close.FRAME_BEFORE_HELLO, "binary frame before hello")
        self.limiter.check_message(len(data))
        frame = self.reassembler.feed(data)
        if frame is None:
            return
        header = frame.header
        self.limiter.check_frame(header.kind)
        now = time.time()
        size = len(frame.payload)
        # An unchunked message already is the whole-frame message viewers get.
        message = data if len(data) == HEADER_SIZE + size else frame.to_message()
        gap = self.stats.on_frame(header.kind, header.seq, header.timestamp_us, size, now)
        device_label = self.device_label
        metrics.INGEST_FRAMES.labels(device_label, kind_name(header.kind)).inc()
        metrics.INGEST_BYTES.labels(device_label).inc(size)
        if gap:
            metrics.INGEST_SEQ_GAPS.labels(device_label).inc(gap)
        if header.timestamp_us:
            metrics.CAPTURE_TO_SERVER.observe(max(0.0, now - header.timestamp_us / 1e6))
        # Live viewers and, when recording is on, the recorders' hand-off stream (recordings/service.py).
        await self.publisher.frame(message, header.kind, header.keyframe, now)
        metrics.INGEST_HANDLING.observe(time.time() - now)

    async def _on_text(self, text: str) -> None:
        self.check_text_rate()
        message = parse_text(text, DEVICE_MESSAGE_TYPES)
        if self.reassembler.in_progress:
            raise ProtocolError(Close.UNEXPECTED_TEXT, "text message where the next chunk was expected")
        kind = message["type"]
        if self.hello is None and kind != "hello":
            raise ProtocolError(Close.FRAME_BEFORE_HELLO, "the first message must be hello")
        if kind == "hello":
            if self.hello is not None:
                raise ProtocolError(Close.UNEXPECTED_TEXT, "hello was already received")
            await self._on_hello(validate_hello(message))
        elif kind == "ping":
            await self.send_message(self.pong_for(message))
        elif kind == "ack":
            await self._on_ack(message)
        elif kind == "stats":
            self.device_stats = {k: v for k, v in message.items() if isinstance(v, (int, float, str)) and k != "type"}
        elif kind == "error":
            log.info("device %s reported an error: %s", self.device.pk, printable(message.get("message")))
        # "pong": being heard is all it is for.

    async def _on_hello(self, hello: dict) -> None:
        device = self.device
        now = time.time()
        self.hello = hello
        self.device_label = str(device.pk)
        self.presence = presence.Presence(redis_client(), device.pk, ttl=self.limits.dead_after_seconds)
        recording = device.recording_policy != RecordingPolicy.OFF
        # The session also goes into the presence hash: it lives as long as this connection.
        encoded = sessions.encode_session(device.organisation_id, hello.get("audio")) if recording else None
        session = {"rec": encoded} if recording else {}
        # Recording on: each frame also goes to the recorders' durable hand-off (recordings/handoff.py).
        self.publisher = IngestPublisher(device.pk, recording_session=encoded)
        self.media = devicemedia.media_of_hello(hello)
        # What the device streams from (docs/protocol.md, hello.source): a browser on /ws/publish/ is one.
        self.source_kind = "browser" if self._endpoint_name() == "publish" else (hello.get("source") or {}).get("kind")
        if self.source_kind:
            session = {**session, "source": self.source_kind}
        generation = await self.presence.claim(now, {**session, devicemedia.FIELD: devicemedia.encode(self.media)})
        group = device_group(device.pk)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)
        await self.channel_layer.group_send(group, {"type": "device.replaced", "generation": generation})
        metrics.DEVICES_CONNECTED.inc()
        self._counted = True
        # Read after joining the group: a segment closed from now on is a `persisted` message to us.
        persisted = await database_sync_to_async(lifecycle.last_persisted)(device.pk)
        await self.send_message({
            "type": "welcome",
            "protocol": 1,
            "device_id": str(device.pk),
            "settings": device.stream_settings,
            "limits": self.limits.for_welcome(),
            "recording": recording,
            "persisted": persisted,
        })
        await self.presence.write_db(True, now)
        await self._announce(True, now)
        self.start_task(self._publish_stats(), "stats")
        if recording and not await sessions.recorders_alive(redis_client(), prefix(), now):
            await self._no_recorder()
        log.info("device %s connected (agent %s)", device.pk, printable(hello.get("agent"), 80))

    async def _no_recorder(self) -> None:
        """Recording is on but no recorder process is running: say so to the device and the owner."""
        reason = "no recorder process is running (python manage.py record)"
        log.error("device %s should be recorded but %s", self.device.pk, reason)
        await self.send_message({"type": "recording", "state": "degraded", "reason": reason})
        await database_sync_to_async(alerts.set_recording_degraded)(self.device.pk, reason)

    async def _on_ack(self, message: dict) -> None:
        command_id = message.get("id")
        pending = self.pending_commands.pop(command_id, None) if isinstance(command_id, str) else None
        if pending is None:
            return  # unknown or late: the operator was already told "timeout"
        reply_to, deadline, requested = pending
        if time.monotonic() > deadline:
            log.info("device %s acknowledged command %.64s too late: ignored", self.device.pk, command_id)
            return  # the operator is told "timeout"; nothing is saved (docs/protocol.md, "Commands")
        result = {"type": "command.result", "id": command_id}
        if message.get("ok") is True:
            try:
                # A device that omits "applied" applied what it was asked.
                applied = control.validate_settings(message.get("applied") or requested, self.limits.max_fps)
            except control.InvalidSettings as error:
                result.update(ok=False, error=f"invalid: device acknowledged bad settings: {error}")
            else:
                await database_sync_to_async(control.save_applied_settings)(self.device.pk, applied)
                result.update(ok=True, applied=applied)
        else:
            result.update(ok=False, error=f"device: {str(message.get('error') or 'refused')[:200]}")
        await self.channel_layer.send(reply_to, result)

    async def _periodic(self, now: float) -> None:
        """Presence refresh and stats, at most every few seconds (never a DB write per frame)."""
        if self.presence.touch_due(now):
            if not await self.presence.touch(now):
                raise ProtocolError(Close.REPLACED, "a newer connection of this device took over")
            if self.presence.db_write_due(now):
                await self.presence.write_db(True, now)
            self._expire_commands()

    async def _publish_stats(self) -> None:
        """Ingest stats to the relaying processes every second, to the wall every few (a task)."""
        ticks = 0
        while not self.closing:
            await asyncio.sleep(INGEST_STATS_INTERVAL)
            snapshot = self.stats.snapshot(time.time())
            try:
                await self.publisher.event({"type": "ingest_stats", **snapshot})
                ticks += 1
                if ticks % WALL_STATS_EVERY == 0:
                    await self.channel_layer.group_send(
                        org_group(self.device.organisation_id),
                        {"type": "stream.stats", "device_id": str(self.device.pk), **snapshot},
                    )
            except Exception:  # Redis hiccup: the next tick tries again
                log.warning("could not publish stats of device %s", self.device.pk, exc_info=True)

    def _expire_commands(self) -> None:
        now = time.monotonic()
        for command_id in [cid for cid, (_, deadline, _) in self.pending_commands.items() if deadline < now]:
            del self.pending_commands[command_id]

    async def _announce(self, online: bool, now: float) -> None:
        event = presence.presence_event(self.device.pk, online, now,
                                        getattr(self, "source_kind", None) if online else None)
        # Viewers learn from the presence event what the device now sends and can play.
        await self.publisher.event({**event, "media": self.media if online else None})
        await self.channel_layer.group_send(
            org_group(self.device.organisation_id), {**event, "type": "presence.changed"}
        )

    # -- messages from other processes (channel layer) ------------------------------

    async def device_command(self, event):
        if self.hello is None or self.closing:
            return
        if len(self.pending_commands) >= 64:
            self._expire_commands()
        now = time.time()
        deadline = control.ack_deadline(now, self.limits.command_timeout_seconds)
        sent_deadline = event.get("deadline")
        if isinstance(sent_deadline, (int, float)):  # the sender's; our own reckoning caps it (clocks differ)
            deadline = min(deadline, sent_deadline)
        if deadline <= now:
            return  # already past: the operator is (or is about to be) told "timeout"; do not apply it
        self.pending_commands[event["id"]] = (event["reply_to"], time.monotonic() + (deadline - now),
                                              event["settings"])
        await self.send_message({"type": "command", "id": event["id"], "settings": event["settings"]})

    async def device_talk(self, event):
        """Talk-back from an operator (streams/talkback.py), for a device whose hello offered it."""
        if self.hello is None or self.closing or not self.hello.get("talkback"):
            return
        state = event.get("state")
        if state == "audio":
            await self.send(bytes_data=event["data"])
        elif state == "start":
            await self.send_message({"type": "talk", "state": "start", "codec": event.get("codec"),
                                     "rate": event.get("rate"), "channels": 1, "user": event.get("user")})
        elif state == "stop":
            await self.send_message({"type": "talk", "state": "stop"})

    async def device_keyframe(self, event):
        """A viewer path needs a keyframe (streams/keyframes.py): ask the device, rate-limited per device."""
        if self.hello is None or self.closing or not keyframes.wants_keyframe_requests(self.hello.get("codecs")):
            return
        if self.keyframe_limiter.allow(time.monotonic()):
            metrics.KEYFRAME_REQUESTS.labels("sent").inc()
            await self.send_message({"type": "keyframe"})
        else:
            metrics.KEYFRAME_REQUESTS.labels("limited").inc()

    async def device_replaced(self, event):
        if self.presence is not None and event["generation"] > (self.presence.generation or 0):
            await self.refuse(Close.REPLACED, "a newer connection of this device took over")

    async def device_disconnect(self, event):
        token_id = event.get("token_id")
        if token_id is not None and token_id != self.token_id:
            return  # another token of this device was revoked, not ours
        reason = event.get("reason", "disconnected")
        await self.refuse(_DISCONNECT_CODES.get(reason, Close.DEVICE_DISABLED), reason)

    async def segment_persisted(self, event):
        if self.closing:
            return
        await self.send_message({**{k: v for k, v in event.items() if k != "type"}, "type": "persisted"})

    async def recording_state(self, event):
        """The recorder degraded (disk full, storage or database down) or recovered; live goes on."""
        if self.closing:
            return
        await self.send_message({"type": "recording", "state": event.get("state"), "reason": event.get("reason", "")})

    # -- end -----------------------------------------------------------------------

    async def disconnect(self, code):
        # Runs once (SightlineSocket.clean_up), also after connect() failed half-way.
        self.closing = True
        await self.stop_tasks()
        if getattr(self, "_counted", False):
            metrics.DEVICES_CONNECTED.dec()
        if getattr(self, "presence", None) is None:
            return
        try:
            if await self.presence.release():
                now = time.time()
                await self.presence.write_db(False, now)
                await self._announce(False, now)
        except Exception:
            log.exception("could not record device %s going offline", self.device.pk)
        log.info("device %s disconnected (code %s)", self.device.pk, code)
