"""1,000 malformed messages of each shape that once leaked (issue 9, item 2) sent to a real uvicorn
process: each closes its socket with 4007, and afterwards the hub's registered viewers and the
server's RSS are back to their baseline (before the fix: +1,000 viewers and ~+43 MB per shape).

One test per shape (each well under a minute), sharing one server process."""
import asyncio
import json
import os
import time

import pytest
from django.test import Client

from streams.models import Device, RecordingPolicy
from tests.integration.live_server import KeptAlive, LiveServer, open_device, open_viewer, server_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PER_SHAPE = int(os.environ.get("SIGHTLINE_MALFORMED_PER_SHAPE", 1000))
WARM_UP = 300
# A fresh server grows its thread pool, pools, caches and malloc arenas once: measured at +1.7 to
# +3.9 MiB over its first thousand connections whatever their number after (3,000 gave +1.7 MiB),
# and ~0 for every shape after the first. A leak grows with every message instead.
FIRST_WARM_UP = 1000
_warmed_servers: set[int] = set()
CONCURRENCY = 8  # also the number of devices: two connections of one device would replace each other (4012)
RSS_TOLERANCE = 2 * 1024 * 1024
VIEWER_SHAPES = {
    "subscribe kinds [{}]": '{"type":"subscribe","kinds":[{}]}',
    "brightness 1e400": '{"type":"command","id":"c","settings":{"brightness":1e400}}',
    "brightness NaN": '{"type":"command","id":"c","settings":{"brightness":NaN}}',
    "brightness -Infinity": '{"type":"command","id":"c","settings":{"brightness":-Infinity}}',
    "x_key NaN": '{"type":"command","id":"c","settings":{"x_key":NaN}}',
}
DEVICE_ACK_SHAPE = "device ack x_key NaN"
HELLO = json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "agent": "memory-test"})


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    live = LiveServer(server_env(), tmp_path_factory.mktemp("memory") / "uvicorn.log")
    yield live
    live.stop()


@pytest.fixture
def rows(personas, acme, acme_camera):
    client = Client()
    client.force_login(personas["owner"])
    devices = [Device.objects.create(organisation=acme, name=f"Ack {n}", recording_policy=RecordingPolicy.OFF)
               for n in range(CONCURRENCY)]
    return {"device": acme_camera, "tokens": [device.issue_token()[0] for device in devices],
            "sessionid": client.cookies["sessionid"].value}


async def closed_with(ws) -> int | None:
    await asyncio.wait_for(ws.wait_closed(), 15)
    return ws.close_code


async def one_viewer_shape(server, rows, text) -> int | None:
    ws = await open_viewer(server, rows["device"].pk, rows["sessionid"])
    await ws.send(text)
    return await closed_with(ws)


async def one_device_ack(server, token) -> int | None:
    ws = await open_device(server, token)
    await ws.send(HELLO)
    await ws.send('{"type":"ack","id":"c","ok":true,"applied":{"x_key":NaN}}')
    return await closed_with(ws)


async def run_many(count, make) -> dict[int, int]:
    """`count` connections, CONCURRENCY at a time; make(worker_number) runs one."""
    codes: dict[int, int] = {}
    queue = iter(range(count))

    async def worker(number):
        for _ in queue:
            code = await make(number)
            codes[code] = codes.get(code, 0) + 1

    await asyncio.gather(*(worker(number) for number in range(CONCURRENCY)))
    return codes


async def settle(server, viewers: int, seconds: float = 10) -> int:
    """Wait until the hub is back to `viewers` (or the deadline), then a moment for tasks to end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and await asyncio.to_thread(server.registered_viewers) != viewers:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    return await asyncio.to_thread(server.registered_viewers)


@pytest.mark.asyncio
@pytest.mark.parametrize("shape", [*VIEWER_SHAPES, DEVICE_ACK_SHAPE])
async def test_a_thousand_malformed_messages_of_one_shape_leave_no_viewer_and_no_memory_behind(server, rows, shape):
    if shape == DEVICE_ACK_SHAPE:
        def make(number):
            return one_device_ack(server, rows["tokens"][number])
    else:
        def make(_number):
            return one_viewer_shape(server, rows, VIEWER_SHAPES[shape])
    # A viewer that stays (the device's feed lives on, as in a running portal).
    watcher = KeptAlive(await open_viewer(server, rows["device"].pk, rows["sessionid"]))
    first = id(server) not in _warmed_servers
    _warmed_servers.add(id(server))
    await run_many(FIRST_WARM_UP if first else WARM_UP, make)  # pools, caches and code paths allocated once
    viewers_before = await settle(server, 1)
    rss_before = server.rss_bytes()
    started = time.monotonic()
    codes = await run_many(PER_SHAPE, make)
    duration = time.monotonic() - started
    viewers_after = await settle(server, viewers_before)
    rss_after = server.rss_bytes()
    watcher_survived = watcher.open
    await watcher.close()

    print(f"\n{shape}: {PER_SHAPE} malformed messages in {duration:.1f} s, closes by code {dict(sorted(codes.items()))}; "
          f"hub viewers before {viewers_before}, after {viewers_after}; server RSS before "
          f"{rss_before / 2**20:.1f} MiB, after {rss_after / 2**20:.1f} MiB ({(rss_after - rss_before) / 2**20:+.2f} MiB)")
    assert codes == {4007: PER_SHAPE}
    assert viewers_before == viewers_after == 1 and watcher_survived
    assert abs(rss_after - rss_before) <= RSS_TOLERANCE
    assert server.alive_and_healthy()
