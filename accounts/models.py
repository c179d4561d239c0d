"""Tenancy: organisations, memberships with a role, optional per-device grants."""
import uuid

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"  # manages devices and members
    OPERATOR = "operator", "Operator"  # watches, controls devices, exports
    VIEWER = "viewer", "Viewer"  # watches and replays


class Organisation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    storage_quota_bytes = models.BigIntegerField(
        default=0, help_text="Recording quota across all devices; 0 means unlimited."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organisations"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    restricted_to_grants = models.BooleanField(
        default=False,
        help_text="If set, the member sees only the devices granted below, not the whole organisation.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "user"], name="one_membership_per_org"),
        ]

    def __str__(self):
        return f"{self.user} in {self.organisation} ({self.role})"


class DeviceGrant(models.Model):
    """Narrows a restricted membership to named devices."""

    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="grants")
    device = models.ForeignKey("streams.Device", on_delete=models.CASCADE, related_name="grants")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["membership", "device"], name="one_grant_per_device"),
        ]

    def __str__(self):
        return f"{self.membership.user} → {self.device}"


class Invitation(models.Model):
    """An owner's invitation of an email address to an organisation with a role.

    Only a SHA-256 digest of the link's token is stored (accounts/invites.py); the
    link works once (accepted_at) and until expires_at.
    """

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    token_digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organisation", "email"])]

    def __str__(self):
        return f"{self.email} to {self.organisation} ({self.role})"
