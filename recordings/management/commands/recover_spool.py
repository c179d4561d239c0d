"""Close and queue what a crashed recorder process on this host left in the spool.

Every recorder process runs it when it starts (`manage.py record`), and the
beat task recover_spool_task runs it every minute; this runs it by hand.
"""
from django.core.management.base import BaseCommand

from recordings import recovery


class Command(BaseCommand):
    help = "Recover half-written spool segments on this host and queue them for transcoding."

    def handle(self, *args, **options):
        report = recovery.recover_spool()
        self.stdout.write(" ".join(f"{k}={v}" for k, v in sorted(report.items())))
