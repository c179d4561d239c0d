"""Audio on the WebRTC path (streams/webrtc_audio.py): which route a device's audio takes for an
offer, how passed-through packets are timed, and the once-per-device Opus encoder."""
import asyncio
import json
import math
import struct
from array import array
from collections import Counter

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from sightline_agent.audio import AudioEncoder, open_audio_source
from streams.broadcast import Outbox
from sightline_agent.protocol import HEADER, KIND_AUDIO, KIND_H264
from streams.webrtc_audio import (PASSTHROUGH, TRANSCODE, PacketFeed, PassthroughAudio, SharedOpusEncoder, format_changed,
                                  choose_audio_route, place, split_g711)

BROWSER = {"audio/opus", "audio/pcmu", "audio/pcma", "audio/g722"}


@pytest.mark.parametrize("audio, offered, route", [
    ({"codec": "opus", "rate": 48000, "channels": 1}, BROWSER, (PASSTHROUGH, "audio/opus")),
    ({"codec": "pcm_alaw", "rate": 8000, "channels": 1}, BROWSER, (PASSTHROUGH, "audio/pcma")),
    ({"codec": "pcm_mulaw", "rate": 8000, "channels": 1}, BROWSER, (PASSTHROUGH, "audio/pcmu")),
    ({"codec": "pcm_alaw", "rate": 16000, "channels": 1}, BROWSER, (TRANSCODE, "audio/opus")),
    ({"codec": "pcm_alaw", "rate": 8000, "channels": 1}, {"audio/opus"}, (TRANSCODE, "audio/opus")),
    ({"codec": "pcm_s16le", "rate": 16000, "channels": 1}, BROWSER, (TRANSCODE, "audio/opus")),
    ({"codec": "aac", "rate": 16000, "channels": 1, "format": "adts"}, BROWSER, (TRANSCODE, "audio/opus")),
    ({"codec": "opus", "rate": 48000, "channels": 1}, {"audio/pcmu"}, None),
    ({"codec": "opus", "rate": 48000, "channels": 1}, set(), None),
    (None, BROWSER, None),
])
def test_the_audio_route_follows_the_device_codec_and_what_the_offer_accepts(audio, offered, route):
    assert choose_audio_route(audio, offered) == route


def test_packets_follow_the_sample_clock_unless_the_capture_time_shows_a_gap():
    assert place(None, 480, 4800) == 480
    assert place(960, 1000, 4800) == 960  # capture jitter: keep the audio continuous
    assert place(960, 100, 4800) == 960  # never backwards
    assert place(960, 960 + 4800, 4800) == 5760  # 100 ms lost: keep the gap


def test_g711_is_split_into_twenty_millisecond_packets():
    assert [len(p) for p in split_g711(bytes(800))] == [160] * 5
    assert [len(p) for p in split_g711(bytes(200))] == [160, 40]


def audio_message(payload: bytes, seq: int, ts_us: int, kind: int = KIND_AUDIO) -> bytes:
    return HEADER.pack(0x53, 1, kind, 0x06, seq, ts_us, 0, 1, len(payload)) + payload


ALAW = {"codec": "pcm_alaw", "rate": 8000, "channels": 1}
OPUS = {"codec": "opus", "rate": 48000, "channels": 2}
PCM16K = {"codec": "pcm_s16le", "rate": 16000, "channels": 1}


def presence(online: bool, audio: dict | None) -> str:
    """The presence event as the device consumer publishes it (compact JSON) and the hub relays it."""
    media = {"video": ["h264"], "audio": audio, "talkback": None} if online else None
    return json.dumps({"type": "presence", "device_id": "d", "online": online, "last_seen": None, "media": media},
                      separators=(",", ":"))


def test_only_a_new_connection_with_another_audio_format_is_a_format_change():
    assert not format_changed(presence(True, ALAW), ALAW)  # reconnected, same format
    assert format_changed(presence(True, OPUS), ALAW)
    assert format_changed(presence(True, {**ALAW, "rate": 16000}), ALAW)
    assert format_changed(presence(True, None), ALAW)  # came back without audio
    assert not format_changed(presence(False, None), ALAW)  # gone: nothing more will come
    assert not format_changed('{"type":"stats","fps":10}', ALAW)
    assert not format_changed('{"type":"presence", broken', ALAW)


