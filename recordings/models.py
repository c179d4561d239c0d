"""Recorded segments and clip exports. Behaviour lives in the plain modules beside this."""
import uuid

from django.db import models


class SegmentState(models.TextChoices):
    RECORDING = "recording", "Recording"  # being written to the spool
    CLOSED = "closed", "Closed"  # durable in the spool, waiting for transcode
    TRANSCODING = "transcoding", "Transcoding"
    READY = "ready", "Ready"  # playable MP4 + thumbnails exist
    ARCHIVED = "archived", "Archived"  # in long-term storage, spool cleaned
    FAILED = "failed", "Failed"


class Segment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey("streams.Device", on_delete=models.CASCADE, related_name="segments")
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField(null=True, blank=True)
    codec = models.CharField(max_length=16, help_text="Codec as recorded: jpeg or h264")
    has_audio = models.BooleanField(default=False)
    frames = models.PositiveIntegerField(default=0, help_text="Frames accepted into the segment")
    corrupt_frames = models.PositiveIntegerField(default=0, help_text="Frames skipped by the transcoder")
    bytes = models.BigIntegerField(default=0, help_text="Size of the playable file (or the spool while recording)")
    spool_path = models.CharField(max_length=500, blank=True, help_text="Raw segment on the ingest host")
    spool_host = models.CharField(max_length=200, blank=True)
    spool_queue = models.CharField(max_length=200, blank=True, help_text="Celery queue of the spool host's worker")
    storage_key = models.CharField(max_length=500, blank=True, help_text="Key of the MP4 in recordings storage")
    poster_key = models.CharField(max_length=500, blank=True)
    strip_key = models.CharField(max_length=500, blank=True)
    checksum = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the MP4")
    state = models.CharField(max_length=16, choices=SegmentState.choices, default=SegmentState.RECORDING)
    failure_reason = models.TextField(blank=True)
    held = models.BooleanField(default=False, help_text="Protected from retention")
    # Recorder bookkeeping (recordings/recorder.py).
    first_seq = models.BigIntegerField(null=True, blank=True)
    last_seq = models.BigIntegerField(null=True, blank=True)
    dropped_frames = models.PositiveIntegerField(default=0, help_text="Frames dropped for recording (queue full)")
    writer = models.CharField(max_length=200, blank=True, help_text="host:pid of the recorder writing the spool")
    # Task claim (recordings/pipeline.py): who is transcoding, since when.
    claim_token = models.CharField(max_length=64, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True, help_text="host:pid of the claiming worker")
    claimed_at = models.DateTimeField(null=True, blank=True)
    init_bytes = models.PositiveIntegerField(default=0, help_text="Size of ftyp+moov of the fMP4 (HLS EXT-X-MAP)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["device", "start"]
        indexes = [
            models.Index(fields=["device", "start"]),
            models.Index(fields=["state", "updated_at"]),
        ]

    def __str__(self):
        return f"{self.device} @ {self.start:%Y-%m-%d %H:%M:%S} ({self.state})"

    @property
    def duration(self) -> float:
        return (self.end - self.start).total_seconds() if self.end else 0.0


class ExportState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ClipExport(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey("streams.Device", on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()
    state = models.CharField(max_length=16, choices=ExportState.choices, default=ExportState.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0..1")
    storage_key = models.CharField(max_length=500, blank=True)
    checksum = models.CharField(max_length=64, blank=True)
    bytes = models.BigIntegerField(default=0)
    failure_reason = models.TextField(blank=True)
    # While waiting: {"waiting_for", "segments", "waited_seconds", "max_wait_seconds"}; when done,
    # what the clip covers of the range asked (recordings/coverage.py describe()).
    coverage = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
