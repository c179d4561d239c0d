"""The agent's audio: a source of PCM (a tone, a speech-like signal, or a file's audio track)
and an encoder to one of protocol v1's audio codecs (docs/protocol.md, "Audio codecs").

    source.read(samples) -> PCM s16le mono/stereo at the encoder's rate
    encoder.encode(pcm, capture_us) -> [(payload, capture time us of its first sample)]

AAC and Opus go through PyAV (FFmpeg's aac and libopus encoders); G.711 through audioop.
"""
from __future__ import annotations

import math
from array import array
from fractions import Fraction

from sightline_agent import audioformats

CODECS = ["pcm_s16le", "pcm_alaw", "pcm_mulaw", "aac", "opus"]
DEFAULT_RATES = {"pcm_s16le": 16000, "pcm_alaw": 8000, "pcm_mulaw": 8000, "aac": 16000, "opus": 48000}
CHUNK_SECONDS = 0.02  # 20 ms of audio per read: one Opus packet, low latency for the others
TONE_AMPLITUDE = 0.3


def _le(samples: array) -> bytes:
    if array("h", [1]).tobytes() != b"\x01\x00":  # big-endian host: the wire wants little-endian
        samples.byteswap()
    return samples.tobytes()


class Tone:
    """A continuous sine tone; the phase carries over so chunks join without a click."""

    def __init__(self, rate: int, frequency: float = 440.0, amplitude: float = TONE_AMPLITUDE):
        self.rate, self.frequency, self.amplitude = rate, frequency, round(amplitude * 32767)
        self.description = f"a {frequency:g} Hz tone"
        self._phase = 0.0

    def read(self, samples: int) -> bytes:
        step = 2 * math.pi * self.frequency / self.rate
        phase = self._phase
        out = array("h", (round(self.amplitude * math.sin(phase + step * i)) for i in range(samples)))
        self._phase = (phase + step * samples) % (2 * math.pi)
        return _le(out)


