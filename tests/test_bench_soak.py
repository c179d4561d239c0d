"""The soak's pure verdicts (bench/soak.py): growth, flatness, warm-up choice, one process's row."""
import os

import pytest

from bench import soak


def test_growth_is_the_change_in_percent_of_the_first_value():
    assert soak.growth_percent(100, 105) == pytest.approx(5.0)
    assert soak.growth_percent(200, 150) == pytest.approx(-25.0)


def test_growth_from_nothing_is_zero_rather_than_a_division_error():
    assert soak.growth_percent(0, 50) == 0.0


def test_rss_growth_of_exactly_five_percent_passes_and_more_fails():
    assert soak.rss_ok(1000, 1050)
    assert not soak.rss_ok(1000, 1051)
    assert soak.rss_ok(1000, 900)  # shrinking is fine


def test_fds_are_flat_when_the_later_peak_stays_within_the_slack_of_the_earlier_one():
    assert soak.fds_flat([40, 40, 40, 40 + soak.FD_SLACK])
    assert not soak.fds_flat([40, 40, 40, 41 + soak.FD_SLACK])
    assert soak.fds_flat([40, 12])
    assert soak.fds_flat([7])


def test_descriptors_that_come_and_go_are_flat_but_a_steady_climb_is_not():
    checkpointer = [6, 120, 221, 18, 6, 150, 210, 18]  # a checkpoint's files opened, then closed
    assert soak.fds_flat(checkpointer)
    leak = [40 + 3 * n for n in range(10)]
    assert not soak.fds_flat(leak)


def test_shared_memory_is_not_counted_as_the_process_growing():
    # a PostgreSQL checkpointer: RSS 6.5 -> 24.3 MiB, all of it buffer-pool pages it touched
    mib = 1 << 20
    checkpointer = soak.Series("data/postgres checkpointer[7]", {0: (int(6.5 * mib), 6, int(1.5 * mib)),
                                                                1: (int(24.3 * mib), 6, int(19.4 * mib))})
    row = soak.judge(checkpointer, base=0, last=1)
    assert row["rss_ok"] and row["growth"] < 5 and row["rss_last"] == int(24.3 * mib)
    private_leak = soak.Series("p", {0: (100 * mib, 6, 10 * mib), 1: (120 * mib, 6, 10 * mib)})
    assert not soak.judge(private_leak, base=0, last=1)["rss_ok"]


def test_postgresql_children_are_labelled_by_their_role():
    assert soak.process_label("data/postgres", "postgres", ["postgres: checkpointer ", "", ""], 7) == \
        "data/postgres checkpointer[7]"
    assert soak.process_label("db", "postgres", ["postgres: 15/main: background writer ", ""], 8) == \
        "db background-writer[8]"
    assert soak.process_label("db", "postgres", ["postgres: postgres sightline 10.0.0.2(4321) idle", ""], 9) == \
        "db backend[9]"
    assert soak.process_label("data/postgres", "postgres", ["/usr/lib/postgresql/15/bin/postgres", "-D", "x"], 6) \
        == "data/postgres postgres[6]"
    assert soak.process_label("web-a/uvicorn", "uvicorn", ["uvicorn"], 9) == "web-a/uvicorn uvicorn[9]"


def test_shared_memory_of_this_process_is_read_from_proc():
    assert soak.shared_memory_bytes(os.getpid()) >= 0
    assert soak.shared_memory_bytes(2 ** 22 + 12345) == 0  # no such process


def test_the_warm_up_sample_is_the_first_at_or_after_the_warm_up():
    times = [100.0, 130.0, 160.0, 220.0, 250.0]
    assert soak.warmup_index(times, 120) == 3
    assert soak.warmup_index(times, 0) == 0


def test_a_soak_shorter_than_the_warm_up_judges_from_the_last_sample():
    assert soak.warmup_index([0.0, 30.0], 120) == 1
    with pytest.raises(ValueError):
        soak.warmup_index([], 120)


