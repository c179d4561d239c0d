"""ONVIF for relayed RTSP cameras, against a fake ONVIF camera (tests/onvif_camera.py: a SOAP
responder on loopback, and a WS-Discovery publisher on this machine's multicast group):
discovery with profile URIs, and brightness/contrast commands to the camera's imaging service,
from unit level up to an owner's command through a real uvicorn server."""
import asyncio
import io
import json
import os
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from sightline_agent.bridge import BridgeConfigError, parse_config
from sightline_agent.discover import main as discover_main
from sightline_agent.discover import scope_value
from sightline_agent.onvif_camera import OnvifCamera, OnvifUnavailable, onvif_for, parse_onvif_address, scale_to_camera
from sightline_agent.passthrough import PassthroughAgent, unsupported_keys
from sightline_agent.rtsp import RtspCamera
from sightline_agent.session import AgentConfig
from sightline_agent.status import Counters, StatusLine
from tests.onvif_camera import FakeOnvifCamera, StillRtspCamera
from tests.test_agent_integration import rows, server, server_env  # noqa: F401 -- fixtures


@pytest.fixture
def fake_onvif():
    camera = FakeOnvifCamera().start()
    yield camera
    camera.stop()


# -- pure parts -------------------------------------------------------------------------

def test_sightline_brightness_is_scaled_linearly_onto_the_cameras_range_with_zero_in_the_middle():
    assert scale_to_camera(-100, 0, 255) == 0 and scale_to_camera(100, 0, 255) == 255
    assert scale_to_camera(0, 0, 100) == 50 and scale_to_camera(50, 0, 255) == 191  # 191.25, whole numbers
    assert scale_to_camera(50, -1.0, 1.5) == 0.875  # a fractional range keeps fractions


def test_an_onvif_address_is_host_and_port_and_never_carries_credentials():
    assert parse_onvif_address("192.168.1.10") == ("192.168.1.10", 80)
    assert parse_onvif_address("http://cam.local:8080/onvif/device_service") == ("cam.local", 8080)
    with pytest.raises(ValueError, match="not in the address"):
        parse_onvif_address("http://admin:pw@cam.local")


def test_without_onvif_user_the_rtsp_urls_credentials_are_used_and_with_it_a_password_file(tmp_path):
    camera = onvif_for("10.0.0.5", None, None, "rtsp://admin:p%40ss@10.0.0.5/live", {})
    assert (camera._user, camera._password, camera.port) == ("admin", "p@ss", 80)
    (tmp_path / "pw").write_text("filepw\n")
    camera = onvif_for("10.0.0.5:8000", "ops", str(tmp_path / "pw"), "rtsp://10.0.0.5/live", {})
    assert (camera._user, camera._password, camera.port) == ("ops", "filepw", 8000)
    assert onvif_for("10.0.0.5", "ops", None, "rtsp://x/", {"SIGHTLINE_ONVIF_PASSWORD": "envpw"})._password == "envpw"
    with pytest.raises(ValueError, match="needs a password"):
        onvif_for("10.0.0.5", "ops", None, "rtsp://x/", {})


def test_a_command_is_unsupported_for_every_key_the_camera_cannot_change():
    assert unsupported_keys({"fps": 5, "brightness": 1}, {"brightness", "contrast"}) == ["fps"]
    assert unsupported_keys({"brightness": 1}, set()) == ["brightness"]
    assert unsupported_keys({}, {"brightness"}) == ["settings"]
    assert unsupported_keys("x", {"brightness"}) == ["settings"]


def test_the_bridge_file_takes_an_onvif_address_per_camera_and_refuses_a_bad_one():
    text = ('[[camera]]\nname="door"\nurl="rtsp://u:p@10.0.0.5/live"\ntoken_file="t"\n'
            'sightline_url="ws://x/ws/device/"\nonvif="10.0.0.5:8000"\nonvif_user="ops"\nonvif_password_file="pw"\n')
    (camera,), _ = parse_config(text, Path("/srv"))
    assert camera.onvif == "10.0.0.5:8000" and camera.onvif_password_file == "/srv/pw"
    with pytest.raises(BridgeConfigError, match="camera door: onvif"):
        parse_config(text.replace("10.0.0.5:8000", "ftp://10.0.0.5"), Path("/srv"))


