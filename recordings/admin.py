"""Recordings in the admin: read-only, scoped to the user's organisations.

Segments and exports are written by the recorder and the Celery tasks; the admin
only lists them (holding and releasing are in the portal, see recordings/urls.py).
"""
from django.contrib import admin

from accounts import tenancy
from accounts.admin import TenantScopedAdmin, organisation_filter
from accounts.permissions import VIEW
from recordings.models import ClipExport, Segment


class ReadOnlyTenantAdmin(TenantScopedAdmin):
    organisation_path = "device__organisation"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Segment)
class SegmentAdmin(ReadOnlyTenantAdmin):
    list_display = ["device", "organisation", "start", "end", "seconds", "state", "codec", "has_audio", "frames", "bytes", "held"]
    list_filter = [
        organisation_filter("device__organisation"),
        ("device", admin.RelatedOnlyFieldListFilter),
        "state",
        "codec",
        "has_audio",
        "held",
    ]
    date_hierarchy = "start"
    search_fields = ["device__name", "storage_key", "checksum"]
    list_select_related = ["device", "device__organisation"]

    def scoped_queryset(self, request):
        return tenancy.segments_for(request.user, VIEW)

    @admin.display(description="organisation", ordering="device__organisation__name")
    def organisation(self, obj):
        return obj.device.organisation

    @admin.display(description="seconds")
    def seconds(self, obj):
        return round(obj.duration, 1)


@admin.register(ClipExport)
class ClipExportAdmin(ReadOnlyTenantAdmin):
    list_display = ["device", "requested_by", "start", "end", "state", "progress", "bytes", "created_at", "finished_at"]
    list_filter = [organisation_filter("device__organisation"), "state"]
    search_fields = ["device__name", "requested_by__username"]
    list_select_related = ["device", "requested_by"]

    def scoped_queryset(self, request):
        return ClipExport.objects.filter(device__in=tenancy.devices_for(request.user, VIEW))
