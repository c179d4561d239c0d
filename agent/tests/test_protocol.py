"""Wire protocol v1 (agent/sightline_agent/protocol.py): header layout, chunking, reassembly, text messages, hello."""
import json

import pytest

from sightline_agent import protocol
from sightline_agent.protocol import (
    FLAG_CHUNK_END,
    FLAG_CHUNK_START,
    FLAG_KEYFRAME,
    HEADER,
    KIND_H264,
    KIND_JPEG,
    Close,
    FrameHeader,
    ProtocolError,
    Reassembler,
    encode_frame,
    pack_header,
    parse_header,
    parse_text,
    validate_hello,
)

BIG = 1 << 22


def test_the_header_is_24_bytes_big_endian_in_the_documented_order():
    header = pack_header(FrameHeader(KIND_JPEG, FLAG_KEYFRAME | FLAG_CHUNK_START | FLAG_CHUNK_END,
                                     0x01020304, 0x1122334455667788, 0, 1, 0x0A0B0C0D))
    assert len(header) == protocol.HEADER_SIZE == 24
    assert header.hex() == "5301010701020304112233445566778800000001" + "0a0b0c0d"


def test_an_unchunked_frame_round_trips():
    [message] = encode_frame(KIND_JPEG, b"\xff\xd8abc\xff\xd9", seq=7, timestamp_us=42, keyframe=True)
    header = parse_header(message, BIG)
    assert (header.kind, header.seq, header.timestamp_us, header.chunk_count, header.frame_length) == (KIND_JPEG, 7, 42, 1, 7)
    assert header.keyframe and header.flags == FLAG_KEYFRAME | FLAG_CHUNK_START | FLAG_CHUNK_END
    frame = Reassembler(BIG).feed(message)
    assert frame.payload == b"\xff\xd8abc\xff\xd9" and frame.to_message() == message


def test_a_large_frame_is_split_into_chunks_within_the_message_limit_and_reassembled():
    payload = bytes(range(256)) * 100
    messages = encode_frame(KIND_H264, payload, seq=3, timestamp_us=9, keyframe=True, max_message_bytes=4096)
    assert len(messages) == -(-len(payload) // (4096 - 24)) and all(len(m) <= 4096 for m in messages)
    headers = [parse_header(m, BIG) for m in messages]
    assert [h.chunk_index for h in headers] == list(range(len(messages)))
    assert headers[0].flags & FLAG_CHUNK_START and headers[-1].flags & FLAG_CHUNK_END
    assert all(h.frame_length == len(payload) and h.seq == 3 for h in headers)
    reassembler = Reassembler(BIG)
    results = [reassembler.feed(m) for m in messages]
    assert results[:-1] == [None] * (len(messages) - 1)
    frame = results[-1]
    assert frame.payload == payload and frame.header.chunk_count == 1 and frame.header.keyframe
    assert not reassembler.in_progress


def test_a_chunk_of_another_frame_in_the_middle_is_a_protocol_error():
    first = encode_frame(KIND_JPEG, b"a" * 100, 1, 1, max_message_bytes=64)
    second = encode_frame(KIND_JPEG, b"b" * 100, 2, 2, max_message_bytes=64)
    reassembler = Reassembler(BIG)
    reassembler.feed(first[0])
    with pytest.raises(ProtocolError) as error:
        reassembler.feed(second[1])
    assert error.value.code == Close.MALFORMED_HEADER


def test_a_new_frame_before_the_chunked_one_ends_is_a_protocol_error():
    chunks = encode_frame(KIND_JPEG, b"a" * 100, 1, 1, max_message_bytes=64)
    reassembler = Reassembler(BIG)
    reassembler.feed(chunks[0])
    with pytest.raises(ProtocolError):
        reassembler.feed(encode_frame(KIND_JPEG, b"x", 2, 2)[0])


@pytest.mark.parametrize("fields, code", [
    ({"magic": 0x54}, Close.MALFORMED_HEADER),
    ({"version": 2}, Close.UNSUPPORTED_VERSION),
    ({"kind": 0}, Close.UNKNOWN_KIND),
    ({"kind": 5}, Close.UNKNOWN_KIND),
    ({"flags": 0x0F}, Close.MALFORMED_HEADER),
    ({"flags": 0x01}, Close.MALFORMED_HEADER),  # single chunk without start/end
    ({"count": 0}, Close.MALFORMED_HEADER),
    ({"index": 1}, Close.MALFORMED_HEADER),
    ({"length": 3}, Close.MALFORMED_HEADER),
    ({"length": BIG + 1}, Close.OVERSIZED),
])
def test_bad_headers_raise_protocol_errors_with_their_close_code(fields, code):
    values = {"magic": 0x53, "version": 1, "kind": 1, "flags": 0x07, "seq": 0, "ts": 0, "index": 0, "count": 1, "length": 4}
    values.update(fields)
    with pytest.raises(ProtocolError) as error:
        parse_header(HEADER.pack(*values.values()) + b"abcd", BIG)
    assert error.value.code == code


def test_a_message_shorter_than_the_header_is_malformed():
    with pytest.raises(ProtocolError) as error:
        parse_header(b"S\x01\x01", BIG)
    assert error.value.code == Close.MALFORMED_HEADER


def test_text_messages_must_be_json_objects_of_an_allowed_type():
    assert parse_text('{"type":"ping","id":1}', {"ping"}) == {"type": "ping", "id": 1}
    for bad in ["nope", "[]", '{"id":1}', '{"type":"launch"}', '{"type":5}']:
        with pytest.raises(ProtocolError) as error:
            parse_text(bad, {"ping"})
        assert error.value.code == Close.UNEXPECTED_TEXT
    with pytest.raises(ProtocolError) as error:
        parse_text(json.dumps({"type": "ping", "pad": "x" * protocol.MAX_TEXT_BYTES}), {"ping"})
    assert error.value.code == Close.OVERSIZED


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "[1e999]", '{"a":{"b":NaN}}'])
def test_text_with_a_non_finite_number_is_refused_with_4007_at_parse_time(number):
    # json.loads accepts these, and 1e400 becomes inf: no handler may ever meet them.
    with pytest.raises(ProtocolError) as error:
        parse_text('{"type":"ping","id":%s}' % number, {"ping"})
    assert error.value.code == Close.UNEXPECTED_TEXT and "non-finite" in error.value.message


