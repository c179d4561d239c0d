"""Sightline settings. Everything is read from the environment (see .env.example).

Defaults give the embedded single-machine set-up: SQLite, local files under
./var, Redis on localhost. Production sets DATABASE_URL to PostgreSQL, REDIS_URL
to the shared Redis and STORAGE_BACKEND=s3.
"""
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from project import namespace
from streams.signalling import parse_ice_servers  # noqa: E402  (pure: no models)
from streams.webrtc_ports import parse_port_range  # noqa: E402  (pure: no models)
from project.env import (
    csp_sources,
    database_from_url,
    env_bool,
    env_float,
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
    "axes",  # login limits per account and per address
    "accounts",
    "streams",
    "recordings",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "project.security.SecureCookiesOverTLS",  # outside session/CSRF: sees the cookies they set
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.CurrentOrganisationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the login page's message
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
else:
    # libpq waits for the OS's TCP timeout (minutes) on a database host that drops packets; the
    # recorder retries owed segment rows from its writer thread, which must not hang that long.
    # A `connect_timeout` in DATABASE_URL's query string wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT_SECONDS", 5, minimum=1))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
# Every Redis name of this installation derives from its namespace (generated at
# first start in VAR_DIR/namespace, or SIGHTLINE_NAMESPACE), so installations
# sharing one Redis never see each other's tasks, frames or presence
# (project/namespace.py; docs/deployment.md, "Redis namespace").
# CHANNEL_PREFIX, CACHE_PREFIX and CELERY_QUEUE still override their name.
REDIS_NAMES = namespace.redis_names(VAR_DIR)
SIGHTLINE_NAMESPACE = REDIS_NAMES.namespace

# One layer message per device frame per process; RedisChannelLayer caps
# overload at the channel capacity (pub/sub layers queue without bound).
# socket_timeout=None: redis-py 8 otherwise drops idle consumers after ~5 s
# (django/channels_redis#422).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": REDIS_NAMES.channel_prefix,
            "capacity": 200,
            "expiry": 30,
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_NAMES.cache_prefix,
    }
}

# Celery: always a real broker. CELERY_EAGER=1 runs tasks inline, for a
# single-process try-out only, and says so loudly at start (project/celery.py).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = REDIS_NAMES.celery_queue
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
    # Prefixes every key kombu writes, its shared ones too (unacked, unacked_index,
    # _kombu.binding.*) and the pidbox/event channels: a worker of another
    # installation on this Redis can neither take our tasks nor answer our pings.
    "global_keyprefix": REDIS_NAMES.celery_key_prefix,
}
if CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= LONGEST_TASK_SECONDS:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT must exceed the longest task's time limit ({LONGEST_TASK_SECONDS} s), "
        "or Redis hands a running task to a second worker"
    )
