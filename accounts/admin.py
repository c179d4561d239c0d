"""Admin for organisations and members, and the tenant scoping every Sightline admin uses.

Superusers see everything. Staff who are not superusers see only rows of the
organisations they belong to (through accounts.tenancy, like every other view),
may change only where their role allows "manage" (owners), and can pick only
their own organisations and devices in foreign-key fields. Django's per-model
permissions are not used for them: the membership role is the permission.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.urls import reverse

from accounts import invites, tenancy
from accounts.members import LAST_OWNER_MESSAGE, is_last_owner
from accounts.models import DeviceGrant, Invitation, Membership, Organisation, Role
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
# Owners never name a user outside their organisation: new people are invited by email
# (InvitationAdmin below, or the portal's members page), which answers the same whether
# or not the address has an account. Only superusers add an existing login by username.
class MemberForm(forms.ModelForm):
    """An existing membership's person is fixed; a superuser adds one by username."""

    user = forms.CharField(label="Username", max_length=150)

    class Meta:
        model = Membership
        fields = ["user", "role", "restricted_to_grants"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["user"] = self.instance.user.get_username()
            self.fields["user"].disabled = True

    def clean_user(self):
        if self.instance.pk:
            return self.instance.user
        username = self.cleaned_data["user"].strip()
        user = get_user_model()._default_manager.filter(username=username, is_active=True).first()
        if user is None:
            # Reached by superusers only (owners may not add memberships by username).
            raise forms.ValidationError(f"No active user {username!r}.")
        return user

    def clean(self):
        cleaned = super().clean()
        # The inline checks the whole list at once (MembersFormSet); here, a
        # membership edited on its own page must not demote the last owner.
        if not isinstance(self, _InlineMemberForm) and self.instance.pk and is_last_owner(self.instance):
            if cleaned.get("role") != Role.OWNER or cleaned.get("organisation") != self.instance.organisation:
                raise forms.ValidationError(LAST_OWNER_MESSAGE)
        return cleaned


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

    def has_add_permission(self, request, obj=None):
        return _is_super(request)  # owners invite by email instead


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

    def has_add_permission(self, request):
        return _is_super(request)  # owners invite by email instead (Invitations)

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


class InvitationForm(forms.ModelForm):
    class Meta:
        model = Invitation
        fields = ["organisation", "email", "role"]

    email = forms.EmailField(max_length=150, help_text="They get a link that works once, for a limited time.")


@admin.register(Invitation)
class InvitationAdmin(TenantScopedAdmin):
    """Invite by email. The answer never depends on whether the address has an account."""

    form = InvitationForm
    view_action = MANAGE
    list_display = ["email", "organisation", "role", "state", "created_at", "expires_at", "accepted_at"]
    list_filter = [organisation_filter("organisation"), "role"]
    search_fields = ["email"]
    actions = ["revoke_invitations"]

    @admin.display(description="state")
    def state(self, obj):
        from django.utils import timezone

        return invites.state_of(obj, timezone.now())

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organisation", "email", "role"]
        return ["email", "organisation", "role", "invited_by", "created_at", "expires_at", "accepted_at",
                "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None):
        return False  # an invitation is sent, then accepted, expired or revoked; never edited

    def save_model(self, request, obj, form, change):
        if change:
            return
        created = invites.invite(
            organisation=form.cleaned_data["organisation"], email=form.cleaned_data["email"],
            role=form.cleaned_data["role"], invited_by=request.user,
            link_for=lambda token: request.build_absolute_uri(reverse("frontend:accept-invitation", args=[token])),
        )
        obj.pk = created.pk

    def save_related(self, request, form, formsets, change):
        pass

    def log_addition(self, request, obj, message):
        pass  # the admin log would point at a row; the invitation's own fields say who sent it

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"Invitation sent to {obj.email}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:accounts_invitation_changelist"))

    @admin.action(description="Cancel selected invitations", permissions=["delete"])
    def revoke_invitations(self, request, queryset):
        for invitation in queryset:
            invites.revoke(invitation)
        self.message_user(request, "The selected invitations no longer work.")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


admin.site.site_header = "Sightline administration"
admin.site.site_title = "Sightline admin"
admin.site.index_title = "Devices, recordings and organisations"
