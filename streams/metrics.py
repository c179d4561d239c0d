"""Prometheus metrics of the live path, and the GET /metrics view.

Counters that would move once per frame per viewer are folded in once a second
by the hub (streams/broadcast.py), so the hot path only bumps plain integers.
Each server process exports its own numbers; scrape every process.
"""
from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

INGEST_FRAMES = Counter("sightline_ingest_frames_total", "Whole frames received from devices", ["device", "kind"])
INGEST_BYTES = Counter("sightline_ingest_bytes_total", "Payload bytes received from devices", ["device"])
INGEST_SEQ_GAPS = Counter("sightline_ingest_seq_gaps_total", "Frames missing by sequence number", ["device"])
CAPTURE_TO_SERVER = Histogram(
    "sightline_capture_to_server_seconds",
    "Capture timestamp to arrival at the ingesting server",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# From a whole frame read off the socket to its PUBLISH/hand-off answered by Redis: the
# server's own work per frame (parse, limits, one EVALSHA), without time spent queued
# before the server read it (bench/capacity.py reports it beside capture -> published).
INGEST_HANDLING = Histogram(
    "sightline_ingest_handling_seconds",
    "Whole frame read from the device socket to published (live + recording hand-off)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
DEVICES_CONNECTED = Gauge("sightline_devices_connected", "Device sockets open on this process")
VIEWERS = Gauge("sightline_viewers", "Viewer sockets open on this process", ["device"])
VIEWER_FRAMES_SENT = Counter("sightline_viewer_frames_sent_total", "Frames written to viewer sockets", ["device"])
VIEWER_FRAMES_DROPPED = Counter(
    "sightline_viewer_frames_dropped_total", "Frames a slow viewer skipped (latest wins)", ["device"]
)
CLOSES = Counter("sightline_socket_closes_total", "Sockets closed by the server, by code", ["endpoint", "code"])
AUTH_FAILURES = Counter("sightline_auth_failures_total", "Refused socket authentications", ["endpoint", "reason"])
KEYFRAME_REQUESTS = Counter(
    "sightline_keyframe_requests_total", "Keyframe requests for devices: sent to the device, or limited", ["outcome"]
)
COMMANDS = Counter("sightline_commands_total", "Commands from operators, by outcome", ["outcome"])


def _allowed(request) -> bool:
    # Superusers only: organisation owners are staff too, and the labels name
    # every organisation's devices.
    if request.user.is_authenticated and request.user.is_superuser:
        return True
    allowed = settings.SIGHTLINE.get("METRICS_ALLOWED_ADDRESSES", ["127.0.0.1", "::1"])
    return request.META.get("REMOTE_ADDR") in allowed


def metrics_view(request):
    """Prometheus text format, for scrapers on allowed addresses (METRICS_ALLOWED_ADDRESSES) or superusers."""
    if not _allowed(request):
        return HttpResponseForbidden("metrics are not available from this address")
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
