"""Which segments of a clip export are copied and which are re-encoded, and to what picture. Pure.

A clip is one MP4 track of one picture size and one set of H.264 parameters. Segments
that match it are copied packet for packet (fast, and exactly as recorded); the others
are re-encoded to it (recordings/reencode.py). Every segment of the range is in the clip.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One segment as the export sees it: its video stream's shape and its share of the range."""
    segment_id: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    params: tuple  # what must be equal to copy packets (avcc.AvcC.signature())
    seconds: float  # of the export's range this segment covers
    audio: tuple | None = None  # (codec, rate, channels, extradata) or None: no audio
    extradata: bytes = b""  # the stream's avcC as it is (params leaves out what may differ)

    def key(self) -> tuple:
        return (self.codec, self.width, self.height, self.pix_fmt, self.params)


def choose_output(parts: list[Part]) -> Part:
    """The part whose picture and parameters the clip takes: the shape that covers the most
    of the range (ties: the larger picture, then the earlier segment).

    Why the most-covering shape rather than the largest or the first: everything in that
    shape is stream-copied, so the share re-encoded -- the slow part of an export, and the
    only part not bit-exact from the recording -- is as small as it can be. A camera changed
    for a moment (an operator trying another resolution, a reconnect with other settings)
    costs a re-encode of that moment, not of the rest of the day. Between equal shares the
    larger picture wins, so detail is kept rather than thrown away."""
    if not parts:
        raise ValueError("no parts")
    share: dict[tuple, float] = {}
    for part in parts:
        share[part.key()] = share.get(part.key(), 0.0) + part.seconds
    order = {part.key(): -index for index, part in reversed(list(enumerate(parts)))}
    best = max(share, key=lambda k: (round(share[k], 3), k[1] * k[2], order[k]))
    return next(part for part in parts if part.key() == best)


def why_reencode(part: Part, output: Part) -> str | None:
    """None when the part's packets can be copied into the clip; else the reason, for the record."""
    if part.key() == output.key():
        return None
    if (part.width, part.height) != (output.width, output.height):
        return f"{part.width}x{part.height}, the clip is {output.width}x{output.height}"
    if part.codec != output.codec or part.pix_fmt != output.pix_fmt:
        return f"{part.codec} {part.pix_fmt}, the clip is {output.codec} {output.pix_fmt}"
    return "other H.264 parameters than the clip's"


def audio_template(parts: list[Part]) -> tuple | None:
    """The clip's audio: that of the first part with audio (a camera that gains audio in the
    range keeps it from then on)."""
    return next((part.audio for part in parts if part.audio is not None), None)
