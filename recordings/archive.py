"""Recordings storage: Django's storages["recordings"] (filesystem or S3 via django-storages)."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from django.core.files import File
from django.core.files.storage import storages

log = logging.getLogger(__name__)


class ArchiveNotConfirmed(OSError):
    """The storage does not show the object we just wrote (missing or wrong size). Retryable."""


def recordings_storage():
    return storages["recordings"]


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def store_file(local_path: Path, key: str) -> str:
    """Upload local_path under key unless an object of the same size is already
    there (a re-run after a crash); confirm it exists with the right size.
    Returns the key as stored."""
    storage = recordings_storage()
    size = local_path.stat().st_size
    if storage.exists(key):
        if storage.size(key) == size:
            return key
        storage.delete(key)  # a partial object from an interrupted upload
    with open(local_path, "rb") as f:
        stored = storage.save(key, File(f, name=key))
    confirm_stored(stored, size)
    return stored


def confirm_stored(key: str, size: int) -> None:
    storage = recordings_storage()
    if not storage.exists(key) or storage.size(key) != size:
        raise ArchiveNotConfirmed(f"storage does not confirm {key} ({size} bytes)")


def delete_keys(keys) -> None:
    storage = recordings_storage()
    for key in keys:
        if key:
            storage.delete(key)


def presigned_url(key: str) -> str | None:
    """A short-lived URL for S3-like storages (querystring auth); None for the filesystem."""
    storage = recordings_storage()
    if not hasattr(storage, "bucket_name"):
        return None
    return storage.url(key)
