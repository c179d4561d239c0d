from django.contrib import admin
from django.urls import include, path

from project.health import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health, name="health"),
    path("", include("recordings.urls")),
    path("", include("streams.urls")),
    path("", include("frontend.urls")),
]
