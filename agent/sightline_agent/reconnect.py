"""When to reconnect and when to give up: exit codes, close codes, backoff. Pure.

docs/agent.md ("Connection behaviour", "Exit codes") describes these rules for
installers; docs/protocol.md section 7 says what each close code means.
"""
from __future__ import annotations

import random
import time

from sightline_agent.protocol import Close

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
# After 4012 (another connection of this device took over: a second agent with the same token,
# or an operator's confirmed takeover from the browser) the agent waits long, so the two do not
# take turns: 60 s, doubled for every further 4012 within REPLACED_MEMORY_SECONDS, up to 10 min.
REPLACED_WAIT_SECONDS = 60.0
REPLACED_WAIT_CAP_SECONDS = 600.0
REPLACED_MEMORY_SECONDS = 900.0
REPLACED_JITTER = 0.1  # up to +10 %, so several replaced agents do not return together


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


class ReplacedBackoff:
    """The wait after 4012: REPLACED_WAIT_SECONDS, doubled for each 4012 that follows the
    previous one within REPLACED_MEMORY_SECONDS, capped; `clock` and `rng` are injectable."""

    def __init__(self, clock=time.monotonic, rng=random.random):
        self.clock, self.rng = clock, rng
        self.repeats = 0
        self.last_at: float | None = None

    def next_delay(self) -> float:
        now = self.clock()
        recent = self.last_at is not None and now - self.last_at <= REPLACED_MEMORY_SECONDS
        self.repeats = self.repeats + 1 if recent else 0
        self.last_at = now
        wait = min(REPLACED_WAIT_CAP_SECONDS, REPLACED_WAIT_SECONDS * 2 ** min(self.repeats, 10))
        return wait * (1 + REPLACED_JITTER * self.rng())


def retry_delay(close_code: int | None, backoff: Backoff, replaced: ReplacedBackoff | None = None) -> float:
    """Seconds to wait before reconnecting after a connection ended with ``close_code``
    (None: network error or no close frame). Raises AgentExit for final refusals."""
    if close_code in FINAL_CLOSES:
        raise AgentExit(*FINAL_CLOSES[close_code])
    if close_code == Close.AUTH_RATE_LIMITED:
        return AUTH_RATE_LIMIT_WAIT_SECONDS + backoff.next_delay()
    if close_code == Close.REPLACED:
        # Another connection uses this device. Retrying fast would make the two take turns
        # replacing each other; retrying slowly lets this one come back if the other goes away.
        return (replaced or ReplacedBackoff(rng=backoff.rng)).next_delay()
    return backoff.next_delay()


def retry_message(close_code: int | None, delay: float) -> str:
    """What the agent says before waiting `delay` seconds."""
    if close_code == Close.REPLACED:
        return (f"another connection of this device took over (4012: a second agent with this token, "
                f"or a takeover from the portal); reconnecting in {delay:.0f} s")
    return f"reconnecting in {delay:.1f} s"
