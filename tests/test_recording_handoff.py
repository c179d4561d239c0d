"""The pure decisions of the recorder hand-off (recordings/handoff.py): stream sizing, duplicates
and trimmed entries, and where a successor resumes in a dead recorder's pending entries."""
import pytest

from recordings import handoff, sessions
from sightline_agent import protocol


def test_a_stream_holds_the_configured_seconds_of_the_devices_traffic():
    assert handoff.stream_maxlen(15, 60_000, seconds=30, max_bytes=1 << 40) == 450


def test_the_byte_budget_caps_a_stream_of_large_frames():
    # 30 s of 15 fps x 1 MB would be 450 MB: 32 MiB allows 33 frames.
    assert handoff.stream_maxlen(15, 1_000_000, seconds=30, max_bytes=32 * 1024 * 1024) == 33


def test_a_stream_never_holds_fewer_than_the_floor_nor_sizes_on_a_silent_device():
    assert handoff.stream_maxlen(15, 50_000_000, seconds=30, max_bytes=1 << 20) == handoff.MIN_STREAM_ENTRIES
    assert handoff.stream_maxlen(0, 0, seconds=30, max_bytes=1 << 20) == 30


def test_the_rate_meter_measures_frames_and_mean_size_since_the_last_look():
    meter = handoff.RateMeter(100.0)
    meter.frames, meter.bytes = 30, 30 * 2000
    assert handoff.RateMeter.rate(meter, 102.0) == (15.0, 2000.0)
    assert meter.rate(103.0) == (0.0, 0.0)


def test_the_next_entry_of_a_connection_is_recorded_with_nothing_lost():
    assert handoff.continuity((b"c1", 7), b"c1", 8) == (False, 0)


def test_an_entry_already_handled_is_a_duplicate():
    assert handoff.continuity((b"c1", 7), b"c1", 7) == (True, 0)
    assert handoff.continuity((b"c1", 7), b"c1", 3) == (True, 0)


def test_a_jump_in_the_counter_counts_the_entries_trimmed_before_anyone_read_them():
    assert handoff.continuity((b"c1", 7), b"c1", 20) == (False, 12)


def test_a_new_connection_lost_only_the_entries_before_its_first_one_seen():
    assert handoff.continuity((b"c1", 7), b"c2", 1) == (False, 0)
    assert handoff.continuity((b"c1", 7), b"c2", 5) == (False, 4)
    assert handoff.continuity(None, b"c2", 1) == (False, 0)


def test_the_acked_mark_round_trips_and_anything_unreadable_is_no_mark():
    assert handoff.decode_mark(handoff.encode_mark(b"ab12cd34", 42)) == (b"ab12cd34", 42)
    assert handoff.decode_mark(None) is None
    assert handoff.decode_mark(b"ab12cd34 x") is None


def test_the_session_field_carries_the_connection_and_the_recording_session():
    raw = handoff.session_field("ab12cd34", sessions.encode_session("org-1", {"codec": "pcm"}))
    conn, session = handoff.split_session_field(raw)
    assert conn == b"ab12cd34"
    assert sessions.decode_session(session) == sessions.RecordingSession("org-1", {"codec": "pcm"})


def _frame(seq, ts):
    return protocol.encode_frame(protocol.KIND_JPEG, b"\xff\xd8jpeg", seq, ts, keyframe=True)[0]


def test_a_frame_message_gives_its_sequence_and_capture_time_and_an_event_gives_none():
    assert handoff.frame_position(_frame(9, 123_456)) == (9, 123_456)
    assert handoff.frame_position(b'{"type":"presence"}') is None
    assert handoff.frame_position(b"short") is None


def test_a_successor_skips_the_claimed_frames_the_dead_recorders_spool_already_holds():
    positions = [(seq, 1000 + seq) for seq in range(10, 20)]
    assert handoff.resume_index(positions, (14, 1014)) == 5  # 10..14 are in the spool
    assert handoff.resume_index(positions, (19, 1019)) == 10


@pytest.mark.parametrize("last_spooled", [None, (9, 1009), (14, 999)])
def test_a_successor_records_every_claimed_frame_when_the_spool_ends_before_them(last_spooled):
    positions = [None, *[(seq, 1000 + seq) for seq in range(10, 20)]]  # an event first
    assert handoff.resume_index(positions, last_spooled) == 0


def test_the_shard_digits_split_the_device_ids_like_the_shards_do():
    assert sessions.shard_digits(0, 1) == "0123456789abcdef"
    assert sessions.shard_digits(1, 2) == "89abcdef"
    assert sessions.shard_digits(3, 16) == "3"
    for count in sessions.VALID_SHARD_COUNTS:
        for digit in "0123456789abcdef":
            owners = [i for i in range(count) if digit in sessions.shard_digits(i, count)]
            assert owners == [sessions.shard_of(digit + "0000", count)]
