"""DeviceRecorder: one device's frames to the spool, written by one shared thread per process.

    rec = DeviceRecorder(device_id, organisation_id, audio)   # the recorder process makes one per device
    rec.start()                             # on the event loop: segment.persisted is posted back onto it
    rec.submit(frame, received_at, entry)   # one deque append, never blocks
    rec.take_durable()                      # entries whose frames the spool now holds durably (to XACK)
    rec.close()                             # non-blocking; the writer closes the segment durably

The recorder process (recordings/service.py) feeds it the frames the ingest
published. submit() only appends to a bounded deque. One writer thread per
process (SharedWriter) drains every recorder's queue every WRITER_POLL_SECONDS,
appends whole batches to the spool file, fsyncs every PART_SECONDS, cuts
segments by recordings.segmenting.should_cut, and closes them through
recordings.lifecycle (row -> closed, its processing chain sent -- or owed while
Redis does not answer, recordings/chain_sends.py -- then `segment.persisted` to
the device group). When the deque is full, frames are dropped *for recording only*.

When the spool cannot take a frame (disk nearly full, ENOSPC, a segment that
cannot be opened) the writer *holds*: the frame and those after it stay queued,
unacknowledged, the service stops reading the device's stream (they wait in
the hand-off), and the writer probes again every SPOOL_FULL_PROBE_SECONDS (disk
full) or DEGRADED_RETRY_SECONDS (other errors). A write or fsync that fails
mid-segment cuts the segment at its last fsync and puts the frames written
since back at the head of the queue, so they are written again, in order,
once the spool takes them. Only a recorder closed while holding gives up after
PENDING_GRACE_SECONDS (its frames dropped and counted, as before).

`entry` is the hand-off stream entry a frame came from (recordings/handoff.py):
the writer hands it back through take_durable() only once the frame is
durable -- after the fsync of its part -- or will never be written (dropped,
counted), so the recorder service acknowledges nothing a crash could lose.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import errno
import logging
import os
import shutil
import threading
import time
import uuid
import weakref

from django.db import close_old_connections

from recordings import constants, lifecycle, spool
from recordings.chain_sends import OwedChains
from recordings.pending_rows import DATABASE_DOWN, PendingRows
from recordings.segmenting import OpenSegment, idle_expired, should_cut
from sightline_agent.protocol import KIND_AUDIO, KIND_H264, KIND_JPEG, KIND_NAMES, Frame

log = logging.getLogger(__name__)

RUN_ID = uuid.uuid4().hex[:12]  # this process's run; part of the writer identity
_VIDEO_KINDS = (KIND_JPEG, KIND_H264)


_live_recorders: "weakref.WeakSet[DeviceRecorder]" = weakref.WeakSet()
SHUTDOWN_GRACE_SECONDS = 5.0
# A closed recorder keeps trying to write the rows it owes this long; the writer thread, with no
# recorder left, to send the chains it owes.
PENDING_GRACE_SECONDS = 30.0
DATABASE_DOWN_REASON = "database unavailable: recording to the spool, segment rows pending"
# First steps of processing chains not sent yet because Redis did not answer; one per process,
# used by the writer thread only (SharedWriter).
owed_chains = OwedChains()


def close_all_recorders() -> int:
    """At shutdown, give writers a moment to close their segments durably instead
    of leaving them (and the frames still queued) to recovery. Called by the
    recorder process when it stops, and at exit."""
    recorders = list(_live_recorders)
    for rec in recorders:
        rec.close()
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    for rec in recorders:
        rec.join(max(0.0, deadline - time.monotonic()))
    _shared_writer().stop(max(0.0, deadline - time.monotonic()))  # logs the chains still owed
    return len(recorders)


atexit.register(close_all_recorders)


def writer_identity() -> str:
    return f"{constants.host_name()}:{os.getpid()}:{RUN_ID}"


class DeviceRecorder:
    def __init__(self, device_id, organisation_id, audio: dict | None = None,
                 segment_seconds: float | None = None):
        self.device_id = device_id
        self.organisation_id = organisation_id
        self.audio = audio
        self.segment_seconds = segment_seconds or constants.segment_seconds()
        self.max_segment_seconds = self.segment_seconds * constants.MAX_SEGMENT_FACTOR
        self._queue: collections.deque = collections.deque()
        self._closing = False
        self._close_by = 0.0  # after close(): how long rows owed to the database may still be written
        self._loop: asyncio.AbstractEventLoop | None = None
        # Frames dropped for recording only (live is unaffected): counted apart
        # by each thread, so neither races the other's increments.
        self.dropped_queue_full = 0  # event loop: the hand-off queue was full
        self.dropped_by_writer = 0  # writer: waiting for a first keyframe, or given up on a closed recorder
        self.holding = False  # writer: the spool cannot take the next queued frame; it stays queued
        self._loop_checked = False
        self.state = "recording"  # recording | degraded | closed
        self.degraded_reason = ""
        self.segments_persisted = 0
        self.dropped_by_handoff = 0  # event loop: trimmed from the hand-off stream before any recorder read them
        self._carried_drops = 0  # of those, lost before this recorder's first segment: counted in it
        self._done = threading.Event()
        self._writer = SpoolWriter(self)
        # Queue items (frame, received_at, entry) written but not yet fsynced (writer thread only: queued
        # again if the spool fails before their fsync), then their entries durable (to acknowledge).
        self._unsynced: list = []
        self._durable: collections.deque = collections.deque()
        self._busy = False  # the writer holds entries taken off the queue and not yet in _unsynced

    # -- event-loop side: cheap and non-blocking ------------------------------
    def start(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._loop_checked = True
        except RuntimeError:
            self._loop = None  # opened off the loop (database_sync_to_async): the first submit finds it
        _live_recorders.add(self)
        _shared_writer().add(self)

    def submit(self, frame: Frame, received_at: float, entry=None) -> None:
        if self._closing:
            return
        if len(self._queue) >= constants.QUEUE_MAX_FRAMES:
            self.dropped_queue_full += 1
            if entry is not None:  # dropped: acknowledged in order with the frames around it
                self._queue.append((None, received_at, entry))
            return
        if not self._loop_checked:  # the consumer's loop, for posting segment.persisted
            self._loop_checked = True
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        self._queue.append((frame, received_at, entry))

    def count_handoff_loss(self, lost: int, before_first_segment: bool = False) -> None:
        """Frames trimmed from the hand-off before a recorder read them (event loop)."""
        if before_first_segment:
            self._carried_drops += lost
        self.dropped_by_handoff += lost

    def submit_marker(self, entry) -> None:
        """A hand-off entry with nothing to write (an event): acknowledged after the frames before it."""
        self._queue.append((None, 0.0, entry))

    def take_durable(self) -> list:
        """Hand-off entries, in order, that need no recorder any more: their frames are durable."""
        taken = []
        durable = self._durable
        while durable:
            taken.append(durable.popleft())
        return taken

    def outstanding(self) -> bool:
        """True while some entry submitted is not yet durable (checked before take_durable)."""
        return bool(self._queue) or self._busy or bool(self._unsynced)

    def _made_durable(self) -> None:
        """Writer thread: what was written so far is fsynced (or needs no writing)."""
        if self._unsynced:
            self._durable.extend(entry for _, _, entry in self._unsynced if entry is not None)
            self._unsynced = []

    def _requeue(self, items: list) -> None:
        """Writer thread: items not written (or cut from the spool) go back to the head of the queue,
        in order; the event loop only appends at the tail, and each deque call is atomic."""
        self._queue.extendleft(reversed(items))

    @property
    def dropped_frames(self) -> int:
        return self.dropped_queue_full + self.dropped_by_writer + self.dropped_by_handoff

    def close(self) -> None:
        self._close_by = time.monotonic() + PENDING_GRACE_SECONDS
        self._closing = True

    @property
    def status(self) -> dict:
        """For the consumer's stats or a health page."""
        return {"state": self.state, "reason": self.degraded_reason, "dropped_frames": self.dropped_frames,
                "queued": len(self._queue), "segments_persisted": self.segments_persisted}

    def join(self, timeout: float | None = None) -> bool:
        """Tests and shutdown: wait until the writer has closed this recorder; True if it did."""
        return self._done.wait(timeout)

    # -- writer thread (shared by every recorder of the process) -----------------
    def _step(self) -> tuple[bool, bool]:
        """One pass of the shared writer over this recorder: (wrote anything, finished)."""
        self._busy = True
        try:
            now = time.monotonic()
            # Holding with a closed recorder: its grace is over, what is still queued is dropped (counted).
            hold = not (self._closing and now >= self._close_by)
            handled = 0
            if not (self.holding and hold and now < self._writer.degraded_until):  # else: not time to probe yet
                batch = []
                while self._queue:
                    batch.append(self._queue.popleft())
                if batch:
                    handled = self._writer.write_batch(batch, hold)
                    self._requeue(batch[handled:])
            now = time.monotonic()
            self._writer.tick(now)
            if self._writer.cut_short:  # the spool failed mid-segment: what was not fsynced is written again
                self._writer.cut_short = False
                self._requeue(self._unsynced)
                self._unsynced = []
            self._writer.settle_pending(now)
            finished = self._closing and not self._queue
            if finished:
                self._writer.finish_segment()
                if self._writer.cut_short:  # its last part failed: those frames are queued again
                    self._writer.cut_short = False
                    self._requeue(self._unsynced)
                    self._unsynced = []
                    finished = False
                if self._writer.pending and now < self._close_by:
                    finished = False  # rows still owed: a moment more for the database to come back
                elif self._writer.pending:
                    log.warning("device %s: %d segment rows left to spool recovery (database still down)",
                                self.device_id, len(self._writer.pending))
            if self._writer.file is None:  # nothing open that a crash could lose
                self._made_durable()
            if finished:
                self._finish()
            return handled > 0, finished
        except Exception:  # one recorder's fault stops only its recording; the row is left for recovery
            # Its unacknowledged entries stay pending: the next lease holder claims them again.
            log.exception("recorder writer for device %s crashed", self.device_id)
            self._set_degraded("writer crashed")
            self._finish()
            return False, True
        finally:
            self._busy = False

    def _finish(self) -> None:
        self.state = "closed" if self.state != "degraded" else self.state
        self._done.set()

    def _set_degraded(self, reason: str) -> None:
        if self.state != "degraded":
            log.error("recording degraded for device %s: %s", self.device_id, reason)
        was_degraded = self.state == "degraded"
        self.state, self.degraded_reason = "degraded", reason
        from recordings import alerts

        alerts.set_recording_degraded(self.device_id, reason)
        if not was_degraded:
            self.notify_state()

    def _clear_degraded(self) -> None:
        if self.state == "degraded":
            log.info("recording recovered for device %s", self.device_id)
            from recordings import alerts

            alerts.clear_recording_degraded(self.device_id)
            self.state, self.degraded_reason = "recording", ""
            self.notify_state()
            return
        self.state, self.degraded_reason = "recording", ""

    def _notify_persisted(self, message: dict) -> None:
        self.segments_persisted += 1
        self._tell_device(message)

    def notify_state(self) -> None:
        """Tell the device its recording state changed (degraded: disk full, storage or database down)."""
        self._tell_device({"type": "recording.state", "state": self.state, "reason": self.degraded_reason})

    def _tell_device(self, message: dict) -> None:
        """group_send to the device's consumer from the writer thread; best effort."""
        from channels.layers import get_channel_layer

        from streams.groups import device_group

        layer = get_channel_layer()
        group = device_group(self.device_id)
        loop = self._loop
        try:
            if loop is not None and loop.is_running():
                future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
                future.add_done_callback(_log_send_failure)
            else:
                from asgiref.sync import async_to_sync

                async_to_sync(layer.group_send)(group, message)
        except Exception:  # what was persisted stays persisted whether or not the device hears of it
            log.warning("could not send %s to device %s", message.get("type"), self.device_id, exc_info=True)


