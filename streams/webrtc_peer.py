"""The WebRTC process (python manage.py webrtc): aiortc peers fed by the frames the ingest publishes.

    ingest ─► Redis PUBLISH frames:<device> ─► this process's Hub (one SUBSCRIBE per device, as any
    server process) ─► one Outbox per peer ─► PassthroughTrack.recv() ─► av.Packet ─► aiortc RTP

H.264 is never decoded nor re-encoded here: each access unit is handed to aiortc as an
av.Packet, which its H264Encoder.pack() only splits into RTP payloads (FU-A/STAP-A).
ENCODER_FRAMES counts every call of aiortc's real encoders; it stays 0 for H.264
devices and the tests assert that. JPEG devices are refused with "not_h264": they stay
on the WebSocket path (re-encoding them once per device is possible but not worth a
core of CPU per camera today; docs/protocol.md).

Audio (streams/webrtc_audio.py): when the offer has an audio section and the device sends
audio, the peer also gets an audio track: Opus and 8 kHz G.711 passed through, anything
else encoded to Opus once per device and shared by its peers. A device that reconnects with
another audio format ends such peers with webrtc_bye code "format_changed" (offer again).

A new peer starts at a keyframe: the Outbox gives it the cached one at once and the
device is asked for a fresh one; a browser's PLI/FIR becomes a keyframe request too
(both rate-limited per device by the consumer holding the device, streams/keyframes.py).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time
from collections import Counter
from fractions import Fraction

import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import SessionDescription, candidate_from_sdp

from streams import devicemedia, groups, keyframes, signalling
from streams.broadcast import Outbox, get_hub, redis_client
from sightline_agent.protocol import HEADER_SIZE, KIND_AUDIO, KIND_H264, KIND_JPEG
from streams.signalling import SignallingError
from streams.webrtc_audio import PASSTHROUGH, AudioTrack, PassthroughAudio, SharedEncoders, choose_audio_route
from streams.webrtc_relay import OFFERS_CHANNEL, PROCESSES_GROUP

log = logging.getLogger(__name__)

VIDEO_CLOCK = Fraction(1, 90_000)
HEARTBEAT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 30.0  # a peer not connected by then is closed (its viewer is gone)
DEVICE_FORMAT_CHANGED = "device format changed"  # webrtc_bye reason (code signalling.FORMAT_CHANGED)
_SEQ_TS = struct.Struct(">IQ")

# Frames aiortc's own encoders were given, by encoder class: the "no re-encode" proof; and
# "SharedOpusEncoder": frames of audio encoded to Opus once per device (streams/webrtc_audio.py).
ENCODER_FRAMES: Counter = Counter()
VIDEO_ENCODERS = ("H264Encoder", "Vp8Encoder")


def count_encoder_frames() -> None:
    """Wrap aiortc's encoders' encode() with a counter (once per process)."""
    from aiortc.codecs import g711, h264, opus, vpx

    for cls in (h264.H264Encoder, vpx.Vp8Encoder, opus.OpusEncoder, g711.PcmaEncoder, g711.PcmuEncoder):
        if getattr(cls.encode, "_sightline_counted", False):
            continue
        original = cls.encode

        def encode(self, frame, force_keyframe=False, _original=original, _name=cls.__name__):
            ENCODER_FRAMES[_name] += 1
            return _original(self, frame, force_keyframe)

        encode._sightline_counted = True
        cls.encode = encode


class PassthroughTrack(MediaStreamTrack):
    """A video track whose 'frames' are the device's H.264 access units, as av.Packet."""

    kind = "video"

    def __init__(self, outbox: Outbox, stats: Counter, on_jpeg):
        super().__init__()
        self.outbox = outbox
        self.stats = stats
        self.on_jpeg = on_jpeg
        self._origin_us: int | None = None
        self._last_pts = -1
        self.capture_to_peer_ms: float | None = None

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            item = self.outbox.pop()
            if item is None:
                if self.outbox.closed:
                    raise MediaStreamError
                await self.outbox.wait()
                continue
            if item.__class__ is str:
                continue  # presence and stats meant for socket viewers
            if item[2] == KIND_JPEG:
                self.on_jpeg()
                continue
            if item[2] != KIND_H264:
                continue
            _seq, ts = _SEQ_TS.unpack_from(item, 4)
            if self._origin_us is None:
                self._origin_us = ts
            pts = max(self._last_pts + 1, (ts - self._origin_us) * 9 // 100)  # µs → 90 kHz, increasing
            self._last_pts = pts
            packet = av.Packet(item[HEADER_SIZE:])
            packet.pts, packet.time_base = pts, VIDEO_CLOCK
            self.stats["packets_sent"] += 1
            self.capture_to_peer_ms = max(0.0, time.time() * 1000 - ts / 1000)
            return packet


def h264_codecs():
    return [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == "video/h264"]


def offered_audio_codecs(sdp: str) -> set[str]:
    """Lower-case mime types of the offer's first audio section (empty: no audio section)."""
    try:
        media = [m for m in SessionDescription.parse(sdp).media if m.kind == "audio"]
    except Exception:
        return set()  # setRemoteDescription reports a broken offer
    return {c.mimeType.lower() for c in media[0].rtp.codecs} if media else set()


class Peer:
    """One viewer's RTCPeerConnection, its Outbox in the hub and its track."""

    def __init__(self, service: "PeerService", session: str, reply_to: str, device_id: str):
        self.service, self.session, self.reply_to, self.device_id = service, session, reply_to, device_id
        self.outbox = Outbox()
        self.outbox.kinds = frozenset({KIND_H264, KIND_JPEG})
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(**s) for s in service.ice_servers]))
        self.track = PassthroughTrack(self.outbox, service.stats, self._on_jpeg)
        self.closed = False
        self.connected = asyncio.Event()
        self.audio_track: AudioTrack | None = None
        self.audio_source = None  # PassthroughAudio, or a PacketFeed of the device's SharedOpusEncoder
        self.audio_route: tuple[str, str] | None = None

    async def _add_audio(self, sdp: str) -> None:
        """An audio track when the offer asks for audio and the device sends some (else the
        offer's audio section, if any, is answered inactive: aiortc gives it no sender track)."""
        media = await devicemedia.read(redis_client(), self.device_id)
        route = choose_audio_route((media or {}).get("audio"), offered_audio_codecs(sdp))
        if route is None:
            return
        audio = media["audio"]
        if route[0] == PASSTHROUGH:
            outbox = Outbox()
            outbox.kinds = frozenset({KIND_AUDIO})
            self.audio_source = PassthroughAudio(outbox, audio, self._format_changed)
            await get_hub().add_viewer(self.device_id, outbox)
        else:
            self.audio_source = await self.service.encoders.subscribe(self.device_id, audio, self._format_changed)
        # From here on a reconnection's presence event reaches the source; one that came between the
        # read above and the subscription is seen here (offline now: its return would reach the source).
        now = await devicemedia.read(redis_client(), self.device_id)
        if now is not None and now.get("audio") != audio:
            raise SignallingError(signalling.FAILED, DEVICE_FORMAT_CHANGED)
        self.audio_route = route
        self.audio_track = AudioTrack(self.audio_source, self.service.stats)
        transceiver = self.pc.addTransceiver(self.audio_track, direction="sendonly")
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                                         if c.mimeType.lower() == route[1]])
        self.service.stats[f"audio_{route[0]}_peers"] += 1

    async def answer(self, sdp: str) -> str:
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences(h264_codecs())
        await self._add_audio(sdp)
        # aiortc sets a flag its encoder would read; we have no encoder: ask the device instead.
        transceiver.sender._send_keyframe = lambda: self.service.spawn(self._keyframe("pli"))
        self.pc.on("connectionstatechange", self._state_changed)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as error:  # aiortc raises ValueError/OperationError on SDP it cannot use
            raise SignallingError(signalling.BAD_OFFER, f"the offer cannot be used: {error}"[:300]) from None
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await get_hub().add_viewer(self.device_id, self.outbox)
        await self._keyframe("new peer")
        return self.pc.localDescription.sdp  # aiortc gathers first: the answer holds every candidate

    async def _keyframe(self, reason: str) -> None:
        self.service.stats["keyframe_requests"] += 1
        await keyframes.request_keyframe(self.service.layer, self.device_id, reason)

    async def add_candidate(self, candidate: dict | None) -> None:
        if candidate is None:
            await self.pc.addIceCandidate(None)
            return
        try:
            parsed = candidate_from_sdp(candidate["candidate"].split(":", 1)[1])
        except Exception:
            raise SignallingError(signalling.BAD_CANDIDATE, "the candidate line cannot be parsed") from None
        parsed.sdpMid, parsed.sdpMLineIndex = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(parsed)

    def _format_changed(self) -> None:
        """The device reconnected with another audio format: this peer's audio codec no longer fits.
        Ended at once; the code tells the player to offer again (it gets the new format)."""
        self.service.stats["format_changed_byes"] += 1
        self.service.spawn(self.service.end(self, {"type": "webrtc_bye", "code": signalling.FORMAT_CHANGED,
                                                   "reason": DEVICE_FORMAT_CHANGED}))

    def _on_jpeg(self) -> None:
        self.service.spawn(self.service.end(self, SignallingError(
            signalling.NOT_H264, "this device sends JPEG: watch it over the WebSocket").as_message()))

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed") and not self.closed:
            await self.service.end(self, {"type": "webrtc_bye", "reason": f"connection {state}"})

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.track.stop()
        self.outbox.close()
        await get_hub().remove_viewer(self.device_id, self.outbox)
        if self.audio_track is not None:
            self.audio_track.stop()
        if isinstance(self.audio_source, PassthroughAudio):
            self.audio_source.close()
            await get_hub().remove_viewer(self.device_id, self.audio_source.outbox)
        elif self.audio_source is not None:
            await self.service.encoders.unsubscribe(self.device_id, self.audio_source)
        await self.pc.close()


