"""WebSocket routes. Device endpoints take a token (no Origin: cameras are not browsers);
browser endpoints take the session cookie and check Origin against ALLOWED_HOSTS.

Ids are matched as plain strings: a malformed id is refused by the tenant
lookup with 4404, exactly like another organisation's id."""
from channels.routing import URLRouter
from django.urls import path

from streams.consumers import DeviceConsumer, ViewerConsumer, WallConsumer

websocket_urlpatterns = [
    path("ws/device/", DeviceConsumer.as_asgi()),
    path("ws/publish/<str:device_id>/", DeviceConsumer.as_asgi()),
    path("ws/view/<str:device_id>/", ViewerConsumer.as_asgi()),
    path("ws/wall/<str:organisation_id>/", WallConsumer.as_asgi()),
]

websocket_application = URLRouter(websocket_urlpatterns)
