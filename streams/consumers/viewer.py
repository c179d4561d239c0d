"""/ws/view/<device_id>/: a logged-in viewer watching one device.

Frames do not pass through this consumer's dispatch at all: the process hub
(streams/broadcast.py) puts them in this socket's Outbox and the sender task
writes them. Everything this consumer sends goes through the same Outbox, so
one task writes to the socket.
"""
from __future__ import annotations

import asyncio
import logging
import uuid

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.permissions import CONTROL, VIEW, role_allows
from accounts.tenancy import NotFound, devices_for, get_device_for, role_in
from streams import auth, control, devicemedia, groups, keyframes, metrics, presence, signalling, talkback
from streams.broadcast import Outbox, get_hub, redis_client, run_sender
from streams.consumers.access import AccessWatcher
from streams.consumers.base import SightlineSocket
from streams.limits import BURST_SECONDS, MAX_PENDING_COMMANDS, MAX_VIEWER_TEXT_PER_SECOND, Limits
from streams.webrtc_relay import WebrtcRelay
from sightline_agent.protocol import (
    HEADER_SIZE,
    KIND_AUDIO,
    KIND_FMP4,
    KIND_JPEG,
    KIND_METADATA,
    KIND_NAMES,
    MAX_TEXT_BYTES,
    VIEWER_MESSAGE_TYPES,
    Close,
    ProtocolError,
    dump,
)

log = logging.getLogger("streams.consumers.viewer")
_KIND_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}
_MESSAGE_TYPES = VIEWER_MESSAGE_TYPES | signalling.MESSAGE_TYPES


def _viewer_context(user, device_id):
    device = get_device_for(user, device_id, VIEW)
    role = role_in(user, device.organisation)
    can_control = role_allows(role, CONTROL) and devices_for(user, CONTROL).filter(pk=device.pk).exists()
    return device, role, can_control


def _may_control(user, device_id) -> bool:
    return devices_for(user, CONTROL).filter(pk=device_id).exists()


def viewer_limits(limits: Limits) -> dict:
    """What a viewer must be able to take and may send (docs/protocol.md, section 5)."""
    return {
        # Frames arrive whole: the largest binary message is a frame plus its header.
        "max_frame_bytes": limits.max_frame_bytes,
        "max_binary_message_bytes": limits.max_frame_bytes + HEADER_SIZE,
        "max_text_bytes": MAX_TEXT_BYTES,
        "max_messages_per_second": MAX_VIEWER_TEXT_PER_SECOND,
        "burst_seconds": BURST_SECONDS,
        "heartbeat_seconds": limits.heartbeat_seconds,
        "dead_after_seconds": limits.dead_after_seconds,
        "command_timeout_seconds": limits.command_timeout_seconds,
        "max_pending_commands": MAX_PENDING_COMMANDS,
    }


async def browser_user_or_refusal(socket: SightlineSocket):
    """Shared checks of browser sockets: Origin, session, the address's failure limit.

    Returns (user, failures, address), or None after refusing. Nothing shared is
    used before the handshake gate admits the socket, and a valid session is
    accepted even from an address over the failure limit (4429 refuses failures only).
    """
    address = auth.client_address(socket.scope)
    if not auth.origin_allowed_for_scope(socket.scope):
        metrics.AUTH_FAILURES.labels(socket.endpoint, "origin").inc()
        log.warning("%s socket refused: origin %r not allowed", socket.endpoint, auth.header(socket.scope, b"origin"))
        await socket.refuse(Close.FORBIDDEN, "origin not allowed")
        return None
    with auth.handshake_gate().admit(address) as admitted:
        if not admitted:
            metrics.AUTH_FAILURES.labels(socket.endpoint, "overloaded").inc()
            await socket.refuse(Close.TRY_AGAIN_LATER, "too many connection attempts in progress; try again later")
            return None
        try:
            user = await auth.user_from_scope(socket.scope)
        except Exception:  # database unavailable: a documented close, never HTTP 500
            log.warning("could not check a %s socket's session (address %s)", socket.endpoint, address, exc_info=True)
            user = None
    if user is None:  # refused after giving the place back: a refusal waits for the client's close
        await socket.refuse(Close.TRY_AGAIN_LATER, "the server could not check your session; try again later")
        return None
    failures = auth.auth_failures()
    if not user.is_authenticated:
        metrics.AUTH_FAILURES.labels(socket.endpoint, "no_session").inc()
        await socket.refuse(*await failures.refusal(address, Close.NOT_AUTHENTICATED, "log in first"))
        return None
    return user, failures, address


