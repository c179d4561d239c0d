from django.contrib.auth import views as auth_views
from django.urls import path

from frontend import views

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
]
