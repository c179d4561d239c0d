"""Playback API (BRIEF: HTTP API). Every id is resolved through accounts.tenancy:
another organisation's id is a 404, the same as one that does not exist."""
from __future__ import annotations

from datetime import datetime, timezone

from django.db.models import Q
from django.http import Http404, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST, require_safe

from accounts import tenancy
from accounts.permissions import EXPORT, MANAGE, VIEW
from recordings import alerts, constants, hls, media, params
from recordings.models import ClipExport, SegmentState
from recordings.pipeline import local_outputs

PLAYABLE = (SegmentState.READY, SegmentState.ARCHIVED)


def _bad_request(error: params.BadInput) -> JsonResponse:
    return JsonResponse({"error": str(error)}, status=400)


def _time_range(query, max_seconds: float) -> tuple[datetime, datetime]:
    return params.time_range(query, max_seconds, datetime.now(timezone.utc))


def overlapping(start: datetime, end: datetime, now: datetime) -> Q:
    """Segments overlapping [start, end). One still being recorded has no end yet: it lasts
    until now, so it belongs to no range that begins after now (tomorrow's timeline)."""
    ended_inside = Q(end__gt=start)
    if start < now:
        ended_inside |= Q(end__isnull=True)
    return Q(start__lt=end) & ended_inside


def _on_this_host(segment) -> bool:
    """Whether this host can serve the segment now: archived ones from storage, others from the
    spool of the host that recorded them (several hosts: only that one; a row without a host is
    from a single-host installation)."""
    return segment.state == SegmentState.ARCHIVED or segment.spool_host in ("", constants.host_name())


def _servable_here() -> Q:
    return Q(state=SegmentState.ARCHIVED) | Q(state=SegmentState.READY, spool_host__in=("", constants.host_name()))


def _segment_json(segment) -> dict:
    here = _on_this_host(segment)
    playable = segment.state in PLAYABLE and here
    return {
        "id": str(segment.id), "start": segment.start.isoformat(),
        "end": segment.end.isoformat() if segment.end else None, "duration": segment.duration,
        "state": segment.state, "frames": segment.frames, "corrupt_frames": segment.corrupt_frames,
        "codec": segment.codec, "has_audio": segment.has_audio, "held": segment.held,
        "checksum": segment.checksum or None,
        "failure_reason": segment.failure_reason or None,
        # ready on another host's spool: playable here once archived (seconds, normally)
        "archiving_elsewhere": segment.state == SegmentState.READY and not here,
        "poster_url": reverse("recordings:poster", args=[segment.id]) if playable else None,
        "strip_url": reverse("recordings:strip", args=[segment.id]) if playable else None,
        "media_url": reverse("recordings:video", args=[segment.id]) if playable else None,
    }


@require_GET
def segment_list(request, device_id):
    device = tenancy.get_or_404(tenancy.get_device_for, request.user, device_id, VIEW)
    try:
        start, end = _time_range(request.GET, constants.MAX_RANGE_HOURS * 3600)
    except params.BadInput as exc:
        return _bad_request(exc)
    segments = tenancy.segments_for(request.user, VIEW, device=device).filter(
        overlapping(start, end, datetime.now(timezone.utc))).order_by("start")[: constants.MAX_PLAYLIST_SEGMENTS]
    return JsonResponse({
        "segments": [_segment_json(s) for s in segments],
        "recording": {"policy": device.recording_policy, "degraded": alerts.recording_degraded(device.id)},
        "storage_alert": alerts.storage_alert(),
    })


@require_GET
def playlist(request, device_id):
    device = tenancy.get_or_404(tenancy.get_device_for, request.user, device_id, VIEW)
    try:
        start, end = _time_range(request.GET, constants.MAX_RANGE_HOURS * 3600)
    except params.BadInput as exc:
        return _bad_request(exc)
    # A segment only another host's spool holds would be a 503 in the middle of the playlist:
    # left out until it is archived (a player reloading the playlist then gets it).
    segments = tenancy.segments_for(request.user, VIEW, device=device).filter(
        _servable_here(), start__lt=end, end__gt=start, init_bytes__gt=0).order_by("start")
    entries = [hls.PlaylistEntry(url=reverse("recordings:video", args=[s.id]), start=s.start,
                                 duration=s.duration, size=s.bytes, init_bytes=s.init_bytes)
               for s in segments[: constants.MAX_PLAYLIST_SEGMENTS]]
    response = HttpResponse(hls.build_playlist(entries), content_type="application/vnd.apple.mpegurl")
    response["Cache-Control"] = "no-store"
    return response


