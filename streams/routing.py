"""WebSocket routes. Device endpoints take a token (no Origin: cameras are not browsers);
browser endpoints take the session cookie and check Origin against ALLOWED_HOSTS."""
from channels.routing import URLRouter

websocket_urlpatterns = []

websocket_application = URLRouter(websocket_urlpatterns)
