"""Pure decisions of the recording pipeline: segment cuts, spool format, Range, HLS, retention."""
import io
from datetime import datetime, timedelta, timezone

import pytest

from recordings import hls, retention, spool, synthetic
from recordings.constants import dated_relpath
from recordings.ranges import Unsatisfiable, parse_range
from recordings.segmenting import OpenSegment, idle_expired, should_cut

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


# -- segment cuts ------------------------------------------------------------------
def cut(codec, span, keyframe, is_video=True):
    return should_cut(OpenSegment(codec, 100.0, 0.0), 100.0 + span, keyframe, is_video, 10.0, 30.0)


def test_jpeg_segments_are_cut_when_they_span_the_segment_length():
    assert not cut("jpeg", 9.99, True)
    assert cut("jpeg", 10.0, True)


def test_h264_segments_wait_for_a_keyframe_to_cut():
    assert not cut("h264", 12.0, False)
    assert cut("h264", 12.0, True)


def test_h264_segments_without_keyframes_are_cut_at_the_maximum_length():
    assert cut("h264", 30.0, False)


def test_audio_never_cuts_a_segment():
    assert not cut("jpeg", 50.0, True, is_video=False)


def test_a_capture_clock_jumping_backwards_starts_a_new_segment():
    assert cut("jpeg", -11.0, True)
    assert not cut("jpeg", -0.5, True)


def test_an_idle_segment_expires_after_the_idle_time():
    assert not idle_expired(10.0, 19.9, 10.0)
    assert idle_expired(10.0, 20.0, 10.0)


