"""Helpers shared by tests that start server or worker processes."""
from urllib.parse import quote

from django.conf import settings


def subprocess_database_url() -> str:
    """DATABASE_URL pointing a child process at the database this test run uses
    (under pytest-django: the test database, SQLite file or PostgreSQL)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user, password = quote(db.get("USER") or ""), quote(db.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
