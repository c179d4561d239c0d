#!/usr/bin/env python3
"""Watch a Sightline camera over WebRTC from Python, without a browser (aiortc).

    pip install aiortc websockets
    python examples/webrtc_viewer.py --url https://sightline.example.org --user alice \
        --password-file ~/.sightline-password --device 7d4f… --frames 300

It logs in like a browser (session cookie), opens the viewer socket
/ws/view/<device>/, sends a WebRTC offer there, applies the answer and decodes the
H.264 frames it receives (aiortc decodes them to av.VideoFrame; do what you like
with them: frame.to_ndarray(format="rgb24")). Signalling is documented in
docs/protocol.md, "WebRTC"; this script is the whole client side of it.
Prints one JSON line at the end: frames decoded, size, time to the first frame.
Exit status: 0 when --frames were decoded, 1 on an error or timeout.
"""
from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import re
import sys
import time
import urllib.parse
import urllib.request

import websockets
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError


def login(base: str, username: str, password: str) -> str:
    """The sessionid cookie after logging in through the login form (with its CSRF token)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not token:
        raise SystemExit("no CSRF token on the login page")
    form = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrfmiddlewaretoken": token.group(1)}).encode()
    request = urllib.request.Request(f"{base}/login/", data=form, headers={"Referer": f"{base}/login/"})
    opener.open(request, timeout=10)
    session = next((c.value for c in jar if c.name == "sessionid"), None)
    if not session:
        raise SystemExit("login failed: check the user name and password")
    return session


async def watch(base: str, session: str, device: str, want: int, timeout: float) -> dict:
    ws_url = re.sub(r"^http", "ws", base) + f"/ws/view/{device}/"
    headers = {"Cookie": f"sessionid={session}", "Origin": base}
    result = {"frames": 0, "width": None, "height": None, "first_frame_ms": None, "error": None}
    started = time.monotonic()
    async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise SystemExit(f"refused: {welcome}")
        # Only signalling on this socket: no frames over the WebSocket while WebRTC plays.
        await ws.send(json.dumps({"type": "subscribe", "kinds": []}))
        servers = [RTCIceServer(**s) for s in (welcome.get("webrtc") or {}).get("ice_servers", [])]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        pc.addTransceiver("video", direction="recvonly")
        done = asyncio.Event()

        @pc.on("track")
        def on_track(track):
            async def consume():
                try:
                    while result["frames"] < want:
                        frame = await track.recv()  # decoded by aiortc: an av.VideoFrame
                        result["frames"] += 1
                        result["width"], result["height"] = frame.width, frame.height
                        if result["first_frame_ms"] is None:
                            result["first_frame_ms"] = round((time.monotonic() - started) * 1000)
                except MediaStreamError:
                    # The server ended the peer; its webrtc_error/webrtc_bye saying why is on
                    # the socket, possibly a moment behind: give it the time to arrive.
                    await asyncio.sleep(1.0)
                done.set()
            asyncio.ensure_future(consume())

        await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers candidates first
        await ws.send(json.dumps({"type": "webrtc_offer", "sdp": pc.localDescription.sdp}))

        async def signalling():
            async for text in ws:
                if isinstance(text, bytes):
                    continue
                message = json.loads(text)
                kind = message.get("type")
                if kind == "webrtc_answer":
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="answer"))
                elif kind in ("webrtc_error", "webrtc_bye"):
                    result["error"] = message
                    done.set()
                    return
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "id": message.get("id"), "ts": message.get("ts")}))

        reader = asyncio.ensure_future(signalling())
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            result["error"] = {"code": "timeout", "message": f"{result['frames']} frames in {timeout} s"}
        finally:
            reader.cancel()
            try:
                await ws.send(json.dumps({"type": "webrtc_bye"}))
            except Exception:
                pass
            await pc.close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the portal, e.g. https://sightline.example.org")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True, help="a file holding the password (not the command line)")
    parser.add_argument("--device", required=True, help="the device id (from its page's address)")
    parser.add_argument("--frames", type=int, default=100, help="stop after this many decoded frames")
    parser.add_argument("--timeout", type=float, default=60, help="give up after this many seconds")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    with open(args.password_file) as f:
        password = f.read().strip()
    session = login(base, args.user, password)
    result = asyncio.run(watch(base, session, args.device, args.frames, args.timeout))
    print(json.dumps(result))
    return 0 if result["frames"] >= args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
