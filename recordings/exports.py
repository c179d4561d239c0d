"""Clip export: the segments of a time range joined into one faststart MP4, with SHA-256.

Remuxed, not re-encoded: every segment is H.264 from the same encoder settings
(or the camera's own stream), so packets are copied with their times shifted
onto one clock. The clip starts at the last keyframe at or before `start`
(at most KEYFRAME_INTERVAL_SECONDS early for JPEG cameras) so it decodes from
its first frame, and ends at `end`. Segments whose size or codec differs from
the first one are skipped and counted in the log: joining them needs a
re-encode this version does not do.

Segments of the range still being recorded or transcoded are waited for (the
task polls, up to EXPORT_WAIT_SECONDS); what the clip then covers, and what it
lacks and why, is stored with the export (recordings/coverage.py).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import av

from recordings import archive, constants, coverage
from recordings.models import ClipExport, ExportState, Segment, SegmentState

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, constants.VIDEO_TIME_BASE)


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
        joined: list[Segment] = []
        frames = join_segments(segments, export.start, export.end, out_path, workdir,
                               progress=lambda p: ClipExport.objects.filter(pk=export_id).update(
                                   progress=0.25 + p * 0.7),
                               joined=joined)
        if not frames:
            fail_export(export_id, "no frames in this range")
            return "failed"
        checksum = archive.sha256_file(out_path)
        key = archive.store_file(out_path, export_key(export))
        size = out_path.stat().st_size
    report = coverage.describe([(s.start, s.end) for s in joined], export.start, export.end,
                               pending=pending, failed=failed, now=now)
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


def join_segments(segments, start: datetime, end: datetime, out_path: Path, workdir: str, progress,
                  joined: list | None = None) -> int:
    """Remux the segments' packets of [start, end) into out_path; `joined` receives the
    segments actually used (a segment of another size or codec is skipped)."""
    written = 0
    origin = start.timestamp()
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        video_out = audio_out = None
        shape = None
        last_dts: dict = {}
        for index, segment in enumerate(segments):
            path = local_copy(segment, workdir)
            with av.open(str(path)) as source:
                vin = source.streams.video[0]
                ain = source.streams.audio[0] if source.streams.audio else None
                if video_out is None:
                    video_out = out.add_stream_from_template(vin)
                    video_out.time_base = TIME_BASE
                    shape = (vin.codec_context.name, vin.codec_context.width, vin.codec_context.height)
                    if ain is not None:
                        audio_out = out.add_stream_from_template(ain)
                elif (vin.codec_context.name, vin.codec_context.width, vin.codec_context.height) != shape:
                    log.warning("export skips segment %s: %s differs from %s", segment.id,
                                (vin.codec_context.width, vin.codec_context.height), shape)
                    continue
                written += _copy_packets(source, vin, ain, video_out, audio_out, segment.start.timestamp(),
                                         origin, end.timestamp(), last_dts)
                if joined is not None:
                    joined.append(segment)
            progress((index + 1) / len(segments))
    return written


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
    packet.pts, packet.dts, packet.time_base, packet.stream = pts, dts, tb, out_stream
    packet.duration = 0
    out_stream.container.mux(packet)
    return 1 if is_video else 0