CELERY_RESULT_EXPIRES = 3600
# No caller reads a task's return value (segment and export rows carry the state), so nothing is
# stored: each result would sit in Redis for CELERY_RESULT_EXPIRES, one per segment per step,
# and grow Redis with the archive (bench/soak.py judges Redis's RSS too).
CELERY_TASK_IGNORE_RESULT = True
# celery-task-meta-* results under the same prefix.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_NAMES.celery_key_prefix}
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
    from botocore.config import Config as _BotoConfig

    # botocore waits 60 s to connect and 60 s per read by default: an endpoint that drops
    # packets (a cut link) would hold a worker that long per attempt. Celery retries the
    # archive with back-off (recordings/tasks.py), so each attempt fails fast and tries few times.
    S3_CONNECT_TIMEOUT_SECONDS = env_float("S3_CONNECT_TIMEOUT_SECONDS", 5.0)
    S3_READ_TIMEOUT_SECONDS = env_float("S3_READ_TIMEOUT_SECONDS", 30.0)
    S3_MAX_ATTEMPTS = env_int("S3_MAX_ATTEMPTS", 2, minimum=1)
    for _name, _seconds in (("S3_CONNECT_TIMEOUT_SECONDS", S3_CONNECT_TIMEOUT_SECONDS),
                            ("S3_READ_TIMEOUT_SECONDS", S3_READ_TIMEOUT_SECONDS)):
        if _seconds <= 0:
            raise ImproperlyConfigured(f"{_name} must be a number of seconds above 0, got {_seconds}")
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
            # What storages builds when given no client_config, plus the timeouts and attempts.
            "client_config": _BotoConfig(
                s3={"addressing_style": None}, signature_version=None, proxies=None,
                connect_timeout=S3_CONNECT_TIMEOUT_SECONDS, read_timeout=S3_READ_TIMEOUT_SECONDS,
                retries={"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
            ),
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

# --- Logins, sessions, cookies, security headers (docs/deployment.md, "Security settings") ---
# Failed logins are limited per account and, separately, per client address by
# django-axes: after LOGIN_FAILURE_LIMIT failures within LOGIN_LOCKOUT_MINUTES the
# account (from anywhere) or the address (for any account) is refused, even with the
# right password, until LOGIN_LOCKOUT_MINUTES after the last counted failure.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out logins before checking passwords
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per account, per address
# REMOTE_ADDR only: the ASGI server already put the real client there for TRUSTED_PROXIES;
# a header anyone can send must not pick whose counter a failure lands on.
AXES_CLIENT_IP_CALLABLE = "frontend.login.client_address"
AXES_LOCKOUT_CALLABLE = "frontend.login.locked_out"
# Failures during a lockout do not extend it: a stranger cannot keep an account locked for ever.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not wipe the counters: with one valid account, an attacker could otherwise
# reset the per-address count between guesses at other accounts.
AXES_RESET_ON_SUCCESS = False
AXES_DISABLE_ACCESS_LOG = True  # successful logins are in the logs; no table growing for ever
AXES_VERBOSE = False

SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 24 * 3600, minimum=60)  # seconds from login
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# SIGHTLINE_TLS=1: the portal is reached only over HTTPS (directly or through a TLS proxy):
# cookies are always Secure. Without it, cookies are still marked Secure on every response
# to a request that came over TLS (project/security.py), so a portal reachable both ways is safe.
SIGHTLINE_TLS = env_bool("SIGHTLINE_TLS", env_bool("SECURE_COOKIES", False))  # SECURE_COOKIES: old name
SESSION_COOKIE_SECURE = SIGHTLINE_TLS
CSRF_COOKIE_SECURE = SIGHTLINE_TLS
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 0, minimum=0)  # sent on HTTPS responses only
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp) on every response. Scripts and styles come from
# our own static files only; the one inline script (device.html, which opens the live
# socket early) carries the per-request nonce. Live video is drawn on canvases; replay
# uses MediaSource (blob:) and hls.js's worker (blob:). Recordings served from S3 (the
# media views redirect to signed URLs) need the storage's origin: S3_ENDPOINT_URL's, or
# CSP_MEDIA_SOURCES (comma-separated origins, e.g. a CDN).
from csp.constants import NONCE, NONE, SELF  # noqa: E402

_MEDIA_SOURCES = csp_sources("CSP_MEDIA_SOURCES", env_str("S3_ENDPOINT_URL", "") if STORAGE_BACKEND == "s3" else "")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:", *_MEDIA_SOURCES],
        "media-src": [SELF, "blob:", *_MEDIA_SOURCES],
        "connect-src": [SELF, *_MEDIA_SOURCES],  # 'self' covers ws:/wss: to this host
        "worker-src": [SELF, "blob:"],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

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
_MAX_TEXT_BYTES = 64 * 1024  # sightline_agent.protocol.MAX_TEXT_BYTES (settings import no app module)
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
_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _x264_preset(value: str) -> str:
    if value not in _X264_PRESETS:
        raise ImproperlyConfigured(f"TRANSCODE_X264_PRESET must be one of {', '.join(_X264_PRESETS)}, got {value!r}")
    return value


