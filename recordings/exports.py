"""Clip export: the segments of a time range joined into one faststart MP4, with SHA-256.

Every segment of the range is in the clip. The clip takes the picture size and
H.264 parameters of the segments covering most of the range (exportplan.py says
why); their packets are copied with their times shifted onto one clock, so the
common case (nothing changed) is a remux. A segment of another size or other
parameters (the camera changed resolution, or reconnected with other settings)
is re-encoded to the clip's size first, letterboxed if its aspect ratio differs
(reencode.py), and its packets then copied the same way; the clip's avcC carries
both sets of parameters (avcc.py). The export's record lists the segments and
which were re-encoded, and why. The clip starts at the last keyframe at or
before `start` (at most KEYFRAME_INTERVAL_SECONDS early for JPEG cameras) so it
decodes from its first frame, and ends at `end`.

Segments of the range still being recorded or transcoded are waited for (the
task polls, up to EXPORT_WAIT_SECONDS); what the clip then covers, and what it
lacks and why, is stored with the export (recordings/coverage.py).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import av

from recordings import archive, avcc, constants, coverage, exportplan, reencode
from recordings.models import ClipExport, ExportState, Segment, SegmentState

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, constants.VIDEO_TIME_BASE)
# Progress: a re-encoded segment counts as this many copied ones. Measured: copying 60 s of 720p
# takes about 15 ms, re-encoding 60 s of 640x480 to 720p about 2 s (superfast, 2 cores).
REENCODE_WEIGHT = 50


def export_key(export: ClipExport) -> str:
    return f"exports/{export.device.organisation_id}/{export.device_id}/{export.id}.mp4"


def fail_export(export_id, reason: str) -> None:
    ClipExport.objects.filter(pk=export_id).update(state=ExportState.FAILED, failure_reason=reason[:2000],
                                                   finished_at=datetime.now(timezone.utc))


def segments_in_range(device_id, start: datetime, end: datetime):
    return (Segment.objects.filter(device_id=device_id, start__lt=end, end__gt=start,
                                   state__in=[SegmentState.READY, SegmentState.ARCHIVED])
            .order_by("start"))


def segment_states_in_range(device_id, start: datetime, end: datetime) -> list[str]:
    """States of every segment overlapping the range, the one being recorded (no end yet) included."""
    return list(Segment.objects.filter(device_id=device_id, start__lt=end)
                .exclude(end__lte=start).values_list("state", flat=True))


def run_export(export_id, may_wait: bool = True) -> str:
    """queued -> running -> done; idempotent (a finished export is left alone).

    Returns "waiting" while segments of the range are still pending and the wait is not
    over: the caller (the task) runs it again a little later."""
    claimed = ClipExport.objects.filter(pk=export_id, state__in=[ExportState.QUEUED, ExportState.RUNNING]).update(
        state=ExportState.RUNNING)
    if not claimed:
        return "done"
    export = ClipExport.objects.select_related("device").get(pk=export_id)
    now = datetime.now(timezone.utc)
    states = segment_states_in_range(export.device_id, export.start, export.end)
    pending = sum(state in coverage.PENDING_STATES for state in states)
    failed = sum(state == SegmentState.FAILED for state in states)
    waited = (now - export.created_at).total_seconds()
    max_wait = constants.export_wait_seconds()
    if may_wait and coverage.should_wait(pending, waited, max_wait):
        ClipExport.objects.filter(pk=export_id).update(
            progress=coverage.waiting_progress(len(states) - pending - failed, len(states)),
            coverage={"waiting_for": pending, "segments": len(states), "waited_seconds": round(waited, 1),
                      "max_wait_seconds": max_wait})
        return "waiting"
    segments = list(segments_in_range(export.device_id, export.start, export.end))
    if not segments:
        reason = "no recorded video in this range"
        if pending:
            reason += f" yet: {pending} segment(s) still being recorded or processed after {max_wait:.0f} s"
        fail_export(export_id, reason)
        return "failed"
    with tempfile.TemporaryDirectory(prefix="sightline-export-") as workdir:
        out_path = Path(workdir) / "clip.mp4"
        joined = JoinReport()
        frames = join_segments(segments, export.start, export.end, out_path, workdir,
                               progress=lambda p: ClipExport.objects.filter(pk=export_id).update(
                                   progress=0.25 + p * 0.7),
                               report=joined)
        if not frames:
            fail_export(export_id, "no frames in this range")
            return "failed"
        checksum = archive.sha256_file(out_path)
        key = archive.store_file(out_path, export_key(export))
        size = out_path.stat().st_size
    report = coverage.describe([(s.start, s.end) for s in joined.joined], export.start, export.end,
                               pending=pending, failed=failed, now=now)
    report.update(joined.manifest())
    if not report["complete"]:
        log.info("export %s is partial: %s", export_id, report["note"])
    ClipExport.objects.filter(pk=export_id).update(
        state=ExportState.DONE, progress=1.0, storage_key=key, checksum=checksum, bytes=size,
        coverage=report, finished_at=datetime.now(timezone.utc))
    return "done"


def local_copy(segment: Segment, workdir: str) -> Path:
    """The segment's MP4 on local disk: the spool output if still here, else a download."""
    from recordings.pipeline import local_outputs

    if segment.state == SegmentState.READY:
        path = local_outputs(segment)["mp4"]
        if path.exists():
            return path
        # On another host's spool and not archived yet: retried (with backoff) until it is.
        raise FileNotFoundError(f"segment {segment.id} is not archived yet and not on this host")
    target = Path(workdir) / f"{segment.id}.mp4"
    with archive.recordings_storage().open(segment.storage_key, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
    return target


@dataclass
class JoinReport:
    """What join_segments put into the clip, for the export's record."""
    joined: list = field(default_factory=list)  # the Segments in the clip
    reencoded: list = field(default_factory=list)  # {"id", "reason"} of those re-encoded
    audio_left_out: list = field(default_factory=list)  # ids whose audio differs from the clip's
    picture: tuple[int, int] | None = None

    def manifest(self) -> dict:
        out = {"picture": list(self.picture) if self.picture else None,
               "segments": [str(s.id) for s in self.joined], "reencoded": self.reencoded}
        if self.audio_left_out:
            out["audio_left_out"] = self.audio_left_out
        return out


def join_segments(segments, start: datetime, end: datetime, out_path: Path, workdir: str, progress,
                  report: JoinReport | None = None) -> int:
    """Join the segments' video of [start, end) into out_path: packets copied where a segment
    matches the clip's picture (exportplan.choose_output), re-encoded to it where not."""
    report = report if report is not None else JoinReport()
    paths = [local_copy(segment, workdir) for segment in segments]
    parts = [_probe(segment, path, start, end) for segment, path in zip(segments, paths)]
    output = exportplan.choose_output(parts)
    reasons = [exportplan.why_reencode(part, output) for part in parts]
    report.picture = (output.width, output.height)
    # Progress by segment, a re-encoded one weighing as much as REENCODE_WEIGHT copied ones.
    done, total = 0, len(segments) + REENCODE_WEIGHT * sum(1 for reason in reasons if reason)
    template_path = paths[parts.index(output)]
    track = avcc.parse(output.extradata) if any(reasons) else None
    sps_id = avcc.free_sps_id(track) if track else 0
    offsets = [0.0] * len(segments)  # where each file's time zero is, from its segment's start
    for index, (segment, part, reason) in enumerate(zip(segments, parts, reasons)):
        if not reason:
            continue
        redone = Path(workdir) / f"{segment.id}-reencoded.mp4"
        _frames, offsets[index] = reencode.reencode_segment(
            paths[index], redone, report.picture, profile=avcc.PROFILE_NAMES.get(track.profile), sps_id=sps_id,
            keep_from=(start - segment.start).total_seconds(), keep_until=(end - segment.start).total_seconds())
        with av.open(str(redone)) as probe:
            track = avcc.merge(track, avcc.parse(bytes(probe.streams.video[0].codec_context.extradata)))
        paths[index] = redone
        report.reencoded.append({"id": str(segment.id), "reason": reason})
        log.info("export re-encodes segment %s: %s", segment.id, reason)
        done += REENCODE_WEIGHT
        progress(done / total)
    audio = exportplan.audio_template(parts)
    written = 0
    origin = start.timestamp()
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        with av.open(str(template_path)) as template:
            video_out = out.add_stream_from_template(template.streams.video[0])
            video_out.time_base = TIME_BASE
            if any(reasons):  # the re-encoded parts' SPS and PPS, next to the copied ones'
                video_out.codec_context.extradata = avcc.build(track)
        audio_out = None
        if audio is not None:
            with av.open(str(paths[next(i for i, p in enumerate(parts) if p.audio == audio)])) as first:
                audio_out = out.add_stream_from_template(first.streams.audio[0])
        last_dts: dict = {}
        for index, (segment, part) in enumerate(zip(segments, parts)):
            with av.open(str(paths[index])) as source:
                vin = source.streams.video[0]
                ain = source.streams.audio[0] if source.streams.audio and part.audio == audio else None
                if part.audio is not None and part.audio != audio:
                    log.warning("export leaves out the audio of segment %s: %s differs from %s", segment.id,
                                part.audio[:3], audio[:3])
                    report.audio_left_out.append(str(segment.id))
                written += _copy_packets(source, vin, ain, video_out, audio_out,
                                         segment.start.timestamp() + offsets[index],
                                         origin, end.timestamp(), last_dts)
                report.joined.append(segment)
            done += 1
            progress(done / total)
    return written


def _probe(segment: Segment, path: Path, start: datetime, end: datetime) -> exportplan.Part:
    with av.open(str(path)) as source:
        video = source.streams.video[0].codec_context
        audio = source.streams.audio[0].codec_context if source.streams.audio else None
        extradata = bytes(video.extradata or b"")
        params = avcc.parse(extradata).signature() if video.name == "h264" else (extradata,)
        seconds = max(0.0, (min(end, segment.end or end) - max(start, segment.start)).total_seconds())
        return exportplan.Part(
            segment_id=str(segment.id), codec=video.name, width=video.width, height=video.height,
            pix_fmt=video.pix_fmt or "", params=params, seconds=seconds, extradata=extradata,
            audio=(audio.name, audio.sample_rate, audio.channels, bytes(audio.extradata or b""))
            if audio is not None else None)


def _copy_packets(source, vin, ain, video_out, audio_out, seg_start, origin, end, last_dts) -> int:
    """Copy packets in [start, end) onto the clip clock; begin at a keyframe."""
    streams = [vin] + ([ain] if ain is not None and audio_out is not None else [])
    pending, started, written = [], "video" in last_dts, 0
    for packet in source.demux(streams):
        if packet.dts is None or packet.size == 0:
            continue
        at = seg_start + float(packet.pts * packet.time_base)
        if at >= end:
            if packet.stream is vin:
                break
            continue
        is_video = packet.stream is vin
        if not started:
            if is_video and packet.is_keyframe:
                pending = []  # a later keyframe still at or before the start: begin there
            pending.append((packet, at, is_video))
            if at < origin:
                continue
            started = True
            batch, pending = pending, []
        else:
            batch = [(packet, at, is_video)]
        for pkt, when, video in batch:
            if video and not written and not pkt.is_keyframe and "video" not in last_dts:
                continue
            written += _mux_shifted(pkt, when, video, video_out, audio_out, origin, last_dts)
    return written


def _mux_shifted(packet, at, is_video, video_out, audio_out, origin, last_dts) -> int:
    key = "video" if is_video else "audio"
    out_stream = video_out if is_video else audio_out
    tb = out_stream.time_base or packet.time_base
    shift = packet.dts - packet.pts
    origin = last_dts.setdefault("origin", at)  # the clip's first keyframe is time zero
    pts = round((at - origin) / tb)
    dts = pts + round(float(shift * packet.time_base) / tb)
    dts = max(dts, last_dts.get(key, -(1 << 62)) + 1)
    pts = max(pts, dts)
    last_dts[key] = dts
    # The muxer takes each sample's duration from the next dts, but the clip's last sample has
    # no next one: without its own duration the last frame would last 0 s (the clip 1 frame short).
    duration = round(float(packet.duration * packet.time_base) / tb) if packet.duration else 0
    packet.pts, packet.dts, packet.time_base, packet.stream = pts, dts, tb, out_stream
    packet.duration = duration
    out_stream.container.mux(packet)
    return 1 if is_video else 0
