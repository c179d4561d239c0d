"""The installation namespace: one short id from which every Redis name is derived.

Two installations on one Redis (a portal and a test run, staging beside
production, two demos) must never see each other's tasks, frames or presence.
So each installation gets its own namespace, generated at its first start and
kept with its state in `<SIGHTLINE_VAR_DIR>/namespace`; every process of the
installation reads the same file. Hosts that do not share a var directory (a
multi-host deployment) set `SIGHTLINE_NAMESPACE` to one value on every host.

From the namespace come (docs/deployment.md, "Redis namespace"):
- the channel-layer prefix, which is also the prefix of Sightline's own keys
  (frames, presence, keyframes, auth failures, recorder leases and heartbeats:
  streams.groups.prefix());
- the cache KEY_PREFIX;
- Celery's default queue;
- kombu's `global_keyprefix` for the broker and the result backend, which also
  covers kombu's shared keys (unacked, unacked_index, _kombu.binding.*), the
  pidbox/event fan-out channels and celery-task-meta-* results.
CHANNEL_PREFIX, CACHE_PREFIX and CELERY_QUEUE, when set, still name those
three explicitly (as before namespaces existed).

This module is imported by the settings: it reads only the environment and the
file system, never Django settings.
"""
from __future__ import annotations

import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from django.core.exceptions import ImproperlyConfigured

ENV = "SIGHTLINE_NAMESPACE"
FILE_NAME = "namespace"
# No ':' (our separator), no glob characters (recorders PSUBSCRIBE <ns>:frames:*),
# no spaces; short, since it starts every key.
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
RULE = "1-40 characters: letters, digits, '-', '_' or '.', starting with a letter or digit"


def generate() -> str:
    """A fresh namespace: 'sl-' and 10 random hex digits (fixed length, so no
    generated namespace is a prefix of another)."""
    return f"sl-{secrets.token_hex(5)}"


def validate(value: str, source: str) -> str:
    """`value` if it is a valid namespace, else ImproperlyConfigured naming `source`."""
    if not _VALID.fullmatch(value):
        raise ImproperlyConfigured(f"{source} must be {RULE}; got {value!r}")
    return value


def read_or_create(var_dir: Path) -> str:
    """The namespace kept in `var_dir`, created on the first call.

    Atomic: the value is written to a private temporary file, then hard-linked to
    the final name, which fails if it exists. Processes starting at once (web,
    worker, recorder, beat) all end up with the one value that won, and nobody
    ever reads a half-written file.
    """
    path = Path(var_dir) / FILE_NAME
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
            tmp.write_text(generate() + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process of this installation won the race
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise ImproperlyConfigured(
                f"cannot create the installation namespace file {path} ({exc.strerror or exc}); "
                f"make SIGHTLINE_VAR_DIR writable or set {ENV}"
            ) from None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"cannot read the installation namespace file {path}: {exc}") from None
    return validate(value, f"the namespace file {path}")


def installation_namespace(var_dir: Path, environ: Mapping[str, str] = os.environ) -> str:
    """SIGHTLINE_NAMESPACE if set (hosts of one installation that share no var
    directory), else the one kept in `var_dir`."""
    explicit = (environ.get(ENV) or "").strip()
    if explicit:
        return validate(explicit, ENV)
    return read_or_create(var_dir)


@dataclass(frozen=True)
class RedisNames:
    namespace: str
    channel_prefix: str  # channel layer and Sightline's own keys (streams.groups.prefix())
    cache_prefix: str
    celery_queue: str
    celery_key_prefix: str  # kombu global_keyprefix, broker and result backend


def redis_names(var_dir: Path, environ: Mapping[str, str] = os.environ) -> RedisNames:
    """Every Redis name of the installation whose state is in `var_dir`."""
    namespace = installation_namespace(var_dir, environ)
    return RedisNames(
        namespace=namespace,
        channel_prefix=environ.get("CHANNEL_PREFIX") or namespace,
        cache_prefix=environ.get("CACHE_PREFIX") or namespace,
        celery_queue=environ.get("CELERY_QUEUE") or namespace,
        celery_key_prefix=f"{namespace}:",
    )


def default_var_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """SIGHTLINE_VAR_DIR, or ./var in the checkout (as project/settings.py)."""
    return Path(environ.get("SIGHTLINE_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")


def main(argv: list[str]) -> int:
    """`python -m project.namespace [--queue]`: print the namespace (or the default
    Celery queue) of the installation in SIGHTLINE_VAR_DIR, creating it if needed."""
    try:
        names = redis_names(default_var_dir())
    except ImproperlyConfigured as exc:
        print(f"ImproperlyConfigured: {exc}", file=sys.stderr)
        return 1
    print(names.celery_queue if "--queue" in argv else names.namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
