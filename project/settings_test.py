"""Settings for the test suite: the real settings, with a private var directory
per run so parallel runs never share spool, media or a SQLite file."""
import os
import tempfile
import uuid

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("SIGHTLINE_VAR_DIR", tempfile.mkdtemp(prefix="sightline-test-"))
os.environ.setdefault("LOG_FORMAT", "console")
# A fresh installation namespace per run, so every Redis name (channel layer, our
# own keys, cache, Celery queue, kombu's and the result backend's keys) is private:
# a Sightline running beside the tests on the same Redis never sees a test frame or
# takes a test task, and the tests never take its. Set in os.environ so the server,
# recorder and worker processes the tests start inherit it. Always replaced, never
# inherited from the shell (it may be a running portal's), except in a child of
# this very run (marked by SIGHTLINE_TEST_RUN), which must share the parent's.
_RUN = os.environ.get("SIGHTLINE_TEST_RUN") or uuid.uuid4().hex[:10]
os.environ["SIGHTLINE_TEST_RUN"] = _RUN
os.environ["SIGHTLINE_NAMESPACE"] = f"test-{_RUN}"
for _name in ("CHANNEL_PREFIX", "CACHE_PREFIX", "CELERY_QUEUE"):
    os.environ.pop(_name, None)  # derived from the namespace, not the shell's

from project.settings import *  # noqa: E402,F401,F403
from project.settings import DATABASES, VAR_DIR  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so server and worker processes spawned by the
    # integration tests see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
