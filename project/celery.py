"""Celery application, configured from Django settings (CELERY_* names)."""
import os
import sys

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("sightline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

if app.conf.task_always_eager:
    print(
        "WARNING: CELERY_EAGER=1 -- tasks run inline in the web process. "
        "Fine for a try-out; run a real worker with Redis for anything else.",
        file=sys.stderr,
    )
