"""Fan-out of live frames: once through Redis per device, once per process, then to each socket.

    device socket ─► IngestPublisher.frame() ─► Redis PUBLISH groups.frames_channel(device)
                                                     │ (one message per frame, whatever the viewers)
             every server process with viewers of that device: one Hub, one SUBSCRIBE
                                                     ▼
                   Hub ─► DeviceFeed.deliver() ─► Outbox (per viewer) ─► sender task ─► socket

Frames do not go through the channel layer or Channels' per-message dispatch
(which runs a database clean-up in a thread for every message): measured at
210-360 µs of CPU per viewer per frame, against tens of µs here.

Each viewer has an Outbox: a small queue of control messages (JSON), a short
queue for audio/metadata, and ONE video slot where the latest frame wins. A
viewer whose socket is slow therefore loses only its own frames, memory stays
bounded, and for H.264 a drop makes the outbox wait for the next keyframe so
the decoder never gets a frame whose reference it lacks.

JSON messages on the frames channel (first byte "{") carry presence and the
ingesting process's stats; the hub relays presence to viewers verbatim.

MSE viewers (subscribe mode "mse") get fragmented MP4 instead of kind 2: the feed
muxes each access unit ONCE (streams/fmp4.py) while it has at least one MSE viewer,
and offers the same fragment message (kind 5) to each of them.
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
import weakref
from collections import deque

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import NoScriptError

from recordings import handoff
from streams import fmp4, groups, metrics
from sightline_agent.protocol import (
    FLAG_CHUNK_END,
    FLAG_CHUNK_START,
    FLAG_KEYFRAME,
    HEADER,
    HEADER_SIZE,
    KIND_FMP4,
    KIND_H264,
    KIND_JPEG,
    MAGIC,
    VERSION,
    dump,
)
from streams.stats import StreamStats

log = logging.getLogger(__name__)

_SEQ_TS = struct.Struct(">IQ")  # sequence and timestamp at offset 4 of the header
KEYFRAME_TTL_SECONDS = 60
JPEG_STORE_INTERVAL = 1.0  # store at most one JPEG per second for cold processes
STATS_INTERVAL = 1.0
INGEST_STATS_INTERVAL = 1.0

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = weakref.WeakKeyDictionary()
_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def redis_client() -> aioredis.Redis:
    """The process's asyncio Redis client for the running loop.

    A blocking pool of REDIS_POOL_SIZE connections: when all are busy a caller
    waits (up to REDIS_POOL_TIMEOUT_SECONDS) for one to come back instead of
    failing at once with MaxConnectionsError, which once turned a burst of
    handshakes into HTTP 500s and dropped streaming cameras. (Handshakes no
    longer use Redis before authentication at all: streams/admission.py.)

    socket_timeout=None: a blocking pub/sub read must not time out between
    frames (django/channels_redis#422); RESP2 costs about half the CPU of RESP3
    for pub/sub messages.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        conf = settings.SIGHTLINE
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=conf.get("REDIS_POOL_SIZE", 100),
            timeout=conf.get("REDIS_POOL_TIMEOUT_SECONDS", 10),
            socket_timeout=None,
            socket_connect_timeout=5,
            protocol=2,
        )
        client = aioredis.Redis.from_pool(pool)  # closing the client closes its pool
        _clients[loop] = client
    return client


def get_hub() -> "Hub":
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub


async def aclose_loop_resources() -> None:
    """Stop the hub and close the Redis client of the running loop (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.pop(loop, None)
    if hub is not None:
        await hub.aclose()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()


# -- ingest side -----------------------------------------------------------------


class IngestPublisher:
    """Publishes one device's frames and events; used by the consumer holding the device.

    recording_session: the device's recording session (recordings/sessions.py
    encode_session) when recording is on. Then every frame also goes to the
    device's durable hand-off stream that the recorders read
    (recordings/handoff.py), in the same command as the live PUBLISH
    (handoff.INGEST_SCRIPT): one round trip per frame, as without recording.
    """

    def __init__(self, device_id, recording_session: str | None = None):
        self.device_id = str(device_id)
        self.channel = groups.frames_channel(device_id)
        self.keyframe_key = groups.keyframe_key(device_id)
        self._jpeg_stored_at = 0.0
        self._handoff = _Handoff(self, recording_session) if recording_session else None

    async def frame(self, message: bytes, kind: int, keyframe: bool, now: float) -> None:
        """Publish one whole, unchunked frame message (header + payload)."""
        client = redis_client()
        store = (kind == KIND_H264 and keyframe) or (
            kind == KIND_JPEG and now - self._jpeg_stored_at >= JPEG_STORE_INTERVAL
        )
        if store and kind == KIND_JPEG:
            self._jpeg_stored_at = now
        if self._handoff is not None:
            await self._handoff.send(client, b"f", message, store, now)
        elif not store:
            await client.publish(self.channel, message)
        else:
            async with client.pipeline(transaction=False) as pipe:
                pipe.publish(self.channel, message)
                pipe.set(self.keyframe_key, message, ex=KEYFRAME_TTL_SECONDS)
                await pipe.execute()

    async def event(self, message: dict) -> None:
        """Publish a JSON event (presence, ingest stats) to the processes relaying this device.

        A presence event also goes to the recorders' stream: it ends the
        segment being recorded, in order with the frames around it.
        """
        data = dump(message)
        if self._handoff is None or message.get("type") != "presence":
            await redis_client().publish(self.channel, data)
            return
        await self._handoff.send(redis_client(), b"e", data, False, time.time())

    async def forget_keyframe(self) -> None:
        await redis_client().delete(self.keyframe_key)


def _handoff_limits() -> tuple[float, int]:
    """(seconds, bytes) of a device's traffic its hand-off stream holds at most (docs/recording.md)."""
    config = settings.SIGHTLINE
    return (float(config.get("RECORDING_HANDOFF_SECONDS", 30)),
            int(config.get("RECORDING_HANDOFF_MAX_BYTES", 32 * 1024 * 1024)))


class _Handoff:
    """The ingest's side of one device's hand-off stream: one EVALSHA per frame, sized once a second."""

    __slots__ = ("keys", "session", "device_id", "count", "maxlen", "meter", "refresh_at", "seconds",
                 "max_bytes", "ttls")

    def __init__(self, publisher: IngestPublisher, recording_session: str):
        prefix, device_id = groups.prefix(), publisher.device_id
        self.keys = (handoff.stream_key(prefix, device_id).encode(), publisher.channel.encode(),
                     handoff.index_key(prefix, handoff.index_digit(device_id)).encode(),
                     publisher.keyframe_key.encode())
        self.session = handoff.session_field(handoff.new_connection_id(), recording_session)
        self.device_id = device_id.encode()
        self.ttls = (b"%d" % handoff.STREAM_TTL_SECONDS, b"%d" % KEYFRAME_TTL_SECONDS)
        self.count = 0
        self.seconds, self.max_bytes = _handoff_limits()
        self.maxlen = b"0"
        self.meter = handoff.RateMeter(time.monotonic())
        self.refresh_at = 0.0

    async def send(self, client, field: bytes, data: bytes, store: bool, now: float) -> None:
        self.count += 1
        meter = self.meter
        meter.frames += 1
        meter.bytes += len(data)
        refresh = now >= self.refresh_at  # the first entry, then once a second: not per frame
        if refresh:
            self._resize(now, len(data))
        args = (b"4", *self.keys, data, field, self.session, b"%d" % self.count, self.maxlen,
                b"1" if refresh else b"0", b"1" if store else b"0", self.device_id, *self.ttls)
        try:
            await client.execute_command("EVALSHA", handoff.INGEST_SCRIPT_SHA, *args)
        except NoScriptError:  # a restarted or flushed Redis: load it once, then as before
            await client.execute_command("EVAL", handoff.INGEST_SCRIPT, *args)

    def _resize(self, now: float, size: int) -> None:
        fps, mean = self.meter.rate(time.monotonic())
        if not self.refresh_at:  # nothing measured yet
            fps, mean = handoff.DEFAULT_FPS, size
        self.maxlen = b"%d" % handoff.stream_maxlen(fps, mean, self.seconds, self.max_bytes)
        self.refresh_at = now + handoff.INDEX_REFRESH_SECONDS


# -- viewer side -----------------------------------------------------------------


