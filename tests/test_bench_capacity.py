"""The capacity benchmark's arithmetic (bench/capacity.py) and the transcode's encoder settings."""
import pytest

from bench import capacity
from recordings.transcode import x264_options

HISTOGRAM = """# HELP sightline_capture_to_server_seconds Capture timestamp to arrival at the ingesting server
sightline_capture_to_server_seconds_bucket{{le="0.005"}} {a}
sightline_capture_to_server_seconds_bucket{{le="0.05"}} {b}
sightline_capture_to_server_seconds_bucket{{le="+Inf"}} {c}
sightline_capture_to_server_seconds_count {c}
"""


def test_percentiles_are_nearest_rank_like_the_load_generators():
    values = list(range(1, 101))
    assert capacity.percentile(values, 50) == 50
    assert capacity.percentile(values, 99) == 99
    assert capacity.percentile([7.0], 99) == 7.0
    assert capacity.percentile([], 99) is None


def test_histogram_quantiles_come_from_the_observations_between_two_scrapes():
    before = capacity.parse_histogram(HISTOGRAM.format(a=100, b=100, c=100), "sightline_capture_to_server_seconds")
    # 1,000 new observations: 900 under 5 ms, 95 more under 50 ms, 5 slower.
    after = capacity.parse_histogram(HISTOGRAM.format(a=1000, b=1095, c=1100), "sightline_capture_to_server_seconds")
    assert after[float("inf")] == 1100
    assert capacity.histogram_quantile(before, after, 0.5) == 0.005
    assert capacity.histogram_quantile(before, after, 0.99) == 0.05
    assert capacity.histogram_quantile(before, after, 0.999) == float("inf")
    assert capacity.fraction_within(before, after, 0.05) == pytest.approx(0.995)
    assert capacity.histogram_quantile(after, after, 0.99) is None  # nothing observed in between


def test_counters_are_summed_over_their_labels():
    text = ('sightline_ingest_frames_total{device="a",kind="jpeg"} 10.0\n'
            'sightline_ingest_frames_total{device="b",kind="jpeg"} 5.0\n'
            'sightline_ingest_frames_created{device="a",kind="jpeg"} 1.7e9\n')
    assert capacity.counter_total(text, "sightline_ingest_frames_total") == 15
    assert capacity.counter_total(text, "sightline_ingest_seq_gaps_total") == 0


def test_rss_per_socket_and_cameras_per_core():
    assert capacity.rss_per_socket_kb(100 * 2**20, 100 * 2**20 + 2000 * 40 * 1024, 2000) == 40
    assert capacity.cameras_per_core(frames=1200, cpu_seconds=16.0, fps=15) == 5
    assert capacity.cameras_per_core(frames=0, cpu_seconds=0.0, fps=15) == 0


def test_the_transcode_takes_preset_crf_and_threads_from_the_settings():
    assert x264_options({}) == {"preset": "superfast", "crf": "23", "bf": "0"}
    tuned = x264_options({"TRANSCODE_X264_PRESET": "veryfast", "TRANSCODE_X264_CRF": 26, "TRANSCODE_THREADS": 1})
    assert tuned == {"preset": "veryfast", "crf": "26", "bf": "0", "threads": "1"}


def test_the_default_settings_are_the_documented_ones(settings):
    assert x264_options() == {"preset": "superfast", "crf": "23", "bf": "0"}
    settings.SIGHTLINE = {**settings.SIGHTLINE, "TRANSCODE_THREADS": 2}
    assert x264_options()["threads"] == "2"
