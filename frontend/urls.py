from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views as account_views
from frontend import owner_views, views

app_name = "frontend"

urlpatterns = [
    path("", views.wall, name="wall"),
    path("login/", auth_views.LoginView.as_view(template_name="frontend/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("organisation/", views.switch_organisation, name="switch-organisation"),
    path("devices/<uuid:device_id>/", views.device_page, name="device"),
    path("devices/<uuid:device_id>/recordings/", views.recordings_page, name="recordings"),
    path("publish/", views.publish_page, name="publish"),
    # Owners: members, invitations, devices (frontend/owner_views.py).
    path("members/", owner_views.members_page, name="members"),
    path("members/invite/", owner_views.invite_member, name="invite-member"),
    path("members/<int:membership_id>/role/", owner_views.change_member_role, name="member-role"),
    path("members/<int:membership_id>/remove/", owner_views.remove_member, name="member-remove"),
    path("members/invitations/<int:invitation_id>/revoke/", owner_views.revoke_invitation, name="invitation-revoke"),
    path("devices/", owner_views.devices_page, name="devices"),
    path("devices/<uuid:device_id>/remove/", owner_views.remove_device, name="device-remove"),
    path("devices/<uuid:device_id>/restore/", owner_views.restore_device, name="device-restore"),
    # Anyone holding an invitation link (accounts/views.py).
    path("invite/<str:token>/", account_views.accept_invitation, name="accept-invitation"),
]
