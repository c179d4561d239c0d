"""Portal pages. Every device is resolved through accounts.tenancy, so a device of
another organisation is a 404 exactly like a device that does not exist; what a
role may do decides which controls are rendered at all (not merely hidden)."""
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.middleware import SESSION_KEY
from accounts.permissions import CONTROL, EXPORT, role_allows
from accounts.tenancy import devices_for, get_device_for, get_or_404, role_in
from frontend.forms import OrganisationSwitchForm


def _device_card(device) -> dict:
    """What the pages' scripts need to know about a device (no secrets)."""
    return {
        "id": str(device.id),
        "name": device.name,
        "location": device.location,
        "online": device.online,
        "last_seen": device.last_seen.isoformat() if device.last_seen else None,
        "expected_media": device.expected_media,
        "settings": device.stream_settings,
    }


def _with_live_presence(devices) -> list[dict]:
    """Device cards whose online/last_seen come from live presence (Redis), not the row's
    flag, which is written only every half minute and may be stale."""
    from streams import presence

    live = presence.snapshot_sync([d.pk for d in devices]) if devices else {}
    cards = []
    for device in devices:
        card = _device_card(device)
        card["online"], card["last_seen"] = presence.merge_with_row(device, live.get(str(device.pk)))
        cards.append(card)
    return cards


def _may(user, device, action: str) -> bool:
    """True if the user may perform action on this device (grants respected)."""
    return devices_for(user, action).filter(pk=device.pk).exists()


@login_required
def wall(request):
    org = request.organisation
    # Archived devices keep their recordings but leave the wall.
    devices = list(devices_for(request.user, "view", organisation=org).filter(archived_at__isnull=True)) if org else []
    role = role_in(request.user, org) if org else None
    config = {
        "organisationId": str(org.id) if org else None,
        "devices": [_device_card(d) for d in devices],
        # Named explicitly: another tab may switch the session's organisation meanwhile.
        "devicesUrl": f"/api/devices/?organisation={org.id}" if org else None,
        "deviceUrlTemplate": reverse("frontend:device", args=["00000000-0000-0000-0000-000000000000"]),
    }
    return render(request, "frontend/wall.html", {
        "devices": devices,
        "config": config,
        "can_publish": role_allows(role, CONTROL),
    })


@login_required
def device_page(request, device_id):
    device = get_or_404(get_device_for, request.user, device_id, "view")
    can_control = _may(request.user, device, CONTROL)
    card = _with_live_presence([device])[0]
    config = {
        "device": card,
        "canControl": can_control,
        "recordingsUrl": reverse("frontend:recordings", args=[device.id]),
    }
    return render(request, "frontend/device.html", {
        "device": device,
        "online": card["online"],
        "can_control": can_control,
        "role": role_in(request.user, device.organisation),
        "config": config,
        "resolutions": RESOLUTIONS,
    })


@login_required
def recordings_page(request, device_id):
    device = get_or_404(get_device_for, request.user, device_id, "view")
    can_export = _may(request.user, device, EXPORT)
    config = {
        "device": _device_card(device),
        "canExport": can_export,
        "segmentsUrl": f"/api/devices/{device.id}/segments/",
        "playlistUrl": f"/api/devices/{device.id}/playlist.m3u8",
        "exportsUrl": f"/api/devices/{device.id}/exports/" if can_export else None,
        "date": request.GET.get("date") or None,
    }
    return render(request, "frontend/recordings.html", {
        "device": device,
        "can_export": can_export,
        "config": config,
    })


@login_required
def publish_page(request):
    org = request.organisation
    devices = list(devices_for(request.user, CONTROL, organisation=org).filter(archived_at__isnull=True)) if org else []
    chosen = request.GET.get("device")
    cards = _with_live_presence(devices)
    config = {
        "devices": cards,
        # A camera streaming now is never preselected: publishing to it would take it over.
        "selected": next((c["id"] for c in cards if c["id"] == chosen and not c["online"]), None),
    }
    return render(request, "frontend/publish.html", {
        "devices": cards,
        "config": config,
    })


@login_required
@require_POST
def switch_organisation(request):
    form = OrganisationSwitchForm(request.user, request.POST)
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("frontend:wall")
    if not form.is_valid():
        # Not one of the user's organisations: same answer as for a missing one.
        from django.http import Http404

        raise Http404("Not found")
    request.session[SESSION_KEY] = str(form.cleaned_data["organisation"].pk)
    return HttpResponseRedirect(target)


RESOLUTIONS = ["320x180", "640x360", "960x540", "1280x720", "1920x1080"]
