"""recordings/sessions.py: the recording session, shards and the frame-message parser of the recorder."""
import uuid

import pytest

from recordings import sessions
from recordings.service import frame_from_message
from sightline_agent import protocol


def test_a_session_round_trips_and_anything_unreadable_means_not_recorded():
    raw = sessions.encode_session(uuid.UUID(int=7), {"codec": "pcm_s16le", "rate": 8000, "channels": 1})
    assert sessions.decode_session(raw.encode()) == sessions.RecordingSession(
        str(uuid.UUID(int=7)), {"codec": "pcm_s16le", "rate": 8000, "channels": 1})
    assert sessions.decode_session(sessions.encode_session("o", "not a dict")).audio is None
    for bad in (None, b"", b"{", b"[]", b'{"audio": null}', b"42"):
        assert sessions.decode_session(bad) is None


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("1/2", (1, 2)), ("15/16", (15, 16))])
def test_shards_parse(text, expected):
    assert sessions.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["", "1", "0/3", "2/2", "-1/2", "a/b", "0/32"])
def test_a_bad_shard_is_refused_with_a_reason(text):
    with pytest.raises(ValueError):
        sessions.parse_shard(text)


def test_shard_patterns_cover_every_device_exactly_once():
    import fnmatch

    for count in sessions.VALID_SHARD_COUNTS:
        patterns = [sessions.frame_patterns("sl", index, count) for index in range(count)]
        for digit in "0123456789abcdef":
            channel = f"sl:frames:{digit}{uuid.uuid4().hex[1:]}"
            owners = [index for index, group in enumerate(patterns)
                      if any(fnmatch.fnmatchcase(channel, p) for p in group)]
            assert owners == [sessions.shard_of(channel.split(":")[-1], count)]


def test_glob_characters_in_the_prefix_are_escaped():
    assert sessions.frame_patterns("a*b[1]", 0, 1) == ["a\\*b\\[1\\]:frames:*"]
    assert sessions.frame_patterns("sl", 1, 2) == ["sl:frames:[89abcdef]*"]
    assert sessions.frame_patterns("sl", 3, 16) == ["sl:frames:3*"]


def test_the_device_of_a_frames_channel():
    assert sessions.device_of_channel(b"sl:frames:abc", "sl") == "abc"
    assert sessions.device_of_channel(b"other:frames:abc", "sl") is None


def test_a_published_frame_message_becomes_a_frame_without_copying_the_payload():
    message = protocol.encode_frame(protocol.KIND_H264, b"\x00\x00\x00\x01ab", 9, 1234, keyframe=True)[0]
    frame = frame_from_message(message)
    assert (frame.header.kind, frame.header.seq, frame.header.timestamp_us, frame.header.keyframe) == (
        protocol.KIND_H264, 9, 1234, True)
    assert isinstance(frame.payload, memoryview) and bytes(frame.payload) == b"\x00\x00\x00\x01ab"


@pytest.mark.parametrize("message", [
    b"",
    b"\x53" * 10,  # shorter than a header
    b"\x00" + protocol.encode_frame(protocol.KIND_JPEG, b"x", 1, 1)[0][1:],  # bad magic
    protocol.encode_frame(protocol.KIND_JPEG, b"xyz", 1, 1)[0][:-1],  # length disagrees
])
def test_anything_else_on_the_channel_is_not_a_frame(message):
    assert frame_from_message(message) is None
