"""Encoders: Pillow images to JPEG or H.264 access units, and the audio test tone.

Each encoder turns one captured image into one ``EncodedFrame`` (a frame in the
sense of docs/protocol.md section 3: one JPEG image or one H.264 access unit).
They are not thread-safe; the session runs them in a single worker thread.
"""
from __future__ import annotations

import io
import math
from array import array
from dataclasses import dataclass
from fractions import Fraction

from PIL import Image

from sightline_agent.protocol import KIND_AUDIO, KIND_H264, KIND_JPEG

AUDIO_RATE = 16000
AUDIO_CHANNELS = 1
AUDIO_CHUNK_SECONDS = 0.1  # one kind-3 frame every 100 ms
TONE_HZ = 440.0
TONE_AMPLITUDE = 0.3  # of full scale: audible, never clipping
AUDIO_HELLO = {"codec": "pcm_s16le", "rate": AUDIO_RATE, "channels": AUDIO_CHANNELS}


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    kind: int
    payload: bytes
    keyframe: bool


class JpegEncoder:
    codec = "jpeg"
    kind = KIND_JPEG

    def __init__(self, quality: int = 75):
        if not 1 <= quality <= 95:
            raise ValueError("JPEG quality must be 1..95")
        self.quality = quality

    def encode(self, image: Image.Image, fps: int, force_keyframe: bool = False) -> list[EncodedFrame]:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=self.quality)
        # Every JPEG decodes on its own, so every one is a keyframe (protocol section 3).
        return [EncodedFrame(KIND_JPEG, buffer.getvalue(), True)]

    def restart(self) -> None:
        """Nothing to reset: JPEG frames are independent."""

    def close(self) -> None:
        pass


class H264Encoder:
    """libx264, ultrafast + zerolatency: one access unit out per image in, no B-frames.

    Keyframes every ``fps`` frames (about one a second), each carrying SPS/PPS
    in-band (repeat-headers) so a viewer or recorder can start at any keyframe.
    Output is Annex B (start codes), which is libx264's default without a
    global-header container. A change of size or fps, or restart() (a new
    connection: viewers need a keyframe first), opens a fresh encoder whose
    first output is an IDR. ``force_keyframe`` (the server's ``keyframe``
    request) marks the picture as an I picture; with forced-idr libx264 then
    emits an IDR with SPS/PPS, and the fixed GOP restarts from it.
    """

    codec = "h264"
    kind = KIND_H264

    def __init__(self):
        self._context = None
        self._shape: tuple[int, int, int] | None = None
        self._pts = 0

    def _open(self, width: int, height: int, fps: int):
        import av  # imported here so JPEG-only devices need no PyAV

        context = av.CodecContext.create("libx264", "w")
        context.width, context.height = width, height
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, fps)
        context.framerate = Fraction(fps, 1)
        context.gop_size = fps
        context.max_b_frames = 0
        context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",  # a picture marked I becomes an IDR, where any viewer can start
            # Fixed GOP (no scene-cut keyframes) so viewers can rely on one keyframe a second.
            "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes=0:repeat-headers=1:annexb=1",
        }
        context.open()
        self._context, self._shape, self._pts = context, (width, height, fps), 0

    def encode(self, image: Image.Image, fps: int, force_keyframe: bool = False) -> list[EncodedFrame]:
        import av

        width, height = image.size
        if self._shape != (width, height, fps):
            self.close()
            self._open(width, height, fps)
        frame = av.VideoFrame.from_image(image.convert("RGB")).reformat(format="yuv420p")
        frame.pts = self._pts
        self._pts += 1
        if force_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        return [EncodedFrame(KIND_H264, bytes(packet), bool(packet.is_keyframe))
                for packet in self._context.encode(frame)]

    def restart(self) -> None:
        self.close()

    def close(self) -> None:
        if self._context is not None:
            try:
                self._context.encode(None)  # flush; zerolatency holds nothing back, but be tidy
            except Exception:
                pass
        self._context, self._shape = None, None


def make_encoder(codec: str, jpeg_quality: int = 75):
    if codec == "jpeg":
        return JpegEncoder(jpeg_quality)
    if codec == "h264":
        return H264Encoder()
    raise ValueError(f"unknown codec {codec!r} (jpeg or h264)")


class ToneGenerator:
    """A continuous sine tone as PCM signed 16-bit little-endian mono chunks.

    The phase carries over between chunks, so consecutive frames join without a click.
    """

    kind = KIND_AUDIO

    def __init__(self, rate: int = AUDIO_RATE, frequency: float = TONE_HZ,
                 chunk_seconds: float = AUDIO_CHUNK_SECONDS, amplitude: float = TONE_AMPLITUDE):
        self.rate = rate
        self.frequency = frequency
        self.samples_per_chunk = round(rate * chunk_seconds)
        self.amplitude = round(amplitude * 32767)
        self._phase = 0.0  # radians at the next sample, kept in [0, 2π) so it never loses precision

    def next_chunk(self) -> bytes:
        step = 2 * math.pi * self.frequency / self.rate
        phase = self._phase
        samples = array("h", (round(self.amplitude * math.sin(phase + step * i))
                              for i in range(self.samples_per_chunk)))
        self._phase = (phase + step * self.samples_per_chunk) % (2 * math.pi)
        if samples.itemsize != 2:
            raise RuntimeError("array('h') is not 16-bit on this platform")
        if array("h", [1]).tobytes() != b"\x01\x00":  # big-endian host: the wire wants little-endian
            samples.byteswap()
        return samples.tobytes()
