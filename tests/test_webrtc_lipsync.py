"""Lip-sync of a WebRTC peer's audio and video (docs/webrtc.md, "Audio over WebRTC"): a measurement
of what a browser can do with the RTCP sender reports aiortc sends, not a feature of ours.

Both tracks' RTP timestamps come from the device's capture timestamps (video: capture µs → 90 kHz;
passed-through audio: the sample clock, re-anchored on capture time beyond 100 ms). aiortc's sender
report pairs the RTP timestamp of the last packet it sent with the wall clock when it sent it. A
receiver maps each stream's RTP timestamps to that clock through the latest report, so the skew it
sees between audio and video captured together is the difference of the two streams' capture → send
delays in the WebRTC process. Here a synthetic device stamps both streams from one clock, the peer
sends them to a real aiortc client, and the test reads the RTP and RTCP the peer emits (before SRTP)."""
import asyncio
import logging
import statistics
import struct
import time

import pytest
from channels.layers import get_channel_layer

from sightline_agent.protocol import HEADER, KIND_AUDIO, KIND_H264
from streams import broadcast, devicemedia, groups

NTP_TO_UNIX = 2208988800


def media_message(kind: int, payload: bytes, seq: int, ts_us: int) -> bytes:
    return HEADER.pack(0x53, 1, kind, 0x07, seq, ts_us, 0, 1, len(payload)) + payload


def parse(data: bytes, sent_at: float):
    """('sr', ssrc, ntp seconds, rtp) for a sender report; ('rtp', ssrc, timestamp, payload) for RTP."""
    if 192 <= data[1] <= 223:
        if data[1] != 200:
            return None
        ssrc, ntp, rtp = struct.unpack_from("!IQI", data, 4)
        return "sr", ssrc, ntp / 2**32 - NTP_TO_UNIX, rtp
    timestamp, ssrc = struct.unpack_from("!II", data, 4)
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    return "rtp", ssrc, timestamp, data[offset:]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_sender_reports_let_a_receiver_align_audio_and_video_captured_together(acme_camera, monkeypatch):
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from streams.webrtc_peer import PeerService

    # The client cannot decode the synthetic access units (we only read what the peer sends): quiet.
    monkeypatch.setattr(logging.getLogger("aiortc.rtcrtpreceiver"), "level", logging.ERROR)
    device = str(acme_camera.pk)
    await broadcast.redis_client().hset(groups.presence_key(device), devicemedia.FIELD, devicemedia.encode(
        {"video": ["h264"], "audio": {"codec": "opus", "rate": 48000, "channels": 2}, "talkback": None}))
    service = PeerService(get_channel_layer(), max_peers=1, ice_servers=[])
    client = RTCPeerConnection()
    client.addTransceiver("video", direction="recvonly")
    client.addTransceiver("audio", direction="recvonly")
    connected = asyncio.Event()
    client.on("connectionstatechange", lambda: client.connectionState == "connected" and connected.set())
    await client.setLocalDescription(await client.createOffer())
    reply_to = await service.layer.new_channel()
    try:
        await service._dispatch({"type": "webrtc.offer", "session": "s", "reply_to": reply_to, "device_id": device,
                                  "sdp": client.localDescription.sdp})
        answer = (await asyncio.wait_for(service.layer.receive(reply_to), 3))["message"]
        await client.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        await asyncio.wait_for(connected.wait(), 10)
        peer = service.peers["s"]
        transport = peer.pc.getSenders()[0].transport
        assert peer.pc.getSenders()[1].transport is transport  # bundled
        sent = []
        original = transport._send_rtp

        async def record(data):
            sent.append((bytes(data), time.time()))
            return await original(data)

        transport._send_rtp = record
        # 4 s of a device: 20 ms Opus packets and 15 fps H.264, both stamped by one capture clock.
        # The capture time rides in each payload (Opus TOC + 8 bytes; a one-NAL access unit + 8 bytes).
        start = time.time()
        for tick in range(200):
            await asyncio.sleep(max(0.0, start + tick * 0.02 - time.time()))
            now_us = int(start * 1e6) + tick * 20_000  # when this tick is due: pacing jitter stays out of the stamps
            opus = bytes([0xF8]) + struct.pack("!Q", now_us) + bytes(20)
            peer.audio_source.outbox.offer_frame(KIND_AUDIO, False, media_message(KIND_AUDIO, opus, tick, now_us))
            if tick % 3 == 0:
                nal = b"\0\0\0\1\x65" + struct.pack("!Q", now_us) + bytes(20)
                peer.outbox.offer_frame(KIND_H264, True, media_message(KIND_H264, nal, tick, now_us))
        await asyncio.sleep(1.6)  # the last reports (every 0.5-1.5 s)
    finally:
        for peer in list(service.peers.values()):
            await service.end(peer, None)
        await client.close()

    packets = [p for p in (parse(data, at) for data, at in sent) if p]
    video_ssrc = peer.pc.getSenders()[0]._ssrc
    audio_ssrc = peer.pc.getSenders()[1]._ssrc
    captured = {}  # (ssrc, rtp timestamp) → capture time (s)
    for kind, ssrc, timestamp, payload in (p for p in packets if p[0] == "rtp"):
        if ssrc == video_ssrc and payload[:1] == b"\x65":
            captured[ssrc, timestamp] = struct.unpack_from("!Q", payload, 1)[0] / 1e6
        elif ssrc == audio_ssrc and payload[:1] == b"\xf8":
            captured[ssrc, timestamp] = struct.unpack_from("!Q", payload, 1)[0] / 1e6
    # The premise: within each stream, RTP timestamps follow capture times (to a sample or a 90 kHz tick).
    for ssrc, rate in ((video_ssrc, 90000), (audio_ssrc, 48000)):
        stamps = sorted((c, t) for (s, t), c in captured.items() if s == ssrc)
        assert len(stamps) >= 50
        (c0, t0) = stamps[0]
        bad = [(round((c - c0) * 1000, 2), round(((t - t0) % 2**32) / rate * 1000, 2)) for c, t in stamps
               if abs(((t - t0) % 2**32) / rate - (c - c0)) >= 0.001]
        assert not bad, (rate, bad[:10])
    # Each report maps its stream's RTP clock to wall time; its error for frames captured at C is
    # (report's wall time) - (capture time of the packet it names): the same for every packet of the
    # stream until the next report, since the RTP timestamps follow capture times.
    errors = {video_ssrc: [], audio_ssrc: []}
    for _, ssrc, ntp, rtp in (p for p in packets if p[0] == "sr"):
        if (ssrc, rtp) in captured:
            errors[ssrc].append((ntp, ntp - captured[ssrc, rtp]))
    assert len(errors[video_ssrc]) >= 2 and len(errors[audio_ssrc]) >= 2, errors
    skews = []
    for at, video_error in errors[video_ssrc]:
        _, audio_error = min(errors[audio_ssrc], key=lambda item: abs(item[0] - at))
        skews.append((video_error - audio_error) * 1000)
    print(f"\nA/V skew a receiver derives from aiortc's sender reports: {len(skews)} video reports, median "
          f"{statistics.median(skews):+.1f} ms, worst {max(skews, key=abs):+.1f} ms (video minus audio; "
          f"capture → send per report: video {[round(e * 1000, 1) for _, e in errors[video_ssrc]]} ms, "
          f"audio {[round(e * 1000, 1) for _, e in errors[audio_ssrc]]} ms)")
    assert abs(statistics.median(skews)) <= 20
