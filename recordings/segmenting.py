"""The segment rotation rule: a pure function of the open segment and the next frame."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OpenSegment:
    codec: str  # "jpeg" or "h264"
    first_ts: float  # capture time of the first video frame, seconds
    opened_at: float  # monotonic-ish receive time the segment opened


def should_cut(segment: OpenSegment, frame_ts: float, keyframe: bool, is_video: bool,
               segment_seconds: float, max_segment_seconds: float) -> bool:
    """Start a new segment *before* this frame?

    JPEG: every frame is a keyframe, so cut once the segment spans
    segment_seconds of capture time. H.264: cut only on a keyframe, so every
    segment decodes on its own; if no keyframe comes, cut anyway at
    max_segment_seconds (the next segment then starts undecodable until its
    first keyframe, which is better than an unbounded segment). Audio never
    cuts: it follows the video it is captured with. A capture clock that jumps
    backwards by more than a segment also cuts, so a segment never spans a
    camera clock reset.
    """
    if not is_video:
        return False
    span = frame_ts - segment.first_ts
    if span < -segment_seconds:
        return True
    if span >= max_segment_seconds:
        return True
    if span < segment_seconds:
        return False
    return segment.codec != "h264" or keyframe


def idle_expired(last_frame_received: float, now: float, idle_seconds: float) -> bool:
    """Close the open segment when nothing has arrived for idle_seconds."""
    return now - last_frame_received >= idle_seconds
