"""Audio on the live path: every codec of hello.audio reaches viewers byte for byte, and
viewers learn from the welcome and presence what the device sends and can play."""
import pytest

from sightline_agent import protocol
from sightline_agent.protocol import validate_audio
from tests.live_helpers import HELLO, connect_device, receive_binary, receive_json_of_type
from tests.test_audio_codecs import CODECS, encoded
from tests.test_consumer_viewer import watch

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


@pytest.fixture
def token(device_token):
    return device_token


@pytest.mark.parametrize("codec", CODECS)
async def test_each_audio_codec_reaches_the_viewer_byte_for_byte(sessions, acme_camera, token, codec):
    encoder, payloads = encoded(codec, 0.3)
    viewer, _ = await watch(acme_camera, sessions["viewer"])
    device, _ = await connect_device(token, hello={**HELLO, "audio": encoder.hello()})
    presence = await receive_json_of_type(viewer, "presence")
    assert presence["online"] and presence["media"]["audio"] == validate_audio(encoder.hello())
    sent = []
    for seq, (payload, ts) in enumerate(payloads, 1):
        message = protocol.encode_frame(protocol.KIND_AUDIO, payload, seq, ts)[0]
        sent.append(message)
        await device.send_to(bytes_data=message)
    received = [await receive_binary(viewer) for _ in sent]
    assert received == sent
    await device.disconnect()
    await viewer.disconnect()


async def test_a_viewer_arriving_later_learns_the_audio_and_talkback_from_the_welcome(sessions, acme_camera, token):
    audio = {"codec": "opus", "rate": 48000, "channels": 1}
    device, _ = await connect_device(token, hello={**HELLO, "audio": audio, "talkback": {"codecs": ["pcm_s16le"]}})
    viewer, welcome = await watch(acme_camera, sessions["operator"])
    assert welcome["media"] == {"video": ["jpeg"], "audio": audio,
                                "talkback": {"codecs": ["pcm_s16le"], "rate": 48000, "channels": 1}}
    await device.disconnect()
    await viewer.disconnect()


# -- talk-back ------------------------------------------------------------------------------

TALKBACK_HELLO = {**HELLO, "talkback": {"codecs": ["pcm_s16le", "opus"], "rate": 48000}}
START = {"type": "talk", "action": "start", "codec": "opus", "rate": 48000}


async def test_an_operator_talks_to_the_device_and_a_second_operator_cannot_talk_over(
        sessions, acme_camera, token, personas):
    from channels.db import database_sync_to_async

    from streams.models import TalkSession

    device, _ = await connect_device(token, hello=TALKBACK_HELLO)
    bob, _ = await watch(acme_camera, sessions["operator"])
    alice, _ = await watch(acme_camera, sessions["owner"])
    carol, _ = await watch(acme_camera, sessions["viewer"])

    await bob.send_json_to(START)
    assert (await receive_json_of_type(bob, "talk_result")) == {"type": "talk_result", "ok": True, "talking": "bob"}
    start = await receive_json_of_type(device, "talk")
    assert start == {"type": "talk", "state": "start", "codec": "opus", "rate": 48000, "channels": 1, "user": "bob"}
    for viewer in (alice, carol):  # every viewer learns who talks
        assert (await receive_json_of_type(viewer, "talk"))["talking"] == "bob"

    _, payloads = encoded("opus", 0.1)
    frames = [protocol.encode_frame(protocol.KIND_AUDIO, p, n, ts)[0] for n, (p, ts) in enumerate(payloads, 1)]
    for frame in frames:
        await bob.send_to(bytes_data=frame)
    assert [await receive_binary(device) for _ in frames] == frames  # relayed byte for byte

    await alice.send_json_to(START)
    refused = await receive_json_of_type(alice, "talk_result")
    assert refused == {"type": "talk_result", "ok": False, "error": "busy", "talking": "bob"}

    await bob.send_json_to({"type": "talk", "action": "stop"})
    assert (await receive_json_of_type(device, "talk")) == {"type": "talk", "state": "stop"}
    while (await receive_json_of_type(alice, "talk"))["talking"] is not None:
        pass  # "talking: bob" is repeated every second while audio flows; then "nobody"
    await alice.send_json_to(START)  # the floor is free again
    assert (await receive_json_of_type(alice, "talk_result"))["ok"] is True
    assert (await receive_json_of_type(device, "talk"))["user"] == "alice"
    await alice.disconnect()  # leaving ends the talk
    assert (await receive_json_of_type(device, "talk")) == {"type": "talk", "state": "stop"}

    def logged():
        return list(TalkSession.objects.filter(device=acme_camera).order_by("started_at")
                    .values_list("user_name", "codec", "ended_at"))
    rows = await database_sync_to_async(logged)()
    assert [(name, codec) for name, codec, _ in rows] == [("bob", "opus"), ("alice", "opus")]
    assert rows[0][2] is not None
    for ws in (bob, carol, device):
        await ws.disconnect()


async def test_a_viewer_can_never_talk_and_forged_audio_closes_its_socket(sessions, acme_camera, token):
    from tests.live_helpers import expect_close

    device, _ = await connect_device(token, hello=TALKBACK_HELLO)
    carol, _ = await watch(acme_camera, sessions["viewer"])
    await carol.send_json_to(START)
    assert (await receive_json_of_type(carol, "talk_result")) == {
        "type": "talk_result", "ok": False, "error": "forbidden"}
    await carol.send_to(bytes_data=protocol.encode_frame(protocol.KIND_AUDIO, b"\xf8\xff\xfe", 1, 5)[0])
    await expect_close(carol, protocol.Close.UNEXPECTED_TEXT)
    assert await device.receive_nothing(0.3)  # neither a talk start nor the forged audio
    await device.disconnect()


async def test_talk_is_refused_when_the_device_cannot_play_audio(sessions, acme_camera, token):
    device, _ = await connect_device(token)  # no talkback in its hello
    bob, welcome = await watch(acme_camera, sessions["operator"])
    assert welcome["media"]["talkback"] is None and welcome["talking"] is None
    await bob.send_json_to(START)
    assert (await receive_json_of_type(bob, "talk_result"))["error"] == "unsupported"
    await device.disconnect()
    await bob.disconnect()