class PeerService:
    """Reads offers from the shared queue and messages for its own peers; keeps a heartbeat in Redis."""

    def __init__(self, layer, max_peers: int, ice_servers: list[dict], identity: str | None = None):
        self.layer = layer
        self.max_peers = max_peers
        self.ice_servers = ice_servers
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self.peers: dict[str, Peer] = {}
        self.said_bye: dict[str, float] = {}  # sessions ended before their offer reached us (or another process)
        self.stats: Counter = Counter()
        self.encoders = SharedEncoders(ENCODER_FRAMES)
        self.channel: str | None = None
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, stop: asyncio.Event, ready=None) -> None:
        """Serve until `stop` is set; `ready()` is called once viewers can find this process."""
        count_encoder_frames()
        self.channel = await self.layer.new_channel()
        await self._beat()  # joins PROCESSES_GROUP too
        if ready is not None:
            ready()
        loops = [asyncio.create_task(self._read(OFFERS_CHANNEL)), asyncio.create_task(self._read(self.channel)),
                 asyncio.create_task(self._heartbeat())]
        log.info("WebRTC process %s ready (max %d peers, %d ICE servers)", self.identity, self.max_peers,
                 len(self.ice_servers))
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.shutdown()

    async def _read(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("WebRTC process could not read %s; retrying", channel, exc_info=True)
                await asyncio.sleep(1)
                continue
            self.spawn(self._dispatch(message))

    async def _dispatch(self, message: dict) -> None:
        kind, session = message.get("type"), message.get("session")
        try:
            if kind == "webrtc.offer":
                await self._offer(message)
            elif kind == "webrtc.candidate" and session in self.peers:
                await self.peers[session].add_candidate(message.get("candidate"))
            elif kind == "webrtc.bye":
                peer = self.peers.get(session)
                if peer is None:
                    self.said_bye[session] = time.monotonic()
                else:
                    await self.end(peer, None)
        except SignallingError as error:
            peer = self.peers.get(session)
            if peer is not None:
                await self.end(peer, error.as_message())
            elif message.get("reply_to"):
                await self._reply(message["reply_to"], session, error.as_message())
        except Exception:
            log.exception("WebRTC process failed on a %s message", kind)
            failed = SignallingError(signalling.FAILED, "the WebRTC process could not set up the peer").as_message()
            if session in self.peers:
                await self.end(self.peers[session], failed)
            elif kind == "webrtc.offer" and message.get("reply_to"):
                await self._reply(message["reply_to"], session, failed)  # at once, not the viewer's timeout

    async def _offer(self, message: dict) -> None:
        session, reply_to, device_id = message["session"], message["reply_to"], message["device_id"]
        if self.said_bye.pop(session, None) is not None:
            return
        if message.get("expires", float("inf")) < time.time():
            self.stats["expired_offers"] += 1  # its viewer was told "timeout" and moved on
            return
        if len(self.peers) >= self.max_peers:
            self.stats["refused_busy"] += 1
            raise SignallingError(signalling.BUSY, f"this WebRTC process serves {self.max_peers} peers already")
        sdp = signalling.check_offer(message)
        peer = self.peers[session] = Peer(self, session, reply_to, device_id)
        try:
            answer = await peer.answer(sdp)
        except BaseException as error:
            ended = self.peers.pop(session, None) is None
            await peer.close()
            if ended and isinstance(error, Exception):
                return  # the viewer said bye meanwhile: closing the peer broke the answer; nobody to tell
            raise
        if peer.closed:  # the viewer said bye while we gathered candidates
            return
        self.stats["answers"] += 1
        await self._reply(reply_to, session, {"type": "webrtc_answer", "sdp": answer})
        await self._reply(reply_to, session, {"type": "webrtc_candidate", "candidate": None})  # end-of-candidates
        self.spawn(self._connect_deadline(peer))

    async def _connect_deadline(self, peer: Peer) -> None:
        try:
            await asyncio.wait_for(peer.connected.wait(), CONNECT_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            await self.end(peer, SignallingError(signalling.FAILED, "ICE did not connect in time").as_message())

    async def _reply(self, reply_to: str, session: str, message: dict) -> None:
        await self.layer.send(reply_to, {"type": "webrtc.signal", "session": session, "peer": self.channel,
                                         "message": message})

    async def end(self, peer: Peer, message: dict | None) -> None:
        """Close a peer; tell its viewer why unless the viewer ended it."""
        if self.peers.pop(peer.session, None) is None:
            return
        if message is not None:
            try:
                await self._reply(peer.reply_to, peer.session, message)
            except Exception:
                log.warning("could not tell a viewer its WebRTC session ended", exc_info=True)
        await peer.close()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._beat()
            except Exception:
                log.warning("WebRTC heartbeat failed", exc_info=True)
            horizon = time.monotonic() - 60
            for session in [s for s, at in self.said_bye.items() if at < horizon]:
                del self.said_bye[session]

    async def _beat(self) -> None:
        client = redis_client()
        stats = {**self.stats, "peers": len(self.peers), "encoder_frames": sum(ENCODER_FRAMES.values()),
                 "video_encoder_frames": sum(ENCODER_FRAMES[name] for name in VIDEO_ENCODERS),
                 "audio_encoder_frames": ENCODER_FRAMES["SharedOpusEncoder"],
                 "audio_encoders": len(self.encoders.by_device),
                 "capture_to_peer_ms": self._latency()}
        # Again at every beat: channels_redis forgets group members after its group_expiry (a day).
        await self.layer.group_add(PROCESSES_GROUP, self.channel)
        async with client.pipeline(transaction=False) as pipe:
            pipe.zadd(groups.webrtc_peers_key(), {self.identity: time.time()})
            pipe.hset(groups.webrtc_stats_key(self.identity), mapping={k: str(v) for k, v in stats.items()})
            pipe.expire(groups.webrtc_stats_key(self.identity), 60)
            await pipe.execute()
        for peer in list(self.peers.values()):
            latency = peer.track.capture_to_peer_ms
            if latency is not None:
                await self._reply(peer.reply_to, peer.session, {"type": "webrtc_stats", "capture_to_peer_ms":
                                                                round(latency, 1)})

    def _latency(self) -> float:
        values = [p.track.capture_to_peer_ms for p in self.peers.values() if p.track.capture_to_peer_ms is not None]
        return round(max(values), 1) if values else 0.0

    async def shutdown(self) -> None:
        """Stopping: every viewer is told bye (its player falls back at once), then we leave Redis."""
        for peer in list(self.peers.values()):
            await self.end(peer, {"type": "webrtc_bye", "reason": "the WebRTC process is stopping"})
        await self.encoders.close()
        try:
            await self.layer.group_discard(PROCESSES_GROUP, self.channel)
            await redis_client().zrem(groups.webrtc_peers_key(), self.identity)
        except Exception:
            log.warning("could not remove this WebRTC process from Redis", exc_info=True)
