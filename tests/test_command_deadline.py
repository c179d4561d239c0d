"""A device's ack counts only before the command's deadline (issue 9, item 12): once the operator
has been told "timeout", a late ack is ignored, not saved on the device record. The deadline
travels with the command, since the device's socket may be held by another process."""
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from streams import control, groups
from streams.models import Device
from tests.live_helpers import (
    browser_socket,
    connect_device,
    receive_json_of_type,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


async def watch(device, sessionid):
    from streams import broadcast

    viewer = browser_socket(f"/ws/view/{device.pk}/", sessionid)
    assert (await viewer.connect())[0]
    await receive_json_of_type(viewer, "welcome")
    await wait_for(lambda: str(device.pk) in broadcast.get_hub().feeds)
    return viewer


async def nothing_of_type(communicator, kind: str, timeout: float = 0.3) -> None:
    """Within `timeout`, no text message of type `kind` (stats, pings and presence may come)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if await communicator.receive_nothing(timeout=remaining):
            return
        output = await communicator.receive_output()
        if output.get("text") is not None:
            assert json.loads(output["text"]).get("type") != kind, output


async def handled(device, ping_id) -> None:
    """The device consumer handles messages in order: once our ping is answered, the ack before it was."""
    await device.send_json_to({"type": "ping", "id": ping_id, "ts": 1.0})
    while (await receive_json_of_type(device, "pong"))["id"] != ping_id:
        pass


@pytest.mark.asyncio
async def test_an_ack_after_the_operator_was_told_timeout_does_not_change_the_saved_settings(
        settings, sessions, acme_camera, device_token):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "COMMAND_TIMEOUT_SECONDS": 0.5}
    device, _ = await connect_device(device_token)
    viewer = await watch(acme_camera, sessions["operator"])
    await viewer.send_json_to({"type": "command", "id": "late", "settings": {"fps": 5, "x_ir_mode": "night"}})
    command = await receive_json_of_type(device, "command")
    result = await receive_json_of_type(viewer, "command_result", timeout=3)
    assert result == {"type": "command_result", "id": "late", "ok": False, "error": "timeout"}
    await device.send_json_to({"type": "ack", "id": command["id"], "ok": True, "applied": command["settings"]})
    await handled(device, 7)
    row = await database_sync_to_async(Device.objects.get)(pk=acme_camera.pk)
    assert (row.fps, row.extra_settings) == (10, {})
    await nothing_of_type(viewer, "command_result")  # no second, contradicting answer
    # The next connection's welcome carries the saved settings, not the ignored ones.
    await device.disconnect()
    device, welcome = await connect_device(device_token)
    assert welcome["settings"]["fps"] == 10 and "x_ir_mode" not in welcome["settings"]
    await device.disconnect()
    await viewer.disconnect()


@pytest.mark.asyncio
async def test_an_ack_in_time_is_still_saved_and_reported(settings, sessions, acme_camera, device_token):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "COMMAND_TIMEOUT_SECONDS": 2}
    device, _ = await connect_device(device_token)
    viewer = await watch(acme_camera, sessions["owner"])
    await viewer.send_json_to({"type": "command", "id": 1, "settings": {"fps": 5}})
    command = await receive_json_of_type(device, "command")
    await device.send_json_to({"type": "ack", "id": command["id"], "ok": True})
    result = await receive_json_of_type(viewer, "command_result")
    assert result == {"type": "command_result", "id": 1, "ok": True, "applied": {"fps": 5}}
    assert (await database_sync_to_async(Device.objects.get)(pk=acme_camera.pk)).fps == 5
    await device.disconnect()
    await viewer.disconnect()


@pytest.mark.asyncio
async def test_a_command_whose_deadline_passed_on_the_way_is_not_forwarded_to_the_device(
        acme_camera, device_token):
    device, _ = await connect_device(device_token)
    layer = get_channel_layer()
    reply_to = await layer.new_channel()
    await layer.group_send(groups.device_group(acme_camera.pk), {
        "type": "device.command", "id": "stale", "settings": {"fps": 5}, "reply_to": reply_to,
        "deadline": time.time() - 1})
    await nothing_of_type(device, "command")
    await device.disconnect()


def test_the_ack_deadline_comes_before_the_operators_timeout():
    assert control.ack_deadline(100.0, 5) == pytest.approx(104.5)
    assert 100.0 < control.ack_deadline(100.0, 1) < 101.0