class SharedWriter:
    """The one thread that writes the spool for every recorder of this process.

    One thread rather than one per camera: with 20 cameras, 20 threads waking
    five times a second fought the event loop for the GIL and cost about three
    times the disk work itself (bench/recording_cpu.py). A pass drains every
    recorder's queue in one batch each; when a pass wrote nothing the thread
    sleeps WRITER_POLL_SECONDS. A slow database call while closing one segment
    delays the others' writes by that long; their queues absorb it
    (QUEUE_MAX_FRAMES), and frames beyond are dropped for recording only.
    Each pass also sends the chains owed while Redis did not answer (owed_chains).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._recorders: list[DeviceRecorder] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._idle_since = 0.0  # when the last recorder left (the thread lingers for owed chains)

    def add(self, recorder: "DeviceRecorder") -> None:
        with self._lock:
            self._recorders.append(recorder)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
                self._thread.start()

    def stop(self, timeout: float) -> None:
        """Process exit: log the chains still owed (spool recovery queues them) and let the thread end."""
        self._stopping = True
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        from django.db import connection

        try:
            while True:
                with self._lock:
                    recorders = list(self._recorders)
                    # With no recorder left, chains still owed get PENDING_GRACE_SECONDS more.
                    if not recorders and (not owed_chains or self._stopping
                                          or time.monotonic() - self._idle_since >= PENDING_GRACE_SECONDS):
                        self._thread = None  # add() starts a new one when needed
                        owed_chains.abandon()
                        return
                wrote = False
                for recorder in recorders:
                    did_write, finished = recorder._step()
                    wrote = wrote or did_write
                    if finished:
                        with self._lock:
                            self._recorders.remove(recorder)
                            if not self._recorders:
                                self._idle_since = time.monotonic()
                now = time.monotonic()
                if owed_chains.due(now):
                    owed_chains.retry(now)
                if self._stopping and owed_chains:
                    owed_chains.abandon()
                if not wrote:
                    time.sleep(constants.WRITER_POLL_SECONDS)
        finally:
            connection.close()


_writer_lock = threading.Lock()
_writer_instance: SharedWriter | None = None


def _shared_writer() -> SharedWriter:
    global _writer_instance
    with _writer_lock:
        if _writer_instance is None:
            _writer_instance = SharedWriter()
        return _writer_instance


def _durable(fd: int) -> None:
    """fdatasync where there is one: the data and the file size, not the mtime."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


