"""Talk-back: an operator's microphone, from the viewer socket to the device's speaker
(docs/protocol.md, section 4a).

    browser --talk start--> viewer consumer --TalkFloor.start()--> Redis lock <prefix>:talk:<device>
    browser ==kind-3 audio==> viewer consumer ==group_send device.<id> "device.talk"==> device consumer
                                                            --> {"type":"talk"} + binary to the device

One talker per device: the lock is a Redis key set with NX and an expiry, renewed while
audio flows, released on stop or disconnect, so a crashed server frees it within
LOCK_SECONDS. Every viewer of the device, on any process, hears who talks through a
`talk` event on the device's frames channel (streams/broadcast.py relays it).
Sessions are logged in TalkSession (who, device, start, end).
"""
from __future__ import annotations

import json
import logging
import time
import uuid

from channels.db import database_sync_to_async
from django.utils import timezone

from streams import groups
from streams.limits import TokenBucket
from sightline_agent.protocol import HEADER_SIZE, KIND_AUDIO, Close, ProtocolError, parse_header

log = logging.getLogger("streams.talkback")

LOCK_SECONDS = 5  # a talker silent (or gone) this long loses the floor
RENEW_EVERY_SECONDS = 1.0
MAX_TALK_FRAME_BYTES = 16 * 1024  # 20 ms of 48 kHz PCM is 1920 bytes; Opus far less
MAX_TALK_FRAMES_PER_SECOND = 100

# talk_result errors (documented in docs/protocol.md section 4a)
FORBIDDEN = "forbidden"  # this role may not talk (viewers never can)
OFFLINE = "device_offline"
UNSUPPORTED = "unsupported"  # the device's hello offers no talk-back, or not this codec
BUSY = "busy"  # someone else is talking

_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def talk_refusal(may_talk: bool, online: bool, media: dict | None, codec, rate) -> str | None:
    """Why a talk request cannot start (before the lock is tried), or None. Pure."""
    if not may_talk:
        return FORBIDDEN
    if not online:
        return OFFLINE
    talkback = (media or {}).get("talkback")
    if not talkback or codec not in talkback.get("codecs", []):
        return UNSUPPORTED
    if codec == "pcm_s16le" and rate != talkback.get("rate"):
        return UNSUPPORTED
    return None


def talk_event(device_id, talking: str | None) -> dict:
    """What every viewer of the device is told: who talks now (None: nobody)."""
    return {"type": "talk", "device_id": str(device_id), "talking": talking}


async def current_talker(client, device_id) -> str | None:
    raw = await client.get(groups.talk_key(device_id))
    if raw is None:
        return None
    try:
        return json.loads(raw).get("name")
    except ValueError:
        return None


def _start_session(device_id, user, name: str, codec: str) -> int:
    from streams.models import TalkSession

    return TalkSession.objects.create(device_id=device_id, user=user, user_name=name, codec=codec).pk


def _end_session(session_id: int) -> None:
    from streams.models import TalkSession

    TalkSession.objects.filter(pk=session_id, ended_at=None).update(ended_at=timezone.now())


class TalkFloor:
    """One viewer socket's talk-back: its request, its hold on the lock, its audio.

    `send_device(event)` reaches the device's consumer (channel layer group);
    `announce(event)` reaches every viewer of the device (frames channel).
    """

    def __init__(self, client, device_id, user, name: str, send_device, announce):
        self.client, self.device_id, self.user, self.name = client, str(device_id), user, name
        self.send_device, self.announce = send_device, announce
        self.token: str | None = None
        self.session_id: int | None = None
        self.codec: str | None = None
        self.renewed_at = 0.0
        self.bucket = TokenBucket(MAX_TALK_FRAMES_PER_SECOND, MAX_TALK_FRAMES_PER_SECOND * 2)

    @property
    def holding(self) -> bool:
        return self.token is not None

    async def start(self, may_talk: bool, online: bool, media: dict | None, codec, rate) -> dict:
        """Try to take the floor; returns the talk_result for the browser."""
        if self.holding:
            return {"type": "talk_result", "ok": True, "talking": self.name}
        refusal = talk_refusal(may_talk, online, media, codec, rate)
        if refusal is not None:
            return {"type": "talk_result", "ok": False, "error": refusal}
        token = uuid.uuid4().hex
        holder = json.dumps({"token": token, "name": self.name, "user_id": self.user.pk, "since": time.time()})
        if not await self.client.set(groups.talk_key(self.device_id), holder, nx=True, ex=LOCK_SECONDS):
            return {"type": "talk_result", "ok": False, "error": BUSY,
                    "talking": await current_talker(self.client, self.device_id)}
        self.token, self.codec, self.renewed_at = token, codec, time.monotonic()
        self.session_id = await database_sync_to_async(_start_session)(self.device_id, self.user, self.name, codec)
        log.info("talk-back started: %s to device %s (%s)", self.name, self.device_id, codec)
        await self.send_device({"type": "device.talk", "state": "start", "codec": codec,
                                "rate": 48000 if codec == "opus" else rate, "channels": 1, "user": self.name})
        await self.announce(talk_event(self.device_id, self.name))
        return {"type": "talk_result", "ok": True, "talking": self.name}

    async def audio(self, data: bytes) -> None:
        """One binary message from the talker: a whole kind-3 frame, relayed as it is."""
        if not self.bucket.take():
            raise ProtocolError(Close.RATE_LIMITED, f"more than {MAX_TALK_FRAMES_PER_SECOND} talk frames/s")
        header = parse_header(data, MAX_TALK_FRAME_BYTES)
        if header.kind != KIND_AUDIO or header.chunk_count != 1 or len(data) - HEADER_SIZE > MAX_TALK_FRAME_BYTES:
            raise ProtocolError(Close.UNEXPECTED_TEXT, "talk-back takes whole audio frames (kind 3, unchunked)")
        now = time.monotonic()
        if now - self.renewed_at >= RENEW_EVERY_SECONDS:
            self.renewed_at = now
            if not await self.client.eval(_RENEW, 1, groups.talk_key(self.device_id), self.token, LOCK_SECONDS):
                # Silent for LOCK_SECONDS: the floor expired and someone else may hold it now.
                await self._ended("lost the floor", announce=False)
                return
            # Said again every second: pages forget a talker not heard of for LOCK_SECONDS
            # (a server that died mid-talk never says "nobody").
            await self.announce(talk_event(self.device_id, self.name))
        await self.send_device({"type": "device.talk", "state": "audio", "data": data})

    async def stop(self, reason: str = "stopped") -> None:
        if not self.holding:
            return
        try:
            await self.client.eval(_RELEASE, 1, groups.talk_key(self.device_id), self.token)
        finally:
            await self._ended(reason)

    async def _ended(self, reason: str, announce: bool = True) -> None:
        self.token = None
        session_id, self.session_id = self.session_id, None
        if session_id is not None:
            await database_sync_to_async(_end_session)(session_id)
        log.info("talk-back ended: %s to device %s (%s)", self.name, self.device_id, reason)
        await self.send_device({"type": "device.talk", "state": "stop"})
        if announce:
            await self.announce(talk_event(self.device_id, None))

