"""hello.source (docs/protocol.md, "hello"): what a device streams from, validated, kept in the
presence hash for the connection's life, and shown to viewers and the wall; a browser publisher
is always "browser"."""
import pytest

from sightline_agent.protocol import Close, ProtocolError, validate_hello
from tests.live_helpers import HELLO, browser_socket, connect_device, device_socket, expect_close, receive_json_of_type

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


async def test_validate_hello_keeps_only_the_kind_of_a_documented_source():
    assert validate_hello({**HELLO, "source": {"kind": "rtsp", "camera": "x"}})["source"] == {"kind": "rtsp"}
    assert validate_hello(HELLO)["source"] is None
    for bad in ({"kind": "ftp"}, "rtsp", {"kind": ["rtsp"]}, {}):
        with pytest.raises(ProtocolError) as raised:
            validate_hello({**HELLO, "source": bad})
        assert raised.value.code == Close.UNEXPECTED_TEXT and "hello.source.kind" in str(raised.value)


async def test_an_rtsp_bridges_source_reaches_the_viewer_and_the_wall_and_goes_with_the_connection(
        device_token, sessions, acme, acme_camera):
    wall = browser_socket(f"/ws/wall/{acme.pk}/", sessions["viewer"])
    assert (await wall.connect())[0]
    await receive_json_of_type(wall, "devices")
    device, _ = await connect_device(device_token, {**HELLO, "codecs": ["h264"], "source": {"kind": "rtsp"}})
    event = await receive_json_of_type(wall, "presence")
    assert event["online"] is True and event["source"] == "rtsp"

    viewer = browser_socket(f"/ws/view/{acme_camera.pk}/", sessions["viewer"])
    assert (await viewer.connect())[0]
    assert (await receive_json_of_type(viewer, "welcome"))["device"]["source"] == "rtsp"
    await viewer.disconnect()

    await device.disconnect()
    event = await receive_json_of_type(wall, "presence")
    assert event["online"] is False and "source" not in event
    viewer = browser_socket(f"/ws/view/{acme_camera.pk}/", sessions["viewer"])
    assert (await viewer.connect())[0]
    assert "source" not in (await receive_json_of_type(viewer, "welcome"))["device"]
    await viewer.disconnect()
    await wall.disconnect()


async def test_a_hello_with_an_unknown_source_kind_closes_with_4007_and_the_device_stays_offline(
        device_token, sessions, acme_camera):
    device = device_socket(device_token)
    assert (await device.connect())[0]
    await device.send_json_to({**HELLO, "source": {"kind": "satellite"}})
    error = await expect_close(device, Close.UNEXPECTED_TEXT)
    assert "hello.source.kind" in error["message"]
    viewer = browser_socket(f"/ws/view/{acme_camera.pk}/", sessions["owner"])
    assert (await viewer.connect())[0]
    assert (await receive_json_of_type(viewer, "welcome"))["device"]["online"] is False
    await viewer.disconnect()
