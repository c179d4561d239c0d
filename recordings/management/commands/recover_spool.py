"""Close and queue what a crashed ingest process on this host left in the spool.

Run it when an ingest host starts (the first recorder of a process also runs
it, and the beat task recover_spool_task runs it every minute).
"""
from django.core.management.base import BaseCommand

from recordings import recovery


class Command(BaseCommand):
    help = "Recover half-written spool segments on this host and queue them for transcoding."

    def handle(self, *args, **options):
        report = recovery.recover_spool()
        self.stdout.write(" ".join(f"{k}={v}" for k, v in sorted(report.items())))
