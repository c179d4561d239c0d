"""Paths, limits and durations of the recording pipeline, in one place.

Values that operators tune come from settings.SIGHTLINE (environment); the
rest are design constants documented in docs/recording.md.
"""
from __future__ import annotations

import socket
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings

# -- segments and the spool ----------------------------------------------------
PART_SECONDS = 1.0  # flush + fsync period: the most a crash of the ingest can lose
MAX_SEGMENT_FACTOR = 3  # an H.264 segment without a keyframe is cut anyway at 3 x SEGMENT_SECONDS
IDLE_CUT_SECONDS_FACTOR = 1.0  # no frame for a segment length -> close what we have
QUEUE_MAX_FRAMES = 300  # recorder hand-off queue; beyond this frames are dropped for recording only
WRITER_POLL_SECONDS = 0.2  # writer thread wakes this often and writes what has queued, in one batch
SPOOL_SUFFIX = ".spool"
MP4_SUFFIX = ".mp4"
POSTER_SUFFIX = ".poster.jpg"
STRIP_SUFFIX = ".strip.jpg"
MAX_CLOCK_SKEW_SECONDS = 300  # a camera clock further off than this is replaced by receive time for wall times
DEGRADED_RETRY_SECONDS = 10.0  # after a disk error, try the spool again this often
SPOOL_FULL_PROBE_SECONDS = 1.0  # spool disk full: probe its free space this often (the frames wait meanwhile)

# -- transcode ------------------------------------------------------------------
VIDEO_TIME_BASE = 90_000  # ticks per second for MP4 video timestamps
KEYFRAME_INTERVAL_SECONDS = 1.0  # forced IDR about every second, so HLS seeks are precise
# The bench compares the ffmpeg CLI with the same options. No B-frames: pts
# then start at 0 in the fMP4 (no composition offset for HLS/PROGRAM-DATE-TIME
# to disagree with) and clips join by plain remux, like camera H.264.
# preset and crf are settings (TRANSCODE_X264_PRESET / TRANSCODE_X264_CRF, and the x264
# thread count TRANSCODE_THREADS); these are their defaults. superfast: ~5 cameras at 720p
# 15 fps per worker core where veryfast keeps only ~4 (bench/capacity.py, docs/deployment.md).
X264_OPTIONS = {"preset": "superfast", "crf": "23", "bf": "0"}
# Fragmented MP4: moov (empty) at the front, one fragment per keyframe. Plays
# progressively in <video> and as an HLS fMP4 segment (EXT-X-MAP + BYTERANGE).
MP4_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
AUDIO_BITRATE = 64_000

# -- thumbnails -----------------------------------------------------------------
POSTER_MAX_WIDTH = 640
STRIP_FRAMES = 10
STRIP_FRAME_HEIGHT = 54
JPEG_QUALITY = 80

# -- tasks -----------------------------------------------------------------------
CLAIM_LEASE_MARGIN_SECONDS = 60  # a claim older than the hard time limit + this is abandoned
RETRY_BACKOFF_MAX_SECONDS = 300
# Sending a chain's next step from the worker while Redis is down: waits 0.5, 1, 1.5, then 2 s
# between tries, 30 tries (about a minute), then gives up to spool recovery (recovery.py).
CHAIN_PUBLISH_RETRY_POLICY = {"max_retries": 30, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}
MAX_RETRIES = 5
# Archive attempts fail within seconds when storage is down (S3 timeouts, settings.py), so 5
# retries could all pass within a 10 s outage; 10 span about 7 minutes on average (jittered).
ARCHIVE_MAX_RETRIES = 10

# -- retention -------------------------------------------------------------------
DELETE_BATCH_SIZE = 200  # rows (and their files) deleted per batch, one transaction each
RETENTION_MAX_BATCHES = 50  # per run; the next beat run continues
# A removed device's recordings still in the pipeline: look again this often, this many times (6 h).
DEVICE_DELETE_RETRY_SECONDS = 60
DEVICE_DELETE_MAX_RETRIES = 360
RETENTION_INTERVAL_SECONDS = 300
RECOVERY_INTERVAL_SECONDS = 60
STORAGE_ALERT_CACHE_KEY = "recordings:storage-alert"
STORAGE_ALERT_TTL_SECONDS = 3600

# -- playback --------------------------------------------------------------------
MAX_PLAYLIST_SEGMENTS = 2000
MAX_RANGE_HOURS = 24  # list/playlist/export ranges are capped at a day
MEDIA_CHUNK_BYTES = 64 * 1024


def segment_seconds() -> float:
    return float(settings.SIGHTLINE.get("SEGMENT_SECONDS", 10))


def max_segment_seconds() -> float:
    return segment_seconds() * MAX_SEGMENT_FACTOR


def free_disk_watermark_bytes() -> int:
    return int(settings.SIGHTLINE.get("FREE_DISK_WATERMARK_BYTES", 0))


def spool_pause_bytes() -> int:
    """Below this much free spool disk the recorder pauses (live goes on).

    Half the retention watermark: retention keeps free space at the watermark,
    so recording pauses only when retention cannot keep up (everything held,
    or an archive backlog while storage is unreachable).
    """
    return free_disk_watermark_bytes() // 2


DISK_CHECK_SECONDS = 5.0  # the recorder re-reads free disk space at most this often


def spool_root() -> Path:
    return Path(settings.SPOOL_DIR)


# A segment ready on another host's spool is archived within seconds normally (docs/recording.md).
NOT_HERE_RETRY_AFTER_SECONDS = 5


def host_name() -> str:
    return socket.gethostname()


def spool_queue() -> str:
    """Queue for tasks that read the spool: they must run on the ingest host.

    Single host: the default queue. Several ingest hosts: set
    SIGHTLINE["SPOOL_QUEUE"] (env SPOOL_QUEUE) per host, e.g. spool.<hostname>,
    and run one worker per ingest host consuming it (docs/recording.md).
    """
    return settings.SIGHTLINE.get("SPOOL_QUEUE") or settings.CELERY_TASK_DEFAULT_QUEUE


def dated_relpath(organisation_id, device_id, start: datetime, name: str) -> str:
    """`<org>/<device>/%Y-%m-%d/%H/<name>` with the date and hour in UTC."""
    utc = start.astimezone(timezone.utc)
    return f"{organisation_id}/{device_id}/{utc:%Y-%m-%d}/{utc:%H}/{name}"


def spool_path_for(organisation_id, device_id, start: datetime, segment_id) -> Path:
    return spool_root() / dated_relpath(organisation_id, device_id, start, f"{segment_id}{SPOOL_SUFFIX}")


def storage_key_for(segment, suffix: str) -> str:
    return dated_relpath(segment.device.organisation_id, segment.device_id, segment.start, f"{segment.id}{suffix}")
EXPORT_MAX_SECONDS = 3600  # one clip export covers at most an hour
EXPORT_POLL_SECONDS = 2.0  # while an export waits for pending segments, it looks again this often


def export_wait_seconds() -> float:
    """How long an export waits for the segments of its range still being recorded or
    transcoded before it exports what is ready and says what it lacks."""
    return float(settings.SIGHTLINE.get("EXPORT_WAIT_SECONDS", 120))
