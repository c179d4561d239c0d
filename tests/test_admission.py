"""Pure decisions taken before a socket is authenticated (streams/admission.py) and the server's
launch options (project/serve.py): no sockets, no Redis."""
from streams.admission import FailureCounts, HandshakeGate


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# -- handshake gate -----------------------------------------------------------------


def test_the_gate_admits_up_to_the_per_address_cap_and_then_refuses_that_address_only():
    gate = HandshakeGate(per_address=2, total=10)
    assert gate.enter("a") and gate.enter("a")
    assert not gate.enter("a")
    assert gate.enter("b")
    assert gate.in_progress == 3


def test_the_gate_refuses_everyone_once_the_total_is_reached():
    gate = HandshakeGate(per_address=5, total=3)
    assert gate.enter("a") and gate.enter("b") and gate.enter("c")
    assert not gate.enter("d")
    gate.leave("b")
    assert gate.enter("d")


def test_a_place_given_back_admits_the_next_handshake_and_no_row_is_kept_per_address():
    gate = HandshakeGate(per_address=1, total=10)
    assert gate.enter("a")
    gate.leave("a")
    assert gate.in_progress == 0 and gate._by_address == {}
    assert gate.enter("a")


def test_admit_gives_the_place_back_even_when_the_block_raises():
    gate = HandshakeGate(per_address=1, total=1)
    try:
        with gate.admit("a") as admitted:
            assert admitted
            raise RuntimeError("database down")
    except RuntimeError:
        pass
    assert gate.in_progress == 0
    with gate.admit("a") as admitted:
        assert admitted
        with gate.admit("a") as second:
            assert not second
        assert gate.in_progress == 1  # a refused handshake gives back nothing it did not take
    assert gate.in_progress == 0


def test_leaving_an_address_that_never_entered_changes_nothing():
    gate = HandshakeGate(per_address=1, total=1)
    gate.leave("ghost")
    assert gate.in_progress == 0


# -- failure counts ------------------------------------------------------------------


def test_an_address_is_blocked_after_the_allowed_failures_and_others_are_not():
    counts = FailureCounts(allowed=3, window_seconds=60, clock=Clock())
    for _ in range(2):
        counts.record("a")
    assert not counts.blocked("a")
    counts.record("a")
    assert counts.blocked("a") and not counts.blocked("b")


def test_the_window_expires_and_the_address_is_forgotten():
    clock = Clock()
    counts = FailureCounts(allowed=1, window_seconds=60, clock=clock)
    counts.record("a")
    assert counts.blocked("a")
    clock.now += 60
    assert not counts.blocked("a") and len(counts) == 0


def test_only_failures_below_the_limit_are_sent_to_the_shared_count_once():
    counts = FailureCounts(allowed=3, window_seconds=60, clock=Clock())
    for _ in range(10):
        counts.record("a")
    counts.record("b")
    assert counts.take_unsent() == {"a": 3, "b": 1}
    assert counts.take_unsent() == {} and not counts.has_unsent()
    assert counts.blocked("a")


def test_counts_of_other_processes_merged_in_block_the_address_and_follow_their_window():
    clock = Clock()
    counts = FailureCounts(allowed=5, window_seconds=60, clock=clock)
    counts.record("a")
    counts.take_unsent()
    counts.merge("a", 7, seconds_left=10)
    assert counts.blocked("a")
    clock.now += 10
    assert not counts.blocked("a")


def test_a_merged_count_never_lowers_what_this_process_has_seen():
    counts = FailureCounts(allowed=5, window_seconds=60, clock=Clock())
    for _ in range(4):
        counts.record("a")
    counts.take_unsent()
    counts.merge("a", 1)
    assert counts.count("a") == 4


def test_memory_is_bounded_by_forgetting_the_oldest_addresses():
    counts = FailureCounts(allowed=5, window_seconds=60, clock=Clock(), max_addresses=100)
    for index in range(1000):
        counts.record(f"10.0.{index // 256}.{index % 256}")
    assert len(counts) == 100
    assert counts.count("10.3.231") == 0 and counts.count("10.0.3.231") == 1


# -- how the web server is started ------------------------------------------------------


def test_without_trusted_proxies_the_server_ignores_forwarded_headers():
    from project.serve import proxy_arguments

    assert proxy_arguments([]) == ["--no-proxy-headers"]


def test_forwarded_headers_are_believed_only_from_the_trusted_proxies():
    from project.serve import proxy_arguments

    assert proxy_arguments(["10.0.0.5", "10.1.0.0/16"]) == [
        "--proxy-headers", "--forwarded-allow-ips", "10.0.0.5,10.1.0.0/16",
    ]


def test_the_server_runs_with_the_head_deadline_protocol_and_the_options_given_last():
    from project.serve import uvicorn_arguments

    arguments = uvicorn_arguments([], ["--port", "8010"])
    assert arguments[0] == "project.asgi:application"
    assert arguments[arguments.index("--http") + 1] == "project.http_protocol:HeaderDeadlineProtocol"
    assert arguments[arguments.index("--ws-per-message-deflate") + 1] == "false"
    assert arguments[-2:] == ["--port", "8010"]