SIGHTLINE = {
    "MAX_FRAME_BYTES": env_int("MAX_FRAME_BYTES", 4 * 1024 * 1024, minimum=1024),
    "MAX_MESSAGE_BYTES": _MAX_MESSAGE_BYTES,
    "WS_MAX_SIZE_BYTES": _WS_MAX_SIZE_BYTES,
    "MAX_FPS": env_int("MAX_FPS", 60, minimum=1),
    "MAX_BYTES_PER_SECOND": env_int("MAX_BYTES_PER_SECOND", 8 * 1024 * 1024, minimum=1024),
    "HEARTBEAT_SECONDS": env_int("HEARTBEAT_SECONDS", 10, minimum=1),
    "DEAD_AFTER_SECONDS": env_int("DEAD_AFTER_SECONDS", 30, minimum=2),
    "COMMAND_TIMEOUT_SECONDS": env_int("COMMAND_TIMEOUT_SECONDS", 5, minimum=1),
    # Handshakes being authenticated at once per process (streams/admission.py); beyond: close 1013.
    "HANDSHAKES_PER_ADDRESS": env_int("HANDSHAKES_PER_ADDRESS", 16, minimum=1),
    "HANDSHAKES_IN_PROGRESS": env_int("HANDSHAKES_IN_PROGRESS", 64, minimum=1),
    # The live path's Redis connections per process: callers wait up to the timeout
    # for a free one instead of failing (streams/broadcast.py).
    "REDIS_POOL_SIZE": env_int("REDIS_POOL_SIZE", 100, minimum=2),
    "REDIS_POOL_TIMEOUT_SECONDS": env_int("REDIS_POOL_TIMEOUT_SECONDS", 10, minimum=1),
    "SEGMENT_SECONDS": env_int("SEGMENT_SECONDS", 10, minimum=1),
    # libx264 settings of the recording transcode (recordings/transcode.py x264_options; defaults
    # as recordings.constants.X264_OPTIONS). Cameras per worker core: docs/deployment.md, "Sizing hosts".
    "TRANSCODE_X264_PRESET": _x264_preset(env_str("TRANSCODE_X264_PRESET", "superfast")),
    "TRANSCODE_X264_CRF": env_int("TRANSCODE_X264_CRF", 23, minimum=0),
    "TRANSCODE_THREADS": env_int("TRANSCODE_THREADS", 0, minimum=0),
    # What a device's recorder hand-off stream holds at most while no recorder reads it (docs/recording.md).
    "RECORDING_HANDOFF_SECONDS": env_int("RECORDING_HANDOFF_SECONDS", 30, minimum=1),
    "RECORDING_HANDOFF_MAX_BYTES": env_int("RECORDING_HANDOFF_MAX_BYTES", 32 * 1024 * 1024, minimum=1024 * 1024),
    # How long a clip export waits for segments of its range still being recorded or transcoded.
    "EXPORT_WAIT_SECONDS": env_int("EXPORT_WAIT_SECONDS", 120, minimum=0),
    # Queue for tasks that read an ingest host's local spool (docs/recording.md); "" = default queue.
    "SPOOL_QUEUE": env_str("SPOOL_QUEUE", ""),
    "FREE_DISK_WATERMARK_BYTES": env_int("FREE_DISK_WATERMARK_BYTES", 2 * 1024**3, minimum=0),
    # Who may scrape GET /metrics besides staff users (streams/metrics.py).
    "METRICS_ALLOWED_ADDRESSES": env_list("METRICS_ALLOWED_ADDRESSES", ["127.0.0.1", "::1"]),
    # WebRTC (manage.py webrtc, docs/deployment.md): STUN/TURN servers for both ends, as a JSON
    # list of {"urls", "username", "credential"}; peers one process serves; how long a viewer
    # waits for an answer before it is told "timeout" and falls back.
    "WEBRTC_ICE_SERVERS": parse_ice_servers(env_str("WEBRTC_ICE_SERVERS", "[]")),
    "WEBRTC_MAX_PEERS": env_int("WEBRTC_MAX_PEERS", 50, minimum=1),
    "WEBRTC_ANSWER_TIMEOUT_SECONDS": env_int("WEBRTC_ANSWER_TIMEOUT_SECONDS", 3, minimum=1),
    # The UDP ports the WebRTC process's peers use (streams/webrtc_ports.py), (min, max) inclusive;
    # None: any port the OS gives.
    "WEBRTC_PORT_RANGE": parse_port_range(env_str("WEBRTC_PORT_MIN", ""), env_str("WEBRTC_PORT_MAX", "")),
}

# Email: invitations to join an organisation (accounts/invites.py). The console
# backend (the default) prints each message to the web process's output; set
# EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend and EMAIL_HOST etc.
# to send real mail (docs/deployment.md, "Email").
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))  # filebased backend only
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Sightline <sightline@localhost>")
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are mutually exclusive: set one")
# How long an invitation link works (hours).
INVITE_MAX_AGE_HOURS = env_int("INVITE_MAX_AGE_HOURS", 72, minimum=1)

