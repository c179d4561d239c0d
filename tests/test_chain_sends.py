"""A segment closed while Redis is down has its chain sent within seconds of Redis's return, once
(recordings/chain_sends.py), and the send never holds the recorder's writer."""
import json
import logging
import signal
import time

import pytest
import redis
from django.conf import settings
from kombu.exceptions import OperationalError

from recordings import chain_sends, constants, recorder
from recordings.models import Segment, SegmentState
from tests.support import RedisServer, free_port
from tests.test_recording_recorder import T0, feed_jpeg, make_recorder, wait_for


class FlakyBroker:
    """A send function: raises like kombu while `down`, records what it sent."""

    def __init__(self):
        self.down = False
        self.calls = []
        self.sent = []

    def __call__(self, segment_id):
        self.calls.append(segment_id)
        if self.down:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append(segment_id)


def test_owed_chains_back_off_from_half_a_second_to_two_and_go_out_in_order_once():
    broker = FlakyBroker()
    owed = chain_sends.OwedChains(broker)
    assert owed.send("s1", now=100.0) == chain_sends.SENT
    broker.down = True
    assert owed.send("s2", now=101.0) == chain_sends.OWED
    assert owed.send("s3", now=101.1) == chain_sends.OWED  # behind s2, no try of its own
    assert broker.calls == ["s1", "s2"] and len(owed) == 2
    waits, now = [], 101.0
    for _ in range(4):  # each failed retry waits longer, up to BACKOFF_MAX_SECONDS
        wait = next(w for w in (0.5, 1.0, 2.0, 4.0) if owed.due(now + w))
        assert not owed.due(now + wait - 0.01)
        now += wait
        waits.append(wait)
        assert owed.retry(now) == 0
    assert waits == [0.5, 1.0, 2.0, 2.0]
    assert broker.calls == ["s1", "s2"] + ["s2"] * 4, "a retry stops at the first failure"
    broker.down = False
    assert not owed.due(now + 1.99) and owed.due(now + 2.0)
    assert owed.retry(now + 2.0) == 2
    assert broker.sent == ["s1", "s2", "s3"] and len(owed) == 0 and not owed.due(now + 10)
    broker.down = True  # a later outage starts again from half a second
    assert owed.send("s4", now=200.0) == chain_sends.OWED
    assert not owed.due(200.49) and owed.due(200.5)


def test_a_send_that_fails_for_another_reason_is_left_to_spool_recovery_not_retried():
    def broken(segment_id):
        raise ValueError("a bug")

    owed = chain_sends.OwedChains(broken)
    assert owed.send("s1", now=1.0) == chain_sends.LEFT
    assert len(owed) == 0 and not owed.due(100.0)


def test_chains_still_owed_when_the_writer_stops_are_logged_for_spool_recovery(caplog):
    broker = FlakyBroker()
    broker.down = True
    owed = chain_sends.OwedChains(broker)
    owed.send("s1", now=1.0)
    owed.send("s2", now=1.0)
    with caplog.at_level(logging.WARNING, logger="recordings.chain_sends"):
        assert owed.abandon() == ["s1", "s2"]
    assert "2 processing chains unsent" in caplog.text and "s1, s2" in caplog.text
    assert len(owed) == 0 and not owed.due(100.0)


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def _timed_send(sender, segment_id="a4d1c8a8-0000-4000-8000-000000000001"):
    started = time.monotonic()
    with pytest.raises(OperationalError):
        sender(segment_id)
    return time.monotonic() - started


def test_the_first_step_is_sent_without_waiting_on_a_redis_that_is_stopped_or_hung(redis_server):
    assert _timed_send(chain_sends.FirstStepSender(f"redis://127.0.0.1:{free_port()}/0")) < 0.2  # refused
    sender = chain_sends.FirstStepSender(redis_server.url)
    sender("a4d1c8a8-0000-4000-8000-000000000001")  # connected
    redis_server.process.send_signal(signal.SIGSTOP)  # hung: the connection stays open, nothing answers
    try:
        assert _timed_send(sender) < chain_sends.SEND_TIMEOUT_SECONDS + 0.5
    finally:
        redis_server.process.send_signal(signal.SIGCONT)