_IOV_MAX = 512  # buffers per writev() call (Linux allows 1024)


def _writev_all(fd: int, chunks: list) -> None:
    """Write every chunk, in order, with as few syscalls as possible; raises OSError."""
    for start in range(0, len(chunks), _IOV_MAX):
        group = chunks[start:start + _IOV_MAX]
        total = sum(len(c) for c in group)
        written = os.writev(fd, group)
        if written < total:  # short write (disk filling up): finish it or raise ENOSPC
            rest = memoryview(b"".join(group))[written:]
            while rest:
                rest = rest[os.write(fd, rest):]


_disk_checked = [0.0, 1 << 62]  # when, free bytes (shared by the writers of this process)


def _free_spool_bytes(fresh: bool = False) -> int:
    """Free bytes on the spool disk, read at most every DISK_CHECK_SECONDS unless `fresh` (a probe)."""
    now = time.monotonic()
    if fresh or now - _disk_checked[0] >= constants.DISK_CHECK_SECONDS:
        try:
            root = constants.spool_root()
            root.mkdir(parents=True, exist_ok=True)
            _disk_checked[:] = [now, shutil.disk_usage(root).free]
        except OSError:
            _disk_checked[:] = [now, 0]
    return _disk_checked[1]


def _log_send_failure(future) -> None:
    if future.exception() is not None:
        log.warning("group_send to a device failed: %s", future.exception())


