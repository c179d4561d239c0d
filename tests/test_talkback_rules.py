"""Who may talk back to a device, decided without sockets (streams/talkback.py)."""
import pytest

from streams.talkback import BUSY, FORBIDDEN, OFFLINE, UNSUPPORTED, talk_event, talk_refusal

MEDIA = {"video": ["jpeg"], "audio": None, "talkback": {"codecs": ["opus", "pcm_s16le"], "rate": 16000, "channels": 1}}


@pytest.mark.parametrize("may_talk, online, media, codec, rate, refusal", [
    (True, True, MEDIA, "opus", 48000, None),
    (True, True, MEDIA, "pcm_s16le", 16000, None),
    (False, True, MEDIA, "opus", 48000, FORBIDDEN),  # a viewer, whatever else holds
    (True, False, MEDIA, "opus", 48000, OFFLINE),
    (True, True, {**MEDIA, "talkback": None}, "opus", 48000, UNSUPPORTED),  # the device cannot play audio
    (True, True, None, "opus", 48000, UNSUPPORTED),
    (True, True, MEDIA, "pcm_s16le", 48000, UNSUPPORTED),  # PCM only at the device's rate
    (True, True, MEDIA, "aac", 16000, UNSUPPORTED),
])
def test_a_talk_request_is_refused_only_for_a_documented_reason(may_talk, online, media, codec, rate, refusal):
    assert talk_refusal(may_talk, online, media, codec, rate) == refusal


def test_the_talk_event_names_the_talker_or_nobody():
    assert talk_event("d1", "bob") == {"type": "talk", "device_id": "d1", "talking": "bob"}
    assert talk_event("d1", None)["talking"] is None
    assert BUSY == "busy"
