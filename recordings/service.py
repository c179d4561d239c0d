"""The recorder process (`python manage.py record`): records what the ingest processes publish.

    device socket ─► ingest process ─► Redis PUBLISH frames:<device>   (once per frame, for live viewers anyway)
                                            │ PSUBSCRIBE frames:<shard>*
                                            ▼
                     RecorderService.on_message ─► DeviceRecorder.submit ─► shared writer thread ─► spool

Recording used to run inside the ingest process (a deque hand-off and a
writer thread). Its disk work and the writer's share of the GIL cost 9-18 %
of the ingest CPU on a 2-core machine (bench/recording_cpu.py); here it costs
the ingest nothing: the frame is the one already published for viewers.

Per device the service keeps a Slot:

- unknown -> resolving: the first frame of a device makes the service read
  the device's presence hash (`rec`, written at hello when recording is on) and
  take the device's lease; frames arriving meanwhile are held in the slot.
- recording: a DeviceRecorder (recordings/recorder.py) of this process writes
  the spool; leases are renewed every RENEW_SECONDS.
- ignored until a time: recording is off for that connection, or another
  recorder holds the lease (a standby looks again every RECHECK_SECONDS).

A presence event on the channel (the device connected again, or went
offline) closes the slot: the segment is closed durably and the next frame
resolves afresh. Frames published while no recorder is subscribed are not
recorded (docs/recording.md, "Crash window").
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
import weakref

import redis.asyncio as aioredis
from django.conf import settings

from recordings import alerts, constants, recorder, recovery, sessions
from streams import groups
from streams.protocol import HEADER, HEADER_SIZE, KIND_NAMES, MAGIC, Frame, FrameHeader

log = logging.getLogger(__name__)

RESOLVING, RECORDING, IGNORED = "resolving", "recording", "ignored"


class Slot:
    __slots__ = ("device_id", "state", "recorder", "held", "until", "last_frame")

    def __init__(self, device_id: str):
        self.device_id = device_id
        self.state = RESOLVING
        self.recorder: recorder.DeviceRecorder | None = None
        self.held: list[tuple[Frame, float]] = []
        self.until = 0.0
        self.last_frame = time.monotonic()


def frame_from_message(data: bytes) -> Frame | None:
    """A published whole-frame message (header + payload) as a Frame, or None if it is not one.

    The ingest already validated it; the checks here only keep a foreign
    publisher on the channel from crashing the recorder.
    """
    if len(data) < HEADER_SIZE:
        return None
    magic, _version, kind, flags, seq, ts, _index, _count, length = HEADER.unpack_from(data)
    if magic != MAGIC or kind not in KIND_NAMES or length != len(data) - HEADER_SIZE:
        return None
    # A view, not a copy: the writer hands it straight to writev().
    return Frame(FrameHeader(kind, flags, seq, ts, 0, 1, length), memoryview(data)[HEADER_SIZE:])


class RecorderService:
    def __init__(self, shard: tuple[int, int] = (0, 1), segment_seconds: float | None = None,
                 recover_at_start: bool = True):
        self.prefix = groups.prefix()
        self.shard = shard
        self.segment_seconds = segment_seconds
        self.recover_at_start = recover_at_start
        # Whose lease: this process's writer identity, and which service in it (tests run two).
        self.identity = f"{recorder.writer_identity()}/{uuid.uuid4().hex[:6]}"
        self.client_name = f"sightline-recorder-{self.identity.rsplit('/', 1)[-1]}"
        self.slots: dict[str, Slot] = {}
        self._tasks: set[asyncio.Task] = set()  # resolves and releases in flight (the loop keeps weak refs)
        self._opened: "weakref.WeakSet[recorder.DeviceRecorder]" = weakref.WeakSet()  # to wait for at shutdown
        self.client: aioredis.Redis | None = None
        self.ready = asyncio.Event()
        self.frames_received = 0
        self.frames_ignored = 0
        self.reconnects = 0
        self._idle_seconds = 3 * (segment_seconds or constants.segment_seconds())

    # -- the main loop -----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        # Named, so an operator can tell its connections apart in CLIENT LIST.
        self.client = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=None, socket_connect_timeout=5,
                                              protocol=2, client_name=self.client_name)
        if self.recover_at_start:  # what a crashed predecessor on this host left half-written
            threading.Thread(target=recovery.recover_in_thread, name="spool-recovery", daemon=True).start()
        renewer = asyncio.create_task(self._renew_forever(), name="recorder-leases")
        try:
            await self._read_until(stop)
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self._shutdown()

    async def _read_until(self, stop: asyncio.Event) -> None:
        patterns = sessions.frame_patterns(self.prefix, *self.shard)
        backoff = 0.1
        pubsub = None
        while not stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self.client.pubsub()
                    await pubsub.psubscribe(*patterns)
                    await self._beat()
                    self.ready.set()
                    log.info("recorder %s subscribed to %s", self.identity, " ".join(patterns))
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                # Frames published until the subscription is back are not recorded.
                log.warning("recorder lost its Redis subscription; subscribing again", exc_info=True)
                self.reconnects += 1
                if pubsub is not None:
                    await asyncio.gather(pubsub.aclose(), return_exceptions=True)
                pubsub = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if message is not None and message["type"] == "pmessage":
                self.on_message(message["channel"], message["data"], time.time())
        if pubsub is not None:
            await asyncio.gather(pubsub.aclose(), return_exceptions=True)

    def on_message(self, channel: bytes, data: bytes, now: float) -> None:
        device_id = sessions.device_of_channel(channel, self.prefix)
        if device_id is None:
            return
        if data[:1] == b"{":
            self._on_event(device_id, data)
            return
        frame = frame_from_message(data)
        if frame is None:
            self.frames_ignored += 1
            return
        slot = self.slots.get(device_id)
        if slot is None:
            slot = self.slots[device_id] = Slot(device_id)
            self._spawn(self._resolve(slot))
        elif slot.state == IGNORED:
            if time.monotonic() < slot.until:
                self.frames_ignored += 1
                return
            slot.state = RESOLVING
            self._spawn(self._resolve(slot))
        self.frames_received += 1
        slot.last_frame = time.monotonic()
        if slot.state == RECORDING:
            slot.recorder.submit(frame, now)
        elif len(slot.held) < constants.QUEUE_MAX_FRAMES:
            slot.held.append((frame, now))

    def _on_event(self, device_id: str, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict) and event.get("type") == "presence":
            # Connected again (a new session: new audio parameters) or gone: either way
            # this segment ends here, durably; the next frame starts the next one.
            self._close_slot(device_id, release=True)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- resolving a device ------------------------------------------------------------
    async def _resolve(self, slot: Slot) -> None:
        try:
            raw = await self.client.hget(groups.presence_key(slot.device_id), "rec")
            session = sessions.decode_session(raw)
            if session is None:
                return self._ignore(slot, "recording is off for this connection")
            lease = sessions.lease_key(self.prefix, slot.device_id)
            taken = await self.client.set(lease, self.identity, nx=True, ex=sessions.LEASE_SECONDS)
            if not taken and (await self.client.get(lease) or b"").decode() != self.identity:
                return self._ignore(slot, "another recorder holds the lease")
        except Exception:
            log.warning("could not resolve device %s; trying again", slot.device_id, exc_info=True)
            return self._ignore(slot, "redis unavailable")
        if self.slots.get(slot.device_id) is not slot:
            return  # closed meanwhile by a presence event
        rec = recorder.DeviceRecorder(slot.device_id, session.organisation_id, audio=session.audio,
                                      segment_seconds=self.segment_seconds)
        self._opened.add(rec)
        rec.start()  # on this loop: segment.persisted is posted back onto it
        held, slot.held = slot.held, []
        for frame, received_at in held:
            rec.submit(frame, received_at)
        slot.recorder, slot.state = rec, RECORDING
        rec.notify_state()  # "recording": clears a "no recorder process is running" the device was told
        await asyncio.to_thread(alerts.clear_recording_degraded, slot.device_id)
        log.info("recording device %s (lease %s)", slot.device_id, self.identity)

    def _ignore(self, slot: Slot, reason: str) -> None:
        self.frames_ignored += len(slot.held)
        log.debug("not recording device %s for now: %s", slot.device_id, reason)
        slot.held, slot.state = [], IGNORED
        slot.until = time.monotonic() + sessions.RECHECK_SECONDS

    def _close_slot(self, device_id: str, release: bool) -> None:
        slot = self.slots.pop(device_id, None)
        if slot is None or slot.recorder is None:
            return
        slot.recorder.close()
        if release:
            self._spawn(self._release(device_id))

    async def _release(self, device_id: str) -> None:
        try:
            await self.client.eval(sessions.RELEASE_SCRIPT, 1, sessions.lease_key(self.prefix, device_id),
                                   self.identity)
        except Exception:  # it expires by itself within LEASE_SECONDS
            log.warning("could not release the lease of %s", device_id, exc_info=True)

    # -- leases, heartbeat, idle devices -----------------------------------------------
    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(sessions.RENEW_SECONDS)
            try:
                await self._renew_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not renew recorder leases", exc_info=True)

    async def _renew_once(self) -> None:
        now = time.monotonic()
        for device_id, slot in list(self.slots.items()):
            if slot.state == RECORDING and (now - slot.last_frame > self._idle_seconds
                                            or slot.recorder.join(0)):  # idle, or its writer gave up
                self._close_slot(device_id, release=True)
            elif slot.state == IGNORED and now - slot.last_frame > self._idle_seconds:
                self.slots.pop(device_id, None)
        recording = [device_id for device_id, slot in self.slots.items() if slot.state == RECORDING]
        await self._beat()
        if not recording:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for device_id in recording:
                pipe.eval(sessions.RENEW_SCRIPT, 1, sessions.lease_key(self.prefix, device_id), self.identity,
                          sessions.LEASE_SECONDS)
            results = await pipe.execute()
        for device_id, kept in zip(recording, results):
            if not kept:  # we stalled past the lease and another recorder took the device over
                log.warning("lost the lease of device %s; another recorder records it now", device_id)
                self._close_slot(device_id, release=False)

    async def _beat(self) -> None:
        key, now = sessions.recorders_key(self.prefix), time.time()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {self.identity: now})
            pipe.zremrangebyscore(key, 0, now - 3600)
            await pipe.execute()

    # -- stopping ----------------------------------------------------------------------
    async def _shutdown(self) -> None:
        """Close every segment durably, then give the leases and the heartbeat back."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        recording = [device_id for device_id, slot in self.slots.items() if slot.state == RECORDING]
        for device_id in list(self.slots):
            self._close_slot(device_id, release=False)
        closed = await asyncio.to_thread(self._wait_for_writers)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for device_id in recording:
                    pipe.eval(sessions.RELEASE_SCRIPT, 1, sessions.lease_key(self.prefix, device_id),
                              self.identity)
                pipe.zrem(sessions.recorders_key(self.prefix), self.identity)
                await pipe.execute()
        except Exception:
            log.warning("could not release leases at shutdown; they expire by themselves", exc_info=True)
        await self.client.aclose()
        log.info("recorder %s stopped; %d segments closed durably", self.identity, closed)

    def _wait_for_writers(self) -> int:
        """Every recorder this service opened has closed its segment durably (or the grace ran out)."""
        opened = list(self._opened)
        deadline = time.monotonic() + recorder.SHUTDOWN_GRACE_SECONDS
        for rec in opened:
            rec.close()
            rec.join(max(0.0, deadline - time.monotonic()))
        return len(opened)

    def status(self) -> dict:
        states = [slot.state for slot in self.slots.values()]
        return {"identity": self.identity, "recording": states.count(RECORDING),
                "frames_received": self.frames_received, "frames_ignored": self.frames_ignored,
                "reconnects": self.reconnects}

