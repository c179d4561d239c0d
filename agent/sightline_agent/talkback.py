"""Talk-back on the device side: an operator's voice from the server, played.

The server sends `{"type":"talk","state":"start","codec":..,"rate":..,"user":..}`, then
kind-3 binary frames, then `{"type":"talk","state":"stop"}` (docs/protocol.md, section 4a).
Opus is decoded with PyAV; PCM is used as is. The audio goes to a sound device when one
exists (ALSA's `aplay`), else it is appended to a WAV file named when the agent starts.
The status line shows who is talking and the level; when a talk ends, one event line
gives its length, peak level, dominant frequency and capture -> played latency.
"""
from __future__ import annotations

import glob
import shutil
import statistics
import subprocess
import time
import wave

from sightline_agent import audioformats
from sightline_agent.protocol import HEADER_SIZE, KIND_AUDIO, ProtocolError, parse_header

PLAY_RATE = 48000
MAX_ANALYSED_SECONDS = 10


def sound_device_available() -> bool:
    return bool(shutil.which("aplay")) and bool(glob.glob("/dev/snd/pcmC*D*p"))


def dominant_frequency(pcm: bytes, rate: int) -> float:
    """The frequency of a tone in s16 mono PCM, from its rising zero crossings (with
    hysteresis, so noise near zero does not count twice). 0.0 for silence."""
    count = len(pcm) // 2
    if count < rate // 10:
        return 0.0
    import array

    samples = array.array("h", pcm[: count * 2])
    peak = max(abs(min(samples)), max(samples))
    if peak < 300:
        return 0.0
    low, high = -peak * 0.2, peak * 0.2
    crossings, armed, first, last = 0, False, None, None
    for index, value in enumerate(samples):
        if value < low:
            armed = True
        elif value > high and armed:
            armed = False
            if first is None:
                first = index
            else:
                crossings += 1
                last = index
    if not crossings:
        return 0.0
    return crossings * rate / (last - first)


class _WavSink:
    def __init__(self, path: str):
        self.path = path
        self.file = wave.open(path, "wb")
        self.file.setnchannels(1)
        self.file.setsampwidth(2)
        self.file.setframerate(PLAY_RATE)

    def write(self, pcm: bytes) -> None:
        self.file.writeframes(pcm)  # patches the header each time: the file is always playable

    def close(self) -> None:
        self.file.close()


class _AplaySink:
    def __init__(self):
        self.process = subprocess.Popen(["aplay", "-q", "-t", "raw", "-f", "S16_LE", "-r", str(PLAY_RATE), "-c", "1"],
                                        stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def write(self, pcm: bytes) -> None:
        try:
            self.process.stdin.write(pcm)
        except (BrokenPipeError, OSError):
            pass

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        self.process.terminate()


class TalkbackPlayer:
    """Plays talk-back audio; `output` is a WAV path (or None: a sound device if there is one)."""

    def __init__(self, output: str | None, status, counters):
        self.status, self.counters = status, counters
        if output is None and sound_device_available():
            self.sink, self.description = _AplaySink(), "the sound device (aplay)"
        else:
            path = output or "talkback.wav"
            self.sink, self.description = _WavSink(path), f"WAV file {path}"
        self.session: dict | None = None
        self._decoder = None
        self._resampler = None

    def hello(self) -> dict:
        return {"codecs": ["opus", "pcm_s16le"], "rate": PLAY_RATE}

    def on_talk(self, message: dict) -> None:
        state = message.get("state")
        if state == "start":
            self._finish()
            self.session = {"user": str(message.get("user") or "?")[:60], "codec": message.get("codec"),
                            "rate": int(message.get("rate") or PLAY_RATE), "pcm": bytearray(), "samples": 0,
                            "peak": 0.0, "latencies": [], "started": time.monotonic()}
            self._decoder = self._resampler = None
            self.counters.talk = f"{self.session['user']} talking"
            self.status.event(f"talk-back from {self.session['user']} ({self.session['codec']}) → {self.description}")
        elif state == "stop":
            self._finish()

    def on_audio(self, message: bytes) -> None:
        session = self.session
        if session is None:
            return
        try:
            header = parse_header(message, 1 << 20)
        except ProtocolError:
            return
        if header.kind != KIND_AUDIO:
            return
        pcm = self._decode(message[HEADER_SIZE:])
        if not pcm:
            return
        self.sink.write(pcm)
        level = audioformats.s16_level(pcm)
        session["peak"] = max(session["peak"], level)
        session["samples"] += len(pcm) // 2
        if len(session["pcm"]) < MAX_ANALYSED_SECONDS * PLAY_RATE * 2:
            session["pcm"] += pcm
        if header.timestamp_us:
            session["latencies"].append(time.time() * 1000 - header.timestamp_us / 1000)
        bars = "#" * round(level * 40)
        self.counters.talk = f"{session['user']} level {level:.2f} {bars:<12}"

    def _decode(self, payload: bytes) -> bytes:
        codec, rate = self.session["codec"], self.session["rate"]
        import av

        if codec == "opus":
            if self._decoder is None:
                self._decoder = av.CodecContext.create("libopus", "r")
                self._decoder.sample_rate, self._decoder.layout = PLAY_RATE, "mono"
            frames = self._decoder.decode(av.Packet(payload))
        elif codec == "pcm_s16le":
            if rate == PLAY_RATE:
                return payload[: len(payload) - len(payload) % 2]
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(payload) // 2)
            frame.planes[0].update(payload[: len(payload) - len(payload) % 2])
            frame.sample_rate = rate
            frames = [frame]
        else:
            return b""
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=PLAY_RATE)
        out = b""
        for frame in frames:
            for resampled in self._resampler.resample(frame):
                out += bytes(resampled.planes[0])[: resampled.samples * 2]
        return out

    def _finish(self) -> None:
        session, self.session = self.session, None
        self.counters.talk = ""
        if session is None:
            return
        seconds = session["samples"] / PLAY_RATE
        # The middle of the talk: the start and end hold the press and release.
        pcm = bytes(session["pcm"])
        middle = pcm[len(pcm) // 4: len(pcm) * 3 // 4 // 2 * 2] if len(pcm) > PLAY_RATE else pcm
        frequency = dominant_frequency(middle, PLAY_RATE)
        latency = ""
        if session["latencies"]:
            ordered = sorted(session["latencies"])
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            latency = f", latency p50 {statistics.median(ordered):.0f} ms p99 {p99:.0f} ms"
        self.status.event(f"talk-back from {session['user']} ended: {seconds:.1f} s, peak level "
                          f"{session['peak']:.2f}, tone {frequency:.0f} Hz{latency}")

    def close(self) -> None:
        self._finish()
        self.sink.close()