def test_a_process_is_judged_from_the_warm_up_sample_with_the_max_fds_seen_since():
    series = soak.Series("web-a/uvicorn uvicorn[1]", {0: (50, 10), 1: (100, 20), 2: (110, 26), 3: (104, 21)})
    row = soak.judge(series, base=1, last=3)
    figures = (row["rss_first"], row["rss_last"], row["fds_first"], row["fds_last"], row["fds_max"])
    assert figures == (100, 104, 20, 21, 26)
    assert row["growth"] == pytest.approx(4.0) and row["rss_ok"] and row["fds_ok"]


def test_a_leaking_process_fails_both_bars():
    row = soak.judge(soak.Series("p", {0: (100, 10), 1: (200, 100)}), base=0, last=1)
    assert not row["rss_ok"] and not row["fds_ok"]


def test_a_process_not_alive_at_both_ends_is_not_judged():
    assert soak.judge(soak.Series("born late", {2: (10, 5), 3: (10, 5)}), base=1, last=3) is None
    assert soak.judge(soak.Series("died", {1: (10, 5)}), base=1, last=3) is None


def test_the_markdown_table_has_a_header_a_rule_and_one_line_per_row():
    table = soak.markdown_table(("a", "b"), [(1, 2), ("x", "y")])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |", "| x | y |"]


def test_without_root_the_soak_says_so_and_exits_2(capsys, monkeypatch):
    monkeypatch.setattr(soak.os, "geteuid", lambda: 1000)
    assert soak.main(["--minutes", "1"]) == 2
    assert "needs root" in capsys.readouterr().err


class _FakeChild:
    pid = os.getpid()


class _FakeLab:
    """Just what soak() touches: seeding, the started processes (here: this test process)."""
    children = {"web-a/uvicorn": _FakeChild()}

    def seed(self, cameras):
        return {"owner": "cookie", "cameras": [{"id": f"dev{n}", "token": "t"} for n in range(cameras)]}


class _FakeCamera:
    def __init__(self, lab, token, which, fps, device_id):
        self.sent = [(0.0, seq) for seq in range(1, 11)]

    def stop(self):
        pass


class _FakeViewer:
    def __init__(self, lab, device_id, cookie, which, reconnect):
        self.frames = [(0.0, seq) for seq in range(1, 11)]

    def wait_frames(self, count, timeout):
        return [seq for _, seq in self.frames]

    def stop(self):
        pass


class _FakeTap:
    def __init__(self, lab, device_id):
        self.seqs = set(range(1, 11))

    def stop(self):
        pass


@pytest.fixture
def fake_clients(monkeypatch):
    from tests.multihost import clients

    monkeypatch.setattr(clients, "Camera", _FakeCamera)
    monkeypatch.setattr(clients, "Viewer", _FakeViewer)
    monkeypatch.setattr(clients, "FrameTap", _FakeTap)
    monkeypatch.setattr(soak.time, "sleep", lambda seconds: None)


def test_a_soak_where_every_accepted_frame_is_recorded_passes_and_prints_both_tables(fake_clients, monkeypatch,
                                                                                    capsys):
    monkeypatch.setattr(soak, "segments_since",
                        lambda lab, device_id, cookie, since: [{"state": "archived", "frames": 10}])
    assert soak.soak(_FakeLab(), cameras=2, minutes=0, sample_seconds=0, warmup_minutes=0)
    out = capsys.readouterr().out
    assert "| camera 1 | 10 | 10 | 10 | 0 | 1 archived |" in out
    assert "| **total** | 20 | 20 | 20 | 0 |  |" in out
    assert "web-a/uvicorn" in out and "own RSS first MiB" in out
    assert "PASS: recorded = accepted (20 of 20" in out


def test_a_soak_that_lost_frames_fails_and_names_the_camera(fake_clients, monkeypatch, capsys):
    monkeypatch.setattr(soak, "segments_since",
                        lambda lab, device_id, cookie, since: [{"state": "archived", "frames": 7},
                                                               {"state": "failed", "frames": 3}])
    assert not soak.soak(_FakeLab(), cameras=1, minutes=0, sample_seconds=0, warmup_minutes=0)
    assert "FAIL: recorded = accepted (7 of 10; no faults, so no camera may lose any); lost frames: camera 0" \
        in capsys.readouterr().out