def test_a_passthrough_source_never_hands_over_a_byte_of_the_new_format():
    told = []

    async def scenario():
        outbox = Outbox()
        source = PassthroughAudio(outbox, ALAW, lambda: told.append(1))
        outbox.offer_frame(KIND_AUDIO, False, audio_message(b"\x01" * 160, 1, 1_000_000))
        first = await source.next_packet()
        # The device reconnects as Opus: its presence event, then its audio (the Outbox pops control first).
        outbox.offer_frame(KIND_AUDIO, False, audio_message(b"\x02" * 160, 2, 1_020_000))
        outbox.put_control(presence(True, OPUS))
        outbox.offer_frame(KIND_AUDIO, False, audio_message(bytes([0xF8]) + bytes(40), 1, 1_100_000))
        with pytest.raises(MediaStreamError):
            await source.next_packet()
        with pytest.raises(MediaStreamError):
            await source.next_packet()
        return first

    assert bytes(asyncio.run(scenario())) == b"\x01" * 160 and told == [1]


def test_a_format_change_queued_while_the_peer_connected_ends_the_source_too():
    told = []

    async def scenario():
        outbox = Outbox()
        source = PassthroughAudio(outbox, OPUS, lambda: told.append(1))
        outbox.offer_frame(KIND_AUDIO, False, audio_message(bytes([0xF8]) + bytes(40), 1, 1_000_000))
        outbox.put_control(presence(True, ALAW))
        outbox.offer_frame(KIND_AUDIO, False, audio_message(b"\x02" * 160, 1, 1_100_000))
        source.discard_backlog()
        with pytest.raises(MediaStreamError):
            await source.next_packet()

    asyncio.run(scenario())
    assert told == [1]


def test_passed_through_g711_packets_are_timed_in_8khz_samples_and_skip_video():
    async def scenario():
        outbox = Outbox()
        source = PassthroughAudio(outbox, ALAW)
        outbox.offer_frame(KIND_H264, True, audio_message(b"\0\0\0\1", 1, 0, KIND_H264))
        outbox.offer_frame(KIND_AUDIO, False, audio_message(bytes(320), 1, 1_000_000))
        outbox.offer_frame(KIND_AUDIO, False, audio_message(bytes(160), 2, 1_040_000))
        outbox.put_control('{"type":"stats"}')
        return [await source.next_packet() for _ in range(3)]

    packets = asyncio.run(scenario())
    assert [(p.pts, p.size) for p in packets] == [(0, 160), (160, 160), (320, 160)]
    assert float(packets[0].time_base) == 1 / 8000


def test_the_backlog_queued_before_the_peer_connected_is_skipped_to_the_newest():
    async def scenario():
        outbox = Outbox()
        source = PassthroughAudio(outbox, OPUS)
        opus_20ms = bytes([0xF8]) + bytes(40)  # TOC: CELT fullband 20 ms
        for i in range(10):
            outbox.offer_frame(KIND_AUDIO, False, audio_message(opus_20ms + bytes([i]), i, 1_000_000 + i * 20_000))
        source.discard_backlog()
        first = await source.next_packet()
        outbox.offer_frame(KIND_AUDIO, False, audio_message(opus_20ms + bytes([10]), 10, 1_200_000))
        return first, await source.next_packet()

    first, second = asyncio.run(scenario())
    assert bytes(first)[-1] == 9 and first.pts == 0  # the newest; its clock starts there
    assert bytes(second)[-1] == 10 and second.pts == 960 and float(second.time_base) == 1 / 48000


def test_a_feed_drops_its_oldest_packets_when_a_peer_falls_behind():
    feed = PacketFeed()
    for i in range(60):
        packet = av.Packet(b"x")
        packet.pts = i
        feed.put(packet)
    assert len(feed.packets) == 50 and feed.packets[0].pts == 10 and feed.drops == 10


def strongest_frequency(samples, rate, low=300, high=600) -> int:
    """Goertzel power at each whole Hz from low to high (no numpy here)."""
    best = (0.0, 0)
    for hz in range(low, high + 1):
        c = 2 * math.cos(2 * math.pi * hz / rate)
        s1 = s2 = 0.0
        for x in samples:
            s1, s2 = x + c * s1 - s2, s1
        best = max(best, (s1 * s1 + s2 * s2 - c * s1 * s2, hz))
    return best[1]


@pytest.mark.parametrize("codec", ["pcm_s16le", "pcm_alaw", "pcm_mulaw", "aac"])
def test_the_shared_encoder_turns_each_codec_into_opus_that_still_holds_the_tone(codec):
    encoder = AudioEncoder(codec)
    source = open_audio_source("tone:440", encoder.rate, encoder.channels)
    counter = Counter()
    shared = SharedOpusEncoder("device", encoder.hello(), counter)
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = 48000, "mono"
    pcm, last_pts = array("h"), None
    for i in range(75):  # 1.5 s
        for payload, _ts in encoder.encode(source.read(encoder.chunk_samples), i * 20_000):
            for packet in shared.encode(payload):
                assert last_pts is None or packet.pts == last_pts + 960
                last_pts = packet.pts
                for frame in decoder.decode(packet):
                    pcm.frombytes(frame.to_ndarray().astype("int16").tobytes() if frame.format.name != "s16"
                                  else bytes(frame.planes[0])[: frame.samples * 2])
    assert len(pcm) >= 48000 and counter["SharedOpusEncoder"] >= 60
    assert abs(strongest_frequency(pcm[-48000:][::6], 8000) - 440) <= 10