def test_a_cameras_name_and_hardware_come_from_its_discovery_scopes():
    scopes = ["onvif://www.onvif.org/type/video_encoder", "onvif://www.onvif.org/name/Front%20door",
              "onvif://www.onvif.org/hardware/DS-2CD2143"]
    assert scope_value(scopes, "name") == "Front door" and scope_value(scopes, "hardware") == "DS-2CD2143"


# -- against the fake camera ----------------------------------------------------------

@pytest.mark.asyncio
async def test_the_onvif_client_lists_profiles_with_rtsp_uris_and_sets_scaled_imaging(fake_onvif):
    async with OnvifCamera("127.0.0.1", fake_onvif.port, "admin", "s3cret") as camera:
        profiles = await camera.profiles()
        assert [(p.name, p.resolution, p.uri) for p in profiles] == [
            ("Main", "1920x1080", "rtsp://127.0.0.1:8554/main"), ("Sub", "640x360", "rtsp://127.0.0.1:8554/sub")]
        imaging = await camera.imaging()
        assert imaging.source_token == "vs0" and imaging.ranges == {"brightness": (0, 255), "contrast": (0, 100)}
        assert await camera.set_imaging(imaging, {"brightness": 50, "contrast": -100}) == \
            {"Brightness": 191, "Contrast": 0}
    assert fake_onvif.set_requests == [{"token": "vs0", "Brightness": 191.0, "Contrast": 0.0}]


@pytest.mark.asyncio
async def test_a_wrong_onvif_password_is_said_plainly_without_the_password(fake_onvif):
    with pytest.raises(OnvifUnavailable) as raised:
        async with OnvifCamera("127.0.0.1", fake_onvif.port, "admin", "wrong-pw") as camera:
            await camera.profiles()
    assert "refused the user name or password" in str(raised.value) and "wrong-pw" not in str(raised.value)
    assert fake_onvif.unauthorised >= 1


def test_discover_finds_the_camera_by_ws_discovery_and_lists_its_rtsp_uris(fake_onvif, tmp_path, monkeypatch):
    """Real multicast WS-Discovery (239.255.255.250:3702) between two sockets of this machine."""
    fake_onvif.publish("Yard Cam")
    (tmp_path / "pw").write_text("s3cret")
    monkeypatch.delenv("SIGHTLINE_ONVIF_PASSWORD", raising=False)
    out = io.StringIO()
    assert discover_main(["--timeout", "2", "--user", "admin", "--password-file", str(tmp_path / "pw")], out) == 0
    text = out.getvalue()
    assert f"{fake_onvif.base}/onvif/device_service  Yard Cam (Fake-1)" in text, text
    assert "profile Main (H264 1920x1080): rtsp://127.0.0.1:8554/main" in text
    assert "s3cret" not in text

    out = io.StringIO()
    monkeypatch.setenv("SIGHTLINE_ONVIF_PASSWORD", "wrong")
    assert discover_main(["--timeout", "2", "--user", "admin", "--json"], out) == 0
    (mine,) = [c for c in json.loads(out.getvalue()) if c["address"].startswith(fake_onvif.base)]
    assert mine["profiles"] == [] and "refused the user name or password" in mine["error"]


def test_discover_with_a_user_but_no_password_stops_before_probing(monkeypatch, capsys):
    monkeypatch.delenv("SIGHTLINE_ONVIF_PASSWORD", raising=False)
    assert discover_main(["--user", "admin"]) == 2
    assert "needs a password" in capsys.readouterr().err


