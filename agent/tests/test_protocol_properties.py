"""Property tests: whatever bytes arrive, the parser and the reassembler raise nothing but ProtocolError,
and whatever frame is encoded comes back out whole."""
from hypothesis import given, settings
from hypothesis import strategies as st

from sightline_agent.protocol import (
    HEADER,
    HEADER_SIZE,
    KIND_NAMES,
    ProtocolError,
    Reassembler,
    encode_frame,
    parse_header,
)

MAX_FRAME = 1 << 16

header_fields = st.tuples(
    st.sampled_from([0x53, 0x53, 0x53, 0x00]),  # magic, mostly right
    st.sampled_from([1, 1, 1, 2]),  # version
    st.integers(0, 6),  # kind
    st.integers(0, 255),  # flags
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 4),  # chunk index
    st.integers(0, 4),  # chunk count
    st.integers(0, MAX_FRAME * 2),  # frame length
)


@st.composite
def messages(draw):
    """Arbitrary bytes, or a plausible header followed by arbitrary bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    return HEADER.pack(*draw(header_fields)) + draw(st.binary(max_size=64))


@settings(max_examples=400, deadline=None)
@given(messages())
def test_parse_header_raises_only_protocol_errors(data):
    try:
        header = parse_header(data, MAX_FRAME)
    except ProtocolError:
        return
    assert header.kind in KIND_NAMES and header.chunk_index < header.chunk_count
    assert len(data) - HEADER_SIZE <= header.frame_length <= MAX_FRAME


@settings(max_examples=300, deadline=None)
@given(st.lists(messages(), max_size=12))
def test_the_reassembler_raises_only_protocol_errors_and_yields_consistent_frames(sequence):
    reassembler = Reassembler(MAX_FRAME)
    for data in sequence:
        try:
            frame = reassembler.feed(data)
        except ProtocolError:
            reassembler.reset()
            continue
        if frame is not None:
            assert len(frame.payload) == frame.header.frame_length
            assert frame.header.chunk_count == 1


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=3000),
    kind=st.sampled_from(sorted(KIND_NAMES)),
    seq=st.integers(0, 2**32 - 1),
    ts=st.integers(0, 2**64 - 1),
    keyframe=st.booleans(),
    limit=st.integers(HEADER_SIZE + 1, 1200),
)
def test_any_frame_encoded_in_chunks_reassembles_to_itself(payload, kind, seq, ts, keyframe, limit):
    reassembler = Reassembler(MAX_FRAME)
    chunks = encode_frame(kind, payload, seq, ts, keyframe, max_message_bytes=limit)
    frames = [reassembler.feed(chunk) for chunk in chunks]
    assert frames[:-1] == [None] * (len(chunks) - 1)
    frame = frames[-1]
    assert (frame.payload, frame.header.seq, frame.header.timestamp_us, frame.header.keyframe) == (payload, seq, ts, keyframe)
    assert frame.to_message() == encode_frame(kind, payload, seq, ts, keyframe, max_message_bytes=MAX_FRAME)[0]


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=100, max_size=2000), cut=st.integers(0, 20), garbage=st.binary(max_size=40))
def test_chunks_with_garbage_spliced_in_fail_cleanly(payload, cut, garbage):
    chunks = encode_frame(1, payload, 1, 1, max_message_bytes=128)
    chunks.insert(min(cut, len(chunks)), garbage)
    reassembler = Reassembler(MAX_FRAME)
    for chunk in chunks:
        try:
            reassembler.feed(chunk)
        except ProtocolError:
            reassembler.reset()
