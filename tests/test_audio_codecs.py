"""Audio codecs of protocol v1 (docs/protocol.md, "Audio codecs"): hello.audio validation,
every codec relayed device -> viewer byte for byte, and device -> recording (spool ->
transcode -> MP4, decoded with PyAV) keeping the audio's duration."""
import time

import av
import pytest

from recordings import spool, synthetic, transcode
from sightline_agent import audioformats, protocol
from sightline_agent.audio import AudioEncoder, Tone
from sightline_agent.protocol import Close, ProtocolError, validate_audio, validate_hello, validate_talkback

CODECS = ["pcm_s16le", "pcm_alaw", "pcm_mulaw", "aac", "opus"]
T0 = 1_763_700_000_000_000


def encoded(codec: str, seconds: float) -> tuple[AudioEncoder, list[tuple[bytes, int]]]:
    """`seconds` of a 440 Hz tone as the reference agent sends it: (payload, capture us) pairs."""
    encoder = AudioEncoder(codec)
    tone = Tone(encoder.rate)
    payloads = []
    for i in range(round(seconds / 0.02)):
        payloads += encoder.encode(tone.read(encoder.chunk_samples), T0 + i * 20_000)
    return encoder, payloads


def sent_seconds(encoder: AudioEncoder, payloads) -> float:
    """What the payloads hold, counted the way a receiver would."""
    if encoder.codec == "aac":
        return sum(len(audioformats.split_adts(p)) for p, _ in payloads) * 1024 / encoder.rate
    if encoder.codec == "opus":
        return sum(audioformats.opus_packet_samples(p) for p, _ in payloads) / 48000
    width = 2 if encoder.codec == "pcm_s16le" else 1
    return sum(len(p) for p, _ in payloads) / width / encoder.rate


# -- hello.audio --------------------------------------------------------------------------


@pytest.mark.parametrize("audio", [
    {"codec": "pcm_s16le", "rate": 16000, "channels": 2},
    {"codec": "pcm_alaw", "rate": 8000, "channels": 1},
    {"codec": "pcm_mulaw", "rate": 8000, "channels": 1},
    {"codec": "aac", "rate": 16000, "channels": 1, "format": "adts"},
    {"codec": "aac", "rate": 44100, "channels": 2, "format": "raw", "config": "1210"},
    {"codec": "opus", "rate": 48000, "channels": 2},
])
def test_each_audio_codec_is_accepted_in_hello(audio):
    assert validate_audio(audio) == audio


def test_adts_is_the_default_aac_framing_and_the_config_is_kept_in_lower_case():
    assert validate_audio({"codec": "aac", "rate": 16000, "channels": 1, "config": "1408"}) == {
        "codec": "aac", "rate": 16000, "channels": 1, "format": "adts", "config": "1408"}


@pytest.mark.parametrize("audio", [
    {"codec": "mp3", "rate": 16000, "channels": 1},
    {"codec": "pcm_alaw", "rate": 8000, "channels": 2},
    {"codec": "opus", "rate": 16000, "channels": 1},
    {"codec": "opus", "rate": 48000, "channels": 3},
    {"codec": "aac", "rate": 16000, "channels": 1, "format": "latm"},
    {"codec": "aac", "rate": 16000, "channels": 1, "format": "raw"},
    {"codec": "aac", "rate": 16000, "channels": 1, "config": "xyz0"},
    {"codec": "pcm_s16le", "rate": True, "channels": 1},
    "pcm_s16le",
])
def test_a_bad_hello_audio_closes_with_4007(audio):
    with pytest.raises(ProtocolError) as error:
        validate_hello({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "audio": audio})
    assert error.value.code == Close.UNEXPECTED_TEXT


def test_talkback_must_offer_pcm_and_is_mono():
    assert validate_talkback({"codecs": ["pcm_s16le", "opus"], "rate": 16000}) == {
        "codecs": ["opus", "pcm_s16le"], "rate": 16000, "channels": 1}
    assert validate_talkback(None) is None
    for bad in [{"codecs": ["opus"]}, {"codecs": ["pcm_s16le", "mp3"]}, {"codecs": ["pcm_s16le"], "rate": 44100}, []]:
        with pytest.raises(ProtocolError):
            validate_talkback(bad)


def test_an_old_hello_without_talkback_still_works():
    hello = validate_hello({"type": "hello", "protocol": 1, "codecs": ["jpeg"],
                            "audio": {"codec": "pcm_s16le", "rate": 16000, "channels": 1}})
    assert hello["audio"] == {"codec": "pcm_s16le", "rate": 16000, "channels": 1} and hello["talkback"] is None


# -- payload helpers -------------------------------------------------------------------------


def test_adts_headers_round_trip_through_the_splitter():
    config = audioformats.audio_specific_config(16000, 1)
    assert config.hex() == "1408"
    data = b"".join(audioformats.adts_header(config, len(raw)) + raw for raw in (b"\x01" * 10, b"\x02" * 300))
    assert audioformats.split_adts(data) == [(config, b"\x01" * 10), (config, b"\x02" * 300)]


def test_opus_packet_durations_come_from_the_toc_byte():
    assert audioformats.opus_packet_samples(bytes([0xF8, 0])) == 960  # CELT FB 20 ms, one frame
    assert audioformats.opus_packet_samples(bytes([0x08 | 1, 0])) == 1920  # SILK NB 20 ms, two frames
    _, payloads = encoded("opus", 0.2)
    assert all(audioformats.opus_packet_samples(p) == 960 for p, _ in payloads)


# -- device -> recording ---------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_each_codec_is_recorded_into_the_mp4_with_its_duration(codec, tmp_path):
    encoder, payloads = encoded(codec, 6.0)
    frames = synthetic.jpeg_frames(60, T0) + [
        synthetic.frame(protocol.KIND_AUDIO, payload, seq, ts, keyframe=False)
        for seq, (payload, ts) in enumerate(payloads, 1)]
    frames.sort(key=lambda f: f.header.timestamp_us)
    path = tmp_path / "segment.spool"
    with open(path, "wb") as f:
        f.write(spool.encode_file_header({"codec": "jpeg", "audio": validate_audio(encoder.hello())}))
        for frame in frames:
            f.write(spool.encode_record(frame, time.time()))
    result = transcode.transcode_spool(path, tmp_path / "out.mp4")
    assert result.has_audio
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.audio[0]
        # Copied where MP4 and browsers carry the codec; the rest becomes AAC.
        assert stream.codec_context.name == ("opus" if codec == "opus" else "aac")
        decoded = sum(frame.samples for frame in container.decode(audio=0)) / stream.rate
    assert decoded == pytest.approx(sent_seconds(encoder, payloads), rel=0.02)


# -- the reference agent's audio ---------------------------------------------------------------


def test_the_agent_talkback_analysis_finds_a_tone_frequency():
    from sightline_agent.talkback import dominant_frequency

    pcm = Tone(48000, 440.0).read(48000)
    assert dominant_frequency(pcm, 48000) == pytest.approx(440, abs=2)
    assert dominant_frequency(bytes(96000), 48000) == 0.0


def test_the_agent_sources_give_the_samples_asked_for(tmp_path):
    from sightline_agent.audio import open_audio_source

    assert len(open_audio_source("speech", 16000).read(320)) == 640
    assert len(open_audio_source("tone:1000", 8000).read(160)) == 320
    with pytest.raises(ValueError):
        open_audio_source("microphone", 8000)