class ViewerConsumer(AccessWatcher, SightlineSocket):
    endpoint = "view"

    async def connect(self):
        limits = Limits.from_settings()
        self.limits = limits
        self.heartbeat_seconds = limits.heartbeat_seconds
        self.dead_after_seconds = limits.dead_after_seconds
        self.outbox: Outbox | None = None
        self.device = None
        self.pending: dict[str, tuple[object, asyncio.TimerHandle]] = {}
        self.talk: talkback.TalkFloor | None = None
        self.webrtc: WebrtcRelay | None = None
        checked = await browser_user_or_refusal(self)
        if checked is None:
            return
        self.user, failures, address = checked
        await self.watch_access(self.user)
        device_id = self.scope["url_route"]["kwargs"]["device_id"]
        try:
            device, role, can_control = await database_sync_to_async(_viewer_context)(self.user, device_id)
        except NotFound:
            metrics.AUTH_FAILURES.labels(self.endpoint, "not_found").inc()
            return await self.refuse(*await failures.refusal(address, Close.NOT_FOUND, "no such device"))
        except Exception:  # database unavailable: a documented close, never HTTP 500
            log.warning("could not look up device %.64s for a viewer", device_id, exc_info=True)
            return await self.refuse(Close.TRY_AGAIN_LATER, "the server could not look up this device; try again later")
        self.device, self.role, self.can_control = device, role, can_control
        await self.accept_socket()
        live = await presence.snapshot(redis_client(), [device.pk])
        online, last_seen = presence.merge_with_row(device, live.get(str(device.pk)))
        media = await devicemedia.read(redis_client(), device.pk) if online else None
        talking = await talkback.current_talker(redis_client(), device.pk) if online else None
        source = (await presence.sources(redis_client(), [device.pk]))[str(device.pk)] if online else None
        self.outbox = Outbox()
        self.outbox.put_control(dump({
            "type": "welcome",
            "device": {
                "id": str(device.pk),
                "name": device.name,
                "online": online,
                "last_seen": last_seen,
                **({"source": source} if source else {}),  # hello.source.kind, while online
                "settings": device.stream_settings,
                "expected_media": device.expected_media,
            },
            "role": role,
            "can_control": can_control,
            "limits": viewer_limits(limits),
            "media": media,
            "talking": talking,
            "webrtc": {"ice_servers": settings.SIGHTLINE.get("WEBRTC_ICE_SERVERS", [])},
        }))
        self.webrtc = WebrtcRelay(device.pk, self.channel_name, self.channel_layer, redis_client(), self.send_message,
                                  settings.SIGHTLINE.get("WEBRTC_ANSWER_TIMEOUT_SECONDS", 3))
        # Subscribe before the sender starts: the welcome (control goes first)
        # then means "every frame from now on reaches you".
        await get_hub().add_viewer(device.pk, self.outbox)
        self.start_task(run_sender(self.outbox, self.base_send), "sender")

    async def access_allows(self, user) -> bool:
        """Still allowed to watch, and to control if the welcome said so (losing control closes
        too: the welcome's can_control would be stale; a reconnect gets the new one)."""
        try:
            _device, _role, can_control = await database_sync_to_async(_viewer_context)(user, self.device.pk)
        except NotFound:
            return False
        return can_control or not self.can_control

    async def send_message(self, message: dict) -> None:
        if self.outbox is not None and not self.outbox.closed:
            self.outbox.put_control(dump(message))

    async def before_close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        await self.stop_tasks()

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        self.heard()
        try:
            if bytes_data is not None and self.talk is not None and self.talk.holding:
                return await self.talk.audio(bytes_data)  # the talker's microphone
            message = self.parse_browser_text(text_data, _MESSAGE_TYPES)
            kind = message["type"]
            if kind == "ping":
                await self.send_message(self.pong_for(message))
            elif kind == "subscribe":
                self._subscribe(message)
                if message.get("mode") == "mse":  # start the fragments at a fresh keyframe
                    await keyframes.request_keyframe(self.channel_layer, self.device.pk, "mse")
            elif kind == "command":
                await self._command(message)
            elif kind == "talk":
                await self._talk(message)
            elif kind in signalling.MESSAGE_TYPES:
                await self.webrtc.handle(message)
        except ProtocolError as error:
            await self.refuse(error.code, error.message)

    def _subscribe(self, message: dict) -> None:
        names = message.get("kinds")
        mode = message.get("mode", "frames")
        if mode not in ("frames", "mse"):
            raise ProtocolError(Close.UNEXPECTED_TEXT, 'subscribe.mode must be "frames" or "mse"')
        if names is None:
            kinds = None
        # isinstance first: a dict or list item is unhashable and would raise in the lookup.
        elif not isinstance(names, list) or not all(isinstance(name, str) and name in _KIND_BY_NAME for name in names):
            raise ProtocolError(Close.UNEXPECTED_TEXT, f"subscribe.kinds must be a list of {sorted(_KIND_BY_NAME)}")
        else:
            kinds = frozenset(_KIND_BY_NAME[name] for name in names)
        if mode == "mse":
            # Fragmented MP4 (kind 5) in place of H.264; JPEG, audio, metadata only if asked for.
            kinds = frozenset({KIND_FMP4}) | ((kinds or frozenset()) & {KIND_JPEG, KIND_AUDIO, KIND_METADATA})
        self.outbox.kinds = kinds
        get_hub().set_mse(self.device.pk, self.outbox, mode == "mse")

    async def _command(self, message: dict) -> None:
        client_id = message.get("id")
        if not isinstance(client_id, (str, int)) or isinstance(client_id, bool) or len(str(client_id)) > 64:
            raise ProtocolError(Close.UNEXPECTED_TEXT, "command.id must be a string or number of at most 64 characters")
        # Roles can change during a session: ask again for every command.
        if not await database_sync_to_async(_may_control)(self.user, self.device.pk):
            return self._result(client_id, ok=False, error=control.ERROR_FORBIDDEN)
        try:
            settings = control.validate_settings(message.get("settings"), self.limits.max_fps)
        except control.InvalidSettings as error:
            return self._result(client_id, ok=False, error=f"invalid: {error}")
        if len(self.pending) >= MAX_PENDING_COMMANDS:
            return self._result(client_id, ok=False, error=control.ERROR_BUSY)
        live = await presence.snapshot(redis_client(), [self.device.pk])
        if not live[str(self.device.pk)][0]:
            return self._result(client_id, ok=False, error=control.ERROR_OFFLINE)
        command_id = uuid.uuid4().hex
        timer = asyncio.get_running_loop().call_later(
            self.limits.command_timeout_seconds, self._timed_out, command_id
        )
        self.pending[command_id] = (client_id, timer)
        await control.asend_command(self.device.pk, command_id, settings, self.channel_name)

    async def _talk(self, message: dict) -> None:
        """Talk-back (streams/talkback.py): take or give back the device's speaker."""
        action = message.get("action")
        if action not in ("start", "stop"):
            raise ProtocolError(Close.UNEXPECTED_TEXT, "talk.action must be start or stop")
        if self.talk is None:
            device_id = self.device.pk
            name = (self.user.get_full_name() or self.user.get_username())[:150]
            self.talk = talkback.TalkFloor(
                redis_client(), device_id, self.user, name,
                send_device=lambda event: self.channel_layer.group_send(groups.device_group(device_id), event),
                announce=lambda event: redis_client().publish(groups.frames_channel(device_id), dump(event)),
            )
        if action == "stop":
            return await self.talk.stop()
        # Roles can change during a session: ask again for every talk.
        may_talk = await database_sync_to_async(_may_control)(self.user, self.device.pk)
        online = (await presence.snapshot(redis_client(), [self.device.pk]))[str(self.device.pk)][0]
        media = await devicemedia.read(redis_client(), self.device.pk) if online else None
        result = await self.talk.start(may_talk, online, media, message.get("codec"), message.get("rate"))
        if not result["ok"] and result["error"] == talkback.FORBIDDEN:
            log.warning("talk-back refused: user %s (id %s, role %s) may not talk to device %s",
                        self.user.get_username()[:150], self.user.pk, self.role, self.device.pk)
        self.outbox.put_control(dump(result))

    def _timed_out(self, command_id: str) -> None:
        entry = self.pending.pop(command_id, None)
        if entry is not None:
            self._result(entry[0], ok=False, error=control.ERROR_TIMEOUT)

    def _result(self, client_id, ok: bool, applied: dict | None = None, error: str | None = None) -> None:
        result = {"type": "command_result", "id": client_id, "ok": ok}
        if ok:
            result["applied"] = applied or {}
        else:
            result["error"] = error
        metrics.COMMANDS.labels("ok" if ok else (error or "error").split(":")[0]).inc()
        if self.outbox is not None:
            self.outbox.put_control(dump(result))

    async def command_result(self, event):
        """The device's ack, sent back by the consumer holding the device."""
        entry = self.pending.pop(event.get("id"), None)
        if entry is None:
            return  # already timed out
        client_id, timer = entry
        timer.cancel()
        self._result(client_id, ok=bool(event.get("ok")), applied=event.get("applied"), error=event.get("error"))

    async def webrtc_signal(self, event):
        """An answer, candidate, error or bye from the WebRTC process (streams/webrtc_relay.py)."""
        if self.webrtc is not None and not self.closing:
            await self.webrtc.on_signal(event)

    async def disconnect(self, code):
        # Runs once (SightlineSocket.clean_up), also after connect() failed half-way.
        self.closing = True
        talk = getattr(self, "talk", None)
        if talk is not None:
            try:
                await talk.stop("viewer disconnected")
            except Exception:  # Redis or the database away: the lock expires by itself
                log.warning("could not end the talk-back of a closing viewer", exc_info=True)
        webrtc = getattr(self, "webrtc", None)
        if webrtc is not None:  # whatever closed the socket (revocation too) ends its peer
            try:
                await webrtc.close("viewer socket closed")
            except Exception:
                log.warning("could not end the WebRTC peer of a closing viewer", exc_info=True)
        pending = getattr(self, "pending", {})
        for _client_id, timer in pending.values():
            timer.cancel()
        pending.clear()
        if getattr(self, "outbox", None) is not None:
            await get_hub().remove_viewer(self.device.pk, self.outbox)
        await self.stop_tasks()
