"""Invitations by email: an owner invites an address with a role; the link sets a password once.

The owner learns nothing about accounts outside the organisation: inviting an address
that already has an account looks exactly like inviting a new one. Whoever opens the
link either sets a password for a new account (logged in at once), or -- if an account
with that address exists -- is asked to log in and then joins with that account.

The link carries a random token; only its SHA-256 digest is stored, so the database
alone cannot produce a working link. A link works once, until INVITE_MAX_AGE_HOURS,
and a newer invitation of the same address to the same organisation replaces it.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Invitation, Membership, Role

log = logging.getLogger(__name__)

OPEN, ACCEPTED, EXPIRED, REVOKED = "open", "accepted", "expired", "revoked"


class InvitationClosed(Exception):
    """The link was used, expired, replaced or never existed."""


class AccountExists(Exception):
    """An account with the invited address exists: its owner must log in to accept."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def max_age() -> timedelta:
    return timedelta(hours=settings.INVITE_MAX_AGE_HOURS)


def state_of(invitation: Invitation, now: datetime) -> str:
    """Pure: what a link to this invitation does now."""
    if invitation.accepted_at is not None:
        return ACCEPTED
    if invitation.revoked_at is not None:
        return REVOKED
    if now >= invitation.expires_at:
        return EXPIRED
    return OPEN


def normalise_email(email: str) -> str:
    local, _, domain = email.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


def existing_account(email: str):
    """The active account this address belongs to (by email, or an email used as username), or None."""
    users = get_user_model()._default_manager
    return users.filter(Q(email__iexact=email) | Q(username__iexact=email), is_active=True).order_by("pk").first()


def invite(*, organisation, email: str, role: str, invited_by, link_for) -> Invitation:
    """Create an invitation and email its link; `link_for(token)` builds the absolute URL.

    Earlier open invitations of the same address to the same organisation stop working.
    Raises OSError-like errors from the mail backend after deleting the new invitation.
    """
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}")
    email = normalise_email(email)
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        Invitation.objects.filter(
            organisation=organisation, email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now)
        invitation = Invitation.objects.create(
            organisation=organisation, email=email, role=role, token_digest=digest(token),
            invited_by=invited_by, expires_at=now + max_age(),
        )
    try:
        _send(invitation, link_for(token))
    except Exception:
        invitation.delete()  # a link nobody received must not stay valid
        raise
    return invitation


def _send(invitation: Invitation, link: str) -> None:
    inviter = invitation.invited_by.get_username() if invitation.invited_by else "An owner"
    body = (
        f"{inviter} invited you to join {invitation.organisation.name} on Sightline as {invitation.role}.\n\n"
        f"Open this link to accept (and set your password if you are new to Sightline):\n{link}\n\n"
        f"The link works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        "If you did not expect this, ignore this message.\n"
    )
    send_mail(f"Join {invitation.organisation.name} on Sightline", body, None, [invitation.email])
    log.info("invitation %s sent for organisation %s", invitation.pk, invitation.organisation_id)


def find(token: str) -> Invitation:
    """The open invitation of a link's token, or InvitationClosed (unknown, used, expired, replaced)."""
    invitation = (
        Invitation.objects.select_related("organisation").filter(token_digest=digest(token or "")).first()
    )
    if invitation is None or state_of(invitation, timezone.now()) != OPEN:
        raise InvitationClosed()
    return invitation


def _claim(invitation: Invitation) -> Invitation:
    """Lock the row and check it is still open (one acceptance, even with two clicks at once)."""
    row = Invitation.objects.select_for_update().filter(pk=invitation.pk).first()
    if row is None or state_of(row, timezone.now()) != OPEN:
        raise InvitationClosed()
    return row


def _join(row: Invitation, user) -> Membership:
    membership = Membership.objects.filter(organisation_id=row.organisation_id, user=user).first()
    if membership is None:  # an existing member keeps the role they have
        membership = Membership(organisation_id=row.organisation_id, user=user, role=row.role)
        membership.save()
    row.accepted_at = timezone.now()
    row.accepted_by = user
    row.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def accept_as(invitation: Invitation, user) -> Membership:
    """A logged-in person accepts: their account joins the organisation."""
    with transaction.atomic():
        return _join(_claim(invitation), user)


def accept_new(invitation: Invitation, password: str):
    """A new person accepts: an account named by the invited address, with this password."""
    with transaction.atomic():
        row = _claim(invitation)
        if existing_account(row.email) is not None:
            raise AccountExists()
        user = get_user_model()._default_manager.create_user(username=row.email, email=row.email, password=password)
        _join(row, user)
    return user


def revoke(invitation: Invitation) -> None:
    Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
