"""JSON for the wall and third-party clients: GET /api/devices/ and GET /api/organisations/
(session auth, tenant-scoped)."""
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from accounts.models import Membership
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


@require_GET
def organisation_list(request):
    """The organisations the user is a member of, with their role: how a client that is not the
    portal learns the ids /ws/wall/<id>/ and ?organisation=<id> take (docs/protocol.md, section 2).
    `current` marks the one GET /api/devices/ answers for when no organisation is named."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not authenticated"}, status=401)
    organisations = list(organisations_for(request.user).order_by("name"))
    roles = dict(Membership.objects.filter(user=request.user, organisation__in=organisations)
                 .values_list("organisation_id", "role"))
    current = getattr(request, "organisation", None)
    return JsonResponse({"organisations": [
        {"id": str(org.pk), "name": org.name, "slug": org.slug, "role": roles.get(org.pk),
         "current": current is not None and org.pk == current.pk}
        for org in organisations
    ]})
