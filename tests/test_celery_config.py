"""Celery settings the pipeline's safety depends on (docs/recording.md)."""
import subprocess
import sys

from django.conf import settings

from project.celery import app


def _our_tasks():
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.startswith(("recordings.", "streams."))}


def test_no_task_may_outlive_the_brokers_visibility_timeout():
    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for name, task in _our_tasks().items():
        limit = task.time_limit or settings.CELERY_TASK_TIME_LIMIT
        assert limit < timeout, f"{name}: time_limit {limit} s >= visibility timeout {timeout} s"


def test_pipeline_tasks_are_acknowledged_late_and_requeued_when_a_worker_dies():
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    for name in ("recordings.transcode_task", "recordings.thumbnails_task", "recordings.archive_task",
                 "recordings.export_clip_task"):
        task = _our_tasks()[name]
        assert task.acks_late and task.reject_on_worker_lost is not False, name
        assert task.soft_time_limit and task.soft_time_limit < task.time_limit, name


def test_every_scheduled_task_exists():
    tasks = _our_tasks()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in tasks, entry["task"]


def test_a_visibility_timeout_below_the_longest_task_is_refused_at_start():
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        capture_output=True, text=True, timeout=60,
        env={"DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "x", "CELERY_VISIBILITY_TIMEOUT": "300",
             "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0 and "CELERY_VISIBILITY_TIMEOUT" in done.stderr


def test_no_task_stores_its_result_in_redis():
    # Nothing reads a result; stored ones would pile up in Redis for CELERY_RESULT_EXPIRES.
    for name, task in _our_tasks().items():
        assert task.ignore_result, name


def test_archive_retries_outlast_a_storage_outage_of_minutes():
    """Each archive attempt fails within seconds while storage is down (S3 timeouts); the retries,
    with full jitter, must still span minutes on average, or a short outage exhausts them and leaves
    the segment `ready` until spool recovery (5 minutes)."""
    from recordings import tasks

    archive = tasks.archive_task
    assert archive.retry_backoff and archive.retry_jitter
    caps = [min(2 ** attempt, archive.retry_backoff_max) for attempt in range(archive.max_retries)]
    assert sum(caps) / 2 >= 300  # jitter draws each wait between 0 and its cap
