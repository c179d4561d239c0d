"""Devices and their tokens in the admin, scoped to the user's organisations.

A device's token is shown exactly once: in the response to the request that
created it (a page rendered directly, never a redirect with a message, since
Django's messages may travel in a cookie). Nothing else stores the clear token.
Disabling a device, or revoking a token, disconnects a live device once the
change is committed.
"""
from __future__ import annotations

import logging
import uuid

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.text import slugify

from accounts.admin import TenantScopedAdmin, TenantScopedInline, organisation_filter, scoped_devices
from accounts.permissions import MANAGE, VIEW
from streams import connect_camera, control
from streams.models import Device, DeviceToken

logger = logging.getLogger(__name__)


def disconnect_after_commit(device_ids, reason: str) -> None:
    """Ask whichever server holds each device's socket to close it, once committed."""
    device_ids = list(device_ids)

    def send():
        for device_id in device_ids:
            try:
                control.disconnect_device(device_id, reason=reason)
            except Exception:  # the row is saved; a Redis outage must not turn that into a 500
                logger.warning("could not notify servers to disconnect device %s", device_id, exc_info=True)

    if device_ids:
        transaction.on_commit(send)


def device_socket_url(secure: bool, host: str) -> str:
    """The device endpoint as a camera must dial it: this portal's own host and port, ws or wss."""
    return f"{'wss' if secure else 'ws'}://{host}/ws/device/"


def token_file_name(device: Device) -> str:
    return f"{slugify(device.name) or 'device'}-{str(device.pk)[:8]}.token"


def token_page(request, title: str, issued: list[tuple[Device, str]]) -> TemplateResponse:
    """The one and only page that shows clear tokens; never cached.

    The device URL is built from this request (scheme, host and port as the browser
    reached the portal; behind a TLS proxy, SECURE_PROXY_SSL_HEADER makes it wss).
    """
    device_url = device_socket_url(request.is_secure(), request.get_host())
    response = TemplateResponse(
        request,
        "admin/streams/device/token_once.html",
        {
            **admin.site.each_context(request),
            "title": title,
            "issued": [(device, clear, token_file_name(device)) for device, clear in issued],
            "device_url": device_url,
            "connect": connect_camera.snippets(device_url, [(device.name, token_file_name(device))
                                                            for device, _ in issued]),
            "opts": Device._meta,
        },
    )
    add_never_cache_headers(response)
    return response


class TokenInlineForm(forms.ModelForm):
    revoke = forms.BooleanField(
        required=False, help_text="Revoke now: a device using this token is disconnected."
    )

    class Meta:
        model = DeviceToken
        fields = ["label"]

    def save(self, commit=True):
        token = super().save(commit)
        if self.cleaned_data.get("revoke") and token.active:
            token.revoke()
        return token


class DeviceTokenInline(TenantScopedInline):
    """Token metadata only: the digest is never shown or editable."""

    model = DeviceToken
    form = TokenInlineForm
    extra = 0
    can_delete = False  # revoked tokens stay, as a record of who could connect when
    fields = ["public_prefix", "label", "created_at", "last_used_at", "revoked_at", "revoke"]
    readonly_fields = ["public_prefix", "created_at", "last_used_at", "revoked_at"]

    def parent_organisation(self, obj):
        return obj.organisation

    def has_add_permission(self, request, obj=None):
        return False  # tokens are issued with the "Issue a new token" action, which shows them once

    @admin.display(description="token")
    def public_prefix(self, obj):
        return str(obj)


