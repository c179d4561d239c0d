from django.urls import path

from streams.metrics import metrics_view
from streams.views import device_list, organisation_list

urlpatterns = [
    path("api/devices/", device_list, name="device-list"),
    path("api/organisations/", organisation_list, name="organisation-list"),
    path("metrics", metrics_view, name="metrics"),
]
