"""Admin for organisations and members, and the tenant scoping every Sightline admin uses.

Superusers see everything. Staff who are not superusers see only rows of the
organisations they belong to (through accounts.tenancy, like every other view),
may change only where their role allows "manage" (owners), and can pick only
their own organisations and devices in foreign-key fields. Django's per-model
permissions are not used for them: the membership role is the permission.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet

from accounts import tenancy
from accounts.models import DeviceGrant, Membership, Organisation, Role
from accounts.permissions import MANAGE, VIEW


def _is_super(request) -> bool:
    return request.user.is_active and request.user.is_superuser


def scoped_organisations(request, action: str = VIEW) -> QuerySet:
    if _is_super(request):
        return Organisation.objects.all()
    return tenancy.organisations_for(request.user, action)


def scoped_devices(request, action: str = VIEW) -> QuerySet:
    from streams.models import Device

    if _is_super(request):
        return Device.objects.select_related("organisation")
    return tenancy.devices_for(request.user, action)


def organisation_filter(path: str):
    """A list filter on the organisation at `path` that offers only the user's organisations
    (Django's own related filter would list every organisation's name)."""

    class OrganisationFilter(admin.SimpleListFilter):
        title = "organisation"
        parameter_name = "organisation"

        def lookups(self, request, model_admin):
            return [(str(org.pk), org.name) for org in scoped_organisations(request)]

        def queryset(self, request, queryset):
            if self.value():
                return queryset.filter(**{path: self.value()})
            return queryset

    return OrganisationFilter


class TenantScopedAdmin(admin.ModelAdmin):
    """Scopes rows and permissions to the user's organisations.

    Subclasses set `organisation_path`, the lookup from the model to its
    organisation ("organisation", "device__organisation", ...), and may
    override `scoped_queryset` to use a tenancy helper directly.
    """

    organisation_path = "organisation"
    view_action = VIEW

    def scoped_queryset(self, request) -> QuerySet:
        return self.model._default_manager.filter(
            **{f"{self.organisation_path}__in": scoped_organisations(request, self.view_action)}
        )

    def get_queryset(self, request):
        if _is_super(request):
            return super().get_queryset(request)
        return self.scoped_queryset(request)

    def organisation_of(self, obj) -> Organisation:
        for part in self.organisation_path.split("__"):
            obj = getattr(obj, part)
        return obj

    # -- permissions: the membership role decides -------------------------------------
    def _may(self, request, action: str, obj=None) -> bool:
        if _is_super(request):
            return True
        if not (request.user.is_active and request.user.is_staff):
            return False
        allowed = scoped_organisations(request, action)
        if obj is None:
            return allowed.exists()
        return allowed.filter(pk=self.organisation_of(obj).pk).exists()

    def has_module_permission(self, request):
        return self._may(request, VIEW)

    def has_view_permission(self, request, obj=None):
        return self._may(request, self.view_action, obj)

    def has_change_permission(self, request, obj=None):
        return self._may(request, MANAGE, obj)

    def has_add_permission(self, request):
        return self._may(request, MANAGE)

    def has_delete_permission(self, request, obj=None):
        return self._may(request, MANAGE, obj)

    # -- choices: only what the user manages ----------------------------------------------
    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not _is_super(request):
            if db_field.related_model is Organisation:
                kwargs["queryset"] = scoped_organisations(request, MANAGE)
            elif db_field.related_model._meta.label == "streams.Device":
                kwargs["queryset"] = scoped_devices(request, MANAGE)
            elif db_field.related_model is Membership:
                kwargs["queryset"] = Membership.objects.filter(
                    organisation__in=scoped_organisations(request, MANAGE)
                ).select_related("user", "organisation")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class TenantScopedInline(admin.TabularInline):
    """Inline rows follow the parent's permissions (the parent is already scoped)."""

    def _may_manage(self, request, obj) -> bool:
        if _is_super(request):
            return True
        return obj is not None and request.user.is_staff and self.parent_admin_may_manage(request, obj)

    def parent_admin_may_manage(self, request, obj) -> bool:
        return scoped_organisations(request, MANAGE).filter(pk=self.parent_organisation(obj).pk).exists()

    def parent_organisation(self, obj):
        return obj

    def has_view_permission(self, request, obj=None):
        return request.user.is_staff

    def has_add_permission(self, request, obj=None):
        return self._may_manage(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._may_manage(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._may_manage(request, obj)


# -- organisations and members ---------------------------------------------------------------
class MemberForm(forms.ModelForm):
    """Members are named by username, so an owner never gets a list of every user."""

    user = forms.CharField(label="Username", max_length=150)

    class Meta:
        model = Membership
        fields = ["user", "role", "restricted_to_grants"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["user"] = self.instance.user.get_username()

    def clean_user(self):
        username = self.cleaned_data["user"].strip()
        user = get_user_model()._default_manager.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(
                f"No active user {username!r}. Ask an administrator to create the login first."
            )
        return user

    def clean(self):
        cleaned = super().clean()
        # The inline checks the whole list at once (MembersFormSet); here, a
        # membership edited on its own page must not demote the last owner.
        if not isinstance(self, _InlineMemberForm) and self.instance.pk and is_last_owner(self.instance):
            if cleaned.get("role") != Role.OWNER or cleaned.get("organisation") != self.instance.organisation:
                raise forms.ValidationError(LAST_OWNER_MESSAGE)
        return cleaned


LAST_OWNER_MESSAGE = "An organisation needs at least one owner: make someone else owner first."


def is_last_owner(membership) -> bool:
    if membership.role != Role.OWNER:
        return False
    others = Membership.objects.filter(organisation_id=membership.organisation_id, role=Role.OWNER)
    return not others.exclude(pk=membership.pk).exists()


class _InlineMemberForm(MemberForm):
    pass


class MembersFormSet(BaseInlineFormSet):
    """An organisation that has an owner keeps at least one, so nobody locks it out of its admin."""

    def clean(self):
        super().clean()
        organisation = self.instance
        if organisation._state.adding or not organisation.memberships.filter(role=Role.OWNER).exists():
            return
        owners = 0
        for form in self.forms:
            if not getattr(form, "cleaned_data", None) or (self.can_delete and self._should_delete_form(form)):
                continue
            owners += form.cleaned_data.get("role") == Role.OWNER
        if owners == 0:
            raise forms.ValidationError(LAST_OWNER_MESSAGE)


class MembershipInline(TenantScopedInline):
    model = Membership
    form = _InlineMemberForm
    formset = MembersFormSet
    extra = 0
    fields = ["user", "role", "restricted_to_grants", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Organisation)
class OrganisationAdmin(TenantScopedAdmin):
    list_display = ["name", "slug", "member_count", "device_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def scoped_queryset(self, request):
        return scoped_organisations(request, VIEW)

    def organisation_of(self, obj):
        return obj

    def has_add_permission(self, request):
        # New tenants are made by an administrator (or manage.py create_organisation).
        return _is_super(request)

    def has_delete_permission(self, request, obj=None):
        return _is_super(request)

    @admin.display(description="members")
    def member_count(self, obj):
        return obj.memberships.count()

    @admin.display(description="devices")
    def device_count(self, obj):
        return obj.devices.count()


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    form = MemberForm
    fields = ["user", "organisation", "role", "restricted_to_grants"]
    list_display = ["user", "organisation", "role", "restricted_to_grants", "created_at"]
    list_filter = [organisation_filter("organisation"), "role", "restricted_to_grants"]
    search_fields = ["user__username", "user__email", "organisation__name"]
    view_action = MANAGE  # who belongs where is the owners' business

    def has_delete_permission(self, request, obj=None):
        if obj is not None and is_last_owner(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        # Bulk delete could remove every owner at once; members are removed one by one.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class DeviceGrantForm(forms.ModelForm):
    class Meta:
        model = DeviceGrant
        fields = ["membership", "device"]

    def clean(self):
        cleaned = super().clean()
        membership, device = cleaned.get("membership"), cleaned.get("device")
        if membership and device and membership.organisation_id != device.organisation_id:
            raise forms.ValidationError("The device must belong to the member's organisation.")
        return cleaned


@admin.register(DeviceGrant)
class DeviceGrantAdmin(TenantScopedAdmin):
    form = DeviceGrantForm
    organisation_path = "membership__organisation"
    view_action = MANAGE
    list_display = ["membership", "device"]
    list_filter = [organisation_filter("membership__organisation")]
    search_fields = ["membership__user__username", "device__name"]


admin.site.site_header = "Sightline administration"
admin.site.site_title = "Sightline admin"
admin.site.index_title = "Devices, recordings and organisations"