class SpoolWriter:
    """The writer thread's state: the open spool file and its counters."""

    def __init__(self, recorder: DeviceRecorder):
        self.r = recorder
        self.file = None
        self.segment_id = None
        self.path = None
        self.open: OpenSegment | None = None
        self.degraded_until = 0.0
        self.pending = PendingRows()  # rows owed while the database is down (recordings/pending_rows.py)
        self.clock_offset_us = 0
        self.start_mid_gop = False
        self.cut_short = False  # the spool failed mid-segment; the frames not fsynced are to be queued again
        self._reset_counters()

    def _reset_counters(self):
        self.frames = 0
        self.first_seq = self.last_seq = None
        self.first_ts = self.last_ts = None
        self.has_audio = False
        carried, self.r._carried_drops = self.r._carried_drops, 0
        self.dropped_at_open = self.r.dropped_frames - carried
        self.last_received = time.monotonic()
        self.last_sync = time.monotonic()
        self.synced = (0, None, None, False, 0)  # frames, last_seq, last_ts, has_audio, bytes

    def write_batch(self, batch, hold: bool = True) -> int:
        """Write the batch's frames; how many items it handled. The rest stays queued: the spool cannot
        take the next frame (`hold`), or a write failed and the frames since the last fsync go back too."""
        chunks = []
        r = self.r  # r._unsynced, not a local name for it: a sync at a cut starts a new list
        for index, item in enumerate(batch):
            frame, received_at, _entry = item
            if frame is None:
                r._unsynced.append(item)
                continue  # an event or a frame dropped before the writer: nothing to write
            kind = frame.header.kind
            is_video = kind in _VIDEO_KINDS
            if kind not in _VIDEO_KINDS and kind != KIND_AUDIO:
                continue  # metadata is live-only
            ts = frame.header.timestamp_us / 1_000_000
            if self.open is not None and is_video and (
                KIND_NAMES[kind] != self.open.codec
                or should_cut(self.open, ts, frame.header.keyframe, True,
                              r.segment_seconds, r.max_segment_seconds)
            ):
                if not self._write(chunks):
                    return index
                chunks = []
                # A forced cut (no keyframe in time) continues mid-GOP; any other
                # H.264 segment starts on a keyframe so it decodes on its own.
                self.start_mid_gop = kind == KIND_H264 and not frame.header.keyframe
                self.finish_segment()
                if self.cut_short:
                    return index
            if self.open is None:
                waiting_for_keyframe = (kind == KIND_H264 and not frame.header.keyframe
                                        and not self.start_mid_gop)
                if is_video and not waiting_for_keyframe and not self._start_segment(frame, received_at):
                    if hold:  # the spool cannot take it now: it and what follows stay queued
                        r.holding = True
                        return index
                    r.holding = False
                    r.dropped_by_writer += 1
                    r._unsynced.append(item)
                    continue
                if self.open is None:  # audio before any video, or H.264 waiting for its first keyframe
                    r.dropped_by_writer += is_video
                    r._unsynced.append(item)
                    continue
                self.start_mid_gop = False
            chunks.extend(spool.encode_record_parts(frame, received_at))
            if is_video:
                self.frames += 1
                if self.first_seq is None:
                    self.first_seq, self.first_ts = frame.header.seq, frame.header.timestamp_us
                self.last_seq = frame.header.seq
                self.last_ts = frame.header.timestamp_us
            else:
                self.has_audio = True
            self.last_received = time.monotonic()
            r._unsynced.append(item)
        self._write(chunks)
        return len(batch)

    def _write(self, chunks) -> bool:
        """False if the spool failed (the segment is cut at its last fsync)."""
        if not chunks or self.file is None:
            return True
        try:
            _writev_all(self.file.fileno(), chunks)
        except OSError as exc:
            self._abandon(f"spool write failed: {exc.strerror or exc}", full=exc.errno == errno.ENOSPC)
            return False
        return True

    def tick(self, now: float) -> None:
        if self.file is None:
            return
        if now - self.last_sync >= constants.PART_SECONDS:
            self._sync()
        if self.open is not None and idle_expired(self.last_received, now, self.r.segment_seconds):
            self.finish_segment()
        elif self.open is not None and now - self.open.opened_at >= self.r.max_segment_seconds:
            # Capture times that do not advance (a stuck camera clock) never cut by
            # the rule above; wall time bounds every segment so recovery's age
            # test can never mistake a live writer for a dead one.
            self.start_mid_gop = self.open.codec == "h264"
            self.finish_segment()

    def _sync(self) -> bool:
        try:
            _durable(self.file.fileno())
        except OSError as exc:
            self._abandon(f"spool fsync failed: {exc.strerror or exc}", full=exc.errno == errno.ENOSPC)
            return False
        self.last_sync = time.monotonic()
        self.synced = (self.frames, self.last_seq, self.last_ts, self.has_audio, self.file.tell())
        self.r._made_durable()
        return True

    def _start_segment(self, frame: Frame, received_at: float) -> bool:
        if time.monotonic() < self.degraded_until:
            return False
        free = _free_spool_bytes(fresh=self.r.holding)
        if free < max(constants.spool_pause_bytes(), 1):
            self._enter_degraded(f"spool disk nearly full ({free} bytes free): recording paused", full=True)
            return False
        from django.utils import timezone as djtz

        self._reset_counters()
        self.segment_id = uuid.uuid4()
        self.clock_offset_us = lifecycle.clock_offset_us(frame.header.timestamp_us, received_at)
        start = lifecycle.utc_from_us(frame.header.timestamp_us + self.clock_offset_us)
        codec = KIND_NAMES[frame.header.kind]
        self.path = constants.spool_path_for(self.r.organisation_id, self.r.device_id, start, self.segment_id)
        meta = {"segment_id": str(self.segment_id), "device_id": str(self.r.device_id),
                "organisation_id": str(self.r.organisation_id), "codec": codec, "audio": self.r.audio,
                "clock_offset_us": self.clock_offset_us,
                "created": djtz.now().isoformat()}
        row = dict(device_id=self.r.device_id, start=start, codec=codec, has_audio=False,
                   spool_path=str(self.path), spool_host=constants.host_name(), writer=writer_identity())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: each batch is one writev() straight from the frames'
            # bytes, and after a failed write nothing lingers in a buffer.
            self.file = open(self.path, "xb", buffering=0)
            _writev_all(self.file.fileno(), [spool.encode_file_header(meta)])
            if not self._create_row(row):
                raise RuntimeError(f"{len(self.pending)} segment rows already pending")
        except Exception as exc:  # disk full, read-only, a bad row: live keeps going
            self._discard_open_file()
            self._enter_degraded(f"cannot open a segment: {exc}",
                                 full=isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
            return False
        self.open = OpenSegment(codec=codec, first_ts=frame.header.timestamp_us / 1_000_000,
                                opened_at=time.monotonic())
        self.r.holding = False
        if not self.pending:
            self.r._clear_degraded()
        return True

    def _create_row(self, row: dict) -> bool:
        """Create the open segment's row, or owe it while the database is down (the file header
        holds all of it); False when too many are owed already."""
        if not self.pending:
            close_old_connections()  # a long-lived thread: drop a connection the database closed
            try:
                lifecycle.create_segment(segment_id=self.segment_id, **row)
                return True
            except DATABASE_DOWN as exc:
                log.warning("device %s: database down, segment %s recorded without its row for now: %s",
                            self.r.device_id, self.segment_id, exc)
        elif self.pending.full():
            return False
        # Behind rows already owed (the database was down a moment ago): no attempt of its own.
        self.pending.create(self.segment_id, str(self.path), **row)
        self.r._set_degraded(DATABASE_DOWN_REASON)
        return True

    def settle_pending(self, now: float) -> None:
        """Write the rows owed since the database went down, once it answers (after a back-off)."""
        if not self.pending.due(now):
            return
        for segment in self.pending.retry(now):
            owed_chains.send(segment.id, now)
            self.r._notify_persisted(lifecycle.persisted_message(segment))
        if not self.pending and now >= self.degraded_until:
            self.r._clear_degraded()

    def finish_segment(self) -> None:
        """Make the open segment durable, close its row, tell the device."""
        if self.open is None:
            return
        if not self._sync():
            return  # _abandon closed what was durable
        self._close_row(*self.synced)

    def _close_row(self, frames, last_seq, last_ts, has_audio, size) -> None:
        segment_id, interval = self.segment_id, self._frame_interval_us(frames, last_ts)
        self._close_file()
        if not frames:
            arguments = None
        else:
            end = lifecycle.utc_from_us(last_ts + interval + self.clock_offset_us)
            arguments = dict(end=end, frames=frames, first_seq=self.first_seq, last_seq=last_seq, spool_bytes=size,
                             dropped_frames=self.r.dropped_frames - self.dropped_at_open, has_audio=has_audio)
        if self.pending:  # the database was down a moment ago: in order, behind what is owed
            self.pending.close(segment_id, str(self.path), arguments)
            return
        try:
            if arguments is None:
                lifecycle.fail_segment(segment_id, "no frames were made durable")
                os.unlink(self.path)
                return
            segment = lifecycle.close_segment(segment_id, queue=False, **arguments)
        except DATABASE_DOWN as exc:  # the spool is durable: the close is retried when the database answers
            log.warning("device %s: cannot close segment %s yet: %s", self.r.device_id, segment_id, exc)
            self.pending.close(segment_id, str(self.path), arguments)
            self.r._set_degraded(DATABASE_DOWN_REASON)
            return
        except Exception as exc:  # not an outage: the spool is durable; spool recovery closes the row later
            if arguments is None:
                log.warning("could not discard empty segment %s", segment_id, exc_info=True)
            else:
                self._enter_degraded(f"cannot close segment {segment_id}: {exc}")
            return
        if segment is not None:
            # After the commit, outside any transaction; owed (not raised) while Redis does not answer:
            # the segment is closed and durable either way, so recording goes on undisturbed.
            owed_chains.send(segment.id, time.monotonic())
            self.r._notify_persisted(lifecycle.persisted_message(segment))

    def _frame_interval_us(self, frames, last_ts) -> int:
        if frames > 1 and last_ts is not None and self.first_ts is not None and last_ts > self.first_ts:
            return (last_ts - self.first_ts) // (frames - 1)
        return 100_000

    def _abandon(self, reason: str, full: bool = False) -> None:
        """Disk error mid-segment: keep what was fsynced, close it, go degraded. The frames written
        since that fsync are cut from the file and queued again (cut_short): the hand-off still
        holds their entries, unacknowledged, so they go into the next segment once the spool takes
        them. That one continues mid-GOP, as a forced cut does."""
        frames, last_seq, last_ts, has_audio, size = self.synced
        try:
            os.ftruncate(self.file.fileno(), size)
        except (OSError, ValueError):
            pass
        self.cut_short = True
        self.start_mid_gop = self.open is not None and self.open.codec == "h264"
        self.r.holding = True
        self._enter_degraded(reason, full)
        self._close_row(frames, last_seq, last_ts, has_audio, size)

    def _enter_degraded(self, reason: str, full: bool = False) -> None:
        """Try the spool again after a short probe interval when the disk is full (space comes back
        when retention or an operator frees it), after DEGRADED_RETRY_SECONDS for other errors."""
        retry = constants.SPOOL_FULL_PROBE_SECONDS if full else constants.DEGRADED_RETRY_SECONDS
        self.degraded_until = time.monotonic() + retry
        self.r._set_degraded(reason)

    def _close_file(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
        self.file, self.open = None, None

    def _discard_open_file(self) -> None:
        self._close_file()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