class Outbox:
    """What one viewer socket has still to send. Only the hub and the viewer's sender touch it."""

    CONTROL_MAX = 64
    AUX_MAX = 32

    __slots__ = ("_control", "_aux", "_video", "_need_key", "_event", "kinds", "drops", "sent",
                 "reported_drops", "reported_sent", "closed", "_init")

    def __init__(self):
        self._control: deque[str] = deque()
        self._aux: deque[bytes] = deque()
        self._video: bytes | None = None
        self._need_key = False
        self._event = asyncio.Event()
        self.kinds: frozenset[int] | None = None  # None: every kind
        self.drops = 0
        self.sent = 0
        self.reported_drops = 0
        self.reported_sent = 0
        self.closed = False
        self._init: bytes | None = None  # MSE init segment: after control, before any fragment

    def offer_frame(self, kind: int, keyframe: bool, message: bytes) -> None:
        if self.kinds is not None and kind not in self.kinds:
            return
        if kind == KIND_H264 or kind == KIND_FMP4:
            if self._need_key and not keyframe:
                self.drops += 1
                return
            if self._video is not None:
                self.drops += 1
                if not keyframe:
                    # Keep the queued frame (its reference was sent); this one
                    # and every frame up to the next keyframe are lost.
                    self._need_key = True
                    return
            if keyframe:
                self._need_key = False
            self._video = message
        elif kind == KIND_JPEG:
            if self._video is not None:
                self.drops += 1
            self._video = message
        else:
            if len(self._aux) >= self.AUX_MAX:
                self._aux.popleft()
                self.drops += 1
            self._aux.append(message)
        self._event.set()

    def require_keyframe(self) -> None:
        self._need_key = True

    def put_init(self, text: str, message: bytes) -> None:
        """A new MSE init segment: its description, then it, then fragments from the next keyframe."""
        self.put_control(text)
        self._init = message
        if self._video is not None:
            self._video = None
            self.drops += 1
        self._need_key = True
        self._event.set()

    def put_control(self, text: str) -> None:
        if len(self._control) >= self.CONTROL_MAX:
            self._control.popleft()
        self._control.append(text)
        self._event.set()

    def pop(self) -> str | bytes | None:
        if self._control:
            return self._control.popleft()
        if self._init is not None:
            init, self._init = self._init, None
            return init
        if self._aux:
            return self._aux.popleft()
        video = self._video
        if video is not None:
            self._video = None
        return video

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()

    def close(self) -> None:
        self.closed = True
        self._event.set()


async def run_sender(outbox: Outbox, send) -> None:
    """Drain an outbox into an ASGI send callable until the outbox is closed."""
    while True:
        item = outbox.pop()
        if item is None:
            if outbox.closed:
                return
            await outbox.wait()
            continue
        if item.__class__ is str:
            await send({"type": "websocket.send", "text": item})
        else:
            await send({"type": "websocket.send", "bytes": item})
            outbox.sent += 1


