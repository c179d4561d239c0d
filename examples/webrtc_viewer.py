#!/usr/bin/env python3
"""Watch a Sightline camera over WebRTC from Python, without a browser (aiortc).

    pip install aiortc websockets
    python examples/webrtc_viewer.py --url https://sightline.example.org --user alice \
        --password-file ~/.sightline-password --device 7d4f… --frames 300

It logs in like a browser (session cookie), opens the viewer socket
/ws/view/<device>/, sends a WebRTC offer there, applies the answer and decodes the
H.264 frames it receives (aiortc decodes them to av.VideoFrame; do what you like
with them: frame.to_ndarray(format="rgb24")). It also offers to receive audio: when
the device sends audio the server answers with an audio track (Opus, or PCMA/PCMU
for 8 kHz G.711 devices) and the script counts the decoded audio frames (and with
--audio-wav saves them as a WAV file); for a device without audio the server
answers the audio section inactive. Signalling is documented in docs/protocol.md,
"WebRTC"; this script is the whole client side of it.
Prints one JSON line at the end: frames decoded, size, time to the first frame,
audio frames decoded, their codec, rate and channels. When the device reconnects with
another audio format the server ends the session with a webrtc_bye of code
"format_changed": the script offers again at once ("reoffers" counts it; the audio
fields and the WAV file then describe the new session's audio).
Exit status: 0 when --frames (and --audio-frames) were decoded, 1 on an error or timeout.
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
import wave

import websockets
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription


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


def answered_audio_codec(sdp: str) -> str | None:
    """The audio codec the server will send (e.g. "audio/opus"), None when audio is inactive."""
    for media in SessionDescription.parse(sdp).media:
        if media.kind == "audio" and media.direction in ("sendonly", "sendrecv") and media.rtp.codecs:
            return media.rtp.codecs[0].mimeType
    return None


AUDIO_FIELDS = {"audio_codec": None, "audio_frames": 0, "audio_samples": 0, "audio_rate": None, "audio_channels": None}


async def watch(base: str, session: str, device: str, want: int, timeout: float,
                want_audio: int = 0, wav_path: str | None = None) -> dict:
    ws_url = re.sub(r"^http", "ws", base) + f"/ws/view/{device}/"
    headers = {"Cookie": f"sessionid={session}", "Origin": base}
    result = {"frames": 0, "width": None, "height": None, "first_frame_ms": None, "error": None, "reoffers": 0,
              **AUDIO_FIELDS}
    wav = None
    started = time.monotonic()
    async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise SystemExit(f"refused: {welcome}")
        # Only signalling on this socket: no frames over the WebSocket while WebRTC plays.
        await ws.send(json.dumps({"type": "subscribe", "kinds": []}))
        servers = [RTCIceServer(**s) for s in (welcome.get("webrtc") or {}).get("ice_servers", [])]
        done = asyncio.Event()
        pc = None  # the current session's peer connection; a format_changed bye replaces it

        def enough() -> bool:
            return result["frames"] >= want and result["audio_frames"] >= want_audio

        async def consume_audio(track, mine):
            nonlocal wav
            try:
                while not done.is_set():
                    frame = await track.recv()  # decoded by aiortc: an av.AudioFrame of packed s16
                    channels = len(frame.layout.channels)
                    result["audio_frames"] += 1
                    result["audio_samples"] += frame.samples
                    result["audio_rate"], result["audio_channels"] = frame.sample_rate, channels
                    if wav_path:
                        if wav is None:
                            wav = wave.open(wav_path, "wb")
                            wav.setnchannels(channels)
                            wav.setsampwidth(2)
                            wav.setframerate(frame.sample_rate)
                        wav.writeframes(bytes(frame.planes[0])[: frame.samples * channels * 2])
                    if enough():
                        done.set()
            except MediaStreamError:
                pass

        async def consume_video(track, mine):
            try:
                while not enough():
                    frame = await track.recv()
                    result["frames"] += 1
                    result["width"], result["height"] = frame.width, frame.height
                    if result["first_frame_ms"] is None:
                        result["first_frame_ms"] = round((time.monotonic() - started) * 1000)
            except MediaStreamError:
                # The server ended the peer; its webrtc_error/webrtc_bye saying why is on
                # the socket, possibly a moment behind: give it the time to arrive.
                await asyncio.sleep(1.0)
                if mine is not pc:
                    return  # replaced by a new offer (format_changed): that session goes on
            done.set()

        async def offer():
            nonlocal pc
            pc = mine = RTCPeerConnection(RTCConfiguration(iceServers=servers))
            mine.addTransceiver("video", direction="recvonly")
            mine.addTransceiver("audio", direction="recvonly")

            @mine.on("track")
            def on_track(track):
                consume = consume_audio if track.kind == "audio" else consume_video
                asyncio.ensure_future(consume(track, mine))

            await mine.setLocalDescription(await mine.createOffer())  # aiortc gathers candidates first
            await ws.send(json.dumps({"type": "webrtc_offer", "sdp": mine.localDescription.sdp}))

        async def signalling():
            nonlocal wav
            async for text in ws:
                if isinstance(text, bytes):
                    continue
                message = json.loads(text)
                kind = message.get("type")
                if kind == "webrtc_answer":
                    result["audio_codec"] = answered_audio_codec(message["sdp"])
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="answer"))
                elif kind == "webrtc_bye" and message.get("code") == "format_changed":
                    # The device came back with another audio format: offer again at once. The
                    # audio fields (and --audio-wav) then describe the new session's audio.
                    result["reoffers"] += 1
                    result.update(AUDIO_FIELDS)
                    if wav is not None:
                        wav.close()
                        wav = None
                    old = pc
                    await offer()
                    await old.close()
                elif kind in ("webrtc_error", "webrtc_bye"):
                    result["error"] = message
                    done.set()
                    return
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "id": message.get("id"), "ts": message.get("ts")}))

        await offer()
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
            if wav is not None:
                wav.close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the portal, e.g. https://sightline.example.org")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True, help="a file holding the password (not the command line)")
    parser.add_argument("--device", required=True, help="the device id (from its page's address)")
    parser.add_argument("--frames", type=int, default=100, help="stop after this many decoded frames")
    parser.add_argument("--audio-frames", type=int, default=0,
                        help="also wait for this many decoded audio frames (20 ms each for Opus and G.711)")
    parser.add_argument("--audio-wav", metavar="PATH", help="save the received audio to this WAV file")
    parser.add_argument("--timeout", type=float, default=60, help="give up after this many seconds")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    with open(args.password_file) as f:
        password = f.read().strip()
    session = login(base, args.user, password)
    result = asyncio.run(watch(base, session, args.device, args.frames, args.timeout,
                               args.audio_frames, args.audio_wav))
    print(json.dumps(result))
    return 0 if result["frames"] >= args.frames and result["audio_frames"] >= args.audio_frames else 1


if __name__ == "__main__":
    sys.exit(main())
