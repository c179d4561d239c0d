"""Audio for the WebRTC process's peers (docs/webrtc.md, "Audio").

A peer gets an audio track when its viewer's offer has an audio section and the device
announced audio in its hello (streams/devicemedia.py). What the track carries depends on
the device's codec and on what the offer accepts (choose_audio_route, pure):

    opus                     ─► passed through: each kind-3 payload is one av.Packet, RTP-packed as is
    pcm_alaw / pcm_mulaw     ─► passed through as PCMA / PCMU (native WebRTC codecs) when the device
      at 8000 Hz                 sends 8 kHz and the offer lists the codec, in 20 ms packets
    anything else            ─► decoded and encoded to Opus ONCE per device (SharedOpusEncoder),
      (pcm_s16le, aac, G.711      every peer of that device gets the same packets
       at other rates)

aiortc's RTCRtpSender calls its encoder's pack() (no encoding) for anything a track's recv()
returns that is not an av.Frame, so in every route aiortc's own per-peer encoders never run.
Work of the shared encoder is counted in ENCODER_FRAMES["SharedOpusEncoder"].

A device that reconnects with another hello.audio ends the audio of every peer set up for the
old one (format_changed): the codec was negotiated for the old format, and neither its bytes
(passthrough) nor the shared encoder's decoder fit the new one. The presence event of the new
connection carries its media and reaches each audio Outbox before any of its audio, so no peer
is handed a byte of the new format; the peer is then ended with a webrtc_bye whose code,
"format_changed", tells the player to offer again at once (streams/webrtc_peer.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import Counter, deque
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sightline_agent import audioformats
from streams.broadcast import Outbox, get_hub
from sightline_agent.protocol import HEADER_SIZE, KIND_AUDIO

log = logging.getLogger(__name__)

OPUS_CLOCK = 48000
G711_CLOCK = 8000
G711_PACKET_SAMPLES = 160  # 20 ms at 8 kHz: what browsers expect per PCMA/PCMU packet
RESYNC_SECONDS = 0.1  # a capture time this far from the running sample clock is a real gap
FEED_MAX = 50  # packets (1 s of 20 ms packets) queued per peer; a peer further behind loses the oldest
_SEQ_TS = struct.Struct(">IQ")

PASSTHROUGH = "passthrough"
TRANSCODE = "transcode"
_G711 = {"pcm_alaw": "audio/pcma", "pcm_mulaw": "audio/pcmu"}


def choose_audio_route(audio: dict | None, offered: set[str]) -> tuple[str, str] | None:
    """(PASSTHROUGH or TRANSCODE, the RTP codec's mime type) for a device's hello.audio and the
    lower-case mime types of the offer's audio section; None: no audio track for this peer."""
    if not audio or not offered:
        return None
    codec = audio.get("codec")
    if codec == "opus":
        return (PASSTHROUGH, "audio/opus") if "audio/opus" in offered else None
    if codec in _G711 and audio.get("rate") == G711_CLOCK and _G711[codec] in offered:
        return PASSTHROUGH, _G711[codec]
    return (TRANSCODE, "audio/opus") if "audio/opus" in offered else None


def format_changed(control: str, audio: dict) -> bool:
    """Whether a control message of the device's frames channel is the presence event of a new
    connection whose hello.audio is not `audio` (the format a peer's audio was set up for)."""
    if not control.startswith('{"type":"presence"'):  # the hub relays presence as published (compact JSON)
        return False
    try:
        event = json.loads(control)
    except ValueError:
        return False
    if event.get("type") != "presence" or not event.get("online"):
        return False  # a disconnect: nothing more comes in the old format, nor any wrong one
    media = event.get("media")
    return (media.get("audio") if isinstance(media, dict) else None) != audio


def place(expected: int | None, stamped: int, tolerance: int) -> int:
    """The pts of a packet: the running sample clock (`expected`, the end of the previous packet)
    unless its capture time (`stamped`) says audio was lost; never earlier than `expected`."""
    if expected is None or stamped >= expected + tolerance:
        return stamped
    return expected


def split_g711(payload: bytes, size: int = G711_PACKET_SAMPLES) -> list[bytes]:
    return [payload[i:i + size] for i in range(0, len(payload), size)]


def _timestamp_us(message: bytes) -> int:
    return _SEQ_TS.unpack_from(message, 4)[1]


class PacketFeed:
    """Packets for one track: a bounded queue (oldest dropped) and its wake-up."""

    def __init__(self, on_format_change=lambda: None):
        self.packets: deque[av.Packet] = deque()
        self.event = asyncio.Event()
        self.closed = False
        self.drops = 0
        self.on_format_change = on_format_change

    def put(self, packet: av.Packet) -> None:
        if len(self.packets) >= FEED_MAX:
            self.packets.popleft()
            self.drops += 1
        self.packets.append(packet)
        self.event.set()

    def close(self) -> None:
        self.closed = True
        self.event.set()

    def discard_backlog(self) -> None:
        while len(self.packets) > 1:
            self.packets.popleft()

    async def next_packet(self) -> av.Packet:
        while not self.packets:
            if self.closed:
                raise MediaStreamError
            await self.event.wait()
            self.event.clear()
        return self.packets.popleft()


class PassthroughAudio:
    """A device's Opus or G.711 payloads as av.Packets, read from this peer's own audio Outbox.
    Ends (MediaStreamError, after calling on_format_change) when the device's format changes."""

    def __init__(self, outbox: Outbox, audio: dict, on_format_change=lambda: None):
        self.outbox = outbox
        self.audio = audio
        self.on_format_change = on_format_change
        self.changed = False
        self.clock = OPUS_CLOCK if audio["codec"] == "opus" else G711_CLOCK
        self.opus = audio["codec"] == "opus"
        self.pending: deque[av.Packet] = deque()
        self._origin_us: int | None = None
        self._next_pts: int | None = None

    def _packets(self, message: bytes) -> list[av.Packet]:
        payload, ts = message[HEADER_SIZE:], _timestamp_us(message)
        if self._origin_us is None:
            self._origin_us = ts
        stamped = max(0, (ts - self._origin_us) * self.clock // 1_000_000)
        pts = place(self._next_pts, stamped, int(self.clock * RESYNC_SECONDS))
        out = []
        for piece in [payload] if self.opus else split_g711(payload):
            samples = audioformats.opus_packet_samples(piece) if self.opus else len(piece)
            if not piece or not samples:
                continue
            packet = av.Packet(piece)
            packet.pts, packet.time_base = pts, Fraction(1, self.clock)
            out.append(packet)
            pts += samples
        self._next_pts = pts
        return out

    def _control(self, text: str) -> None:
        if not self.changed and format_changed(text, self.audio):
            # Control is popped before queued audio: what is left may be of either format. Drop it all.
            self.changed = True
            self.pending.clear()
            self.outbox.close()
            self.on_format_change()

    def discard_backlog(self) -> None:
        last = None
        while (item := self.outbox.pop()) is not None:
            if item.__class__ is str:
                self._control(item)
            elif item[2] == KIND_AUDIO:
                last = item
        if last is not None and not self.changed:
            self.pending.extend(self._packets(last))

    async def next_packet(self) -> av.Packet:
        while not self.pending:
            if self.changed:
                raise MediaStreamError
            item = self.outbox.pop()
            if item is None:
                if self.outbox.closed:
                    raise MediaStreamError
                await self.outbox.wait()
                continue
            if item.__class__ is str:
                self._control(item)  # else presence and stats meant for socket viewers
            elif item[2] == KIND_AUDIO:
                self.pending.extend(self._packets(item))
        return self.pending.popleft()

    def close(self) -> None:
        self.outbox.close()


class AudioTrack(MediaStreamTrack):
    """An audio track whose 'frames' are already-encoded packets (passthrough or shared encoder)."""

    kind = "audio"

    def __init__(self, source, stats: Counter):
        super().__init__()
        self.source = source
        self.stats = stats
        self._started = False

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            # Audio queued while ICE/DTLS connected is stale: start at the newest, like video at a keyframe.
            self._started = True
            self.source.discard_backlog()
        packet = await self.source.next_packet()
        self.stats["audio_packets_sent"] += 1
        return packet


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


class AudioDecoder:
    """kind-3 payloads → av.AudioFrames: PCM and G.711 by hand, AAC with PyAV (Opus is never
    decoded here: it is passed through)."""

    def __init__(self, audio: dict):
        self.codec, self.rate, self.channels = audio["codec"], audio["rate"], audio["channels"]
        self.raw_aac = self.codec == "aac" and audio.get("format") == "raw"
        self.context = None
        if self.codec == "aac":
            self.context = av.CodecContext.create("aac", "r")
            if audio.get("config"):
                self.context.extradata = bytes.fromhex(audio["config"])

    def decode(self, payload: bytes) -> list[av.AudioFrame]:
        if self.context is None:
            pcm = audioformats.to_s16(self.codec, payload)
            channels = self.channels
            if channels > 2:  # keep the first two channels: Opus here is mono or stereo
                pcm = b"".join(pcm[i:i + 4] for i in range(0, len(pcm) - len(pcm) % (2 * channels), 2 * channels))
                channels = 2
            samples = len(pcm) // (2 * channels)
            if not samples:
                return []
            frame = av.AudioFrame(format="s16", layout=_layout(channels), samples=samples)
            frame.planes[0].update(pcm[:samples * 2 * channels])
            frame.sample_rate = self.rate
            return [frame]
        if not self.raw_aac:
            units = [raw for _config, raw in audioformats.split_adts(payload)]
            if units and self.context.extradata is None:
                self.context.extradata = audioformats.split_adts(payload)[0][0]
        else:
            units = [payload]
        frames = []
        for unit in units:
            frames.extend(self.context.decode(av.Packet(unit)))
        return frames


class SharedOpusEncoder:
    """One device's audio decoded and encoded to Opus once, for every peer of that device."""

    def __init__(self, device_id: str, audio: dict, counter: Counter):
        self.device_id, self.audio, self.counter = device_id, audio, counter
        self.feeds: set[PacketFeed] = set()
        self.outbox = Outbox()
        self.outbox.kinds = frozenset({KIND_AUDIO})
        self.decoder = AudioDecoder(audio)
        layout = _layout(min(2, audio["channels"]))
        self.encoder = av.CodecContext.create("libopus", "w")
        self.encoder.sample_rate, self.encoder.layout, self.encoder.format = OPUS_CLOCK, layout, "s16"
        self.encoder.bit_rate = 32000 if layout == "mono" else 64000
        self.encoder.time_base = Fraction(1, OPUS_CLOCK)
        self.encoder.options = {"application": "lowdelay", "frame_duration": "20"}
        self.resampler = av.AudioResampler(format="s16", layout=layout, rate=OPUS_CLOCK, frame_size=960)
        self.pts = 0
        self.task: asyncio.Task | None = None
        self.changed = False  # the device came back with another format: this encoder is done

    async def start(self) -> None:
        await get_hub().add_viewer(self.device_id, self.outbox)
        self.task = asyncio.create_task(self._pump(), name=f"sightline-opus-{self.device_id}")

    async def stop(self) -> None:
        self.outbox.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await get_hub().remove_viewer(self.device_id, self.outbox)
        for feed in self.feeds:
            feed.close()

    async def _pump(self) -> None:
        while True:
            item = self.outbox.pop()
            if item is None:
                if self.outbox.closed:
                    return
                await self.outbox.wait()
                continue
            if item.__class__ is str:
                if format_changed(item, self.audio):
                    self._format_changed()
                    return
                continue
            if item[2] != KIND_AUDIO:
                continue
            try:
                packets = self.encode(item[HEADER_SIZE:])
            except Exception:  # a corrupt payload costs that payload, not the device's audio
                log.warning("could not transcode audio of device %s", self.device_id, exc_info=True)
                continue
            for packet in packets:
                for feed in self.feeds:
                    feed.put(packet)

    def _format_changed(self) -> None:
        """The decoder is for the old format: stop; each peer is told (its feed ends)."""
        self.changed = True
        self.outbox.close()
        for feed in self.feeds:
            feed.packets.clear()
            feed.close()
            feed.on_format_change()

    def encode(self, payload: bytes) -> list[av.Packet]:
        """Opus packets (pts in 48 kHz samples, continuous) of one device payload."""
        out = []
        for frame in self.decoder.decode(payload):
            frame.pts = None  # the resampler and encoder count samples themselves
            for resampled in self.resampler.resample(frame):
                self.counter["SharedOpusEncoder"] += 1
                for encoded in self.encoder.encode(resampled):
                    data = bytes(encoded)
                    packet = av.Packet(data)
                    packet.pts, packet.time_base = self.pts, Fraction(1, OPUS_CLOCK)
                    self.pts += audioformats.opus_packet_samples(data) or 960
                    out.append(packet)
        return out


class SharedEncoders:
    """The process's SharedOpusEncoders, one per device with transcoded peers, kept while used."""

    def __init__(self, counter: Counter):
        self.counter = counter
        self.by_device: dict[str, SharedOpusEncoder] = {}
        self._lock = asyncio.Lock()

    async def subscribe(self, device_id: str, audio: dict, on_format_change=lambda: None) -> PacketFeed:
        async with self._lock:
            encoder = self.by_device.get(device_id)
            if encoder is None or encoder.audio != audio or encoder.changed:  # first peer, or the device changed
                if encoder is not None:
                    if not encoder.changed:
                        encoder._format_changed()  # its peers learn it now, not from its presence event later
                    await encoder.stop()
                encoder = SharedOpusEncoder(device_id, audio, self.counter)
                await encoder.start()
                self.by_device[device_id] = encoder
            feed = PacketFeed(on_format_change)
            encoder.feeds.add(feed)
            return feed

    async def unsubscribe(self, device_id: str, feed: PacketFeed) -> None:
        feed.close()
        async with self._lock:
            encoder = self.by_device.get(device_id)
            if encoder is None:
                return
            encoder.feeds.discard(feed)
            if not encoder.feeds:
                del self.by_device[device_id]
                await encoder.stop()

    async def close(self) -> None:
        for device_id in list(self.by_device):
            await self.by_device.pop(device_id).stop()
