"""The recorder process (`python manage.py record`): records what the ingest processes hand off.

    device socket ─► ingest ─► PUBLISH frames:<device>                     (live viewers)
                            └► XADD recq:<device> MAXLEN ~ N               (same pipeline; recordings/handoff.py)
                                      │ XREADGROUP GROUP recorders <me>     (the device's lease holder only)
                                      ▼
           RecorderService._on_entry ─► DeviceRecorder.submit ─► shared writer thread ─► spool (fsync)
                                      ▲                                                     │
                                      └──── XACK + acked mark + XTRIM  ◄── take_durable() ◄──┘

The stream keeps what no recorder has acknowledged, so frames published while
no recorder reads (a restart, a takeover, a Redis reconnect) wait there, up to
the stream's bound (RECORDING_HANDOFF_SECONDS / _MAX_BYTES).

Per device the service keeps a Slot:

- resolving: the device's stream was found in its shard's index; the service
  takes the device's lease, then claims the entries a previous holder left
  unacknowledged (XAUTOCLAIM) -- skipping those its spool already holds
  (handoff.resume_index) -- and starts reading new ones.
- recording: the service reads the stream; a DeviceRecorder
  (recordings/recorder.py) per connection of the device writes the spool.
- ignored until a time: another recorder holds the lease (a standby looks
  again every RECHECK_SECONDS).

A presence event in the stream, or a new connection id in its entries, ends
the segment being recorded; the next frame starts the next one.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import ResponseError

from recordings import alerts, constants, handoff, recorder, recovery, sessions
from streams import groups
from sightline_agent.protocol import HEADER, HEADER_SIZE, KIND_NAMES, MAGIC, Frame, FrameHeader

log = logging.getLogger(__name__)

RESOLVING, RECORDING, IGNORED = "resolving", "recording", "ignored"


class DirectAcks:
    """Entries acknowledged without a writer (events, duplicates, frames already spooled), in order."""

    __slots__ = ("entries",)

    def __init__(self):
        self.entries: list = []

    def outstanding(self) -> bool:
        return False

    def take_durable(self) -> list:
        taken, self.entries = self.entries, []
        return taken

    def join(self, timeout=None) -> bool:
        return True


class Slot:
    __slots__ = ("device_id", "stream", "state", "recorder", "session_raw", "session", "last", "until",
                 "last_frame", "sources", "trimmed")

    def __init__(self, device_id: str, prefix: str):
        self.device_id = device_id
        self.stream = handoff.stream_key(prefix, device_id)
        self.state = RESOLVING
        self.recorder: recorder.DeviceRecorder | None = None
        self.session_raw: bytes | None = None  # the `s` field of the connection being recorded
        self.session: sessions.RecordingSession | None = None
        self.last: tuple[bytes, int] | None = None  # (connection, n) of the last entry handled
        self.until = 0.0
        self.last_frame = time.monotonic()
        # Where this device's entries wait to be acknowledged, oldest first: recorders and
        # DirectAcks. Acknowledged strictly in entry order, so the acked mark never passes
        # an entry that a crash could still lose.
        self.sources: list = []
        self.trimmed = 0


def frame_from_message(data: bytes) -> Frame | None:
    """A whole-frame message (header + payload) as a Frame, or None if it is not one.

    The ingest already validated it; the checks here only keep a foreign
    writer of the stream from crashing the recorder.
    """
    if len(data) < HEADER_SIZE:
        return None
    magic, _version, kind, flags, seq, ts, _index, _count, length = HEADER.unpack_from(data)
    if magic != MAGIC or kind not in KIND_NAMES or length != len(data) - HEADER_SIZE:
        return None
    # A view, not a copy: the writer hands it straight to writev().
    return Frame(FrameHeader(kind, flags, seq, ts, 0, 1, length), memoryview(data)[HEADER_SIZE:])


def last_spooled_frame(device_id) -> tuple[int, int] | None:
    """(seq, capture time) of the last frame in this host's newest spool file of the device, if any.

    A thread: it reads the database and the disk. What a recorder killed on
    this host wrote is in its spool even when it was not yet fsynced.
    """
    from django.db import connection

    from recordings import spool
    from recordings.models import Segment

    try:
        paths = list(Segment.objects.filter(device_id=device_id, spool_host=constants.host_name())
                     .exclude(spool_path="").order_by("-created_at").values_list("spool_path", flat=True)[:3])
        for path in paths:
            last = None
            try:
                with open(path, "rb") as f:
                    spool.read_file_header(f)
                    for record in spool.iter_records(f, payload_kinds=()):
                        last = record.header
            except (OSError, spool.SpoolFormatError):
                continue
            if last is not None:
                return last.seq, last.timestamp_us
        return None
    finally:
        connection.close()


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
        self._by_stream: dict[bytes, Slot] = {}
        self._draining: list[Slot] = []  # closed slots whose entries are not all acknowledged yet
        self._tasks: set[asyncio.Task] = set()  # take-overs and releases in flight (the loop keeps weak refs)
        self._opened: "weakref.WeakSet[recorder.DeviceRecorder]" = weakref.WeakSet()  # to wait for at shutdown
        self._wake = asyncio.Event()
        self.client: aioredis.Redis | None = None
        self.ready = asyncio.Event()
        self.frames_received = 0
        self.frames_ignored = 0
        self.frames_trimmed = 0  # never read by any recorder: trimmed by MAXLEN (counted, reported)
        self.duplicates_skipped = 0
        self.reconnects = 0
        self._idle_seconds = 3 * (segment_seconds or constants.segment_seconds())

    # -- the main loop -----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        # Named, so an operator can tell its connections apart in CLIENT LIST.
        self.client = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=None, socket_connect_timeout=5,
                                              protocol=2, client_name=self.client_name)
        if self.recover_at_start:  # what a crashed predecessor on this host left half-written
            threading.Thread(target=recovery.recover_in_thread, name="spool-recovery", daemon=True).start()
        try:
            await self._beat()  # heard from at once: a device saying hello now is told it is recorded
        except Exception:  # Redis down: the lease loop beats again; the frames wait in Redis
            log.warning("recorder could not reach Redis at start", exc_info=True)
        helpers = [asyncio.create_task(self._renew_forever(), name="recorder-leases"),
                   asyncio.create_task(self._discover_forever(), name="recorder-discovery"),
                   asyncio.create_task(self._ack_forever(), name="recorder-acks")]
        try:
            await self._read_until(stop)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._shutdown()

    async def _read_until(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        consumer = self.identity
        while not stop.is_set():
            streams = {slot.stream: ">" for slot in self.slots.values()
                       if slot.state == RECORDING and not self._backlogged(slot)}
            if not streams:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), handoff.READ_BLOCK_MS / 1000)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                reply = await self.client.xreadgroup(handoff.GROUP, consumer, streams, count=handoff.READ_COUNT,
                                                     block=handoff.READ_BLOCK_MS)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:  # NOGROUP, or UNBLOCKED: a stream expired or was deleted
                log.warning("reading the hand-off streams failed: %s", exc)
                await self._forget_vanished_streams()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:
                # Nothing is lost meanwhile: the entries wait in the streams.
                log.warning("recorder lost its Redis connection; reading again", exc_info=True)
                self.reconnects += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            now = time.time()
            for key, entries in reply or ():
                slot = self._by_stream.get(key if isinstance(key, bytes) else key.encode())
                if slot is None or slot.state != RECORDING:
                    continue  # closed meanwhile: its entries stay pending for the next holder
                for entry_id, fields in entries:
                    self._on_entry(slot, entry_id, fields, now)

    def _backlogged(self, slot: Slot) -> bool:
        """Its writer is behind, or the spool cannot take frames (holding): leave the frames in Redis,
        unread, rather than drop them from a full queue. Up to the stream's bound they wait there."""
        rec = slot.recorder
        return rec is not None and (rec.holding or len(rec._queue) > constants.QUEUE_MAX_FRAMES // 2)

    # -- one entry of a device's stream --------------------------------------------------
    def _on_entry(self, slot: Slot, entry_id: bytes, fields: dict, now: float, spooled: bool = False) -> None:
        raw_session, raw_n = fields.get(b"s"), fields.get(b"n")
        try:
            n = int(raw_n)
        except (TypeError, ValueError):
            n = None
        if raw_session is None or n is None:
            self.frames_ignored += 1
            return self._ack_in_order(slot, (entry_id, None, 0))
        conn, session_json = handoff.split_session_field(raw_session)
        duplicate, lost = handoff.continuity(slot.last, conn, n)
        entry = (entry_id, conn, n)
        if duplicate:  # handled before (a redelivery): never recorded twice
            self.duplicates_skipped += 1
            return self._ack_in_order(slot, entry)
        slot.last = (conn, n)
        if raw_session != slot.session_raw:  # a new connection of the device: a new segment
            self._end_recorder(slot)
            slot.session_raw, slot.session = raw_session, sessions.decode_session(session_json)
        if lost:
            self._trimmed(slot, lost)
        if spooled:  # a dead recorder's spool holds it already
            return self._ack_in_order(slot, entry)
        event, message = fields.get(b"e"), fields.get(b"f")
        if event is not None:
            # Connected again or gone: this segment ends here, durably.
            self._ack_in_order(slot, entry)
            return self._end_recorder(slot)
        frame = frame_from_message(message) if message is not None else None
        if frame is None or slot.session is None:
            self.frames_ignored += 1
            return self._ack_in_order(slot, entry)
        self.frames_received += 1
        slot.last_frame = time.monotonic()
        if slot.recorder is None:
            self._open_recorder(slot)
        slot.recorder.submit(frame, now, entry)

    def _ack_in_order(self, slot: Slot, entry) -> None:
        if slot.recorder is not None:  # after the frames queued before it
            slot.recorder.submit_marker(entry)
            return
        if not slot.sources or not isinstance(slot.sources[-1], DirectAcks):
            slot.sources.append(DirectAcks())
        slot.sources[-1].entries.append(entry)

    def _open_recorder(self, slot: Slot) -> None:
        session = slot.session
        rec = recorder.DeviceRecorder(slot.device_id, session.organisation_id, audio=session.audio,
                                      segment_seconds=self.segment_seconds)
        self._opened.add(rec)
        rec.start()  # on this loop: segment.persisted is posted back onto it
        slot.recorder = rec
        slot.sources.append(rec)
        if slot.trimmed:
            rec.count_handoff_loss(slot.trimmed, before_first_segment=True)
            slot.trimmed = 0
        rec.notify_state()  # "recording": clears a "no recorder process is running" the device was told
        self._spawn(asyncio.to_thread(alerts.clear_recording_degraded, slot.device_id))
        log.info("recording device %s (lease %s)", slot.device_id, self.identity)

    def _end_recorder(self, slot: Slot) -> None:
        if slot.recorder is not None:
            slot.recorder.close()
            slot.recorder = None

    def _trimmed(self, slot: Slot, lost: int) -> None:
        """Entries no recorder read before MAXLEN trimmed them: counted, logged, the device and owner told."""
        self.frames_trimmed += lost
        reason = (f"{lost} frames were trimmed from the recording hand-off before a recorder read them "
                  "(no recorder ran for longer than RECORDING_HANDOFF_SECONDS)")
        log.error("device %s: %s", slot.device_id, reason)
        if slot.recorder is not None:
            slot.recorder.count_handoff_loss(lost)
        else:
            slot.trimmed += lost  # counted in the next segment's dropped_frames
        self._spawn(asyncio.to_thread(_tell_degraded, slot.device_id, reason))

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- finding devices and taking them over ---------------------------------------------
    async def _discover_forever(self) -> None:
        while True:
            try:
                await self._discover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not look for devices to record", exc_info=True)
            await asyncio.sleep(handoff.DISCOVER_SECONDS)

    async def _discover(self) -> None:
        digits = sessions.shard_digits(*self.shard)
        async with self.client.pipeline(transaction=False) as pipe:
            for digit in digits:
                pipe.smembers(handoff.index_key(self.prefix, digit))
            members = await pipe.execute()
        now = time.monotonic()
        for raw in set().union(*members):
            device_id = raw.decode("ascii", "replace")
            slot = self.slots.get(device_id)
            if slot is None:
                slot = self.slots[device_id] = Slot(device_id, self.prefix)
                self._by_stream[slot.stream.encode()] = slot
            elif slot.state != IGNORED or now < slot.until:
                continue
            slot.state = RESOLVING
            self._spawn(self._take_over(slot))

    async def _take_over(self, slot: Slot) -> None:
        """Take the device's lease, then resume where the stream's last reader stopped."""
        client, device_id = self.client, slot.device_id
        try:
            lease = sessions.lease_key(self.prefix, device_id)
            taken = await client.set(lease, self.identity, nx=True, ex=sessions.LEASE_SECONDS)
            if not taken and (await client.get(lease) or b"").decode() != self.identity:
                return self._ignore(slot, "another recorder holds the lease")
            try:  # from the first entry kept: what arrived while no recorder read is recorded too
                await client.xgroup_create(slot.stream, handoff.GROUP, id="0")
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # no such stream: it expired
                    await client.srem(handoff.index_key(self.prefix, handoff.index_digit(device_id)), device_id)
                    self._forget(slot, release=True)
                    return
            mark = handoff.decode_mark(await client.get(handoff.acked_key(self.prefix, device_id)))
            claimed = await self._claim_pending(slot)
        except Exception:
            log.warning("could not take device %s over; trying again", device_id, exc_info=True)
            return self._ignore(slot, "redis unavailable")
        spooled = 0
        if claimed:  # a previous holder died: skip what its spool already holds
            last = await asyncio.to_thread(last_spooled_frame, device_id)
            positions = [handoff.frame_position(fields.get(b"f") or b"{") for _, fields in claimed]
            spooled = handoff.resume_index(positions, last)
            log.warning("device %s: resuming %d unacknowledged entries (%d already in the spool)",
                        device_id, len(claimed), spooled)
        if self.slots.get(device_id) is not slot or slot.state != RESOLVING:
            return
        slot.last, slot.state, slot.last_frame = mark, RECORDING, time.monotonic()
        now = time.time()
        for index, (entry_id, fields) in enumerate(claimed):
            self._on_entry(slot, entry_id, fields, now, spooled=index < spooled)
        self._wake.set()

    async def _claim_pending(self, slot: Slot) -> list:
        """Every entry delivered to a reader of this stream and never acknowledged, oldest first."""
        claimed, start = [], "0-0"
        while True:
            reply = await self.client.xautoclaim(slot.stream, handoff.GROUP, self.identity, min_idle_time=0,
                                                 start_id=start, count=handoff.CLAIM_COUNT)
            cursor, entries = reply[0], reply[1]
            claimed.extend(entries)  # trimmed ones (reply[2]) show as a gap in `n`: counted there
            if cursor in (b"0-0", "0-0"):
                return claimed
            start = cursor

    def _ignore(self, slot: Slot, reason: str) -> None:
        log.debug("not recording device %s for now: %s", slot.device_id, reason)
        slot.state = IGNORED
        slot.until = time.monotonic() + sessions.RECHECK_SECONDS

    def _forget(self, slot: Slot, release: bool) -> None:
        """Stop reading the device; its entries not yet durable are acknowledged once they are."""
        self._end_recorder(slot)
        if self.slots.get(slot.device_id) is slot:
            del self.slots[slot.device_id]
            self._by_stream.pop(slot.stream.encode(), None)
        slot.state = IGNORED
        if slot.sources:
            self._draining.append(slot)
        if release:
            self._spawn(self._release(slot.device_id))

    async def _release(self, device_id: str) -> None:
        try:
            await self.client.eval(sessions.RELEASE_SCRIPT, 1, sessions.lease_key(self.prefix, device_id),
                                   self.identity)
        except Exception:  # it expires by itself within LEASE_SECONDS
            log.warning("could not release the lease of %s", device_id, exc_info=True)

    async def _forget_vanished_streams(self) -> None:
        """Streams that expired (and maybe came back without our group): taken over afresh."""
        for slot in [slot for slot in self.slots.values() if slot.state == RECORDING]:
            try:
                found = await self.client.xinfo_groups(slot.stream)
            except ResponseError:  # no such key
                found = []
            if not any(group.get("name") in (handoff.GROUP, handoff.GROUP.encode()) for group in found):
                log.warning("the hand-off stream of device %s expired; taking it over afresh", slot.device_id)
                self._forget(slot, release=True)

    # -- acknowledging what is durable -----------------------------------------------------
    async def _ack_forever(self) -> None:
        while True:
            await asyncio.sleep(handoff.ACK_SECONDS)
            try:
                await self._ack_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # unacknowledged entries stay pending: acknowledged next time, or claimed again
                log.warning("could not acknowledge recorded frames", exc_info=True)

    def _collect_acks(self, slot: Slot) -> list:
        """The slot's entries that are durable, in order, stopping at the first not yet durable."""
        entries = []
        while slot.sources:
            source = slot.sources[0]
            busy = source.outstanding()
            entries.extend(source.take_durable())
            if busy or (source is slot.recorder) or not source.join(0):
                break  # later sources wait: the acked prefix never skips an entry
            slot.sources.pop(0)
        return entries

    async def _ack_once(self) -> None:
        batches = []
        for slot in [*self.slots.values(), *self._draining]:
            entries = self._collect_acks(slot)
            if entries:
                batches.append((slot, entries))
        self._draining = [slot for slot in self._draining if slot.sources]
        if not batches:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for slot, entries in batches:
                last_id, conn, n = entries[-1]
                pipe.xack(slot.stream, handoff.GROUP, *[entry[0] for entry in entries])
                if conn is not None:
                    pipe.set(handoff.acked_key(self.prefix, slot.device_id), handoff.encode_mark(conn, n),
                             ex=handoff.STREAM_TTL_SECONDS)
                # What is acknowledged is in the spool: Redis keeps only what is not yet.
                pipe.xtrim(slot.stream, minid=last_id, approximate=True)
            await pipe.execute()

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
        for slot in list(self.slots.values()):
            if slot.recorder is not None and slot.recorder.holding:
                slot.last_frame = now  # not idle: its frames wait in the stream for the spool
            if slot.state == RECORDING and (now - slot.last_frame > self._idle_seconds
                                            or (slot.recorder is not None and slot.recorder.join(0))):
                await self._close_idle(slot)  # idle, or its writer gave up
            elif slot.state == IGNORED and now - slot.last_frame > self._idle_seconds and now >= slot.until:
                self._forget(slot, release=False)
        recording = [slot for slot in self.slots.values() if slot.state in (RECORDING, RESOLVING)]
        await self._beat()
        if not recording:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for slot in recording:
                pipe.eval(sessions.RENEW_SCRIPT, 1, sessions.lease_key(self.prefix, slot.device_id), self.identity,
                          sessions.LEASE_SECONDS)
            results = await pipe.execute()
        for slot, kept in zip(recording, results):
            if not kept and slot.state == RECORDING:  # we stalled past the lease and another recorder took over
                log.warning("lost the lease of device %s; another recorder records it now", slot.device_id)
                self._forget(slot, release=False)
                self.slots[slot.device_id] = slot  # looked at again after RECHECK_SECONDS
                self._by_stream[slot.stream.encode()] = slot
                self._ignore(slot, "another recorder holds the lease")

    async def _close_idle(self, slot: Slot) -> None:
        """A device that stopped streaming: close its segment, give the lease back, leave the index."""
        index = handoff.index_key(self.prefix, handoff.index_digit(slot.device_id))
        await self.client.srem(index, slot.device_id)  # first, so discovery does not take it again
        self._forget(slot, release=True)
        # An entry added just before we left the index: the ingest re-registers once a second
        # while it streams, and this look catches the last entries of one that has stopped.
        waiting = await self.client.xinfo_groups(slot.stream) if await self.client.exists(slot.stream) else []
        if any(group.get("lag") for group in waiting if group.get("name") in (handoff.GROUP, handoff.GROUP.encode())):
            await self.client.sadd(index, slot.device_id)

    async def _beat(self) -> None:
        key, now = sessions.recorders_key(self.prefix), time.time()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {self.identity: now})
            pipe.zremrangebyscore(key, 0, now - 3600)
            await pipe.execute()
        self.ready.set()

    # -- stopping ----------------------------------------------------------------------
    async def _shutdown(self) -> None:
        """Close every segment durably, acknowledge it, then give the leases and the heartbeat back."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        leased = [slot.device_id for slot in self.slots.values() if slot.state in (RECORDING, RESOLVING)]
        for slot in list(self.slots.values()):
            self._forget(slot, release=False)
        closed = await asyncio.to_thread(self._wait_for_writers)
        try:
            await self._ack_once()
            async with self.client.pipeline(transaction=False) as pipe:
                for device_id in leased:
                    pipe.eval(sessions.RELEASE_SCRIPT, 1, sessions.lease_key(self.prefix, device_id),
                              self.identity)
                pipe.zrem(sessions.recorders_key(self.prefix), self.identity)
                await pipe.execute()
        except Exception:
            log.warning("could not acknowledge or release at shutdown; the next holder resumes", exc_info=True)
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
                "frames_trimmed": self.frames_trimmed, "duplicates_skipped": self.duplicates_skipped,
                "reconnects": self.reconnects}


def _tell_degraded(device_id, reason: str) -> None:
    """The owner (segment list, alerts) and the device (`recording` degraded) hear of frames lost."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    alerts.set_recording_degraded(device_id, reason)
    try:
        async_to_sync(get_channel_layer().group_send)(
            groups.device_group(device_id), {"type": "recording.state", "state": "degraded", "reason": reason})
    except Exception:
        log.warning("could not tell device %s that frames were trimmed", device_id, exc_info=True)
