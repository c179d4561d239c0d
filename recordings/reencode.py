"""A segment re-encoded for a clip export whose picture it does not match, with PyAV.

The export (recordings/exports.py) copies the packets of every segment that matches
the clip's picture size and H.264 parameters; a segment that does not (the camera
changed resolution, or came back with other encoder settings) is decoded, scaled to
the clip's size -- letterboxed, black bars, when its aspect ratio differs, never
stretched -- and encoded with the transcoder's x264 settings (transcode.x264_options,
so TRANSCODE_X264_PRESET/CRF/THREADS apply) into a temporary fMP4. The export then
copies that file like any segment, so one code path places every packet on the clip's
clock and audio stays where it was.

Timestamps are kept: each frame keeps its time from the segment's start and the audio
packets are copied unchanged, so picture and sound of a re-encoded part line up exactly
as they did in the segment. Only frames of the export's range are encoded (plus the one
on screen at its start), so a 10-s export of a long segment does not encode all of it.
"""
from __future__ import annotations

from fractions import Fraction

import av

from recordings import constants
from recordings.transcode import TIME_BASE, x264_options

# x264 derives the H.264 level from the nominal frame rate, and the level is part of the
# SPS: one fixed rate gives every re-encoded part of a clip the same parameter sets. The
# frames keep their own timestamps, so the rate is only a label.
NOMINAL_FPS = 30


def letterbox_size(width: int, height: int, out_width: int, out_height: int) -> tuple[int, int]:
    """The largest even size with the source's aspect ratio that fits the output."""
    scale = min(out_width / width, out_height / height)
    fit_w, fit_h = min(out_width, round(width * scale)), min(out_height, round(height * scale))
    return max(2, fit_w - fit_w % 2), max(2, fit_h - fit_h % 2)


class _Letterbox:
    """Decoded pictures -> yuv420p at the output size, scaled to fit and centred on black."""

    def __init__(self, stream, out_width: int, out_height: int):
        width, height = stream.codec_context.width, stream.codec_context.height
        fit_w, fit_h = letterbox_size(width, height, out_width, out_height)
        self.graph = av.filter.Graph()
        nodes = [self.graph.add_buffer(template=stream),
                 self.graph.add("scale", f"{fit_w}:{fit_h}"),
                 self.graph.add("pad", f"{out_width}:{out_height}:(ow-iw)/2:(oh-ih)/2:black"),
                 self.graph.add("setsar", "1"),
                 self.graph.add("format", "yuv420p"),
                 self.graph.add("buffersink")]
        for a, b in zip(nodes, nodes[1:]):
            a.link_to(b)
        self.graph.configure()

    def __call__(self, frame):
        self.graph.push(frame)
        return self.graph.pull()  # the filters make one picture of each, at once


def _add_encoder(out, width: int, height: int, profile: str | None, sps_id: int):
    options = dict(x264_options(), **{"forced-idr": "1", "x264-params": f"sps-id={sps_id}"})
    if profile:
        options["profile"] = profile
    stream = out.add_stream("libx264", rate=NOMINAL_FPS, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_type = "AUTO"  # frame threads, as transcode._add_video_stream says
    stream.codec_context.time_base = TIME_BASE
    stream.time_base = TIME_BASE
    stream.codec_context.gop_size = NOMINAL_FPS * 10  # IDRs are forced by time instead
    return stream


def reencode_segment(source_path, out_path, size: tuple[int, int], *, profile: str | None, sps_id: int,
                     keep_from: float, keep_until: float) -> tuple[int, float]:
    """Re-encode the video of the segment at source_path to `size` into out_path (fMP4), with its
    SPS and PPS numbered `sps_id`; copy its audio. Frames from keep_from to keep_until (seconds
    from the segment's start) are encoded, with the one before keep_from.

    Returns (frames encoded, offset): the file's time zero is `offset` seconds after the segment's
    start, at its first frame. (An fMP4 written with an empty moov has no edit list, so a track
    that does not begin at zero has its first sample stretched back to zero: the first picture
    would move.) Audio before the first frame is left out, as an export drops it anyway."""
    width, height = size
    key_every = round(constants.KEYFRAME_INTERVAL_SECONDS * constants.VIDEO_TIME_BASE)
    encoded, next_key, held, offset, waiting_audio = 0, 0, None, None, []
    with av.open(str(source_path)) as source, av.open(str(out_path), "w", format="mp4", options={
            "movflags": constants.MP4_MOVFLAGS}) as out:
        vin = source.streams.video[0]
        ain = source.streams.audio[0] if source.streams.audio else None
        vout = _add_encoder(out, width, height, profile, sps_id)
        aout = out.add_stream_from_template(ain) if ain is not None else None
        letterbox = _Letterbox(vin, width, height)

        def mux_audio(packet) -> None:
            shift = round(offset / packet.time_base)
            if packet.pts - shift < 0:
                return
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, aout
            out.mux(packet)

        def encode(frame) -> None:
            nonlocal encoded, next_key, offset
            if offset is None:
                offset = frame.time
                for packet in waiting_audio:
                    mux_audio(packet)
                waiting_audio.clear()
            picture = letterbox(frame)
            picture.pts = round((frame.time - offset) * constants.VIDEO_TIME_BASE)
            picture.time_base = TIME_BASE
            picture.pict_type = av.video.frame.PictureType.NONE
            if picture.pts >= next_key:  # IDRs about every second, as in recorded segments
                picture.pict_type = av.video.frame.PictureType.I
                next_key = picture.pts + key_every
            out.mux(vout.encode(picture))
            encoded += 1

        for packet in source.demux([vin] + ([ain] if ain is not None else [])):
            if packet.stream is ain:
                if packet.dts is None or not packet.size:
                    continue
                if offset is None:  # where the file begins is known at its first picture
                    waiting_audio.append(packet)
                else:
                    mux_audio(packet)
                continue
            for frame in packet.decode():
                if frame.time is None or frame.time >= keep_until:
                    continue
                if frame.time < keep_from:
                    held = frame  # on screen at keep_from if no frame falls exactly there
                    continue
                if held is not None:
                    encode(held)
                    held = None
                encode(frame)
        if held is not None and not encoded:  # the range begins after the segment's last frame
            encode(held)
        out.mux(vout.encode(None))
    return encoded, offset or 0.0
