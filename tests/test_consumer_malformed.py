"""Malformed client messages on viewer and device sockets: each closes only its own socket with a
documented code (or gets a clear command_result error), and whatever a handler raises, the socket
is cleaned up exactly once: the hub forgets the viewer, the device goes offline."""
import asyncio
import logging

import pytest
from channels.db import database_sync_to_async

# Imported here, not in a test: building it runs django.setup(), whose logging configuration
# would remove caplog's handler in the middle of a test.
from project.asgi import application as ASGI_APPLICATION

from streams import broadcast, groups, metrics
from streams.consumers.device import DeviceConsumer
from streams.consumers.viewer import ViewerConsumer
from streams.models import Device
from sightline_agent.protocol import Close
from tests.live_helpers import (
    browser_socket,
    connect_device,
    expect_close,
    receive_json_of_type,
    receive_nothing_but_pings,
    wait_for,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


async def watch(device, sessionid):
    viewer = browser_socket(f"/ws/view/{device.pk}/", sessionid)
    assert (await viewer.connect())[0]
    await receive_json_of_type(viewer, "welcome")
    await wait_for(lambda: str(device.pk) in broadcast.get_hub().feeds)
    return viewer


def hub_viewers(device) -> int:
    feed = broadcast.get_hub().feeds.get(str(device.pk))
    return len(feed.viewers) if feed else 0


def viewers_gauge(device) -> float:
    return metrics.VIEWERS.labels(str(device.pk))._value.get()


async def assert_forgotten(viewer, device) -> None:
    """The client goes away as a browser would after a close; the hub and the gauge forget it."""
    await viewer.disconnect()
    await wait_for(lambda: hub_viewers(device) == 0, timeout=2)
    assert viewers_gauge(device) == 0


async def assert_still_connected(device_socket) -> None:
    await device_socket.send_json_to({"type": "ping", "id": 7, "ts": 1})
    assert (await receive_json_of_type(device_socket, "pong"))["id"] == 7


@pytest.mark.parametrize("kinds", [[{}], [[]], [1], [None], "jpeg", {"jpeg": True}])
async def test_a_subscribe_with_kinds_that_are_not_names_closes_4007_and_the_hub_forgets_the_viewer(
    sessions, acme_camera, kinds
):
    other = await watch(acme_camera, sessions["operator"])
    viewer = await watch(acme_camera, sessions["owner"])
    assert hub_viewers(acme_camera) == 2
    await viewer.send_json_to({"type": "subscribe", "kinds": kinds})
    error = await expect_close(viewer, Close.UNEXPECTED_TEXT)
    assert "subscribe.kinds must be a list of" in error["message"]
    await viewer.disconnect()
    await wait_for(lambda: hub_viewers(acme_camera) == 1, timeout=2)
    await receive_nothing_but_pings(other)  # the other viewer is untouched
    await assert_forgotten(other, acme_camera)


@pytest.mark.parametrize("number", ["1e400", "NaN", "-Infinity", "Infinity", "-1e999"])
async def test_a_command_with_a_non_finite_number_closes_4007_and_never_reaches_the_device(
    sessions, acme_camera, device_token, number
):
    device, _ = await connect_device(device_token)
    viewer = await watch(acme_camera, sessions["owner"])
    await viewer.send_to(text_data='{"type":"command","id":"c1","settings":{"brightness":%s}}' % number)
    error = await expect_close(viewer, Close.UNEXPECTED_TEXT)
    assert "non-finite number" in error["message"]
    await assert_forgotten(viewer, acme_camera)
    await receive_nothing_but_pings(device)
    await assert_still_connected(device)
    await device.disconnect()


async def test_an_owners_nan_generic_setting_never_reaches_the_device_nor_the_database(
    sessions, acme_camera, device_token
):
    device, _ = await connect_device(device_token)
    viewer = await watch(acme_camera, sessions["owner"])
    await viewer.send_to(text_data='{"type":"command","id":"c1","settings":{"x_key":NaN}}')
    await expect_close(viewer, Close.UNEXPECTED_TEXT)
    await assert_forgotten(viewer, acme_camera)
    await receive_nothing_but_pings(device)
    await assert_still_connected(device)  # the camera is not dropped
    row = await database_sync_to_async(Device.objects.get)(pk=acme_camera.pk)
    assert row.extra_settings in ({}, None)
    await device.disconnect()


async def test_a_devices_ack_with_a_non_finite_value_closes_only_the_device_and_saves_nothing(
    sessions, acme_camera, device_token
):
    device, _ = await connect_device(device_token)
    viewer = await watch(acme_camera, sessions["owner"])
    await viewer.send_json_to({"type": "command", "id": "c1", "settings": {"x_key": 1}})
    command = await receive_json_of_type(device, "command")
    await device.send_to(text_data='{"type":"ack","id":"%s","ok":true,"applied":{"x_key":NaN}}' % command["id"])
    await expect_close(device, Close.UNEXPECTED_TEXT)
    await device.disconnect()
    presence = await receive_json_of_type(viewer, "presence")  # the viewer stays, and hears the device left
    assert presence["online"] is False
    row = await database_sync_to_async(Device.objects.get)(pk=acme_camera.pk)
    assert row.extra_settings in ({}, None)
    await assert_forgotten(viewer, acme_camera)


async def test_a_viewer_handler_that_raises_closes_1011_after_an_error_and_the_hub_forgets_the_viewer(
    sessions, acme_camera, monkeypatch, caplog
):
    def broken(self, message):
        raise TypeError("a bug in a handler")

    monkeypatch.setattr(ViewerConsumer, "_subscribe", broken)
    other = await watch(acme_camera, sessions["operator"])
    viewer = await watch(acme_camera, sessions["owner"])
    caplog.set_level(logging.INFO)
    await viewer.send_json_to({"type": "subscribe", "kinds": ["jpeg"]})
    error = await expect_close(viewer, Close.SERVER_ERROR)
    assert error == {"type": "error", "code": 1011, "message": "internal server error"}
    # Clean-up ran without the client's close: the consumer ended by itself.
    await wait_for(lambda: hub_viewers(acme_camera) == 1, timeout=2)
    await viewer.disconnect()
    failures = [r for r in caplog.records if "raised; closing with 1011" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None  # logged once, with its traceback
    await receive_nothing_but_pings(other)
    await assert_forgotten(other, acme_camera)


async def test_a_device_handler_that_raises_closes_1011_and_the_device_goes_offline(
    sessions, acme_camera, device_token, monkeypatch
):
    async def broken(self, message):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(DeviceConsumer, "_on_ack", broken)
    device, _ = await connect_device(device_token)
    viewer = await watch(acme_camera, sessions["owner"])
    await device.send_json_to({"type": "ack", "id": "x", "ok": True})
    await expect_close(device, Close.SERVER_ERROR)
    presence = await receive_json_of_type(viewer, "presence")
    assert presence["online"] is False
    assert not await broadcast.redis_client().exists(groups.presence_key(acme_camera.pk))
    await device.disconnect()
    await assert_forgotten(viewer, acme_camera)


async def test_a_device_error_message_with_newlines_is_logged_on_one_line_with_escapes(device_token, caplog):
    device, _ = await connect_device(device_token)
    caplog.set_level(logging.INFO, logger="streams.consumers.device")
    forged = "disk full\n2026-11-30 INFO device 0000 connected\r\x1b[2Jcleared\u2028sep"
    await device.send_json_to({"type": "error", "message": forged})
    await assert_still_connected(device)
    [line] = [r.getMessage() for r in caplog.records if "reported an error" in r.getMessage()]
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert line.endswith("disk full\\n2026-11-30 INFO device 0000 connected\\r\\x1b[2Jcleared\\u2028sep")
    await device.disconnect()


async def test_a_send_to_a_device_that_is_gone_ends_its_consumer_quietly_and_takes_it_offline(
    device_token, acme_camera, caplog
):
    # uvicorn raises ClientDisconnected (an OSError) for a send after the connection closed, e.g.
    # when messages were queued before a 1009; that is no handler error and no 1011.
    from channels.testing import WebsocketCommunicator

    from tests.live_helpers import HELLO, random_address

    gone = asyncio.Event()
    inner = ASGI_APPLICATION

    async def app(scope, receive, send):
        async def send_unless_gone(message):
            if gone.is_set() and message["type"] == "websocket.send":
                raise OSError("client disconnected")
            await send(message)

        await inner(scope, receive, send_unless_gone)

    device = WebsocketCommunicator(app, "/ws/device/", headers=[(b"authorization", f"Bearer {device_token}".encode())],
                                   subprotocols=["sightline.v1"])
    device.scope["client"] = (random_address(), 40000)
    assert (await device.connect())[0]
    await device.send_json_to(HELLO)
    await receive_json_of_type(device, "welcome")
    caplog.set_level(logging.DEBUG)
    gone.set()
    await device.send_json_to({"type": "ping", "id": 1, "ts": 0})  # its pong cannot be sent
    await asyncio.wait_for(device.future, 5)  # the consumer ended by itself
    assert not await broadcast.redis_client().exists(groups.presence_key(acme_camera.pk))
    assert "client gone while handling" in caplog.text and "closing with 1011" not in caplog.text