@admin.register(Device)
class DeviceAdmin(TenantScopedAdmin):
    list_display = [
        "name",
        "organisation",
        "is_online",
        "last_seen",
        "enabled",
        "recording_policy",
        "expected_media",
        "active_tokens",
    ]
    list_filter = [
        organisation_filter("organisation"),
        "online",
        "enabled",
        "recording_policy",
        "expected_media",
    ]
    search_fields = ["name", "location", "description", "organisation__name"]
    readonly_fields = ["id", "online", "last_seen", "created_at"]
    fieldsets = [
        (None, {"fields": ["organisation", "name", "description", "location", "expected_media", "enabled"]}),
        ("Recording", {"fields": ["recording_policy", "retention_days"]}),
        ("Stream settings (told to the device)", {"fields": ["brightness", "contrast", "fps", "width", "height", "extra_settings"]}),
        ("State", {"fields": ["id", "online", "last_seen", "created_at"]}),
    ]
    inlines = [DeviceTokenInline]
    actions = ["issue_token", "revoke_all_tokens", "enable_devices", "disable_devices"]

    def scoped_queryset(self, request):
        return scoped_devices(request, VIEW)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("organisation")
            .annotate(_active_tokens=Count("tokens", filter=Q(tokens__revoked_at__isnull=True)))
        )

    @admin.display(boolean=True, description="online", ordering="online")
    def is_online(self, obj):
        return obj.online

    @admin.display(description="active tokens")
    def active_tokens(self, obj):
        return obj._active_tokens

    # -- create: the first token is shown on the page that answers the save ---------------
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            clear, _ = obj.issue_token(label="created in the admin")
            request._sightline_issued = [(obj, clear)]
        # Unticking "enabled" here saves the row, and streams/signals.py
        # disconnects the device after commit.

    def response_add(self, request, obj, post_url_continue=None):
        issued = getattr(request, "_sightline_issued", None)
        if issued:
            return token_page(request, f"Device “{obj}” created: copy its token now", issued)
        return super().response_add(request, obj, post_url_continue)

    # -- removing: the portal asks what happens to the recordings ------------------------------
    def delete_view(self, request, object_id, extra_context=None):
        # Django's own delete would cascade to the segments rows (which owners may not
        # delete here) and leave their files behind; the portal page offers delete or archive.
        if not request.user.is_superuser:
            try:
                device_id = uuid.UUID(str(object_id))
            except ValueError:
                raise Http404("Not found") from None
            return HttpResponseRedirect(reverse("frontend:device-remove", args=[device_id]))
        return super().delete_view(request, object_id, extra_context)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("delete_selected", None)
        return actions

    # -- actions -------------------------------------------------------------------------------
    def has_manage_permission(self, request):
        return self.has_change_permission(request)

    def _manageable(self, request, queryset):
        """Actions act only on devices the user owns, even if others were selectable."""
        return queryset.filter(pk__in=scoped_devices(request, MANAGE).values("pk"))

    @admin.action(description="Issue a new token (the newest two stay active)", permissions=["manage"])
    def issue_token(self, request, queryset):
        issued = []
        for device in self._manageable(request, queryset):
            clear, _ = device.issue_token(label=f"issued in the admin by {request.user.get_username()}")
            issued.append((device, clear))
        if not issued:
            self.message_user(request, "No device you manage was selected.", messages.WARNING)
            return None
        return token_page(request, "New device tokens: copy them now", issued)

    @admin.action(description="Revoke all tokens (disconnects the devices)", permissions=["manage"])
    def revoke_all_tokens(self, request, queryset):
        tokens = DeviceToken.objects.filter(device__in=self._manageable(request, queryset), revoked_at__isnull=True)
        count = 0
        with transaction.atomic():
            for token in tokens.select_for_update():
                token.revoke()
                count += 1
        self.message_user(request, f"Revoked {count} token(s).")

    @admin.action(description="Enable selected devices", permissions=["manage"])
    def enable_devices(self, request, queryset):
        count = self._manageable(request, queryset).update(enabled=True)
        self.message_user(request, f"Enabled {count} device(s).")

    @admin.action(description="Disable selected devices (disconnects them)", permissions=["manage"])
    def disable_devices(self, request, queryset):
        devices = self._manageable(request, queryset)
        ids = list(devices.values_list("pk", flat=True))
        with transaction.atomic():
            # update() sends no post_save, so notify here what streams/signals.py would.
            Device.objects.filter(pk__in=ids).update(enabled=False)
            disconnect_after_commit(ids, "disabled")
        self.message_user(request, f"Disabled {len(ids)} device(s).")


@admin.register(DeviceToken)
class DeviceTokenAdmin(TenantScopedAdmin):
    organisation_path = "device__organisation"
    view_action = MANAGE  # credentials are the owners' business
    list_display = ["public_prefix", "device", "label", "created_at", "last_used_at", "revoked_at"]
    list_filter = [organisation_filter("device__organisation"), ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "label", "device__name"]
    fields = ["public_prefix", "device", "label", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke_tokens"]

    @admin.display(description="token", ordering="prefix")
    def public_prefix(self, obj):
        return str(obj)

    def has_add_permission(self, request):
        return False  # issued from the device list, where the token is shown once

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row records who could connect when

    def has_manage_permission(self, request):
        return self._may(request, MANAGE)

    @admin.action(description="Revoke selected tokens (disconnects devices using them)", permissions=["manage"])
    def revoke_tokens(self, request, queryset):
        count = 0
        with transaction.atomic():
            for token in queryset.filter(revoked_at__isnull=True).select_for_update():
                token.revoke()
                count += 1
        self.message_user(request, f"Revoked {count} token(s) at {timezone.now():%H:%M:%S} UTC.")
