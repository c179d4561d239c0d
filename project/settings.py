"""Sightline settings. Everything is read from the environment (see .env.example).

Defaults give the embedded single-machine set-up: SQLite, local files under
./var, Redis on localhost. Production sets DATABASE_URL to PostgreSQL, REDIS_URL
to the shared Redis and STORAGE_BACKEND=s3.
"""
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from project.env import (
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_str,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SIGHTLINE_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Addresses of reverse proxies whose X-Forwarded-For/-Proto we believe (the ASGI
# server rewrites the client address only for these; see docs/deployment.md).
# Empty: forwarded headers are ignored and the peer address is the client.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])

INSTALLED_APPS = [
    "daphne",  # runserver serves ASGI (WebSocket) in development
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "accounts",
    "streams",
    "recordings",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.CurrentOrganisationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.organisations",
            ],
        },
    },
]

DATABASES = {"default": database_from_url("DATABASE_URL", f"sqlite:///{VAR_DIR / 'sightline.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (server, worker, beat) share the file: wait for locks
    # instead of failing, and let readers run beside the single writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")

# One layer message per device frame per process; RedisChannelLayer caps
# overload at the channel capacity (pub/sub layers queue without bound).
# socket_timeout=None: redis-py 8 otherwise drops idle consumers after ~5 s
# (django/channels_redis#422).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": env_str("CHANNEL_PREFIX", "sightline"),
            "capacity": 200,
            "expiry": 30,
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_PREFIX", "sightline"),
    }
}

# Celery: always a real broker. CELERY_EAGER=1 runs tasks inline, for a
# single-process try-out only, and says so loudly at start (project/celery.py).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "sightline")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_SOFT_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TIME_LIMIT", 660, minimum=1)
# Visibility timeout must exceed the longest task, or Redis redelivers a task
# that is still running. Tasks with their own time_limit (recordings/tasks.py:
# clip export, 960 s, is the longest) count too; tests/test_celery_config.py checks.
LONGEST_TASK_SECONDS = max(CELERY_TASK_TIME_LIMIT, 960)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", LONGEST_TASK_SECONDS + 600, minimum=1),
}
if CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= LONGEST_TASK_SECONDS:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT must exceed the longest task's time limit ({LONGEST_TASK_SECONDS} s), "
        "or Redis hands a running task to a second worker"
    )
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Keep Django's LOGGING (JSON lines) in workers instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# One beat scheduler (`celery -A project beat`): retention and spool recovery.
CELERY_BEAT_SCHEDULE = {
    "recordings-retention": {"task": "recordings.retention_task", "schedule": 300.0},
    "recordings-recover-spool": {"task": "recordings.recover_spool_task", "schedule": 60.0},
    # A server process that dies leaves its devices' rows online; Redis presence has expired.
    "streams-mark-stale-offline": {"task": "streams.mark_stale_devices_offline_task", "schedule": 60.0},
}

# Media: the spool is local to the host that ingests; archives go through
# Django's storage API (filesystem by default, S3-compatible when configured).
SPOOL_DIR = Path(env_str("SPOOL_DIR", str(VAR_DIR / "spool")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media-files/"  # never served directly; playback goes through tenant-checked views
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "filesystem")
if STORAGE_BACKEND not in {"filesystem", "s3"}:
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be 'filesystem' or 's3', got {STORAGE_BACKEND!r}")
if STORAGE_BACKEND == "s3":
    _recordings_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("S3_BUCKET", "sightline"),
            "endpoint_url": env_str("S3_ENDPOINT_URL", "") or None,
            "access_key": env_str("S3_ACCESS_KEY_ID", ""),
            "secret_key": env_str("S3_SECRET_ACCESS_KEY", ""),
            "region_name": env_str("S3_REGION", "us-east-1"),
            "querystring_auth": True,
            "querystring_expire": env_int("S3_URL_EXPIRY", 300, minimum=10),
            "file_overwrite": True,
            "default_acl": None,
        },
    }
else:
    _recordings_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT / "archive")},
    }
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    },
    "recordings": _recordings_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Structured logs: JSON lines in production, readable lines with DEBUG on.
LOG_FORMAT = env_str("LOG_FORMAT", "console" if DEBUG else "json")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_FORMAT not in {"json", "console"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'console', got {LOG_FORMAT!r}")
from project.logging import build_logging_config  # noqa: E402

LOGGING = build_logging_config(LOG_FORMAT, LOG_LEVEL)

# Sightline's own knobs: the live path and recording limits live in
# streams/limits.py and recordings/constants.py, overridable here.
_MAX_MESSAGE_BYTES = env_int("MAX_MESSAGE_BYTES", 1024 * 1024, minimum=1024)
_MAX_TEXT_BYTES = 64 * 1024  # streams.protocol.MAX_TEXT_BYTES (settings import no app module)
# The largest WebSocket message the ASGI server reads at all (uvicorn --ws-max-size, daphne
# --websocket-max-message-size, both from `manage.py ws_max_size`). Between the protocol's limits
# and this, a client gets 4006 with an error message; above it, the server's WebSocket layer
# closes with 1009 and no message (docs/protocol.md, sections 7 and 8).
_WS_MAX_SIZE_BYTES = env_int("WS_MAX_SIZE_BYTES", 2 * max(_MAX_MESSAGE_BYTES, _MAX_TEXT_BYTES))
if _WS_MAX_SIZE_BYTES <= max(_MAX_MESSAGE_BYTES, _MAX_TEXT_BYTES):
    raise ImproperlyConfigured(
        f"WS_MAX_SIZE_BYTES ({_WS_MAX_SIZE_BYTES}) must exceed MAX_MESSAGE_BYTES ({_MAX_MESSAGE_BYTES}) and "
        f"the {_MAX_TEXT_BYTES}-byte text limit, or clients get 1009 instead of the documented 4006"
    )
SIGHTLINE = {
    "MAX_FRAME_BYTES": env_int("MAX_FRAME_BYTES", 4 * 1024 * 1024, minimum=1024),
    "MAX_MESSAGE_BYTES": _MAX_MESSAGE_BYTES,
    "WS_MAX_SIZE_BYTES": _WS_MAX_SIZE_BYTES,
    "MAX_FPS": env_int("MAX_FPS", 60, minimum=1),
    "MAX_BYTES_PER_SECOND": env_int("MAX_BYTES_PER_SECOND", 8 * 1024 * 1024, minimum=1024),
    "HEARTBEAT_SECONDS": env_int("HEARTBEAT_SECONDS", 10, minimum=1),
    "DEAD_AFTER_SECONDS": env_int("DEAD_AFTER_SECONDS", 30, minimum=2),
    "COMMAND_TIMEOUT_SECONDS": env_int("COMMAND_TIMEOUT_SECONDS", 5, minimum=1),
    "SEGMENT_SECONDS": env_int("SEGMENT_SECONDS", 10, minimum=1),
    # Queue for tasks that read an ingest host's local spool (docs/recording.md); "" = default queue.
    "SPOOL_QUEUE": env_str("SPOOL_QUEUE", ""),
    "FREE_DISK_WATERMARK_BYTES": env_int("FREE_DISK_WATERMARK_BYTES", 2 * 1024**3, minimum=0),
    # Who may scrape GET /metrics besides staff users (streams/metrics.py).
    "METRICS_ALLOWED_ADDRESSES": env_list("METRICS_ALLOWED_ADDRESSES", ["127.0.0.1", "::1"]),
}
