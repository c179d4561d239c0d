"""ONVIF for RTSP cameras: profile stream URIs and the imaging service (brightness/contrast).

Through onvif-zeep-async (requirements-agent.txt), which speaks the SOAP; this
module only picks what Sightline needs from the camera's answers. The library is
imported when first used, so the agent runs without it for every other source.

Sightline's brightness and contrast are -100..100 with 0 = unchanged (controls.py,
streams/control.py); a camera's imaging service has its own range per setting
(GetOptions: Brightness 0..100 on many, 0..255 on others). ``scale_to_camera`` maps
Sightline's range linearly onto the camera's, 0 to the middle of it.

Passwords are never printed: messages name the camera by host and port only.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

PASSWORD_ENV = "SIGHTLINE_ONVIF_PASSWORD"
SIGHTLINE_RANGE = (-100, 100)
IMAGING_KEYS = {"brightness": "Brightness", "contrast": "Contrast"}
ONVIF_TIMEOUT_SECONDS = 10.0


class OnvifUnavailable(Exception):
    """The camera has no usable ONVIF service (or did not answer); the message says why."""


def scale_to_camera(value: int, low: float, high: float) -> float:
    """Sightline's -100..100 onto the camera's [low, high]: -100 -> low, 0 -> middle, 100 -> high."""
    span_low, span_high = SIGHTLINE_RANGE
    fraction = (value - span_low) / (span_high - span_low)
    scaled = low + fraction * (high - low)
    # Whole numbers when the camera's range is whole (most cameras take integers only).
    return float(round(scaled)) if float(low).is_integer() and float(high).is_integer() else scaled


def parse_onvif_address(address: str) -> tuple[str, int]:
    """'http://host[:port][/...]' or 'host[:port]' -> (host, port); port 80 by default."""
    text = address if "://" in address else f"http://{address}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an ONVIF address (http://host[:port]): {address!r}")
    if parts.username or parts.password:
        raise ValueError("put ONVIF credentials in onvif_user / a password file, not in the address")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def onvif_for(address: str, user: str | None, password_file: str | None, rtsp_url: str,
              environ: dict) -> "OnvifCamera":
    """The ONVIF client of a relayed camera. Credentials: ``user`` with the password from
    ``password_file`` or $SIGHTLINE_ONVIF_PASSWORD; without ``user``, those of the RTSP URL
    (most cameras use one account for both). Raises ValueError saying what is wrong."""
    host, port = parse_onvif_address(address)
    password = None
    if user:
        if password_file:
            try:
                with open(password_file, encoding="utf-8") as handle:
                    password = handle.read().strip()
            except OSError as error:
                raise ValueError(f"cannot read the ONVIF password file {password_file}: {error.strerror}") from None
        else:
            password = environ.get(PASSWORD_ENV) or None
        if password is None:
            raise ValueError(f"the ONVIF user needs a password: a password file or {PASSWORD_ENV}")
    else:
        parts = urlsplit(rtsp_url)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
    return OnvifCamera(host, port, user, password)


@dataclass
class StreamProfile:
    token: str
    name: str
    encoding: str
    resolution: str
    uri: str


@dataclass
class OnvifImaging:
    """What SetImagingSettings needs: the video source and each setting's range on the camera."""

    source_token: str
    ranges: dict = field(default_factory=dict)  # "brightness" -> (min, max), only those the camera has


def _silence_library_logging() -> None:
    # onvif calls logging.basicConfig(INFO) on import; its messages are not ours to print.
    for name in ("onvif", "zeep", "httpx", "aiohttp"):
        logging.getLogger(name).setLevel(logging.WARNING)


