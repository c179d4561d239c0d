"""WebRTC signalling over the viewer socket (docs/protocol.md "WebRTC"): validation (pure), and the
relay between a viewer socket and a WebRTC process, played here by the test through the channel layer."""
import asyncio
import time

import pytest
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from streams import broadcast, groups, signalling
from streams.signalling import SignallingError
from streams.webrtc_relay import OFFERS_CHANNEL, PROCESSES_GROUP, WebrtcRelay
from tests.live_helpers import browser_socket, expect_close, receive_json_of_type, receive_nothing_but_pings

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n"
CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host generation 0",
             "sdpMid": "0", "sdpMLineIndex": 0}


# -- validation (pure) ------------------------------------------------------------------


@pytest.mark.parametrize("message", [{}, {"sdp": 5}, {"sdp": ""}, {"sdp": "hello"}, {"sdp": "v=0\r\nm=audio 9 X 0\r\n"},
                                     {"sdp": "v=0\r\nm=video 9 X 0\r\n" + "a=x\r\n" * 10000}])
def test_a_malformed_offer_is_a_bad_offer_error(message):
    with pytest.raises(SignallingError) as raised:
        signalling.check_offer(message)
    assert raised.value.code == signalling.BAD_OFFER


def test_a_plausible_offer_is_accepted_as_is():
    assert signalling.check_offer({"sdp": OFFER}) == OFFER


@pytest.mark.parametrize("candidate", ["x", 3, {"candidate": 5}, {"candidate": "candidate:1 1 udp"},
                                       {"candidate": CANDIDATE["candidate"]},
                                       {**CANDIDATE, "sdpMLineIndex": -1}, {**CANDIDATE, "sdpMid": ["0"]},
                                       {**CANDIDATE, "candidate": "a=evil " * 10}])
def test_a_malformed_candidate_is_a_bad_candidate_error(candidate):
    with pytest.raises(SignallingError) as raised:
        signalling.check_candidate({"candidate": candidate})
    assert raised.value.code == signalling.BAD_CANDIDATE


def test_null_or_an_empty_candidate_line_means_end_of_candidates():
    assert signalling.check_candidate({"candidate": None}) is None
    assert signalling.check_candidate({}) is None
    assert signalling.check_candidate({"candidate": {"candidate": "", "sdpMid": "0"}}) is None
    assert signalling.check_candidate({"candidate": CANDIDATE}) == CANDIDATE


def test_ice_servers_are_read_from_json_and_bad_values_name_the_setting():
    assert signalling.parse_ice_servers('[{"urls":"stun:stun.example.org:3478"},'
                                        '{"urls":["turn:t.example.org:3478"],"username":"u","credential":"p"}]') == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:t.example.org:3478"], "username": "u", "credential": "p"}]
    assert signalling.parse_ice_servers("") == []
    for bad in ("{", '{"urls":"stun:x"}', '[{"urls":"http://x"}]', '[{"urls":"stun:x","credential":1}]'):
        with pytest.raises(ImproperlyConfigured, match="WEBRTC_ICE_SERVERS"):
            signalling.parse_ice_servers(bad)


# -- the relay in the viewer socket -------------------------------------------------------

consumer = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


async def watch(device, sessionid):
    viewer = browser_socket(f"/ws/view/{device.pk}/", sessionid)
    assert (await viewer.connect())[0]
    welcome = await receive_json_of_type(viewer, "welcome")
    return viewer, welcome


async def pretend_a_webrtc_process_runs():
    await broadcast.redis_client().zadd(groups.webrtc_peers_key(), {"test-process": time.time()})


async def next_offer_or_bye(layer, device, timeout=3):
    """The next message for `device` in the offers queue (earlier tests may have left others there)."""
    while True:
        message = await asyncio.wait_for(layer.receive(OFFERS_CHANNEL), timeout)
        if message.get("device_id") == str(device.pk):
            return message