def relayed_agent(fake_onvif, **camera_kwargs) -> tuple[PassthroughAgent, io.StringIO]:
    out = io.StringIO()
    onvif = OnvifCamera("127.0.0.1", fake_onvif.port, "admin", "s3cret")
    agent = PassthroughAgent(AgentConfig(url="ws://x/ws/device/", token="t"), RtspCamera("rtsp://10.0.0.5/live"),
                             StatusLine(Counters(), stream=out), onvif=onvif)
    return agent, out


@pytest.mark.asyncio
async def test_a_relayed_cameras_brightness_command_goes_to_set_imaging_settings_and_fps_stays_unsupported(fake_onvif):
    agent, out = relayed_agent(fake_onvif)
    try:
        ack = await agent.handle_command({"type": "command", "id": "b1", "settings": {"brightness": -50}})
        assert ack == {"type": "ack", "id": "b1", "ok": True, "applied": {"brightness": -50}}
        assert fake_onvif.set_requests == [{"token": "vs0", "Brightness": 64.0}]  # 63.75 on 0..255

        ack = await agent.handle_command({"type": "command", "id": "f1", "settings": {"fps": 5, "brightness": 10}})
        assert ack["ok"] is False and ack["error"].startswith("unsupported:")
        assert "camera's fps cannot" in ack["error"] and "only brightness, contrast, through ONVIF" in ack["error"]
        ack = await agent.handle_command({"type": "command", "id": "b2", "settings": {"brightness": 500}})
        assert ack["ok"] is False and "between -100 and 100" in ack["error"]
        assert len(fake_onvif.set_requests) == 1  # refused commands change nothing on the camera
    finally:
        await agent.onvif.close()
    assert "s3cret" not in out.getvalue()


@pytest.mark.asyncio
async def test_a_camera_without_an_imaging_service_acks_brightness_as_unsupported():
    camera = FakeOnvifCamera(imaging=False).start()
    agent, out = relayed_agent(camera)
    try:
        ack = await agent.handle_command({"type": "command", "id": "b1", "settings": {"brightness": 10}})
    finally:
        await agent.onvif.close()
        camera.stop()
    assert ack["ok"] is False and ack["error"].startswith("unsupported:") and "camera's brightness cannot" in ack["error"]
    assert "no imaging service" in out.getvalue()


# -- through a real portal --------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_owners_brightness_command_reaches_the_cameras_imaging_service_and_fps_is_shown_unsupported(
        fake_onvif, server, rows):
    from tests.test_agent_integration import saved_device, viewer
    from tests.integration.test_live_two_processes import next_json

    device = rows["device"]
    agent = PassthroughAgent(AgentConfig(url=f"ws://127.0.0.1:{server}/ws/device/", token=rows["token"]),
                             StillRtspCamera("rtsp://127.0.0.1/still"), StatusLine(Counters(), quiet=True),
                             onvif=OnvifCamera("127.0.0.1", fake_onvif.port, "admin", "s3cret"))
    running = asyncio.create_task(agent.run())
    try:
        async with viewer(server, device.pk, rows["sessions"]["owner"]) as ws:
            if not (await next_json(ws, "welcome"))["device"]["online"]:
                while not (await next_json(ws, "presence"))["online"]:
                    pass
            await ws.send(json.dumps({"type": "command", "id": "onvif-b", "settings": {"brightness": 60}}))
            result = await next_json(ws, "command_result")
            assert result == {"type": "command_result", "id": "onvif-b", "ok": True, "applied": {"brightness": 60}}
            assert fake_onvif.set_requests == [{"token": "vs0", "Brightness": 204.0}]  # 60 -> 204 of 0..255

            await ws.send(json.dumps({"type": "command", "id": "onvif-f", "settings": {"fps": 5}}))
            result = await next_json(ws, "command_result")
            assert result["ok"] is False and result["error"].startswith("device: unsupported:")
            assert "camera's fps cannot" in result["error"]
        row = await sync_to_async(saved_device)(device.pk)
        assert row.brightness == 60 and row.fps != 5
    finally:
        agent.stop()
        assert await asyncio.wait_for(running, 10) == 0