class OnvifCamera:
    """One camera's ONVIF device service. ``async with`` closes its HTTP sessions."""

    def __init__(self, host: str, port: int, user: str | None, password: str | None,
                 timeout: float = ONVIF_TIMEOUT_SECONDS):
        self.host, self.port, self.timeout = host, port, timeout
        self.where = f"ONVIF {host}:{port}"
        self._user, self._password = user, password
        self._camera = None

    async def __aenter__(self) -> "OnvifCamera":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._camera is not None:
            camera, self._camera = self._camera, None
            await camera.close()

    async def _call(self, awaitable):
        """One SOAP exchange, bounded, with the library's errors turned into OnvifUnavailable."""
        from onvif.exceptions import ONVIFAuthError, ONVIFError
        from zeep.exceptions import Fault

        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except asyncio.TimeoutError:
            raise OnvifUnavailable(f"{self.where}: no answer within {self.timeout:g} s") from None
        except ONVIFAuthError:
            raise OnvifUnavailable(f"{self.where}: the camera refused the user name or password") from None
        except Fault as fault:
            text = str(fault.message or fault.code or "fault")
            if "notauthorized" in text.lower().replace(" ", "") or "not authorized" in text.lower():
                raise OnvifUnavailable(f"{self.where}: the camera refused the user name or password") from None
            raise OnvifUnavailable(f"{self.where}: {text[:200]}") from None
        except (ONVIFError, OSError) as error:
            raise OnvifUnavailable(f"{self.where}: {str(error)[:200] or type(error).__name__}") from None

    async def _connected(self):
        if self._camera is None:
            try:
                from onvif import ONVIFCamera
            except ImportError:
                raise OnvifUnavailable("ONVIF needs the onvif-zeep-async package: "
                                       "pip install -r requirements-agent.txt") from None
            _silence_library_logging()
            camera = ONVIFCamera(self.host, self.port, self._user, self._password, no_cache=True)
            try:
                await self._call(camera.update_xaddrs())
            except BaseException:
                await camera.close()
                raise
            self._camera = camera
        return self._camera

    async def _service(self, name: str):
        camera = await self._connected()
        return await self._call(getattr(camera, f"create_{name}_service")())

    async def profiles(self) -> list[StreamProfile]:
        """Every media profile with its RTSP URI (RTP over RTSP, unicast)."""
        media = await self._service("media")
        found = []
        for profile in await self._call(media.GetProfiles()) or []:
            encoder = getattr(profile, "VideoEncoderConfiguration", None)
            resolution = getattr(encoder, "Resolution", None)
            answer = await self._call(media.GetStreamUri({
                "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                "ProfileToken": profile.token}))
            found.append(StreamProfile(
                token=str(profile.token), name=str(getattr(profile, "Name", "") or ""),
                encoding=str(getattr(encoder, "Encoding", "") or "?"),
                resolution=f"{resolution.Width}x{resolution.Height}" if resolution is not None else "?",
                uri=str(answer.Uri)))
        return found

    async def imaging(self) -> OnvifImaging:
        """The first profile's video source and the brightness/contrast ranges its imaging service takes."""
        camera = await self._connected()
        from onvif.definition import SERVICES

        if SERVICES["imaging"]["ns"] not in camera.xaddrs:
            raise OnvifUnavailable(f"{self.where}: the camera has no imaging service")
        media = await self._service("media")
        tokens = [p.VideoSourceConfiguration.SourceToken for p in await self._call(media.GetProfiles()) or []
                  if getattr(p, "VideoSourceConfiguration", None) is not None]
        if not tokens:
            raise OnvifUnavailable(f"{self.where}: no profile names a video source")
        service = await self._service("imaging")
        options = await self._call(service.GetOptions({"VideoSourceToken": tokens[0]}))
        ranges = {}
        for key, element in IMAGING_KEYS.items():
            span = getattr(options, element, None)
            if span is not None and span.Min is not None and span.Max is not None and span.Max > span.Min:
                ranges[key] = (float(span.Min), float(span.Max))
        return OnvifImaging(source_token=str(tokens[0]), ranges=ranges)

    async def set_imaging(self, imaging: OnvifImaging, changes: dict) -> dict:
        """SetImagingSettings with each Sightline value scaled to the camera's range; returns what was sent."""
        sent = {IMAGING_KEYS[key]: scale_to_camera(value, *imaging.ranges[key]) for key, value in changes.items()}
        service = await self._service("imaging")
        await self._call(service.SetImagingSettings({"VideoSourceToken": imaging.source_token,
                                                     "ImagingSettings": sent, "ForcePersistence": False}))
        return sent