def _queued_steps(client) -> list:
    """(task, segment id) of each message in the spool queue, oldest first."""
    key = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] + constants.spool_queue()
    messages = [json.loads(raw) for raw in reversed(client.lrange(key, 0, -1))]
    return [(m["headers"]["task"], m["headers"]["argsrepr"].strip("()',")) for m in messages]


@pytest.mark.django_db(transaction=True)
def test_a_segment_closed_while_redis_is_down_is_queued_once_within_seconds_of_its_return(
        acme_camera, redis_server, monkeypatch):
    persisted = []
    monkeypatch.setattr(recorder.DeviceRecorder, "_notify_persisted", lambda self, message: persisted.append(message))
    monkeypatch.setattr(recorder, "owed_chains", chain_sends.OwedChains(chain_sends.FirstStepSender(redis_server.url)))
    client = redis.Redis(port=redis_server.port)
    rec = make_recorder(acme_camera, seconds=1)
    feed_jpeg(rec, 11)  # the first segment closes at the 11th frame: its chain goes out at once
    assert wait_for(lambda: len(_queued_steps(client)) == 1)
    redis_server.stop()
    # While Redis is down the second segment closes at the 21st frame, the third when no frame
    # came for a segment length (idle cut).
    feed_jpeg(rec, 10, start_seq=11, t0=T0 + 1_100_000)
    assert wait_for(lambda: Segment.objects.filter(state=SegmentState.CLOSED).count() == 3)
    assert wait_for(lambda: len(recorder.owed_chains) == 2)
    time.sleep(3.0)  # down a few seconds: the writer keeps trying, backing off to 2 s
    assert len(recorder.owed_chains) == 2
    assert rec.state == "recording" and rec.dropped_frames == 0, "recording goes on undisturbed"
    client = redis_server.start()  # empty: what it holds now was sent after its return
    back = time.monotonic()
    assert wait_for(lambda: len(_queued_steps(client)) == 2)
    took = time.monotonic() - back
    assert took < chain_sends.BACKOFF_MAX_SECONDS + 1.0, f"queued {took:.2f} s after Redis returned"
    time.sleep(2.5)  # several more writer passes: nothing sent twice
    rec.close()
    assert rec.join(10)
    segments = list(Segment.objects.order_by("start"))
    assert [s.state for s in segments] == [SegmentState.CLOSED] * 3
    assert _queued_steps(client) == [("recordings.transcode_task", str(segments[1].id)),
                                     ("recordings.transcode_task", str(segments[2].id))]
    assert [m["segment_id"] for m in persisted] == [str(s.id) for s in segments]
    print(f"\nchain queued {took:.2f} s after Redis returned")


@pytest.mark.django_db(transaction=True)
def test_chains_still_owed_when_the_recorder_process_stops_are_logged_with_their_segments(
        acme_camera, monkeypatch, caplog):
    broker = FlakyBroker()
    broker.down = True
    monkeypatch.setattr(recorder, "owed_chains", chain_sends.OwedChains(broker))
    monkeypatch.setattr(recorder, "_writer_instance", recorder.SharedWriter())  # this test stops it
    monkeypatch.setattr(recorder.DeviceRecorder, "_notify_persisted", lambda self, message: None)
    rec = make_recorder(acme_camera, seconds=1)
    feed_jpeg(rec, 11)
    assert wait_for(lambda: len(recorder.owed_chains) == 1)
    writer = recorder._writer_instance._thread
    with caplog.at_level(logging.WARNING, logger="recordings.chain_sends"):
        started = time.monotonic()
        recorder.close_all_recorders()  # what the recorder process does at exit
    assert time.monotonic() - started < recorder.SHUTDOWN_GRACE_SECONDS
    assert rec.join(0) and not writer.is_alive() and len(recorder.owed_chains) == 0
    segments = list(Segment.objects.order_by("start"))
    assert [s.state for s in segments] == [SegmentState.CLOSED] * 2
    assert "2 processing chains unsent" in caplog.text
    assert all(str(s.id) in caplog.text for s in segments)
