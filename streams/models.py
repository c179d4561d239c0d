"""Devices and their credentials."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from sightline_agent import tokens

MAX_ACTIVE_TOKENS = 2  # so a token can be rotated without downtime


class MediaKind(models.TextChoices):
    JPEG = "jpeg", "JPEG images"
    H264 = "h264", "H.264 video"
    JPEG_AUDIO = "jpeg+audio", "JPEG images with audio"
    H264_AUDIO = "h264+audio", "H.264 video with audio"


class RecordingPolicy(models.TextChoices):
    OFF = "off", "Off"
    CONTINUOUS = "continuous", "Continuous"


class Device(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey("accounts.Organisation", on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    location = models.CharField(max_length=200, blank=True)
    expected_media = models.CharField(max_length=16, choices=MediaKind.choices, default=MediaKind.JPEG)
    enabled = models.BooleanField(default=True)
    recording_policy = models.CharField(
        max_length=16, choices=RecordingPolicy.choices, default=RecordingPolicy.CONTINUOUS
    )
    retention_days = models.PositiveIntegerField(default=7)
    # Presence is kept in Redis while live (streams/presence.py) and written
    # here on connect/disconnect and at most every few seconds, never per frame.
    online = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)
    # Settings the device is told in its welcome and by commands.
    brightness = models.IntegerField(default=0, help_text="-100..100")
    contrast = models.IntegerField(default=0, help_text="-100..100")
    fps = models.PositiveIntegerField(default=10)
    width = models.PositiveIntegerField(default=640)
    height = models.PositiveIntegerField(default=360)
    extra_settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Archived: disabled and hidden from the wall, recordings kept and replayable.
    archived_at = models.DateTimeField(null=True, blank=True)
    # The owner chose "remove with its recordings": hidden at once, and
    # recordings.removal deletes the files, then the row.
    deletion_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["organisation__name", "name"]
        indexes = [models.Index(fields=["organisation", "name"])]

    def __str__(self):
        return self.name

    @property
    def stream_settings(self) -> dict:
        return {
            "brightness": self.brightness,
            "contrast": self.contrast,
            "fps": self.fps,
            "resolution": f"{self.width}x{self.height}",
            **self.extra_settings,
        }

    # -- credentials -------------------------------------------------------
    def issue_token(self, label: str = "") -> tuple[str, "DeviceToken"]:
        """Create a token; returns the clear token (show it once) and the row.

        At most MAX_ACTIVE_TOKENS are active: issuing a third revokes the oldest,
        so rotation is issue-new, switch the camera, revoke-old.
        """
        with transaction.atomic():
            active = list(
                DeviceToken.objects.select_for_update()
                .filter(device=self, revoked_at__isnull=True)
                .order_by("created_at")
            )
            for old in active[: max(0, len(active) - MAX_ACTIVE_TOKENS + 1)]:
                old.revoke()
            clear, prefix, digest = tokens.generate()
            row = DeviceToken.objects.create(device=self, prefix=prefix, digest=digest, label=label)
        return clear, row


class DeviceToken(models.Model):
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=tokens.PREFIX_LEN, db_index=True)
    digest = models.CharField(max_length=64)
    label = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"sl_{self.prefix}_… ({'revoked' if self.revoked_at else 'active'})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def revoke(self):
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
            # Disconnect a live device using this token at once. robust: a Redis
            # outage is logged, and must not undo or fail the committed revocation.
            transaction.on_commit(lambda: _notify_revoked(self.device_id, self.pk), robust=True)


def _notify_revoked(device_id, token_id):
    from streams import control

    control.disconnect_device(device_id, reason="token_revoked", token_id=token_id)


class AuthResult(models.TextChoices):
    OK = "ok"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    DISABLED = "disabled"


def authenticate_token(token: str) -> tuple[str, DeviceToken | None]:
    """Resolve a presented token. Returns (AuthResult, token row or None).

    The digest comparison is constant time; a malformed or unknown token costs
    the same hashing work as a real one.
    """
    try:
        prefix = tokens.split(token)
    except tokens.MalformedToken:
        tokens.matches(token or "", "0" * 64)
        return AuthResult.MALFORMED, None
    candidates = list(DeviceToken.objects.filter(prefix=prefix).select_related("device", "device__organisation"))
    found = None
    for row in candidates:
        if tokens.matches(token, row.digest):
            found = row
    if not candidates:
        tokens.matches(token, "0" * 64)
    if found is None:
        return AuthResult.UNKNOWN, None
    if found.revoked_at is not None:
        return AuthResult.REVOKED, found
    if not found.device.enabled:
        return AuthResult.DISABLED, found
    DeviceToken.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
    return AuthResult.OK, found


class TalkSession(models.Model):
    """One operator talking to a device through its speaker (talk-back, streams/talkback.py):
    who, to which device, when it started and ended (null while talking or if the server died)."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="talk_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="talk_sessions")
    user_name = models.CharField(max_length=150, help_text="the name shown to others while talking")
    codec = models.CharField(max_length=16)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["device", "started_at"])]

    def __str__(self):
        return f"{self.user_name} → {self.device_id} at {self.started_at:%Y-%m-%d %H:%M:%S}"
