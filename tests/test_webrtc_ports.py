"""WEBRTC_PORT_MIN/MAX (streams/webrtc_ports.py): the setting's rules (pure), and the event loop that
binds the WebRTC process's ephemeral UDP sockets inside the range. The real process with a real peer:
tests/integration/test_webrtc.py."""
import asyncio
import errno
import random
import socket

import pytest
from django.core.exceptions import ImproperlyConfigured

from streams.webrtc_ports import PortRangeEventLoop, parse_port_range


def test_no_range_is_both_unset_and_a_range_is_both_set():
    assert parse_port_range("", "") is None and parse_port_range(None, " ") is None
    assert parse_port_range("50000", "50199") == (50000, 50199)


@pytest.mark.parametrize("low, high", [("50000", ""), ("", "50199"), ("50100", "50000"), ("50000", "50000"),
                                       ("80", "2000"), ("60000", "70000"), ("5e4", "50199")])
def test_a_bad_range_names_both_settings(low, high):
    with pytest.raises(ImproperlyConfigured, match="WEBRTC_PORT_MIN.*WEBRTC_PORT_MAX"):
        parse_port_range(low, high)


def free_block(size):
    """`size` consecutive ports below Linux's ephemeral range, none bound now on 127.0.0.1 (UDP)."""
    while True:
        first = random.randrange(20000, 32000 - size)
        probes = []
        try:
            for port in range(first, first + size):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first, first + size - 1
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()


def test_ephemeral_udp_binds_take_free_ports_of_the_range_and_fail_when_it_is_full():
    first, last = free_block(3)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", first + 1))  # another process holds one port of the range
    loop = PortRangeEventLoop((first, last))
    loop._next = first
    transports = []

    async def bind():
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        transports.append(transport)
        return transport.get_extra_info("sockname")[1]

    try:
        assert loop.run_until_complete(bind()) == first
        assert loop.run_until_complete(bind()) == last  # first + 1 is in use: skipped
        with pytest.raises(OSError) as raised:
            loop.run_until_complete(bind())
        assert raised.value.errno == errno.EADDRINUSE and f"{first}-{last}" in str(raised.value)
        # A chosen port, or a socket with a remote address, is left to the OS as asked.
        outbound, _ = loop.run_until_complete(loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", 9)))
        transports.append(outbound)
        assert not first <= outbound.get_extra_info("sockname")[1] <= last
    finally:
        for transport in transports:
            transport.close()
        taken.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_an_aiortc_peer_on_that_loop_gathers_host_candidates_only_inside_the_range():
    from aiortc import RTCPeerConnection
    from aiortc.sdp import candidate_from_sdp

    first, last = free_block(10)
    loop = PortRangeEventLoop((first, last))

    async def gather():
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        lines = [line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")]
        await pc.close()
        return [candidate_from_sdp(line[2:].split(":", 1)[1]) for line in lines]

    try:
        candidates = loop.run_until_complete(gather())
    finally:
        loop.close()
    assert candidates and {c.type for c in candidates} == {"host"}
    assert all(first <= c.port <= last for c in candidates), [c.port for c in candidates]
