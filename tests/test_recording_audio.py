"""Device -> recording for every audio codec, through the real device socket and recorder
service: the spool keeps hello.audio, the transcode muxes it (AAC/Opus copied, PCM and G.711
to AAC), and PyAV decodes as much audio from the MP4 as the device sent (within 2 %)."""
import time

import av
import pytest

from recordings import transcode
from sightline_agent import protocol
from tests.live_helpers import HELLO, connect_device, receive_json_of_type, wait_for
from tests.test_audio_codecs import CODECS, sent_seconds
from tests.test_recording_device_socket import all_closed, jpeg, queued, start_service, token  # noqa: F401

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


@pytest.mark.parametrize("codec", CODECS)
async def test_each_codec_sent_by_a_device_is_in_its_recording(token, acme_camera, queued, start_service,  # noqa: F811
                                                               codec, tmp_path):
    from sightline_agent.audio import AudioEncoder, Tone

    service = await start_service(segment_seconds=30)
    encoder = AudioEncoder(codec)
    tone = Tone(encoder.rate)
    device, _ = await connect_device(token, hello={**HELLO, "audio": encoder.hello()})
    t0 = int(time.time() * 1_000_000)
    payloads, seq, sent = [], 0, 0
    # 6 s: a picture every 100 ms, audio every 20 ms. (AAC frames are 1024 samples, so the
    # last one of a recording may hold up to 128 ms of padding at 8 kHz: 2 % of 6 s.)
    for frame in range(60):
        await device.send_to(bytes_data=jpeg(frame, t0))
        sent += 1
        if frame == 0:  # sent in a burst, not in real time: let the recorder take the device first
            assert (await receive_json_of_type(device, "recording", timeout=10))["state"] == "recording"
        for block in range(5):
            ts = t0 + frame * 100_000 + block * 20_000
            for payload, stamp in encoder.encode(tone.read(encoder.chunk_samples), ts):
                seq += 1
                payloads.append((payload, stamp))
                await device.send_to(bytes_data=protocol.encode_frame(protocol.KIND_AUDIO, payload, seq, stamp)[0])
                sent += 1
        if frame % 10 == 9:  # the recorder's hand-off queue holds 300 frames: let it drain
            slot = service.slots[str(acme_camera.pk)]
            await wait_for(lambda: service.frames_received >= sent and slot.recorder.status["queued"] == 0, 10)
    await device.send_json_to({"type": "ping", "id": 1, "ts": 0})
    await receive_json_of_type(device, "pong")  # every frame before it was published
    await device.disconnect()
    (row,) = await all_closed(acme_camera.pk, 1)
    result = transcode.transcode_spool(row[4], tmp_path / "out.mp4")
    assert result.has_audio
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.audio[0]
        decoded = sum(f.samples for f in container.decode(audio=0)) / stream.rate
    assert decoded == pytest.approx(sent_seconds(encoder, payloads), rel=0.02)