def _serve_segment_file(request, segment_id, which: str, key_field: str, content_type: str):
    segment = tenancy.get_or_404(tenancy.get_segment_for, request.user, segment_id, VIEW)
    if segment.state == SegmentState.ARCHIVED and getattr(segment, key_field):
        return media.serve_stored(request, getattr(segment, key_field), content_type)
    if segment.state in (SegmentState.READY, SegmentState.TRANSCODING) and not _on_this_host(segment):
        response = JsonResponse({"error": "not archived yet: another host holds this segment; try again shortly"},
                                status=503)
        response["Retry-After"] = str(constants.NOT_HERE_RETRY_AFTER_SECONDS)
        return response
    if segment.state in (SegmentState.READY, SegmentState.TRANSCODING) and segment.spool_path:
        path = local_outputs(segment)[which]
        if path.exists():  # not archived yet: served from this host's spool
            return media.serve_local(request, path, content_type)
    raise Http404("Not available")


@require_safe
def video(request, segment_id):
    return _serve_segment_file(request, segment_id, "mp4", "storage_key", "video/mp4")


@require_safe
def poster(request, segment_id):
    return _serve_segment_file(request, segment_id, "poster", "poster_key", "image/jpeg")


@require_safe
def strip(request, segment_id):
    return _serve_segment_file(request, segment_id, "strip", "strip_key", "image/jpeg")


def _set_held(request, segment_id, held: bool):
    segment = tenancy.get_or_404(tenancy.get_segment_for, request.user, segment_id, MANAGE)
    type(segment).objects.filter(pk=segment.pk).update(held=held)
    return JsonResponse({"id": str(segment.id), "held": held})


@require_POST
def hold(request, segment_id):
    return _set_held(request, segment_id, True)


@require_POST
def release(request, segment_id):
    return _set_held(request, segment_id, False)


def _export_json(export) -> dict:
    done = export.state == "done"
    report = export.coverage or {}
    return {"id": str(export.id), "state": export.state, "progress": round(export.progress, 3),
            # While running: how many segments of the range it still waits for. When done: whether
            # the clip holds the whole range, and if not what it covers and lacks (and why).
            "waiting_for": report.get("waiting_for", 0) if not done else 0,
            "complete": report.get("complete") if done else None,
            "coverage": report or None,
            "start": export.start.isoformat(), "end": export.end.isoformat(),
            "checksum": export.checksum or None, "bytes": export.bytes if done else None,
            "failure_reason": export.failure_reason or None,
            "download_url": reverse("recordings:export-download", args=[export.id]) if done else None}


@require_POST
def create_export(request, device_id):
    from django.db import transaction

    from recordings.tasks import export_clip_task

    device = tenancy.get_or_404(tenancy.get_device_for, request.user, device_id, EXPORT)
    try:
        start, end = _time_range(params.json_object(request.body), constants.EXPORT_MAX_SECONDS)
    except params.BadInput as exc:
        return _bad_request(exc)
    export = ClipExport.objects.create(device=device, requested_by=request.user, start=start, end=end)
    transaction.on_commit(lambda: export_clip_task.delay(str(export.id)))
    return JsonResponse({"id": str(export.id), "status_url": reverse("recordings:export", args=[export.id])},
                        status=202)


def _export_for(user, export_id):
    devices = tenancy.devices_for(user, EXPORT).values("id")
    try:
        return ClipExport.objects.get(pk=export_id, device_id__in=devices)
    except Exception:  # missing, another organisation's, or a malformed id: all 404
        raise Http404("Not found") from None


@require_GET
def export_status(request, export_id):
    return JsonResponse(_export_json(_export_for(request.user, export_id)))


@require_GET
def export_download(request, export_id):
    export = _export_for(request.user, export_id)
    if export.state != "done" or not export.storage_key:
        raise Http404("Not ready")
    return media.serve_stored(request, export.storage_key, "video/mp4",
                              filename=f"sightline-{export.device_id}-{export.start:%Y%m%dT%H%M%SZ}.mp4")
