"""Helpers for the live-path consumer tests: sockets as each persona, frames, waiting.

Every socket gets a random client address, so the per-address auth-failure
limit of one test never leaks into another running in parallel.
"""
from __future__ import annotations

import asyncio
import json
import random
import time

from channels.testing import WebsocketCommunicator

from sightline_agent import protocol

ORIGIN = b"http://localhost"
HOST = b"localhost"  # the Host a browser on ORIGIN sends; the Origin must match it (scheme, host, port)
HELLO = {"type": "hello", "protocol": 1, "codecs": ["jpeg"], "resolution": "640x360", "fps": 10,
         "audio": None, "agent": "pytest"}


def application():
    from project.asgi import application as app

    return app


def random_address() -> str:
    return "10.{}.{}.{}".format(*(random.randint(0, 255) for _ in range(3)))


def session_cookie(user) -> str:
    """A real session for `user` (sync: call from fixtures)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def browser_socket(path: str, sessionid: str | None = None, origin: bytes | None = ORIGIN,
                   address: str | None = None) -> WebsocketCommunicator:
    headers = [(b"host", HOST)]
    if origin is not None:
        headers.append((b"origin", origin))
    if sessionid:
        headers.append((b"cookie", f"sessionid={sessionid}".encode()))
    communicator = WebsocketCommunicator(application(), path, headers=headers)
    communicator.scope["client"] = (address or random_address(), 40000)
    return communicator


def device_socket(token: str | None, via: str = "header", address: str | None = None) -> WebsocketCommunicator:
    headers, subprotocols = [], ["sightline.v1"]
    if token is not None and via == "header":
        headers.append((b"authorization", f"Bearer {token}".encode()))
    elif token is not None:
        subprotocols.append(f"sightline.token.{token}")
    communicator = WebsocketCommunicator(application(), "/ws/device/", headers=headers, subprotocols=subprotocols)
    communicator.scope["client"] = (address or random_address(), 40000)
    return communicator


async def connect_device(token: str, hello: dict | None = None, **kwargs) -> tuple[WebsocketCommunicator, dict]:
    communicator = device_socket(token, **kwargs)
    connected, subprotocol = await communicator.connect()
    assert connected and subprotocol == "sightline.v1"
    await communicator.send_json_to(hello or HELLO)
    welcome = await communicator.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome", welcome
    return communicator, welcome


async def expect_close(communicator: WebsocketCommunicator, code: int, timeout: float = 5) -> dict:
    """The server's error message, then its close with `code`. Returns the error message."""
    error = await receive_json_of_type(communicator, "error", timeout)
    assert error["code"] == code, error
    closing = await communicator.receive_output(timeout)
    assert closing == {"type": "websocket.close", "code": code}, closing
    return error


async def receive_json_of_type(communicator: WebsocketCommunicator, kind: str, timeout: float = 5) -> dict:
    """Skip other text messages (pings, stats, presence) until one of type `kind` arrives."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {kind!r} message within {timeout} s"
        output = await communicator.receive_output(remaining)
        assert output["type"] == "websocket.send", output
        if output.get("text") is None:
            continue
        message = json.loads(output["text"])
        if message.get("type") == kind:
            return message


async def receive_binary(communicator: WebsocketCommunicator, timeout: float = 5) -> bytes:
    """The next binary message, skipping text (pings, stats, presence)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no binary message within {timeout} s"
        output = await communicator.receive_output(remaining)
        assert output["type"] == "websocket.send", output
        if output.get("bytes") is not None:
            return output["bytes"]


async def receive_nothing_but_pings(communicator: WebsocketCommunicator, timeout: float = 0.3) -> None:
    """Assert the socket got nothing but heartbeat pings (an outsider's socket, a filtered stream)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await communicator.receive_nothing(timeout=deadline - time.monotonic()):
            return
        output = await communicator.receive_output()
        text = output.get("text")
        assert text is not None and json.loads(text).get("type") == "ping", output


def jpeg_frame(seq: int, payload: bytes = b"\xff\xd8jpeg\xff\xd9", timestamp_us: int | None = None) -> bytes:
    ts = int(time.time() * 1e6) if timestamp_us is None else timestamp_us
    return protocol.encode_frame(protocol.KIND_JPEG, payload, seq, ts, keyframe=True)[0]


async def wait_for(predicate, timeout: float = 5, interval: float = 0.02):
    """Await a condition with a deadline (sync or async predicate)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(interval)


async def fresh_live_state() -> None:
    """Forget per-process live state between tests: the hub, Redis client, auth-failure counts and
    handshake gate of this loop, and the
    channel layer instance (its receive lock belongs to one event loop; a test that fails with
    sockets still open must not break the next one)."""
    from channels.layers import channel_layers

    from streams import auth, broadcast

    await auth.aclose_loop_state()
    await broadcast.aclose_loop_resources()
    channel_layers.backends.clear()
