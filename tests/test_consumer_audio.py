"""Audio on the live path: every codec of hello.audio reaches viewers byte for byte, and
viewers learn from the welcome and presence what the device sends and can play."""
import pytest

from streams import protocol
from streams.protocol import validate_audio
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
