"""Find (and with --fix repair) disagreements between recordings storage and the database.

- files with no row: objects under the storage that no Segment or ClipExport names
  (--fix deletes them);
- rows with no file: archived segments whose MP4 is missing (--fix marks them
  failed with a reason, so the portal shows the gap instead of a broken player).

Walks the whole storage listing: run it off-peak on big archives.
"""
from django.core.management.base import BaseCommand

from recordings import reconcile


class Command(BaseCommand):
    help = "List storage files with no row and rows with no file; --fix repairs both."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="delete orphan files, mark file-less rows failed")

    def handle(self, *args, fix=False, **options):
        report = reconcile.reconcile(fix=fix)
        for key in report.orphan_files:
            self.stdout.write(f"file without row: {key}")
        for segment_id, key in report.missing_files:
            self.stdout.write(f"row without file: segment {segment_id} ({key})")
        verb = "repaired" if fix else "found"
        self.stdout.write(self.style.SUCCESS(
            f"{verb} {len(report.orphan_files)} files without rows, {len(report.missing_files)} rows without files"))
