"""Who may start a WebSocket handshake, decided in this process alone. Pure: no I/O.

Everything a socket does before its credential is checked must cost nothing
that other sockets share (Redis connections, database threads): 200 token-less
upgrades once took every connection of the Redis pool and dropped live cameras.
So the two decisions taken before authentication live here, in memory:

- HandshakeGate: how many handshakes are being authenticated right now, per
  client address and in total. Beyond either cap the handshake is refused with
  1013 (try again later) at once.
- FailureCounts: this process's view of failed authentications per address.
  Failures are counted here at once; auth.AuthFailures adds them to the shared
  count in Redis in batches and merges the shared count back, so every process
  soon knows an address is over the limit, at one Redis round trip per batch
  whatever the size of a flood.

Only failures are counted and only failures are refused: a valid credential
from an address over the limit is still accepted (many cameras share one NAT
address; device tokens and session keys are far too long to guess).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager


class HandshakeGate:
    """Caps concurrent unauthenticated handshakes per address and in total."""

    def __init__(self, per_address: int, total: int):
        self.per_address = per_address
        self.total = total
        self.in_progress = 0
        self._by_address: dict[str, int] = {}

    def enter(self, address: str) -> bool:
        """Take a place for a handshake from `address`; False when a cap is reached."""
        current = self._by_address.get(address, 0)
        if self.in_progress >= self.total or current >= self.per_address:
            return False
        self._by_address[address] = current + 1
        self.in_progress += 1
        return True

    def leave(self, address: str) -> None:
        current = self._by_address.get(address, 0)
        if current <= 1:
            self._by_address.pop(address, None)  # never keep a row per address seen
        else:
            self._by_address[address] = current - 1
        if current:
            self.in_progress -= 1

    @contextmanager
    def admit(self, address: str):
        """`with gate.admit(address) as admitted:` — the place is given back on leaving the block."""
        admitted = self.enter(address)
        try:
            yield admitted
        finally:
            if admitted:
                self.leave(address)


class _Window:
    __slots__ = ("started", "local", "shared", "unsent")

    def __init__(self, started: float):
        self.started = started
        self.local = 0  # failures seen by this process in this window
        self.shared = 0  # the count in Redis when last merged (all processes)
        self.unsent = 0  # failures of this process not yet added to Redis


class FailureCounts:
    """Failed authentications per address in fixed windows, as far as this process knows.

    At most `max_addresses` are remembered (oldest window forgotten first), so a
    flood from many addresses costs bounded memory.
    """

    def __init__(self, allowed: int, window_seconds: float, clock=time.monotonic, max_addresses: int = 10_000):
        self.allowed = allowed
        self.window_seconds = window_seconds
        self.clock = clock
        self.max_addresses = max_addresses
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def _current(self, address: str) -> _Window | None:
        window = self._windows.get(address)
        if window is not None and self.clock() - window.started >= self.window_seconds:
            del self._windows[address]
            return None
        return window

    def count(self, address: str) -> int:
        window = self._current(address)
        return 0 if window is None else max(window.local, window.shared + window.unsent)

    def blocked(self, address: str) -> bool:
        return self.count(address) >= self.allowed

    def record(self, address: str) -> None:
        """One more failure from `address` (to be added to the shared count unless already blocked)."""
        window = self._current(address)
        if window is None:
            window = self._windows[address] = _Window(self.clock())
            while len(self._windows) > self.max_addresses:
                self._windows.popitem(last=False)
        was_blocked = max(window.local, window.shared + window.unsent) >= self.allowed
        window.local += 1
        if not was_blocked:  # beyond the limit the shared count has nothing more to learn
            window.unsent += 1

    def take_unsent(self) -> dict[str, int]:
        """The failures not yet shared, per address; they count as sent from now on."""
        unsent = {}
        for address in list(self._windows):
            window = self._current(address)
            if window is not None and window.unsent:
                unsent[address] = window.unsent
                window.shared += window.unsent
                window.unsent = 0
        return unsent

    def has_unsent(self) -> bool:
        return any(window.unsent for window in self._windows.values())

    def merge(self, address: str, shared: int, seconds_left: float | None = None) -> None:
        """The count Redis holds for `address` (all processes), and how long its window still runs."""
        window = self._current(address)
        if window is None:
            if shared <= 0:
                return
            window = self._windows[address] = _Window(self.clock())
        window.shared = max(window.shared, shared)
        if seconds_left is not None and seconds_left >= 0:
            # Follow the shared window so every process unblocks at the same moment.
            window.started = self.clock() - max(0.0, self.window_seconds - seconds_left)

    def __len__(self) -> int:
        return len(self._windows)
