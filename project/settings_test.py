"""Settings for the test suite: the real settings, with a private var directory
per run so parallel runs never share spool, media or a SQLite file."""
import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("SIGHTLINE_VAR_DIR", tempfile.mkdtemp(prefix="sightline-test-"))
os.environ.setdefault("LOG_FORMAT", "console")

from project.settings import *  # noqa: E402,F401,F403
from project.settings import DATABASES, VAR_DIR  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so server and worker processes spawned by the
    # integration tests see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
