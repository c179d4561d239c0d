"""When to reconnect and when to give up: exit codes, close codes, backoff. Pure.

docs/agent.md ("Connection behaviour", "Exit codes") describes these rules for
installers; docs/protocol.md section 7 says what each close code means.
"""
from __future__ import annotations

import random

from streams.protocol import Close

# Process exit codes (docs/agent.md, "Exit codes").
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BAD_TOKEN = 3
EXIT_TOKEN_REVOKED = 4
EXIT_DEVICE_DISABLED = 5

# Refusals that reconnecting cannot heal: a person has to act.
FINAL_CLOSES = {
    Close.BAD_TOKEN: (EXIT_BAD_TOKEN, "the server does not know this token (4001): check --token-file"),
    Close.TOKEN_REVOKED: (EXIT_TOKEN_REVOKED, "this token was revoked (4002): issue a new one in the portal"),
    Close.DEVICE_DISABLED: (EXIT_DEVICE_DISABLED, "this device is disabled in the portal (4003)"),
}
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
STABLE_SESSION_SECONDS = 10.0  # a session this long resets the backoff
AUTH_RATE_LIMIT_WAIT_SECONDS = 60.0  # the server's failure window (protocol section 2)


class AgentExit(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Backoff:
    """Exponential backoff with full jitter: a delay uniform in [0, min(cap, base·2^n)]."""

    def __init__(self, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS, rng=random.random):
        self.base, self.cap, self.rng = base, cap, rng
        self.attempt = 0

    def ceiling(self) -> float:
        return min(self.cap, self.base * (2 ** min(self.attempt, 30)))

    def next_delay(self) -> float:
        delay = self.rng() * self.ceiling()
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def retry_delay(close_code: int | None, backoff: Backoff) -> float:
    """Seconds to wait before reconnecting after a connection ended with ``close_code``
    (None: network error or no close frame). Raises AgentExit for final refusals."""
    if close_code in FINAL_CLOSES:
        raise AgentExit(*FINAL_CLOSES[close_code])
    if close_code == Close.AUTH_RATE_LIMITED:
        return AUTH_RATE_LIMIT_WAIT_SECONDS + backoff.next_delay()
    if close_code == Close.REPLACED:
        # Another instance uses this token. Retrying fast would make the two take turns
        # replacing each other; retrying slowly lets this one take over if the other dies.
        return backoff.cap / 2 + backoff.rng() * backoff.cap / 2
    return backoff.next_delay()
