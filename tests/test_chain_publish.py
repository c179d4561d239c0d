"""A segment's chain survives a Redis restart between its steps (lifecycle.queue_processing).

The worker sends a chain's next step when a step succeeds. Celery's default tries that 3 times in
0.6 s; a transcode finishing while Redis restarted then left its segment `transcoding` until spool
recovery requeued it minutes later. The later steps carry constants.CHAIN_PUBLISH_RETRY_POLICY.
"""
import threading
import time

import pytest
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from recordings import constants, lifecycle
from tests.support import RedisServer


@pytest.fixture
def steps(monkeypatch):
    """The chain queue_processing sends, captured instead of sent."""
    sent = []
    monkeypatch.setattr("celery.canvas._chain.apply_async", lambda self, *args, **kwargs: sent.append(self))
    lifecycle.queue_processing("a4d1c8a8-0000-4000-8000-000000000001")
    assert len(sent) == 1
    return sent[0].tasks


def test_only_the_steps_the_worker_sends_wait_for_redis(steps):
    transcode, thumbnails, archive = steps
    assert "retry_policy" not in transcode.options  # sent by the recorder's writer thread: never waits long
    for step in (thumbnails, archive):
        assert step.options["retry_policy"] == constants.CHAIN_PUBLISH_RETRY_POLICY and step.options["retry"]


@pytest.fixture
def broker():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def test_the_next_step_is_sent_once_redis_is_back(steps, broker):
    app = Celery("chain-publish-test", broker=f"redis://127.0.0.1:{broker.port}/0", set_as_current=False)
    thumbnails = app.signature(dict(steps[1]))
    default = app.signature(dict(steps[1], options={"queue": thumbnails.options["queue"]}))
    # What Celery's tracer does with a chain's next step after a success (celery/app/trace.py).
    app.amqp._retry_publish(thumbnails.apply_async)  # a first send, so the worker holds a connection
    broker.stop()
    with pytest.raises(OperationalError):  # Celery's default gives up within a second
        app.amqp._retry_publish(default.apply_async)
    back = threading.Timer(3.0, broker.start)
    back.start()
    started = time.monotonic()
    try:
        app.amqp._retry_publish(thumbnails.apply_async)
    finally:
        back.join()
    elapsed = time.monotonic() - started
    assert 3.0 <= elapsed <= 3.0 + constants.CHAIN_PUBLISH_RETRY_POLICY["interval_max"] + 2.0
    client = redis.Redis(port=broker.port)
    assert client.llen(thumbnails.options["queue"]) == 1  # the restart emptied it: this is the retried send
