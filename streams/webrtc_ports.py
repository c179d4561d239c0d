"""The WebRTC process's UDP ports kept in WEBRTC_PORT_MIN..WEBRTC_PORT_MAX (docs/deployment.md,
"WebRTC processes"), so a firewall can open exactly that range.

All of a peer's media (ICE checks, DTLS, SRTP, RTCP) flows through the sockets of its host
candidates. aioice (aiortc's ICE) binds each with the event loop's public
create_datagram_endpoint(local_addr=(address, 0)): the OS picks the port, and neither
aioice 0.13 nor aiortc 1.16 has a setting for it (aioice issue #47; pull requests #63 and
#112 propose one, unmerged). So the WebRTC process runs on PortRangeEventLoop, whose
create_datagram_endpoint gives such a bind (a UDP socket on an ephemeral port, with no
remote address) a free port of the range instead. Nothing of aiortc or aioice is patched;
tests/integration/test_webrtc.py checks the ports a real peer uses, so an aioice that binds
differently is caught there.

Left alone: sockets with a remote address (a TURN client's, outbound to the TURN server)
and binds to a chosen port (mDNS, 5353).
"""
from __future__ import annotations

import asyncio
import errno
import random

from django.core.exceptions import ImproperlyConfigured

LOWEST, HIGHEST = 1024, 65535


def parse_port_range(low: str, high: str) -> tuple[int, int] | None:
    """WEBRTC_PORT_MIN and WEBRTC_PORT_MAX: both empty (the OS picks ports) or 1024 <= min < max <= 65535."""
    low, high = (low or "").strip(), (high or "").strip()
    if not low and not high:
        return None
    if not low or not high:
        raise ImproperlyConfigured("WEBRTC_PORT_MIN and WEBRTC_PORT_MAX must be set together (or neither)")
    try:
        first, last = int(low), int(high)
    except ValueError:
        raise ImproperlyConfigured(f"WEBRTC_PORT_MIN and WEBRTC_PORT_MAX must be integers, got {low!r}, {high!r}") from None
    if not LOWEST <= first < last <= HIGHEST:
        raise ImproperlyConfigured(f"WEBRTC_PORT_MIN must be below WEBRTC_PORT_MAX, both within {LOWEST}-{HIGHEST}; "
                                   f"got {first}-{last}")
    return first, last


class PortRangeEventLoop(asyncio.SelectorEventLoop):
    """An event loop whose ephemeral UDP binds take a free port of `ports` (inclusive (min, max))."""

    def __init__(self, ports: tuple[int, int]):
        super().__init__()
        self.ports = ports
        # Where the next search starts: round robin from a random point, so that several processes
        # sharing a range rarely try the same ports and a just-closed port is not reused at once.
        self._next = random.randint(*ports)

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None, remote_addr=None, **kwargs):
        if local_addr is None or remote_addr is not None or local_addr[1] != 0 or kwargs.get("sock") is not None:
            return await super().create_datagram_endpoint(protocol_factory, local_addr, remote_addr, **kwargs)
        first, last = self.ports
        size = last - first + 1
        for step in range(size):
            port = first + (self._next - first + step) % size
            try:
                endpoint = await super().create_datagram_endpoint(
                    protocol_factory, (local_addr[0], port, *local_addr[2:]), None, **kwargs)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    continue
                raise  # e.g. an address that cannot be bound at all: aioice skips that interface
            self._next = first + (port - first + 1) % size
            return endpoint
        raise OSError(errno.EADDRINUSE, f"no free UDP port in WEBRTC_PORT_MIN-WEBRTC_PORT_MAX ({first}-{last})")


def loop_factory(ports: tuple[int, int] | None):
    """For asyncio.Runner(loop_factory=...): None (asyncio's default, as asyncio.run) without a
    range, else a PortRangeEventLoop."""
    if ports is None:
        return None
    return lambda: PortRangeEventLoop(ports)