class SpeechLike:
    """Syllables: a voiced buzz (a gliding 100-140 Hz fundamental and a few harmonics)
    under a 4 Hz syllable envelope with pauses, so a listener hears something voice-like.
    One 3.5 s loop is computed at start (pure Python is too slow to do it live)."""

    LOOP_SECONDS = 3.5

    def __init__(self, rate: int):
        self.rate, self.position = rate, 0
        self.description = "a speech-like signal"
        out, phase = array("h"), 0.0
        for i in range(round(rate * self.LOOP_SECONDS)):
            t = i / rate
            envelope = math.sin(math.pi * ((t * 4) % 1.0)) ** 2 if int(t * 4) % 7 not in (3, 6) else 0.0
            phase += 2 * math.pi * (120 + 20 * math.sin(2 * math.pi * t / self.LOOP_SECONDS)) / rate
            value = sum(math.sin(phase * k) / k for k in (1, 2, 3, 5, 7))
            out.append(round(9000 * envelope * value / 2.0))
        self.loop = _le(out)

    def read(self, samples: int) -> bytes:
        start, end = self.position * 2, (self.position + samples) * 2
        chunk = self.loop[start:end]
        while len(chunk) < samples * 2:
            chunk += self.loop[: samples * 2 - len(chunk)]
        self.position = (self.position + samples) % (len(self.loop) // 2)
        return chunk


class FileAudio:
    """A file's first audio track via PyAV, resampled to s16 at `rate`, looped."""

    def __init__(self, path: str, rate: int, channels: int):
        import av

        self.path, self.rate, self.channels = path, rate, channels
        self.description = f"the audio of {path}"
        self._buffer = bytearray()
        with av.open(path) as container:
            if not container.streams.audio:
                raise ValueError(f"{path} has no audio track")
        self._frames = self._decode()

    def _decode(self):
        import av

        layout = "mono" if self.channels == 1 else "stereo"
        while True:
            resampler = av.AudioResampler(format="s16", layout=layout, rate=self.rate)
            with av.open(self.path) as container:
                for frame in container.decode(audio=0):
                    for out in resampler.resample(frame):
                        yield bytes(out.planes[0])[: out.samples * 2 * self.channels]

    def read(self, samples: int) -> bytes:
        want = samples * 2 * self.channels
        while len(self._buffer) < want:
            self._buffer += next(self._frames)
        chunk, self._buffer = bytes(self._buffer[:want]), self._buffer[want:]
        return chunk


def open_audio_source(spec: str, rate: int, channels: int = 1):
    """tone (440 Hz), tone:HZ, speech, or file:PATH."""
    if spec == "tone":
        return Tone(rate)
    if spec.startswith("tone:"):
        return Tone(rate, float(spec[5:]))
    if spec == "speech":
        return SpeechLike(rate)
    if spec.startswith("file:"):
        return FileAudio(spec[5:], rate, channels)
    raise ValueError(f"unknown audio source {spec!r} (tone, tone:HZ, speech or file:PATH)")


class AudioEncoder:
    """PCM s16le -> payloads of one codec, each with the capture time of its first sample."""

    def __init__(self, codec: str, rate: int | None = None, channels: int = 1):
        if codec not in CODECS:
            raise ValueError(f"unknown audio codec {codec!r} ({', '.join(CODECS)})")
        self.codec = codec
        self.rate = 48000 if codec == "opus" else (rate or DEFAULT_RATES[codec])
        self.channels = 1 if codec in ("pcm_alaw", "pcm_mulaw") else channels
        self.chunk_samples = round(self.rate * CHUNK_SECONDS)
        self._context = None
        self._in_samples = 0  # samples given to a PyAV encoder so far
        self._origin_us: int | None = None  # capture time of sample 0 of the PyAV encoder's clock

    def hello(self) -> dict:
        hello = {"codec": self.codec, "rate": self.rate, "channels": self.channels}
        if self.codec == "aac":
            hello["format"] = "adts"
            hello["config"] = audioformats.audio_specific_config(self.rate, self.channels).hex()
        return hello

    def encode(self, pcm: bytes, capture_us: int) -> list[tuple[bytes, int]]:
        if self.codec == "pcm_s16le":
            return [(pcm, capture_us)]
        if self.codec == "pcm_alaw":
            return [(audioformats.s16_to_alaw(pcm), capture_us)]
        if self.codec == "pcm_mulaw":
            return [(audioformats.s16_to_mulaw(pcm), capture_us)]
        return self._encode_av(pcm, capture_us)

    def _open(self):
        import av

        layout = "mono" if self.channels == 1 else "stereo"
        name = "libopus" if self.codec == "opus" else "aac"
        context = av.CodecContext.create(name, "w")
        context.sample_rate, context.layout = self.rate, layout
        context.format = "s16" if self.codec == "opus" else "fltp"
        context.bit_rate = 32000 if self.codec == "opus" else 48000
        context.time_base = Fraction(1, self.rate)
        if self.codec == "opus":
            context.options = {"application": "lowdelay", "frame_duration": "20"}
        self._resampler = av.AudioResampler(format=context.format.name, layout=layout, rate=self.rate,
                                            frame_size=960 if self.codec == "opus" else 1024)
        self._layout = layout
        return context

    def _encode_av(self, pcm: bytes, capture_us: int) -> list[tuple[bytes, int]]:
        import av

        if self._context is None:
            self._context = self._open()
        samples = len(pcm) // (2 * self.channels)
        expected_us = None
        if self._origin_us is not None:
            expected_us = self._origin_us + self._in_samples * 1_000_000 // self.rate
        # The sample clock follows the capture clock; a stall of more than 100 ms re-anchors it.
        if expected_us is None or abs(capture_us - expected_us) > 100_000:
            self._origin_us = capture_us - self._in_samples * 1_000_000 // self.rate
        frame = av.AudioFrame(format="s16", layout=self._layout, samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate, frame.pts, frame.time_base = self.rate, self._in_samples, Fraction(1, self.rate)
        self._in_samples += samples
        out = []
        for resampled in self._resampler.resample(frame):
            for packet in self._context.encode(resampled):
                out.append(self._payload(packet))
        return out

    def _payload(self, packet) -> tuple[bytes, int]:
        data = bytes(packet)
        pts = max(0, packet.pts or 0)
        ts = self._origin_us + pts * 1_000_000 // self.rate
        if self.codec == "aac":
            data = audioformats.adts_header(audioformats.audio_specific_config(self.rate, self.channels),
                                            len(data)) + data
        return data, ts
