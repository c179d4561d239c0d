"""Settings for the test suite: the real settings, with a private var directory
per run so parallel runs never share spool, media or a SQLite file."""
import os
import tempfile
import uuid

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("SIGHTLINE_VAR_DIR", tempfile.mkdtemp(prefix="sightline-test-"))
os.environ.setdefault("LOG_FORMAT", "console")
# Private Redis key prefixes per run: a Sightline running beside the tests on the
# same Redis (its recorder subscribes to <prefix>:frames:*) never sees test frames.
_RUN = uuid.uuid4().hex[:8]
os.environ.setdefault("CHANNEL_PREFIX", f"test-{_RUN}")
os.environ.setdefault("CACHE_PREFIX", f"test-{_RUN}")

from project.settings import *  # noqa: E402,F401,F403
from project.settings import DATABASES, VAR_DIR  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so server and worker processes spawned by the
    # integration tests see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
