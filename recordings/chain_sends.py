"""Processing chains the recorder owes while Redis does not answer.

When the writer closes a segment it sends the first step of its chain
(lifecycle.queue_processing) to the broker. If Redis is down at that moment the
send fails; the segment is `closed` and durable, so nothing is lost, but without
this its processing waited for spool recovery (REQUEUE_CLOSED_AFTER_SECONDS,
5 min). Instead the writer notes the send here as owed and calls retry() on each
pass; after a failed try it waits BACKOFF_START_SECONDS, doubling up to
BACKOFF_MAX_SECONDS, so the chain reaches the queue within about two seconds of
Redis answering again.

The send must not hold the writer, which writes every camera's spool. Celery's
default publish tries 3 times over 0.6 s, and kombu's Redis connection has no
socket timeouts at all (a Redis that hangs would hold the writer for good). So
the writer sends on a connection of its own with SEND_TIMEOUT_SECONDS for
connecting and for each reply, and no retry: a stopped Redis refuses in about a
millisecond, a hung one costs SEND_TIMEOUT_SECONDS per try. While anything is
owed, a new close queues behind it without a try of its own, so an outage costs
one try per back-off, not one per segment or per camera (one OwedChains per
process, like the writer thread).

Sent once in the usual case: a refused connection sent nothing. Two cases can
send a second copy: a reply that timed out (the push may have landed before
Redis hung), and spool recovery requeueing a segment whose send is still owed
(only after 5 min of outage). Both are harmless: transcode claims the segment
(pipeline.claim_for_transcode) and a copy that finds it claimed stops, one that
finds it done passes through ("done"); tests/test_recording_pipeline.py runs
every step twice.

Writer thread only; no locking.
"""
from __future__ import annotations

import collections
import logging

from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from recordings import lifecycle
from recordings.pending_rows import BACKOFF_MAX_SECONDS, BACKOFF_START_SECONDS

log = logging.getLogger(__name__)

# The broker did not answer (stopped, restarting, hung, unreachable): worth trying again.
BROKER_DOWN = (OperationalError, RedisConnectionError, RedisTimeoutError)
SEND_TIMEOUT_SECONDS = 1.0
MAX_OWED = 20_000  # per process (~11 h of 2 s segments from 20 cameras); beyond, spool recovery queues them


class FirstStepSender:
    """Sends a segment's chain on its own broker connection: short timeouts, no retry."""

    def __init__(self, url: str | None = None):
        self._url = url  # the broker's, unless a test points it elsewhere
        self._connection = None

    def __call__(self, segment_id) -> None:
        from celery import current_app as app

        if app.conf.task_always_eager:  # CELERY_EAGER try-out: no broker to wait on
            lifecycle.queue_processing(segment_id)
            return
        if self._connection is None:  # kept: redis-py reconnects it once Redis is back
            # max_retries 0: kombu otherwise tries a first connection again for about 6 s.
            options = {"socket_connect_timeout": SEND_TIMEOUT_SECONDS, "socket_timeout": SEND_TIMEOUT_SECONDS,
                       "max_retries": 0}
            self._connection = app.connection_for_write(self._url, transport_options=options)
        lifecycle.queue_processing(segment_id, connection=self._connection, retry=False)


SENT, OWED, LEFT = "sent", "owed", "left to spool recovery"


class OwedChains:
    def __init__(self, send=None):
        self._send = send or FirstStepSender()
        self._owed: collections.OrderedDict = collections.OrderedDict()
        self._next_try = 0.0
        self._delay = BACKOFF_START_SECONDS

    def __len__(self) -> int:
        return len(self._owed)

    def send(self, segment_id, now: float) -> str:
        """Send the closed segment's chain now, or owe it (SENT, OWED or LEFT)."""
        if self._owed:  # Redis did not answer a moment ago: in order, behind what is owed
            return self._owe(segment_id)
        outcome = self._try(segment_id, now)
        return self._owe(segment_id) if outcome == OWED else outcome

    def due(self, now: float) -> bool:
        return bool(self._owed) and now >= self._next_try

    def retry(self, now: float) -> int:
        """Send what is owed, oldest first, until Redis fails again; how many were sent."""
        sent = 0
        while self._owed:
            segment_id = next(iter(self._owed))
            outcome = self._try(segment_id, now)
            if outcome == OWED:
                break
            del self._owed[segment_id]
            sent += outcome == SENT
        return sent

    def abandon(self) -> list:
        """The writer stops with sends still owed: log them and forget them (spool recovery queues them)."""
        left, self._owed = list(self._owed), collections.OrderedDict()
        self._next_try, self._delay = 0.0, BACKOFF_START_SECONDS
        if left:
            log.warning("recorder stopping with %d processing chains unsent (Redis did not answer); spool "
                        "recovery queues them once they have been closed 5 min: %s",
                        len(left), ", ".join(str(s) for s in left))
        return left

    def _try(self, segment_id, now: float) -> str:
        try:
            self._send(segment_id)
        except BROKER_DOWN as exc:
            self._next_try = now + self._delay
            self._delay = min(self._delay * 2, BACKOFF_MAX_SECONDS)
            (log.info if self._owed else log.warning)(
                "broker unavailable, processing chain of segment %s not sent (%d owed): %s",
                segment_id, len(self._owed) or 1, exc)
            return OWED
        except Exception:  # not an outage (a bug): the segment is closed, spool recovery queues it
            log.exception("could not send the processing chain of segment %s; spool recovery will", segment_id)
            return LEFT
        self._next_try, self._delay = 0.0, BACKOFF_START_SECONDS
        return SENT

    def _owe(self, segment_id) -> str:
        if segment_id in self._owed:
            return OWED
        if len(self._owed) >= MAX_OWED:
            log.error("segment %s: %d processing chains owed already; spool recovery queues this one",
                      segment_id, len(self._owed))
            return LEFT
        self._owed[segment_id] = True
        return OWED