def test_large_but_finite_numbers_still_parse():
    assert parse_text('{"type":"ping","id":1e308,"n":-2.5e-300}', {"ping"})["id"] == 1e308


def test_the_text_limit_counts_utf8_bytes_not_characters():
    emoji = "\U0001F600" * (protocol.MAX_TEXT_BYTES // 4 + 100)  # a quarter of the limit in characters
    with pytest.raises(ProtocolError) as error:
        parse_text(json.dumps({"type": "ping", "p": emoji}, ensure_ascii=False), {"ping"})
    assert error.value.code == Close.OVERSIZED
    assert parse_text(json.dumps({"type": "ping", "p": "\u00e9" * 30000}, ensure_ascii=False), {"ping"})


def test_a_complete_hello_is_accepted_and_cleaned():
    hello = validate_hello({"type": "hello", "protocol": 1, "codecs": ["h264"], "resolution": "1280x720", "fps": 30,
                            "audio": {"codec": "pcm_s16le", "rate": 16000, "channels": 1, "extra": 1},
                            "agent": "cam/1.0"})
    assert hello["audio"] == {"codec": "pcm_s16le", "rate": 16000, "channels": 1}
    assert hello["codecs"] == ["h264"] and hello["agent"] == "cam/1.0"


@pytest.mark.parametrize("change, code", [
    ({"protocol": 2}, Close.UNSUPPORTED_VERSION),
    ({"protocol": None}, Close.UNSUPPORTED_VERSION),
    ({"codecs": []}, Close.UNEXPECTED_TEXT),
    ({"codecs": ["vp9"]}, Close.UNEXPECTED_TEXT),
    ({"fps": -1}, Close.UNEXPECTED_TEXT),
    ({"resolution": 640}, Close.UNEXPECTED_TEXT),
    ({"audio": {"codec": "mp3"}}, Close.UNEXPECTED_TEXT),
    ({"audio": {"codec": "pcm_s16le", "rate": 5, "channels": 1}}, Close.UNEXPECTED_TEXT),
    ({"agent": 7}, Close.UNEXPECTED_TEXT),
])
def test_a_bad_hello_is_refused_with_its_code(change, code):
    with pytest.raises(ProtocolError) as error:
        validate_hello({"type": "hello", "protocol": 1, "codecs": ["jpeg"], **change})
    assert error.value.code == code


@pytest.mark.parametrize("field, value", [
    ("codecs", [{}]), ("codecs", [["jpeg"]]), ("codecs", [None]), ("audio", {"codec": {}, "rate": 16000, "channels": 1}),
    ("audio", {"codec": ["pcm_s16le"], "rate": 16000, "channels": 1}), ("resolution", {"w": 1}), ("agent", ["x"]),
])
def test_a_hello_field_of_the_wrong_type_is_refused_with_4007_not_a_type_error(field, value):
    hello = {"type": "hello", "protocol": 1, "codecs": ["jpeg"], field: value}
    with pytest.raises(ProtocolError) as error:
        validate_hello(hello)
    assert error.value.code == Close.UNEXPECTED_TEXT


@pytest.mark.parametrize("audio, talkback", [
    ({"codec": [], "rate": 8000, "channels": 1}, None),
    ({"codec": {}, "rate": 8000, "channels": 1}, None),
    ({"codec": "aac", "rate": 8000, "channels": 1, "format": []}, None),
    (None, {"codecs": ["pcm_s16le", {}]}),
    (None, {"codecs": ["pcm_s16le"], "rate": [48000]}),
])
def test_unhashable_audio_and_talkback_values_are_refused_with_4007_not_a_type_error(audio, talkback):
    hello = {"type": "hello", "protocol": 1, "codecs": ["jpeg"], "audio": audio, "talkback": talkback}
    with pytest.raises(ProtocolError) as refused:
        validate_hello(hello)
    assert refused.value.code == Close.UNEXPECTED_TEXT
