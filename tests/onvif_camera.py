"""A fake ONVIF camera for tests: a small SOAP responder and a WS-Discovery publisher.

It answers the operations Sightline uses (GetCapabilities, GetProfiles, GetStreamUri,
GetImagingSettings, GetOptions, SetImagingSettings) with canned XML shaped like the
ONVIF schemas, refuses everything else with an ActionNotSupported fault (as older
cameras do for GetServices, so the client falls back to GetCapabilities), checks the
WS-Security UsernameToken digest against its password (wrong password: a
NotAuthorized fault), and records every SetImagingSettings it receives.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sightline_agent.rtsp import CameraInfo, RtspCamera

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TT = "http://www.onvif.org/ver10/schema"
NAMESPACES = (f'xmlns:s="{SOAP}" xmlns:tt="{TT}" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" '
              'xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:timg="http://www.onvif.org/ver20/imaging/wsdl" '
              'xmlns:ter="http://www.onvif.org/ver10/error"')
NVT = ("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter")


def _profile(token: str, name: str, width: int, height: int) -> str:
    return f"""<trt:Profiles token="{token}" fixed="true"><tt:Name>{name}</tt:Name>
<tt:VideoSourceConfiguration token="vsc0"><tt:Name>source</tt:Name><tt:UseCount>2</tt:UseCount>
<tt:SourceToken>vs0</tt:SourceToken><tt:Bounds x="0" y="0" width="1920" height="1080"/></tt:VideoSourceConfiguration>
<tt:VideoEncoderConfiguration token="vec-{token}"><tt:Name>{name}</tt:Name><tt:UseCount>1</tt:UseCount>
<tt:Encoding>H264</tt:Encoding><tt:Resolution><tt:Width>{width}</tt:Width><tt:Height>{height}</tt:Height></tt:Resolution>
<tt:Quality>5</tt:Quality></tt:VideoEncoderConfiguration></trt:Profiles>"""


class FakeOnvifCamera:
    def __init__(self, user: str = "admin", password: str = "s3cret", rtsp_base: str = "rtsp://127.0.0.1:8554",
                 brightness_range=(0, 255), contrast_range=(0, 100), imaging: bool = True):
        self.user, self.password, self.rtsp_base = user, password, rtsp_base
        self.brightness_range, self.contrast_range, self.imaging = brightness_range, contrast_range, imaging
        self.brightness, self.contrast = 128.0, 50.0
        self.set_requests: list[dict] = []
        self.operations: list[str] = []
        self.unauthorised = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, xml = camera.answer(body)
                data = f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope {NAMESPACES}><s:Body>{xml}</s:Body></s:Envelope>'
                data = data.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._publisher = None

    def start(self) -> "FakeOnvifCamera":
        self._thread.start()
        return self

    def publish(self, name: str = "FakeCam") -> None:
        """Announce the camera over WS-Discovery (multicast 239.255.255.250:3702) and answer probes."""
        from wsdiscovery import QName, Scope
        from wsdiscovery.publishing import ThreadedWSPublishing

        class Publisher(ThreadedWSPublishing):
            def sendUnicastMessage(self, env, host, port, initialDelay=0, unicast_num=2):
                # wsdiscovery 2.1.2 queues every reply on both its IPv4 and IPv6 sockets, and the
                # socket of the other family kills its thread (gaierror): answer on the prober's family.
                thread = self._networkingThread_v6 if ":" in host else self._networkingThread_v4
                if thread is not None:
                    thread.addUnicastMessage(env, host, port, initialDelay, unicast_num)

        self._publisher = Publisher()
        self._publisher.start()
        self._publisher.publishService(
            types=[QName(NVT[0], NVT[1], "dn")],
            scopes=[Scope(f"onvif://www.onvif.org/name/{name}"), Scope("onvif://www.onvif.org/hardware/Fake-1")],
            xAddrs=[f"{self.base}/onvif/device_service"])

    def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.stop()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- SOAP ------------------------------------------------------------------------

    def _authorised(self, envelope: ET.Element) -> bool:
        token = envelope.find(f".//{{{WSSE}}}UsernameToken")
        if token is None:
            return False
        user = token.findtext(f"{{{WSSE}}}Username")
        password = token.findtext(f"{{{WSSE}}}Password") or ""
        nonce = token.findtext(f"{{{WSSE}}}Nonce") or ""
        created = token.findtext(f"{{{WSU}}}Created") or ""
        digest = base64.b64encode(hashlib.sha1(base64.b64decode(nonce) + created.encode()
                                               + self.password.encode()).digest()).decode()
        return user == self.user and password == digest

    def answer(self, body: bytes) -> tuple[int, str]:
        envelope = ET.fromstring(body)
        request = next(iter(envelope.find(f"{{{SOAP}}}Body")))
        operation = request.tag.rsplit("}", 1)[-1]
        self.operations.append(operation)
        if not self._authorised(envelope):
            self.unauthorised += 1
            return 400, self._fault("s:Sender", "ter:NotAuthorized", "Sender not authorized")
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None or (operation in ("GetOptions", "GetImagingSettings", "SetImagingSettings")
                               and not self.imaging):
            return 500, self._fault("s:Receiver", "ter:ActionNotSupported", f"{operation} not supported")
        return 200, handler(request)

    @staticmethod
    def _fault(code: str, subcode: str, reason: str) -> str:
        return (f"<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode>"
                f'</s:Code><s:Reason><s:Text xml:lang="en">{reason}</s:Text></s:Reason></s:Fault>')

    def _op_GetCapabilities(self, request) -> str:
        imaging = f"<tt:Imaging><tt:XAddr>{self.base}/onvif/imaging</tt:XAddr></tt:Imaging>" if self.imaging else ""
        return (f"<tds:GetCapabilitiesResponse><tds:Capabilities>"
                f"<tt:Device><tt:XAddr>{self.base}/onvif/device_service</tt:XAddr></tt:Device>{imaging}"
                f"<tt:Media><tt:XAddr>{self.base}/onvif/media</tt:XAddr><tt:StreamingCapabilities>"
                f"<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
                f"<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
                f"</tds:Capabilities></tds:GetCapabilitiesResponse>")

    def _op_GetProfiles(self, request) -> str:
        return ("<trt:GetProfilesResponse>" + _profile("main", "Main", 1920, 1080)
                + _profile("sub", "Sub", 640, 360) + "</trt:GetProfilesResponse>")

    def _op_GetStreamUri(self, request) -> str:
        token = request.findtext("{http://www.onvif.org/ver10/media/wsdl}ProfileToken")
        return (f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{self.rtsp_base}/{token}</tt:Uri>"
                "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
                "</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>")

    def _op_GetImagingSettings(self, request) -> str:
        return (f"<timg:GetImagingSettingsResponse><timg:ImagingSettings><tt:Brightness>{self.brightness:g}"
                f"</tt:Brightness><tt:Contrast>{self.contrast:g}</tt:Contrast></timg:ImagingSettings>"
                "</timg:GetImagingSettingsResponse>")

    def _op_GetOptions(self, request) -> str:
        (bmin, bmax), (cmin, cmax) = self.brightness_range, self.contrast_range
        return (f"<timg:GetOptionsResponse><timg:ImagingOptions>"
                f"<tt:Brightness><tt:Min>{bmin}</tt:Min><tt:Max>{bmax}</tt:Max></tt:Brightness>"
                f"<tt:Contrast><tt:Min>{cmin}</tt:Min><tt:Max>{cmax}</tt:Max></tt:Contrast>"
                f"</timg:ImagingOptions></timg:GetOptionsResponse>")

    def _op_SetImagingSettings(self, request) -> str:
        timg = "{http://www.onvif.org/ver20/imaging/wsdl}"
        settings = request.find(f"{timg}ImagingSettings")
        recorded = {"token": request.findtext(f"{timg}VideoSourceToken")}
        for key in ("Brightness", "Contrast"):
            value = settings.findtext(f"{{{TT}}}{key}") if settings is not None else None
            if value is not None:
                recorded[key] = float(value)
                setattr(self, key.lower(), float(value))
        self.set_requests.append(recorded)
        return "<timg:SetImagingSettingsResponse/>"


class StillRtspCamera(RtspCamera):
    """An RTSP camera that is open and sends nothing: enough for a relayed device to be online
    (its hello describes a 640x360 10 fps H.264 stream) and to receive commands."""

    def start(self, loop):
        self.queue, self.opened = asyncio.Queue(), asyncio.Event()
        self.info, self.generation, self.state = CameraInfo(640, 360, 10.0, None), 1, "streaming"
        self.opened.set()

    def close(self, timeout: float = 2.0) -> None:
        self.state = "stopped"