@pytest.mark.parametrize("message", [{"type": "webrtc_offer"}, {"type": "webrtc_offer", "sdp": "not sdp"},
                                     {"type": "webrtc_offer", "sdp": ["v=0"]}])
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_a_malformed_offer_gets_a_documented_error_and_the_socket_stays_open(sessions, acme_camera, message):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    await viewer.send_json_to(message)
    error = await receive_json_of_type(viewer, "webrtc_error")
    assert error["code"] == "bad_offer"
    await viewer.send_json_to({"type": "ping", "id": 7, "ts": 0})
    assert (await receive_json_of_type(viewer, "pong"))["id"] == 7
    await viewer.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_an_offer_with_no_webrtc_process_running_is_refused_at_once_as_unavailable(sessions, acme_camera):
    viewer, welcome = await watch(acme_camera, sessions["viewer"])
    assert welcome["webrtc"] == {"ice_servers": []}
    await viewer.send_json_to({"type": "webrtc_offer", "sdp": OFFER})
    error = await receive_json_of_type(viewer, "webrtc_error", timeout=1)
    assert error["code"] == "unavailable" and "manage.py webrtc" in error["message"]
    await viewer.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_candidates_wait_for_the_answer_then_go_to_the_process_that_answered(sessions, acme_camera):
    await pretend_a_webrtc_process_runs()
    layer = get_channel_layer()
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    await viewer.send_json_to({"type": "webrtc_offer", "sdp": OFFER})
    await viewer.send_json_to({"type": "webrtc_candidate", "candidate": CANDIDATE})
    offer = await next_offer_or_bye(layer, acme_camera)
    assert offer["type"] == "webrtc.offer" and offer["device_id"] == str(acme_camera.pk) and offer["sdp"] == OFFER
    peer = await layer.new_channel()
    await layer.send(offer["reply_to"], {"type": "webrtc.signal", "session": offer["session"], "peer": peer,
                                         "message": {"type": "webrtc_answer", "sdp": "v=0\r\n"}})
    answer = await receive_json_of_type(viewer, "webrtc_answer")
    assert answer == {"type": "webrtc_answer", "sdp": "v=0\r\n", "session": offer["session"]}
    early = await asyncio.wait_for(layer.receive(peer), 3)
    assert early == {"type": "webrtc.candidate", "session": offer["session"], "candidate": CANDIDATE}
    await viewer.send_json_to({"type": "webrtc_candidate", "candidate": None})
    assert (await asyncio.wait_for(layer.receive(peer), 3))["candidate"] is None
    # Closing the socket (a revoked member's too) ends the peer: bye reaches the process.
    await viewer.disconnect()
    bye = await asyncio.wait_for(layer.receive(peer), 3)
    assert bye["type"] == "webrtc.bye" and bye["session"] == offer["session"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_no_answer_in_time_is_a_timeout_error(settings, sessions, acme_camera):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "WEBRTC_ANSWER_TIMEOUT_SECONDS": 0.3}
    await pretend_a_webrtc_process_runs()
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    await viewer.send_json_to({"type": "webrtc_offer", "sdp": OFFER})
    error = await receive_json_of_type(viewer, "webrtc_error", timeout=2)
    assert error["code"] == "timeout"
    await viewer.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_a_candidate_without_an_offer_is_a_no_session_error(sessions, acme_camera):
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    await viewer.send_json_to({"type": "webrtc_candidate", "candidate": CANDIDATE})
    assert (await receive_json_of_type(viewer, "webrtc_error"))["code"] == "no_session"
    await viewer.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_an_outsider_cannot_offer_for_another_organisations_device(sessions, acme_camera):
    await pretend_a_webrtc_process_runs()
    viewer = browser_socket(f"/ws/view/{acme_camera.pk}/", sessions["outsider"])
    assert (await viewer.connect())[0]
    await expect_close(viewer, 4404)
    layer = get_channel_layer()
    queued = []  # byes of earlier tests' unanswered sessions may be there; no offer may
    while True:
        try:
            queued.append(await asyncio.wait_for(layer.receive(OFFERS_CHANNEL), 0.3))
        except asyncio.TimeoutError:
            break
    assert not [m for m in queued if m["type"] == "webrtc.offer" and m["device_id"] == str(acme_camera.pk)]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_a_late_answer_for_a_replaced_session_is_not_relayed(sessions, acme_camera):
    await pretend_a_webrtc_process_runs()
    layer = get_channel_layer()
    process = await layer.new_channel()  # one WebRTC process's own channel, as PeerService joins it
    await layer.group_add(PROCESSES_GROUP, process)
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    await viewer.send_json_to({"type": "webrtc_offer", "sdp": OFFER})
    first = await next_offer_or_bye(layer, acme_camera)
    await viewer.send_json_to({"type": "webrtc_offer", "sdp": OFFER})
    assert (await next_offer_or_bye(layer, acme_camera))["type"] == "webrtc.offer"
    # The first session was not answered: its bye goes to every WebRTC process, not into the offers queue
    # (whichever process read it there might not be the one that took the offer).
    bye = await asyncio.wait_for(layer.receive(process), 3)
    assert bye["type"] == "webrtc.bye" and bye["session"] == first["session"]
    await layer.group_discard(PROCESSES_GROUP, process)
    await layer.send(first["reply_to"], {"type": "webrtc.signal", "session": first["session"], "peer": "x",
                                         "message": {"type": "webrtc_answer", "sdp": "v=0\r\n"}})
    await receive_nothing_but_pings(viewer, 0.3)
    await viewer.disconnect()


