"""Run a recorder process: records every device of its shard that has recording on.

    python manage.py record                 # every device (one recorder, or standbys of it)
    python manage.py record --shard 0/2     # devices whose id starts with 0-7; another host runs 1/2

Several recorders with the same shard are hot standbys: one holds each
device's lease, another takes over within LEASE_SECONDS if it dies. SIGTERM or
Ctrl-C closes every open segment durably before exiting. See docs/recording.md.
"""
import asyncio
import signal

from django.core.management.base import BaseCommand, CommandError

from recordings import sessions
from recordings.service import RecorderService


class Command(BaseCommand):
    help = "Record the live streams of this shard's devices to the local spool (runs until SIGTERM)."

    def add_arguments(self, parser):
        parser.add_argument("--shard", default="0/1",
                            help="i/n: record shard i of n (n = 1, 2, 4, 8 or 16); default 0/1, every device")

    def handle(self, *args, **options):
        try:
            shard = sessions.parse_shard(options["shard"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        asyncio.run(self._run(shard))

    async def _run(self, shard):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        service = RecorderService(shard=shard)
        self.stdout.write(f"recorder {service.identity} recording shard {shard[0]}/{shard[1]}", ending="\n")
        self.stdout.flush()
        await service.run(stop)
