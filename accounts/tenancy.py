"""The one tenant-scoped lookup. Every view, socket and media path goes through here.

Anything that names a device or a segment by id -- a page, a WebSocket, a
playlist, a media file, an export -- must resolve it with these functions, so
that an id from another organisation is indistinguishable from one that does
not exist (NotFound -> HTTP 404, WebSocket close 4404).
"""
from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Membership, Organisation
from accounts.permissions import roles_allowing


class NotFound(Exception):
    """Raised for ids that do not exist *or* that the user may not act on."""


def _memberships(user, action: str) -> QuerySet:
    if user is None or not user.is_authenticated or not user.is_active:
        return Membership.objects.none()
    return Membership.objects.filter(user=user, role__in=roles_allowing(action))


def organisations_for(user, action: str = "view") -> QuerySet:
    return Organisation.objects.filter(memberships__in=_memberships(user, action)).distinct()


def role_in(user, organisation) -> str | None:
    if user is None or not user.is_authenticated:
        return None
    membership = Membership.objects.filter(user=user, organisation=organisation).only("role").first()
    return membership.role if membership else None


def _device_filter(user, action: str, prefix: str = "") -> Q:
    """Q matching devices the user may act on: whole org, or granted devices if restricted."""
    memberships = _memberships(user, action)
    whole_org = memberships.filter(restricted_to_grants=False).values("organisation_id")
    granted = memberships.filter(restricted_to_grants=True).values("grants__device_id")
    return Q(**{f"{prefix}organisation_id__in": whole_org}) | Q(**{f"{prefix}id__in": granted})


def devices_for(user, action: str = "view", organisation=None) -> QuerySet:
    from streams.models import Device

    qs = Device.objects.filter(_device_filter(user, action))
    if organisation is not None:
        qs = qs.filter(organisation=organisation)
    return qs.select_related("organisation")


def get_device_for(user, device_id, action: str = "view"):
    try:
        return devices_for(user, action).get(pk=device_id)
    except Exception as exc:  # DoesNotExist, or a malformed UUID (ValidationError/ValueError)
        raise NotFound(f"device {device_id}") from exc


def segments_for(user, action: str = "view", device=None) -> QuerySet:
    from recordings.models import Segment

    devices = devices_for(user, action).values("id")
    qs = Segment.objects.filter(device_id__in=devices)
    if device is not None:
        qs = qs.filter(device=device)
    return qs.select_related("device", "device__organisation")


def get_segment_for(user, segment_id, action: str = "view"):
    try:
        return segments_for(user, action).get(pk=segment_id)
    except Exception as exc:
        raise NotFound(f"segment {segment_id}") from exc


def get_or_404(getter, *args, **kwargs):
    """Adapter for views: NotFound becomes Http404."""
    from django.http import Http404

    try:
        return getter(*args, **kwargs)
    except NotFound:
        raise Http404("Not found") from None


# -- members and invitations (owner pages) ------------------------------------------------------
def _managed(model, user, organisation, *related) -> QuerySet:
    """Rows of `model` in the organisations the user may manage (owners), optionally one of them."""
    qs = model.objects.filter(organisation__in=organisations_for(user, "manage"))
    if organisation is not None:
        qs = qs.filter(organisation=organisation)
    return qs.select_related(*related)


def _get_managed(queryset: QuerySet, pk, what: str):
    try:
        return queryset.get(pk=pk)
    except Exception as exc:  # DoesNotExist, or a malformed id: the same answer, no oracle
        raise NotFound(f"{what} {pk}") from exc


def memberships_for(user, organisation=None) -> QuerySet:
    """Memberships of the organisations the user may manage (owners), optionally one of them."""
    return _managed(Membership, user, organisation, "user", "organisation")


def get_membership_for(user, membership_id, organisation=None):
    return _get_managed(memberships_for(user, organisation), membership_id, "membership")


def invitations_for(user, organisation=None) -> QuerySet:
    from accounts.models import Invitation

    return _managed(Invitation, user, organisation, "organisation", "invited_by")


def get_invitation_for(user, invitation_id, organisation=None):
    return _get_managed(invitations_for(user, organisation), invitation_id, "invitation")
