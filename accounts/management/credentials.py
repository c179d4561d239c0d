"""Helpers for commands that hand out secrets: random passwords and 0600 files."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def random_password() -> str:
    return secrets.token_urlsafe(12)


def write_secret_file(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by the owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case a stale temporary file had looser bits
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def shown_path(path: Path) -> str:
    """The path relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
