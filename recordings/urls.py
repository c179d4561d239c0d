from django.urls import path

from recordings import views

app_name = "recordings"

urlpatterns = [
    path("api/devices/<uuid:device_id>/segments/", views.segment_list, name="segments"),
    path("api/devices/<uuid:device_id>/playlist.m3u8", views.playlist, name="playlist"),
    path("api/devices/<uuid:device_id>/exports/", views.create_export, name="exports"),
    path("api/exports/<uuid:export_id>/", views.export_status, name="export"),
    path("api/exports/<uuid:export_id>/download", views.export_download, name="export-download"),
    path("api/segments/<uuid:segment_id>/hold", views.hold, name="hold"),
    path("api/segments/<uuid:segment_id>/release", views.release, name="release"),
    path("media/segments/<uuid:segment_id>/video.mp4", views.video, name="video"),
    path("media/segments/<uuid:segment_id>/poster.jpg", views.poster, name="poster"),
    path("media/segments/<uuid:segment_id>/strip.jpg", views.strip, name="strip"),
]
