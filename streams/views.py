"""JSON for the device wall: GET /api/devices/ (session auth, tenant-scoped)."""
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from accounts.tenancy import devices_for, organisations_for
from streams import presence


@require_GET
def device_list(request):
    """Devices the user may view, in the organisation they are looking at (or ?organisation=<id>).

    Online state comes from Redis (live), falling back to the row's last_seen.
    """
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not authenticated"}, status=401)
    organisation = getattr(request, "organisation", None)
    wanted = request.GET.get("organisation")
    if wanted:
        try:
            organisation = organisations_for(request.user).filter(pk=wanted).first()
        except Exception:  # malformed id
            organisation = None
        if organisation is None:
            return JsonResponse({"error": "not found"}, status=404)
    devices = list(devices_for(request.user, organisation=organisation).filter(archived_at__isnull=True))
    live = presence.snapshot_sync(device.pk for device in devices)
    return JsonResponse(
        {"devices": [presence.device_summary(device, live.get(str(device.pk))) for device in devices]}
    )
