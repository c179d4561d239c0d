"""Run a WebRTC process: aiortc peers for viewers, fed by the frames the ingest publishes.

    python manage.py webrtc                  # WEBRTC_MAX_PEERS peers, WEBRTC_ICE_SERVERS from settings
    python manage.py webrtc --max-peers 20
    WEBRTC_PORT_MIN=50000 WEBRTC_PORT_MAX=50199 python manage.py webrtc   # UDP only in that range

Several processes may run (on one host or several): each offer goes to whichever reads
it first from the shared queue, and a full process refuses with "busy". SIGTERM or
Ctrl-C says bye to every viewer (their players fall back at once) before exiting.
See docs/deployment.md, "WebRTC".
"""
import asyncio
import logging
import signal

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand

from streams.broadcast import aclose_loop_resources
from streams.webrtc_peer import PeerService
from streams.webrtc_ports import loop_factory


class Command(BaseCommand):
    help = "Serve live H.264 to WebRTC viewers without re-encoding (runs until SIGTERM)."

    def add_arguments(self, parser):
        parser.add_argument("--max-peers", type=int, default=None,
                            help="peers this process serves (default: WEBRTC_MAX_PEERS)")

    def handle(self, *args, **options):
        logging.getLogger("aioice").setLevel(logging.WARNING)  # a line per candidate pair otherwise
        conf = settings.SIGHTLINE
        max_peers = options["max_peers"] or conf.get("WEBRTC_MAX_PEERS", 50)
        # WEBRTC_PORT_MIN/MAX: the peers' UDP sockets are bound in that range by the event loop.
        with asyncio.Runner(loop_factory=loop_factory(conf.get("WEBRTC_PORT_RANGE"))) as runner:
            runner.run(self._run(max_peers, conf.get("WEBRTC_ICE_SERVERS", [])))

    async def _run(self, max_peers, ice_servers):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        service = PeerService(get_channel_layer(), max_peers, ice_servers)

        def ready():  # printed once the heartbeat is in Redis: offers from then on are answered
            self.stdout.write(f"webrtc {service.identity} serving up to {max_peers} peers", ending="\n")
            self.stdout.flush()

        try:
            await service.run(stop, ready)
        finally:
            await aclose_loop_resources()