def test_dated_paths_use_utc_date_and_hour():
    local = datetime(2026, 11, 21, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert dated_relpath("org", "dev", local, "x.spool") == "org/dev/2026-11-20/23/x.spool"


# -- spool format ------------------------------------------------------------------
def spool_bytes(count):
    out = io.BytesIO()
    out.write(spool.encode_file_header({"codec": "jpeg"}))
    for i in range(count):
        out.write(spool.encode_record(synthetic.frame(1, bytes([i]) * 100, i, 1_000 + i), 5.0 + i))
    return out.getvalue()


def test_spool_records_round_trip_with_header_payload_and_receive_time(tmp_path):
    path = tmp_path / "a.spool"
    path.write_bytes(spool_bytes(3))
    contents = spool.read_spool(path)
    assert contents.meta == {"codec": "jpeg"} and contents.torn_bytes == 0
    assert [(r.header.seq, r.header.timestamp_us, r.payload[:1], r.received_at) for r in contents.records] == [
        (0, 1000, b"\x00", 5.0), (1, 1001, b"\x01", 6.0), (2, 1002, b"\x02", 7.0)]


def test_a_torn_last_record_is_ignored_and_can_be_cut_off(tmp_path):
    path = tmp_path / "a.spool"
    whole = spool_bytes(3)
    path.write_bytes(whole[:-40])
    contents = spool.read_spool(path)
    assert len(contents.records) == 2 and contents.torn_bytes > 0
    assert spool.truncate_torn_tail(path) == contents.torn_bytes
    assert spool.read_spool(path).torn_bytes == 0 and len(spool.read_spool(path).records) == 2


def test_an_index_pass_reads_only_the_payloads_asked_for(tmp_path):
    path = tmp_path / "a.spool"
    with open(path, "wb") as f:
        f.write(spool.encode_file_header({}))
        f.write(spool.encode_record(synthetic.frame(1, b"J" * 500, 0, 10), 1.0))
        f.write(spool.encode_record(synthetic.frame(3, b"A" * 50, 0, 11), 1.0))
    with open(path, "rb") as f:
        spool.read_file_header(f)
        records = list(spool.iter_records(f, payload_kinds={3}))
    assert [(r.header.kind, r.header.frame_length, r.payload) for r in records] == [(1, 500, b""), (3, 50, b"A" * 50)]


def test_a_garbled_record_ends_the_readable_part(tmp_path):
    path = tmp_path / "a.spool"
    whole = bytearray(spool_bytes(3))
    second = len(spool.encode_file_header({"codec": "jpeg"})) + len(spool_bytes(1)) - len(
        spool.encode_file_header({"codec": "jpeg"}))
    whole[second + 12] = 0x00  # the magic byte of the second record's protocol header
    path.write_bytes(bytes(whole))
    contents = spool.read_spool(path)
    assert len(contents.records) == 1 and contents.torn_bytes == len(whole) - second


def test_a_file_that_is_not_a_spool_is_refused(tmp_path):
    path = tmp_path / "x.spool"
    path.write_bytes(b"hello world")
    with pytest.raises(spool.SpoolFormatError):
        spool.read_spool(path)


# -- HTTP Range --------------------------------------------------------------------
@pytest.mark.parametrize("header,expected", [
    (None, None),
    ("bytes=0-99", (0, 99)),
    ("bytes=100-", (100, 999)),
    ("bytes=-100", (900, 999)),
    ("bytes=990-2000", (990, 999)),
    ("bytes=-5000", (0, 999)),
    ("bytes = 5-6", (5, 6)),
    ("items=0-5", None),
    ("bytes=0-5,10-20", None),
    ("bytes=abc-", None),
    ("bytes=9-5", None),
    ("bytes=-", None),
    ("bytes=\u00b2-", None),  # digits that are not ASCII: ignored, not a crash nor a range
    ("bytes=\uff11-\uff12", None),
    ("bytes=-\u0661", None),
])
def test_range_header_is_parsed_per_rfc_9110(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_ranges_outside_the_file_are_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


# -- HLS playlist ------------------------------------------------------------------
def test_playlist_maps_each_segment_init_and_media_by_byte_range_with_discontinuities():
    start = datetime(2026, 11, 21, 10, 0, 0, tzinfo=timezone.utc)
    text = hls.build_playlist([
        hls.PlaylistEntry("/media/segments/a/video.mp4", start, 10.0, 5000, 800),
        hls.PlaylistEntry("/media/segments/b/video.mp4", start + timedelta(seconds=30), 9.5, 4000, 700),
    ])
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"
    assert "#EXT-X-TARGETDURATION:10" in lines and "#EXT-X-PLAYLIST-TYPE:VOD" in lines
    assert '#EXT-X-MAP:URI="/media/segments/a/video.mp4",BYTERANGE="800@0"' in lines
    assert "#EXT-X-BYTERANGE:4200@800" in lines and "#EXT-X-BYTERANGE:3300@700" in lines
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:00:30.000Z" in lines
    assert lines.count("#EXT-X-DISCONTINUITY") == 1
    assert lines.index("#EXT-X-DISCONTINUITY") < lines.index('#EXT-X-MAP:URI="/media/segments/b/video.mp4",BYTERANGE="700@0"')


def test_an_empty_range_gives_an_empty_but_valid_playlist():
    assert hls.build_playlist([]).splitlines()[-1] == "#EXT-X-ENDLIST"


# -- retention -----------------------------------------------------------------------
def seg(id, days_old, size=100, held=False, state="archived", org="o1", device="d1"):
    start = NOW - timedelta(days=days_old)
    return retention.SegmentFacts(id, device, org, start, start + timedelta(seconds=10), size, held, state)


def test_age_rule_deletes_segments_older_than_the_device_retention():
    segments = [seg("old", 8), seg("new", 1), seg("held", 30, held=True), seg("busy", 30, state="transcoding")]
    assert retention.expired_by_age(segments, {"d1": 7}, NOW) == ["old"]


def oldest_first(segments):
    return sorted(segments, key=lambda s: s.start)


def test_quota_rule_deletes_oldest_first_until_the_organisation_fits():
    segments = oldest_first([seg("a", 5), seg("b", 4, held=True), seg("c", 3), seg("d", 2),
                             seg("other", 9, org="o2")])
    used = retention.usage_by_organisation(segments)
    assert used == {"o1": 400, "o2": 100}
    assert retention.over_quota(segments, used, {"o1": 250}) == ["a", "c"]
    assert retention.over_quota(segments, used, {"o1": 0}) == []  # 0 = unlimited


def test_quota_rule_skips_segments_already_chosen_by_age():
    segments = oldest_first([seg("a", 5), seg("b", 4), seg("c", 3)])
    used_without_a = {"o1": 200}
    assert retention.over_quota(segments, used_without_a, {"o1": 200}, already={"a"}) == []
    assert retention.over_quota(segments, {"o1": 250}, {"o1": 200}, already={"a"}) == ["b"]


def test_quota_rule_stops_reading_once_every_organisation_fits():
    def stream():
        yield seg("a", 5)
        raise AssertionError("read past the point where the quota was met")

    assert retention.over_quota(stream(), {"o1": 150}, {"o1": 100}) == ["a"]


def test_watermark_rule_evicts_oldest_unprotected_until_free_space_is_back():
    segments = oldest_first([seg("a", 5, held=True), seg("b", 4, org="o2"), seg("c", 3), seg("d", 1)])
    assert retention.for_watermark(segments, free_bytes=50, watermark_bytes=220) == (["b", "c"], True)
    assert retention.for_watermark(segments, free_bytes=500, watermark_bytes=220) == ([], True)


def test_watermark_rule_reports_when_it_cannot_be_met():
    chosen, met = retention.for_watermark([seg("a", 5, held=True)], free_bytes=0, watermark_bytes=10)
    assert chosen == [] and not met


def test_deletes_are_split_into_batches():
    assert retention.batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
