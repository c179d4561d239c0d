"""Print the largest WebSocket message the ASGI server should read (settings.SIGHTLINE["WS_MAX_SIZE_BYTES"]).

scripts/run and the Docker image pass it to uvicorn (`--ws-max-size "$(python manage.py ws_max_size)"`),
so the server's WebSocket layer and the limits told in the welcome come from the same settings.
"""
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print WS_MAX_SIZE_BYTES: the value for uvicorn --ws-max-size / daphne --websocket-max-message-size."

    def handle(self, *args, **options):
        self.stdout.write(str(settings.SIGHTLINE["WS_MAX_SIZE_BYTES"]))
