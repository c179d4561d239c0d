"""A throwaway Sightline installation for a benchmark run.

Everything lives in one temporary directory: a SQLite database (migrated here),
the var/spool directories, server logs. Redis keys use a unique CHANNEL_PREFIX /
CACHE_PREFIX and Celery a unique queue, so a run neither sees nor disturbs anyone
else's, and bench code deletes them at the end.

Setup runs the Django ORM in this (the orchestrating) process: the organisation,
the devices with their tokens (Device.issue_token), and a viewer user with a real
session (the cookie a logged-in browser would present).
"""
from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import REPO


@dataclass
class Installation:
    workdir: Path
    env: dict  # environment for every server process of this run
    prefix: str
    redis_url: str
    devices: list = field(default_factory=list)  # [(device_id str, clear token)]
    session_key: str = ""

    def redis_patterns(self) -> list[str]:
        queue = self.env["CELERY_QUEUE"]
        return [f"{self.prefix}*", f"*{self.prefix}*", queue, f"{queue}*", f"_kombu.binding.{queue}*"]


def create(workdir: Path, devices: int = 1, recording: bool = False, device_fps: int = 30,
           resolution: tuple[int, int] = (1280, 720)) -> Installation:
    prefix = f"bench{secrets.token_hex(4)}"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    var_dir = workdir / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SIGHTLINE_VAR_DIR": str(var_dir),
        "SPOOL_DIR": str(var_dir / "spool"),
        "MEDIA_ROOT": str(var_dir / "media"),
        "REDIS_URL": redis_url,
        "SIGHTLINE_NAMESPACE": prefix,  # kombu's and the results' keys under <prefix>:
        "CHANNEL_PREFIX": prefix,
        "CACHE_PREFIX": prefix,
        "CELERY_QUEUE": f"{prefix}-queue",
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
    }
    os.environ.update(env)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    install = Installation(workdir, env, prefix, redis_url)
    _populate(install, devices, recording, device_fps, resolution)
    return install


def _populate(install: Installation, count: int, recording: bool, fps: int, resolution: tuple[int, int]) -> None:
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

    from accounts.models import Membership, Organisation, Role
    from streams.models import Device, RecordingPolicy

    org = Organisation.objects.create(name="Bench", slug=install.prefix)
    for n in range(count):
        device = Device.objects.create(
            organisation=org, name=f"bench camera {n}", fps=fps, width=resolution[0], height=resolution[1],
            recording_policy=RecordingPolicy.CONTINUOUS if recording else RecordingPolicy.OFF,
        )
        token, _ = device.issue_token(label="bench")
        install.devices.append((str(device.pk), token))

    user = get_user_model().objects.create_user(username=f"viewer-{install.prefix}", password=secrets.token_urlsafe(16))
    Membership.objects.create(organisation=org, user=user, role=Role.VIEWER)
    # The same session a browser gets from the login form.
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    install.session_key = session.session_key


def set_recording(install: Installation, on: bool) -> None:
    from streams.models import Device, RecordingPolicy

    policy = RecordingPolicy.CONTINUOUS if on else RecordingPolicy.OFF
    Device.objects.filter(pk__in=[d for d, _ in install.devices]).update(recording_policy=policy)


def cookie_header(install: Installation) -> str:
    from django.conf import settings

    return f"{settings.SESSION_COOKIE_NAME}={install.session_key}"
