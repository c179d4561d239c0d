"""WebRTC signalling over the viewer socket: message shapes, validation and error codes (pure).

Used by the viewer consumer's relay (streams/webrtc_relay.py) and the WebRTC peer
process (streams/webrtc_peer.py); documented in docs/protocol.md, "WebRTC".
Nothing here raises anything but SignallingError, whose code the viewer is sent in
{"type":"webrtc_error","code":..,"message":..}; the socket stays open.
"""
from __future__ import annotations

import json

from django.core.exceptions import ImproperlyConfigured

MESSAGE_TYPES = {"webrtc_offer", "webrtc_candidate", "webrtc_bye"}  # viewer → server
MAX_SDP_BYTES = 32 * 1024
MAX_CANDIDATE_BYTES = 1024
MAX_EARLY_CANDIDATES = 32  # trickled before the answer arrives; kept until then

# Error codes in webrtc_error (docs/protocol.md): what a player should do is in the doc.
BAD_OFFER = "bad_offer"            # not a usable SDP offer with a video section
BAD_CANDIDATE = "bad_candidate"    # not a candidate object (or null for end-of-candidates)
NO_SESSION = "no_session"          # candidate or bye without an offer
UNAVAILABLE = "unavailable"        # no WebRTC process running (python manage.py webrtc)
BUSY = "busy"                      # the WebRTC process has WEBRTC_MAX_PEERS peers already
TIMEOUT = "timeout"                # no answer in time
NOT_H264 = "not_h264"              # the device sends JPEG: watch it over the WebSocket
FAILED = "failed"                  # the peer could not be set up (or ICE failed later)
# webrtc_bye's code when the device reconnected with another audio format: offer again at once.
FORMAT_CHANGED = "format_changed"


class SignallingError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def as_message(self, session: str | None = None) -> dict:
        message = {"type": "webrtc_error", "code": self.code, "message": self.message}
        if session:
            message["session"] = session
        return message


def check_offer(message: dict) -> str:
    """The SDP of a webrtc_offer, or SignallingError(bad_offer)."""
    sdp = message.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignallingError(BAD_OFFER, "webrtc_offer.sdp must be a non-empty string")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise SignallingError(BAD_OFFER, f"webrtc_offer.sdp is over {MAX_SDP_BYTES} bytes")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if lines[0].strip() != "v=0":
        raise SignallingError(BAD_OFFER, "webrtc_offer.sdp does not start with v=0")
    if not any(line.startswith("m=video ") for line in lines):
        raise SignallingError(BAD_OFFER, "webrtc_offer.sdp has no video section (m=video)")
    return sdp


def check_candidate(message: dict) -> dict | None:
    """A trickled candidate as {"candidate", "sdpMid", "sdpMLineIndex"}, or None for end-of-candidates."""
    candidate = message.get("candidate")
    if candidate is None:
        return None
    if not isinstance(candidate, dict):
        raise SignallingError(BAD_CANDIDATE, "webrtc_candidate.candidate must be an object or null")
    line = candidate.get("candidate")
    if not isinstance(line, str) or len(line) > MAX_CANDIDATE_BYTES:
        raise SignallingError(BAD_CANDIDATE, "webrtc_candidate.candidate.candidate must be a string")
    if line == "":  # the browser's own end-of-candidates marker
        return None
    mid, index = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
    if mid is not None and (not isinstance(mid, str) or len(mid) > 32):
        raise SignallingError(BAD_CANDIDATE, "webrtc_candidate.candidate.sdpMid must be a short string")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 64):
        raise SignallingError(BAD_CANDIDATE, "webrtc_candidate.candidate.sdpMLineIndex must be 0..63")
    if mid is None and index is None:
        raise SignallingError(BAD_CANDIDATE, "a candidate needs sdpMid or sdpMLineIndex")
    if not line.startswith("candidate:") or len(line.split()) < 8:
        raise SignallingError(BAD_CANDIDATE, "not an ICE candidate line (candidate:<foundation> …)")
    return {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index}


def parse_ice_servers(text: str) -> list[dict]:
    """WEBRTC_ICE_SERVERS: a JSON list of {"urls", "username"?, "credential"?} as in RTCConfiguration."""
    try:
        servers = json.loads(text or "[]")
    except ValueError:
        raise ImproperlyConfigured("WEBRTC_ICE_SERVERS must be a JSON list of {\"urls\": ...} objects") from None
    if not isinstance(servers, list):
        raise ImproperlyConfigured("WEBRTC_ICE_SERVERS must be a JSON list")
    clean = []
    for server in servers:
        urls = server.get("urls") if isinstance(server, dict) else None
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(
                isinstance(u, str) and u.split(":", 1)[0] in ("stun", "turn", "turns") for u in urls):
            raise ImproperlyConfigured("WEBRTC_ICE_SERVERS: each entry needs urls starting stun:, turn: or turns:")
        entry = {"urls": urls}
        for key in ("username", "credential"):
            if key in server:
                if not isinstance(server[key], str):
                    raise ImproperlyConfigured(f"WEBRTC_ICE_SERVERS: {key} must be a string")
                entry[key] = server[key]
        clean.append(entry)
    return clean

