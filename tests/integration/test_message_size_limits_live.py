"""The limits in a device's welcome are the ones a real uvicorn (started as scripts/run starts it)
enforces: above max_message_bytes (or 64 KiB of text) a client gets 4006 with an error message,
up to WS_MAX_SIZE_BYTES; only above that does the WebSocket layer close with 1009 (before:
uvicorn's 16 MiB default, and a 17 MiB message got 1009 with no message)."""
import asyncio
import json

import pytest
import websockets

from streams.models import RecordingPolicy
from tests.integration.live_server import LiveServer, open_device, server_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HELLO = json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "agent": "limits-test"})


@pytest.fixture
def server(django_db_setup, tmp_path):
    live = LiveServer(server_env(), tmp_path / "uvicorn.log")  # default limits
    yield live
    live.stop()


@pytest.fixture
def token(acme_camera):
    acme_camera.recording_policy = RecordingPolicy.OFF
    acme_camera.save(update_fields=["recording_policy"])
    return acme_camera.issue_token()[0]


async def welcomed_device(server, token):
    ws = await open_device(server, token)
    await ws.send(HELLO)
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == "welcome":
            return ws, message["limits"]


async def error_then_close(ws) -> tuple[dict | None, int]:
    error = None
    try:
        while True:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, str) and json.loads(message).get("type") == "error":
                error = json.loads(message)
    except websockets.ConnectionClosed:
        pass
    return error, ws.close_code


def frame_of(size: int) -> bytes:
    from sightline_agent import protocol

    return protocol.HEADER.pack(protocol.MAGIC, 1, 1, 7, 1, 0, 0, 1, size - protocol.HEADER_SIZE) + b"\0" * (
        size - protocol.HEADER_SIZE)


@pytest.mark.asyncio
async def test_messages_above_the_welcome_limits_get_4006_with_a_message_up_to_ws_max_size_then_1009(server, token):
    ws, limits = await welcomed_device(server, token)
    max_message = limits["max_message_bytes"]
    assert server.ws_max_size == 2 * max_message  # the default the docs give: 2 x max(max_message_bytes, 64 KiB)
    await ws.send(frame_of(max_message))  # exactly the limit: accepted, the socket stays open
    await ws.send(json.dumps({"type": "ping", "id": 1}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] in {"pong", "ping"}

    cases = [
        (frame_of(max_message + 1), 4006, f"exceeds max_message_bytes={max_message}"),
        (frame_of(server.ws_max_size), 4006, f"exceeds max_message_bytes={max_message}"),
        (json.dumps({"type": "stats", "pad": "x" * 64 * 1024}), 4006, "text message over 65536 bytes"),
        (frame_of(server.ws_max_size + 1), 1009, None),
        (frame_of(17 * 2**20), 1009, None),
    ]
    results = []
    for message, code, text in cases:
        ws, _ = await welcomed_device(server, token)
        try:
            await ws.send(message)
        except websockets.ConnectionClosed:
            pass  # the server closed while a too-big message was still being sent: its code counts
        error, closed_with = await error_then_close(ws)
        results.append((len(message), closed_with, error and error["message"]))
        assert closed_with == code
        assert (error is None) if text is None else (error["code"] == code and text in error["message"])
    print(f"\nws_max_size {server.ws_max_size}; size -> close code, error message: {results}")
    assert server.alive_and_healthy()
