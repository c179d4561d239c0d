"""``sightline-agent discover``: ONVIF cameras on the local network, and their RTSP URIs.

A WS-Discovery probe (multicast 239.255.255.250:3702, through the wsdiscovery
package) for NetworkVideoTransmitter devices; every camera that answers within
--timeout is listed with its device service address and the name/hardware from
its scopes. With --user (password from --password-file or the
SIGHTLINE_ONVIF_PASSWORD environment variable: never an argument, since ``ps``
shows arguments to every user) each camera's media profiles are listed with their
RTSP URIs, ready for ``--source`` or a bridge file. A camera that refuses the
credentials or does not answer is reported on its own line; the others still list.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from urllib.parse import unquote, urlsplit

from sightline_agent.onvif_camera import PASSWORD_ENV, OnvifCamera, OnvifUnavailable
from sightline_agent.reconnect import EXIT_OK, EXIT_USAGE, AgentExit
from sightline_agent.rtsp import redact_url

NVT_TYPE = ("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter")
DEFAULT_TIMEOUT_SECONDS = 3.0


@dataclass
class FoundCamera:
    address: str                     # the device service, http://host:port/onvif/device_service
    name: str = ""
    hardware: str = ""
    profiles: list = field(default_factory=list)  # dicts: token, name, encoding, resolution, uri
    error: str = ""


def scope_value(scopes: list[str], kind: str) -> str:
    """'onvif://www.onvif.org/name/Front%20door' -> 'Front door' for kind 'name'."""
    prefix = f"onvif://www.onvif.org/{kind}/"
    for scope in scopes:
        if scope.startswith(prefix):
            return unquote(scope[len(prefix):])
    return ""


def probe(timeout: float) -> list[FoundCamera]:
    """Blocking WS-Discovery probe; one FoundCamera per device address."""
    try:
        from wsdiscovery import QName
        from wsdiscovery.discovery import ThreadedWSDiscovery
    except ImportError:
        raise AgentExit(EXIT_USAGE, "discover needs the wsdiscovery package: "
                                    "pip install -r requirements-agent.txt") from None
    discovery = ThreadedWSDiscovery()
    discovery.start()
    try:
        services = discovery.searchServices(types=[QName(*NVT_TYPE, "dn")], timeout=timeout)
    finally:
        discovery.stop()
    found: dict[str, FoundCamera] = {}
    for service in services:
        scopes = [str(scope.getValue()) for scope in service.getScopes()]
        for address in service.getXAddrs():
            if address.startswith(("http://", "https://")) and address not in found:
                found[address] = FoundCamera(address=address, name=scope_value(scopes, "name"),
                                             hardware=scope_value(scopes, "hardware"))
    return sorted(found.values(), key=lambda camera: camera.address)


async def add_profiles(camera: FoundCamera, user: str, password: str, timeout: float) -> None:
    parts = urlsplit(camera.address)
    try:
        async with OnvifCamera(parts.hostname, parts.port or 80, user, password, timeout=timeout) as onvif:
            camera.profiles = [asdict(profile) for profile in await onvif.profiles()]
    except OnvifUnavailable as error:
        camera.error = str(error)
    for profile in camera.profiles:  # a camera may put its own credentials in the URI
        profile["uri"] = redact_url(profile["uri"])


def read_password(password_file: str | None) -> str:
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as error:
            raise AgentExit(EXIT_USAGE, f"cannot read --password-file {password_file}: {error.strerror}") from None
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise AgentExit(EXIT_USAGE, f"--user needs a password: --password-file PATH or {PASSWORD_ENV}")
    return password


def render(cameras: list[FoundCamera], timeout: float) -> str:
    if not cameras:
        return (f"no ONVIF camera answered within {timeout:g} s (is this machine on the cameras' network, "
                "and multicast allowed? some cameras need ONVIF enabled in their settings)\n")
    lines = []
    for camera in cameras:
        label = " ".join(part for part in (camera.name, f"({camera.hardware})" if camera.hardware else "") if part)
        lines.append(f"{camera.address}  {label}".rstrip())
        for profile in camera.profiles:
            lines.append(f"    profile {profile['name'] or profile['token']} ({profile['encoding']} "
                         f"{profile['resolution']}): {profile['uri']}")
        if camera.error:
            lines.append(f"    error: {camera.error}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sightline-agent discover",
                                     description="List ONVIF cameras on the local network (WS-Discovery) and, "
                                                 "with --user, their RTSP profile URIs. See docs/agent.md.")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, metavar="S",
                        help=f"seconds to wait for answers (default {DEFAULT_TIMEOUT_SECONDS:g})")
    parser.add_argument("--user", help=f"ONVIF user; the password comes from --password-file or {PASSWORD_ENV}")
    parser.add_argument("--password-file", metavar="PATH", help="file holding the ONVIF password")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def main(argv: list[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.timeout <= 0:
            raise AgentExit(EXIT_USAGE, "--timeout must be positive")
        password = read_password(args.password_file) if args.user else None
        cameras = probe(args.timeout)
        if args.user:
            async def lookup():
                await asyncio.gather(*(add_profiles(camera, args.user, password, max(5.0, args.timeout))
                                       for camera in cameras))
            asyncio.run(lookup())
    except AgentExit as error:
        sys.stderr.write(f"error: {error.message}\n")
        return error.code
    if args.json:
        out.write(json.dumps([asdict(camera) for camera in cameras], indent=2) + "\n")
    else:
        out.write(render(cameras, args.timeout))
    return EXIT_OK
