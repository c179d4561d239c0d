"""Device credentials: random tokens shown once, stored only as a hash.

A token looks like ``sl_<prefix>_<secret>``. The 8-character prefix is stored in
clear so a presented token can be looked up with an index; the whole token is
stored only as SHA-256 (tokens are 256-bit random, so a slow KDF adds nothing).
Verification compares digests in constant time. Never log a token: log
``redact(token)``, which keeps only the public prefix.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX_LEN = 8
TOKEN_RE = re.compile(r"^sl_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$")


class MalformedToken(ValueError):
    pass


def generate() -> tuple[str, str, str]:
    """Return (token, prefix, digest). Only the prefix and digest are stored."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    prefix = "".join(secrets.choice(alphabet) for _ in range(PREFIX_LEN))
    token = f"sl_{prefix}_{secrets.token_urlsafe(32)}"
    return token, prefix, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def split(token: str) -> str:
    """Return the public prefix of a well-formed token, else raise MalformedToken."""
    match = TOKEN_RE.match(token or "")
    if not match:
        raise MalformedToken("token is not of the form sl_<prefix>_<secret>")
    return match.group(1)


def matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(token), stored_digest)


def redact(token: str | None) -> str:
    if not token:
        return "<none>"
    match = TOKEN_RE.match(token)
    return f"sl_{match.group(1)}_…" if match else "<malformed>"