class FakeHub:
    """The process's fan-out hub, as the shared encoders use it: who subscribed to which device."""

    def __init__(self):
        self.viewers = []

    async def add_viewer(self, device_id, outbox):
        self.viewers.append((device_id, outbox))

    async def remove_viewer(self, device_id, outbox):
        self.viewers.remove((device_id, outbox))


@pytest.fixture
def fake_hub(monkeypatch):
    from streams import webrtc_audio

    hub = FakeHub()
    monkeypatch.setattr(webrtc_audio, "get_hub", lambda: hub)
    return hub


def test_peers_of_one_device_share_one_encoder_until_the_last_leaves(fake_hub):
    from streams import webrtc_audio

    hub = fake_hub
    pcm = {"codec": "pcm_s16le", "rate": 16000, "channels": 1}

    async def scenario():
        encoders = webrtc_audio.SharedEncoders(Counter())
        first = await encoders.subscribe("a", pcm)
        second = await encoders.subscribe("a", pcm)
        other = await encoders.subscribe("b", pcm)
        assert len(encoders.by_device) == 2 and len(hub.viewers) == 2  # one hub subscription per device
        encoder = encoders.by_device["a"]
        tone = AudioEncoder("pcm_s16le")
        source = open_audio_source("tone:440", tone.rate)
        encoder.outbox.offer_frame(KIND_AUDIO, False, audio_message(source.read(320 * 5), 1, 1_000_000))
        packet = await asyncio.wait_for(first.next_packet(), 5)
        assert (await asyncio.wait_for(second.next_packet(), 5)) is packet and not other.packets  # encoded once
        await encoders.unsubscribe("a", first)
        assert "a" in encoders.by_device
        await encoders.unsubscribe("a", second)
        assert "a" not in encoders.by_device and [d for d, _ in hub.viewers] == ["b"]
        await encoders.close()
        assert hub.viewers == [] and other.closed

    asyncio.run(scenario())


def test_the_shared_encoder_stops_and_tells_its_peers_when_the_device_comes_back_in_another_format(fake_hub):
    from streams import webrtc_audio

    told = []

    async def scenario():
        encoders = webrtc_audio.SharedEncoders(Counter())
        feeds = [await encoders.subscribe("a", PCM16K, lambda n=n: told.append(n)) for n in (1, 2)]
        encoder = encoders.by_device["a"]
        tone = open_audio_source("tone:440", 16000)
        encoder.outbox.offer_frame(KIND_AUDIO, False, audio_message(tone.read(320 * 5), 1, 1_000_000))
        assert (await asyncio.wait_for(feeds[0].next_packet(), 5)).pts == 0
        feeds[0].packets.clear()
        feeds[1].packets.clear()
        encoded = encoder.counter["SharedOpusEncoder"]
        # Back as 8 kHz A-law: 16-bit PCM at 16 kHz is what this encoder's decoder would make of it.
        encoder.outbox.put_control(presence(True, ALAW))
        encoder.outbox.offer_frame(KIND_AUDIO, False, audio_message(b"\x55" * 800, 1, 2_000_000))
        await asyncio.wait_for(encoder.task, 5)
        assert encoder.changed and encoder.counter["SharedOpusEncoder"] == encoded
        for feed in feeds:
            with pytest.raises(MediaStreamError):
                await feed.next_packet()
        # A peer set up for the new format gets a new encoder; one more for the old one too.
        fresh = await encoders.subscribe("a", PCM16K)
        assert encoders.by_device["a"] is not encoder and not fresh.closed
        await encoders.close()

    asyncio.run(scenario())
    assert sorted(told) == [1, 2]


def test_a_peer_set_up_for_the_new_format_first_ends_the_old_formats_peers(fake_hub):
    from streams import webrtc_audio

    told = []

    async def scenario():
        encoders = webrtc_audio.SharedEncoders(Counter())
        old = await encoders.subscribe("a", PCM16K, lambda: told.append("old"))
        await encoders.subscribe("a", {**PCM16K, "rate": 48000}, lambda: told.append("new"))
        assert old.closed
        await encoders.close()

    asyncio.run(scenario())
    assert told == ["old"]
