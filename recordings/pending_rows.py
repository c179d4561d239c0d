"""Segment rows a recorder owes while the database does not answer.

The spool is the record: a segment's file holds its frames and its header
everything its row needs. So when PostgreSQL is down the recorder's writer
keeps recording to the spool and notes here the rows it still owes -- a row
to create, a close to apply -- instead of dropping frames and leaving a
`recording` row for spool recovery to find a minute or more later. The writer
calls retry() on each pass; after a failed try it waits BACKOFF_START_SECONDS,
doubling up to BACKOFF_MAX_SECONDS, so the rows are written, closed and their
chains sent (recordings/chain_sends.py) within about two seconds of the
database answering again.

Safe beside spool recovery (recordings/recovery.py), which may work on the same
files at the same time: a row recovery already made from the file is not made
twice (its primary key is the segment id), and a close applies only to a
`recording` row (lifecycle.close_segment), so each segment is closed once, by
whichever comes first. If this process dies, its files and `recording` rows are
exactly what recovery handles.

Used by the recorder's writer thread only; no locking.
"""
from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import dataclass

from django.db import IntegrityError, InterfaceError, OperationalError, close_old_connections, transaction

from recordings import lifecycle
from recordings.models import SegmentState

log = logging.getLogger(__name__)

# The database did not answer (stopped, restarting, unreachable): worth trying again.
DATABASE_DOWN = (OperationalError, InterfaceError)
BACKOFF_START_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 2.0
MAX_PENDING = 5000  # per device (~3 h of 2 s segments); beyond it frames are dropped as before
EMPTY = "empty"  # a segment that ended with no durable frame: its file goes, its row (if any) fails


@dataclass
class PendingRow:
    segment_id: object
    path: str
    create: dict | None = None  # lifecycle.create_segment's arguments while the row is not made yet
    close: dict | str | None = None  # close_segment's arguments, or EMPTY, once the segment ended


class PendingRows:
    def __init__(self):
        self._rows: collections.OrderedDict = collections.OrderedDict()
        self._next_try = 0.0
        self._delay = BACKOFF_START_SECONDS

    def __len__(self) -> int:
        return len(self._rows)

    def full(self) -> bool:
        return len(self._rows) >= MAX_PENDING

    def owes_row(self, segment_id) -> bool:
        """True while the segment's row has not been made yet."""
        row = self._rows.get(segment_id)
        return row is not None and row.create is not None

    def create(self, segment_id, path: str, **arguments) -> None:
        """The segment is being recorded; its row (lifecycle.create_segment's arguments) is owed."""
        self._rows[segment_id] = PendingRow(segment_id, path, create=arguments)
        self._wait_from_now()

    def close(self, segment_id, path: str, arguments: dict | None) -> None:
        """The segment ended; its close (close_segment's arguments, None if no frame was durable) is owed."""
        row = self._rows.setdefault(segment_id, PendingRow(segment_id, path))
        row.close = EMPTY if arguments is None else arguments
        self._wait_from_now()

    def _wait_from_now(self) -> None:
        if self._next_try == 0.0:  # the first failure: try again soon, not at once
            self._next_try = time.monotonic() + self._delay

    def due(self, now: float) -> bool:
        return bool(self._rows) and now >= self._next_try

    def retry(self, now: float) -> list:
        """Write what is owed, oldest first; the closed Segment rows (to queue and tell the device).

        Stops at the first sign that the database is still down and backs off."""
        closed = []
        close_old_connections()  # drop the connection the outage broke
        try:
            while self._rows:
                row = next(iter(self._rows.values()))
                segment = self._settle(row)
                # Settled. One still being recorded has its row now: the writer closes it as usual.
                del self._rows[row.segment_id]
                if segment is not None:
                    closed.append(segment)
        except DATABASE_DOWN as exc:
            self._next_try = now + self._delay
            self._delay = min(self._delay * 2, BACKOFF_MAX_SECONDS)
            log.info("database still unavailable, %d segment rows pending: %s", len(self._rows), exc)
            return closed
        except Exception:  # not an outage (a bug, the device deleted): leave this one to spool recovery
            row = self._rows.popitem(last=False)[1]
            log.exception("could not settle the row of segment %s; spool recovery will", row.segment_id)
            return closed
        self._next_try, self._delay = 0.0, BACKOFF_START_SECONDS
        return closed

    def _settle(self, row: PendingRow):
        if row.create is not None and row.close == EMPTY:
            row.create = None  # no row was made and none is needed
        if row.create is not None:
            try:
                with transaction.atomic():
                    lifecycle.create_segment(segment_id=row.segment_id, **row.create)
            except IntegrityError:
                log.info("segment %s already has a row (spool recovery made it)", row.segment_id)
            row.create = None
        if row.close == EMPTY:
            lifecycle.fail_segment(row.segment_id, "no frames were made durable", [SegmentState.RECORDING])
            try:
                os.unlink(row.path)
            except OSError:
                pass
            return None
        if row.close is not None:
            # None: recovery closed it first. The writer sends the chain (recordings/chain_sends.py).
            return lifecycle.close_segment(row.segment_id, queue=False, **row.close)
        return None