class DeviceFeed:
    """One device's frames as seen by this process, and the local viewers to give them to."""

    __slots__ = ("device_id", "channel", "viewers", "stats", "latest_key", "latest_key_kind",
                 "last_was_key", "ingest_stats", "online", "last_seen", "mse")

    def __init__(self, device_id: str):
        self.device_id = device_id
        self.channel = groups.frames_channel(device_id)
        self.viewers: set[Outbox] = set()
        self.stats = StreamStats()
        self.latest_key: bytes | None = None
        self.latest_key_kind = 0
        self.last_was_key = False
        self.ingest_stats: dict | None = None
        self.online: bool | None = None
        self.last_seen: float | None = None
        self.mse: MseFeed | None = None  # only while this process has MSE viewers of the device

    def deliver(self, data: bytes, now: float) -> None:
        if data[:1] == b"{":
            self._event(data)
            return
        if len(data) < HEADER_SIZE:
            return
        kind = data[2]
        keyframe = kind == KIND_JPEG or bool(data[3] & 0x01)
        seq, ts = _SEQ_TS.unpack_from(data, 4)
        self.stats.on_frame(kind, seq, ts, len(data) - HEADER_SIZE, now)
        if kind == KIND_JPEG or kind == KIND_H264:
            self.last_was_key = keyframe
            if keyframe:
                self.latest_key, self.latest_key_kind = data, kind
        for outbox in self.viewers:
            outbox.offer_frame(kind, keyframe, data)
        if kind == KIND_H264 and self.mse is not None:
            self.mse.deliver(data, keyframe, seq, ts)

    def set_mse(self, outbox: Outbox, on: bool) -> None:
        """Switch one viewer to MSE mode (fragmented MP4, kind 5) or back."""
        if on:
            if self.mse is None:
                self.mse = MseFeed()
                if self.latest_key is not None and self.latest_key_kind == KIND_H264:
                    self.mse.start_from(self.latest_key)
            self.mse.add(outbox)
        elif self.mse is not None:
            self.mse.viewers.discard(outbox)
            if not self.mse.viewers:
                self.mse = None

    def _event(self, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        kind = event.get("type")
        if kind == "presence":
            self.online = bool(event.get("online"))
            self.last_seen = event.get("last_seen")
            self.ingest_stats = None  # a new connection starts new counts
            text = data.decode()
            for outbox in self.viewers:
                outbox.put_control(text)
        elif kind == "talk":  # who is talking back to the device (streams/talkback.py)
            text = data.decode()
            for outbox in self.viewers:
                outbox.put_control(text)
        elif kind == "ingest_stats":
            self.ingest_stats = event

    def prime(self, outbox: Outbox) -> None:
        """Give a new viewer the latest keyframe/JPEG at once."""
        if self.latest_key is None:
            return
        outbox.offer_frame(self.latest_key_kind, True, self.latest_key)
        if self.latest_key_kind == KIND_H264 and not self.last_was_key:
            # Frames since that keyframe were not kept: resume at the next one.
            outbox.require_keyframe()

    def stats_message(self, outbox: Outbox, now: float) -> str:
        relay = self.stats.snapshot(now)
        ingest = self.ingest_stats or {}
        return dump({
            "type": "stats",
            "device_id": self.device_id,
            "fps": ingest.get("fps", relay["fps"]),
            "bitrate_bps": ingest.get("bitrate_bps", relay["bitrate_bps"]),
            "seq_gaps": ingest.get("seq_gaps", relay["seq_gaps"]),
            "drops": outbox.drops,
            "capture_to_server_ms": ingest.get("capture_to_server_ms", relay["capture_to_server_ms"]),
            "capture_to_relay_ms": relay["capture_to_server_ms"],
            "server_ts": time.time(),
        })


def _media_message(kind: int, keyframe: bool, seq: int, ts: int, payload: bytes) -> bytes:
    flags = (FLAG_KEYFRAME if keyframe else 0) | FLAG_CHUNK_START | FLAG_CHUNK_END
    return HEADER.pack(MAGIC, VERSION, kind, flags, seq, ts, 0, 1, len(payload)) + payload


class MseFeed:
    """A device's fragmented MP4 in this process: muxed once per access unit, for all its MSE viewers."""

    __slots__ = ("muxer", "viewers", "init", "latest_key", "last_was_key")

    def __init__(self):
        self.muxer = fmp4.Fmp4Muxer()
        self.viewers: set[Outbox] = set()
        self.init: tuple[str, bytes] | None = None
        self.latest_key: bytes | None = None
        self.last_was_key = False

    def start_from(self, message: bytes) -> None:
        """Mux the cached keyframe, so a first MSE viewer has a picture at once."""
        seq, ts = _SEQ_TS.unpack_from(message, 4)
        self.deliver(message, True, seq, ts)

    def deliver(self, data: bytes, keyframe: bool, seq: int, ts: int) -> None:
        init, fragment = self.muxer.push(data[HEADER_SIZE:], keyframe, ts)
        if init is not None:
            width, height = self.muxer.size
            text = dump({"type": "mse", "codec": self.muxer.codec, "width": width, "height": height})
            self.init = (text, _media_message(KIND_FMP4, True, 0, ts, init))
            for outbox in self.viewers:
                outbox.put_init(*self.init)
        if fragment is None:
            return
        message = _media_message(KIND_FMP4, keyframe, seq, ts, fragment)
        self.last_was_key = keyframe
        if keyframe:
            self.latest_key = message
        for outbox in self.viewers:
            outbox.offer_frame(KIND_FMP4, keyframe, message)

    def add(self, outbox: Outbox) -> None:
        self.viewers.add(outbox)
        if self.init is None:
            outbox.require_keyframe()
            return
        outbox.put_init(*self.init)
        if self.latest_key is not None:
            outbox.offer_frame(KIND_FMP4, True, self.latest_key)
            if not self.last_was_key:  # the deltas since were not kept: resume at the next keyframe
                outbox.require_keyframe()


class Hub:
    """The process-local fan-out: one Redis subscription per device that has local viewers."""

    def __init__(self):
        self.feeds: dict[str, DeviceFeed] = {}
        self._by_channel: dict[bytes, DeviceFeed] = {}
        self._pubsub = None
        self._reader: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def add_viewer(self, device_id, outbox: Outbox) -> DeviceFeed:
        device_id = str(device_id)
        async with self._lock:
            feed = self.feeds.get(device_id)
            if feed is not None:
                feed.prime(outbox)
                feed.viewers.add(outbox)
                metrics.VIEWERS.labels(device_id).set(len(feed.viewers))
                return feed
            feed = DeviceFeed(device_id)
            feed.viewers.add(outbox)
            self.feeds[device_id] = feed
            self._by_channel[feed.channel.encode()] = feed
            await self._subscribe(feed.channel)
        await self._prime_from_redis(feed)
        metrics.VIEWERS.labels(device_id).set(len(feed.viewers))
        return feed

    def set_mse(self, device_id, outbox: Outbox, on: bool) -> None:
        feed = self.feeds.get(str(device_id))
        if feed is not None and outbox in feed.viewers:
            feed.set_mse(outbox, on)

    async def remove_viewer(self, device_id, outbox: Outbox) -> None:
        device_id = str(device_id)
        outbox.close()
        async with self._lock:
            feed = self.feeds.get(device_id)
            if feed is None or outbox not in feed.viewers:
                return
            feed.viewers.discard(outbox)
            feed.set_mse(outbox, False)
            self._report(feed, outbox)
            metrics.VIEWERS.labels(device_id).set(len(feed.viewers))
            if feed.viewers:
                return
            del self.feeds[device_id]
            self._by_channel.pop(feed.channel.encode(), None)
            if not self.feeds:
                await self._stop()
            elif self._pubsub is not None:
                try:
                    await self._pubsub.unsubscribe(feed.channel)
                except Exception:  # the reader reconnects and resubscribes only live feeds
                    log.warning("hub unsubscribe failed", exc_info=True)

    async def _subscribe(self, channel: str) -> None:
        if self._pubsub is None:
            self._pubsub = redis_client().pubsub()
        await self._pubsub.subscribe(channel)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="sightline-hub-reader")
            self._ticker = asyncio.create_task(self._tick(), name="sightline-hub-stats")

    async def _prime_from_redis(self, feed: DeviceFeed) -> None:
        """A process that has just subscribed has no cached keyframe: fetch the stored one."""
        try:
            stored = await redis_client().get(groups.keyframe_key(feed.device_id))
        except Exception:
            log.warning("could not fetch stored keyframe", exc_info=True)
            return
        if not stored or feed.latest_key is not None or len(stored) < HEADER_SIZE:
            return  # a live frame arrived meanwhile: newer than the stored one
        feed.latest_key, feed.latest_key_kind, feed.last_was_key = stored, stored[2], False
        for outbox in feed.viewers:
            feed.prime(outbox)

    async def _read(self) -> None:
        backoff = 0.1
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("hub lost its Redis subscription; resubscribing", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._resubscribe()
                continue
            if message is None or message["type"] != "message":
                continue
            feed = self._by_channel.get(message["channel"])
            if feed is not None:
                feed.deliver(message["data"], time.time())

    async def _resubscribe(self) -> None:
        old, self._pubsub = self._pubsub, redis_client().pubsub()
        try:
            await old.aclose()
        except Exception:
            pass
        try:
            if self.feeds:
                await self._pubsub.subscribe(*[feed.channel for feed in self.feeds.values()])
        except Exception:
            log.warning("hub resubscribe failed; will retry", exc_info=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            now = time.time()
            for feed in list(self.feeds.values()):
                for outbox in list(feed.viewers):
                    outbox.put_control(feed.stats_message(outbox, now))
                    self._report(feed, outbox)

    @staticmethod
    def _report(feed: DeviceFeed, outbox: Outbox) -> None:
        """Move an outbox's counters into the prometheus metrics (not per frame: per second)."""
        sent, drops = outbox.sent - outbox.reported_sent, outbox.drops - outbox.reported_drops
        if sent:
            metrics.VIEWER_FRAMES_SENT.labels(feed.device_id).inc(sent)
            outbox.reported_sent = outbox.sent
        if drops:
            metrics.VIEWER_FRAMES_DROPPED.labels(feed.device_id).inc(drops)
            outbox.reported_drops = outbox.drops

    async def _stop(self) -> None:
        tasks = [task for task in (self._reader, self._ticker) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._reader = self._ticker = None
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except Exception:
                pass

    async def aclose(self) -> None:
        async with self._lock:
            for feed in self.feeds.values():
                for outbox in feed.viewers:
                    outbox.close()
            self.feeds.clear()
            self._by_channel.clear()
            await self._stop()
