"""Announce a change of a person's access, after it commits, so open sockets re-check it.

Any code path that changes access -- the admin, the portal's member pages, the
shell -- goes through the ORM, so these receivers see it: a membership created,
changed (role, restricted_to_grants) or deleted (also by cascade), a device grant
added or removed, a user deactivated or given a new password, a session logged
out. They send `access_changed` (user_id, session_key) once the transaction
commits; streams/signals.py relays it to the user's open sockets, which re-check
their access through accounts/tenancy.py and close with 4013 if it shrank.

Not seen: QuerySet.update() and raw SQL, which send no signals. Use save() or
delete() (or send access_changed yourself) when changing access in bulk.
"""
import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_init, post_save
from django.dispatch import Signal, receiver

from accounts.models import DeviceGrant, Membership

log = logging.getLogger(__name__)

# Sent after commit with user_id and session_key (None: every session of the user).
access_changed = Signal()

# User fields whose change can take access away (the password: sessions carry its hash).
_USER_ACCESS_FIELDS = ("is_active", "password")


def announce(user_id, session_key: str | None = None) -> None:
    """Send access_changed for user_id once the current transaction commits (at once outside one)."""
    if user_id is None:
        return

    def send():
        try:
            access_changed.send(sender=Membership, user_id=user_id, session_key=session_key)
        except Exception:  # a change of access must not fail because Redis is briefly away
            log.exception("could not announce the access change of user %s", user_id)

    transaction.on_commit(send)


@receiver(post_save, sender=Membership, dispatch_uid="accounts.membership_saved")
def membership_saved(sender, instance: Membership, **kwargs):
    announce(instance.user_id)


@receiver(post_delete, sender=Membership, dispatch_uid="accounts.membership_deleted")
def membership_deleted(sender, instance: Membership, **kwargs):
    announce(instance.user_id)


def _grant_user_id(grant: DeviceGrant):
    # In a cascade from the membership the grant's post_delete comes first, while the
    # membership row still exists; if it is gone, the membership's own signal covers it.
    return Membership.objects.filter(pk=grant.membership_id).values_list("user_id", flat=True).first()


@receiver(post_save, sender=DeviceGrant, dispatch_uid="accounts.grant_saved")
def grant_saved(sender, instance: DeviceGrant, **kwargs):
    # Also a new grant: an open wall then shows the device (nothing closes for a gain).
    announce(_grant_user_id(instance))


@receiver(post_delete, sender=DeviceGrant, dispatch_uid="accounts.grant_deleted")
def grant_deleted(sender, instance: DeviceGrant, **kwargs):
    announce(_grant_user_id(instance))


def _remember_access_fields(sender, instance, **kwargs):
    instance._sightline_access_fields = tuple(instance.__dict__.get(f) for f in _USER_ACCESS_FIELDS)


def _user_saved(sender, instance, created: bool, update_fields=None, **kwargs):
    now = tuple(instance.__dict__.get(f) for f in _USER_ACCESS_FIELDS)
    before = getattr(instance, "_sightline_access_fields", None)
    instance._sightline_access_fields = now
    if created or before is None or before == now:
        return
    announce(instance.pk)


def _user_logged_out(sender, request, user, **kwargs):
    if user is not None and getattr(request, "session", None) is not None:
        announce(user.pk, request.session.session_key)


def connect_user_signals() -> None:
    """Called from AccountsConfig.ready(): the user model is known only then."""
    user_model = get_user_model()
    post_init.connect(_remember_access_fields, sender=user_model, dispatch_uid="accounts.user_access_init")
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="accounts.user_access_saved")
    user_logged_out.connect(_user_logged_out, dispatch_uid="accounts.user_logged_out")