# -- the WebRTC process's refusals ----------------------------------------------------------


async def process_reply(service, device_id, sdp=OFFER):
    layer = service.layer
    reply_to = await layer.new_channel()
    await service._dispatch({"type": "webrtc.offer", "session": "s1", "reply_to": reply_to,
                             "device_id": str(device_id), "sdp": sdp})
    return (await asyncio.wait_for(layer.receive(reply_to), 3))["message"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_a_full_webrtc_process_refuses_with_busy(acme_camera):
    from streams.webrtc_peer import PeerService

    service = PeerService(get_channel_layer(), max_peers=0, ice_servers=[])
    reply = await process_reply(service, acme_camera.pk)
    assert reply["type"] == "webrtc_error" and reply["code"] == "busy" and "0 peers" in reply["message"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_an_offer_aiortc_cannot_use_is_a_bad_offer_and_leaves_no_peer(acme_camera):
    from streams.webrtc_peer import PeerService

    service = PeerService(get_channel_layer(), max_peers=2, ice_servers=[])
    reply = await process_reply(service, acme_camera.pk, OFFER)  # no ICE credentials, no DTLS fingerprint
    assert reply["type"] == "webrtc_error" and reply["code"] == "bad_offer"
    assert service.peers == {}
    assert str(acme_camera.pk) not in broadcast.get_hub().feeds


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_a_new_peer_and_a_browsers_pli_each_ask_the_device_for_a_keyframe(acme_camera, device_token):
    from aiortc import RTCPeerConnection

    from streams.webrtc_peer import PeerService
    from tests.live_helpers import HELLO, connect_device

    device, _ = await connect_device(device_token, {**HELLO, "codecs": ["h264"]})
    service = PeerService(get_channel_layer(), max_peers=2, ice_servers=[])
    client = RTCPeerConnection()
    client.addTransceiver("video", direction="recvonly")
    await client.setLocalDescription(await client.createOffer())
    try:
        reply = await process_reply(service, acme_camera.pk, client.localDescription.sdp)
        assert reply["type"] == "webrtc_answer" and "m=video" in reply["sdp"] and "H264" in reply["sdp"]
        assert (await receive_json_of_type(device, "keyframe"))["type"] == "keyframe"  # the new peer
        [peer] = service.peers.values()
        await asyncio.sleep(0.55)  # past the per-device interval
        peer.pc.getTransceivers()[0].sender._send_keyframe()  # what aiortc calls on a PLI or FIR
        assert (await receive_json_of_type(device, "keyframe"))["type"] == "keyframe"
        assert service.stats["keyframe_requests"] == 2
    finally:
        for peer in list(service.peers.values()):
            await service.end(peer, None)
        await client.close()
        await device.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_an_unexpected_failure_in_the_process_is_reported_as_failed_at_once(monkeypatch, acme_camera):
    from streams import webrtc_peer
    from streams.webrtc_peer import PeerService

    async def broken(self, sdp):
        raise RuntimeError("boom")

    monkeypatch.setattr(webrtc_peer.Peer, "answer", broken)
    service = PeerService(get_channel_layer(), max_peers=2, ice_servers=[])
    reply = await process_reply(service, acme_camera.pk)
    assert reply["type"] == "webrtc_error" and reply["code"] == "failed"
    assert service.peers == {}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_a_bye_before_the_answer_closes_the_peer_at_once_whichever_of_two_processes_took_the_offer(
        acme_camera):
    """Two WebRTC processes read the offers queue; a viewer that leaves before its answer arrived must
    not leave a peer behind for CONNECT_TIMEOUT_SECONDS in whichever process took the offer."""
    from aiortc import RTCPeerConnection

    from streams.webrtc_peer import PeerService

    layer = get_channel_layer()
    services = [PeerService(layer, max_peers=4, ice_servers=[], identity=f"test-{name}") for name in "ab"]
    stop, ready = asyncio.Event(), []
    runs = [asyncio.create_task(service.run(stop, lambda: ready.append(1))) for service in services]
    to_viewer = []

    async def send(message):
        to_viewer.append(message)
    client = RTCPeerConnection()
    client.addTransceiver("video", direction="recvonly")
    await client.setLocalDescription(await client.createOffer())
    replies = await layer.new_channel()
    try:
        while len(ready) < 2:
            await asyncio.sleep(0.01)
        taken_by = set()
        for _ in range(6):  # either process may take each offer: both must end up holding one
            relay = WebrtcRelay(acme_camera.pk, replies, layer, broadcast.redis_client(), send, answer_timeout=5)
            await relay.handle({"type": "webrtc_offer", "sdp": client.localDescription.sdp})
            session = relay.session
            holder = await wait_for_holder(services, session)
            assert to_viewer == []
            taken_by.add(holder.identity)
            await relay.close("viewer said bye")  # never answered, as far as the relay knows
            other = next(service for service in services if service is not holder)
            started = time.monotonic()
            # The holder closes the peer; the other remembers the session (it drops the offer, were it queued).
            while any(service.peers for service in services) or session not in other.said_bye:
                assert time.monotonic() - started < 2, "the peer outlived its viewer's bye"
                await asyncio.sleep(0.02)
        assert len(taken_by) == 2, f"one process took every offer ({taken_by}): the test proved nothing"
    finally:
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)
        await client.close()


async def wait_for_holder(services, session, timeout=5):
    started = time.monotonic()
    while True:
        for service in services:
            if session in service.peers:
                return service
        assert time.monotonic() - started < timeout, "no process took the offer"
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
@pytest.mark.parametrize("first, then", [
    ({"codec": "opus", "rate": 48000, "channels": 2}, {"codec": "pcm_alaw", "rate": 8000, "channels": 1}),  # passthrough
    ({"codec": "pcm_s16le", "rate": 16000, "channels": 1}, {"codec": "aac", "rate": 16000, "channels": 1}),  # transcode
])
async def test_a_device_back_with_another_audio_format_ends_its_audio_peers_with_a_format_changed_bye(
        acme_camera, device_token, first, then):
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from streams.webrtc_peer import PeerService
    from tests.live_helpers import HELLO, connect_device

    device, _ = await connect_device(device_token, {**HELLO, "codecs": ["h264"], "audio": first})
    service = PeerService(get_channel_layer(), max_peers=2, ice_servers=[])
    client = RTCPeerConnection()
    client.addTransceiver("video", direction="recvonly")
    client.addTransceiver("audio", direction="recvonly")
    connected = asyncio.Event()
    client.on("connectionstatechange", lambda: client.connectionState == "connected" and connected.set())
    await client.setLocalDescription(await client.createOffer())
    layer = service.layer
    reply_to = await layer.new_channel()
    try:
        await service._dispatch({"type": "webrtc.offer", "session": "s1", "reply_to": reply_to,
                                 "device_id": str(acme_camera.pk), "sdp": client.localDescription.sdp})
        answer = (await asyncio.wait_for(layer.receive(reply_to), 3))["message"]
        assert answer["type"] == "webrtc_answer" and service.peers["s1"].audio_track is not None
        await client.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        await asyncio.wait_for(connected.wait(), 10)
        await device.disconnect()
        device, _ = await connect_device(device_token, {**HELLO, "codecs": ["h264"], "audio": then})
        started = time.monotonic()
        while True:
            message = (await asyncio.wait_for(layer.receive(reply_to), 3))["message"]
            if message["type"] not in ("webrtc_stats", "webrtc_candidate"):
                break
        assert message == {"type": "webrtc_bye", "code": "format_changed", "reason": "device format changed"}
        print(f"\nformat change → bye in {(time.monotonic() - started) * 1000:.0f} ms")
        assert service.peers == {} and service.stats["format_changed_byes"] == 1
    finally:
        for peer in list(service.peers.values()):
            await service.end(peer, None)
        await service.encoders.close()
        await client.close()
        await device.disconnect()
