"""Owner pages of the portal: members and invitations, device management.

Only owners of the organisation being looked at reach them (others get 403); every
membership, invitation and device is resolved through accounts.tenancy, so an id of
another organisation is a 404 exactly like one that does not exist.
"""
from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import invites, members, tenancy
from accounts.models import Role
from accounts.permissions import MANAGE
from frontend.forms import DeviceRemovalForm, InviteForm, RoleForm
from recordings import removal

log = logging.getLogger(__name__)


def _owned_organisation(request):
    org = request.organisation
    if org is None or tenancy.role_in(request.user, org) != Role.OWNER:
        raise PermissionDenied("Only owners manage members and devices.")
    return org


def _to(name: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse(f"frontend:{name}"))


# -- members ------------------------------------------------------------------------------------
@login_required
def members_page(request, invite_form=None):
    org = _owned_organisation(request)
    memberships = tenancy.memberships_for(request.user, org).order_by("user__username")
    pending = tenancy.invitations_for(request.user, org).filter(
        accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
    return render(request, "frontend/members.html", {
        "memberships": memberships,
        "invitations": pending,
        "invite_form": invite_form or InviteForm(),
        "roles": Role.choices,
        "config": {"page": "members"},
    }, status=400 if invite_form is not None else 200)


@login_required
@require_POST
def invite_member(request):
    org = _owned_organisation(request)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return members_page(request, invite_form=form)
    email = form.cleaned_data["email"]
    try:
        invites.invite(
            organisation=org, email=email, role=form.cleaned_data["role"], invited_by=request.user,
            link_for=lambda token: request.build_absolute_uri(reverse("frontend:accept-invitation", args=[token])),
        )
    except Exception:
        log.exception("could not send an invitation email")
        messages.error(request, "The invitation email could not be sent; nothing was created. Try again later.")
        return _to("members")
    # The same words whether or not the address already has an account elsewhere.
    messages.success(request, f"Invitation sent to {invites.normalise_email(email)}.")
    return _to("members")


@login_required
@require_POST
def change_member_role(request, membership_id):
    org = _owned_organisation(request)
    membership = tenancy.get_or_404(tenancy.get_membership_for, request.user, membership_id, org)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
        return _to("members")
    try:
        members.change_role(membership, form.cleaned_data["role"])
    except members.LastOwner as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.get_username()} is now {membership.role}.")
    return _to("members")


@login_required
@require_POST
def remove_member(request, membership_id):
    org = _owned_organisation(request)
    membership = tenancy.get_or_404(tenancy.get_membership_for, request.user, membership_id, org)
    try:
        members.remove_member(membership)
    except members.LastOwner as exc:
        messages.error(request, str(exc))
        return _to("members")
    messages.success(request, f"{membership.user.get_username()} was removed from {org.name}.")
    if membership.user_id == request.user.pk:
        return _to("wall")
    return _to("members")


@login_required
@require_POST
def revoke_invitation(request, invitation_id):
    org = _owned_organisation(request)
    invitation = tenancy.get_or_404(tenancy.get_invitation_for, request.user, invitation_id, org)
    invites.revoke(invitation)
    messages.success(request, f"The invitation to {invitation.email} no longer works.")
    return _to("members")


# -- devices ------------------------------------------------------------------------------------
def _managed_devices(request, org):
    return tenancy.devices_for(request.user, MANAGE, organisation=org).filter(deletion_requested_at__isnull=True)


@login_required
def devices_page(request):
    org = _owned_organisation(request)
    devices = _managed_devices(request, org).annotate(recordings=Count("segments"), recorded_bytes=Sum("segments__bytes"))
    return render(request, "frontend/devices.html", {"devices": devices, "config": {"page": "devices"}})


def _removable(request, device_id):
    org = _owned_organisation(request)
    device = _managed_devices(request, org).filter(pk=device_id).first()
    if device is None:  # another organisation's, already being deleted, or no such device
        raise Http404("Not found")
    return device


@login_required
def remove_device(request, device_id):
    device = _removable(request, device_id)
    form = DeviceRemovalForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        if form.cleaned_data["recordings"] == DeviceRemovalForm.DELETE:
            from recordings.tasks import delete_device_task

            removal.request_deletion(device, lambda device_id: delete_device_task.delay(device_id))
            messages.success(request, f"“{device.name}” is removed; its recordings are being deleted.")
        else:
            removal.archive_device(device)
            messages.success(request, f"“{device.name}” is archived: hidden from the wall, recordings kept.")
        return _to("devices")
    stats = tenancy.segments_for(request.user, MANAGE, device=device).aggregate(count=Count("pk"), bytes=Sum("bytes"))
    return render(request, "frontend/device_remove.html", {
        "device": device, "form": form, "recordings": stats["count"], "recorded_bytes": stats["bytes"] or 0,
        "config": {"page": "device-remove"},
    }, status=400 if request.method == "POST" else 200)


@login_required
@require_POST
def restore_device(request, device_id):
    device = _removable(request, device_id)
    removal.restore_device(device)
    messages.success(request, f"“{device.name}” is back on the wall and enabled.")
    return _to("devices")
