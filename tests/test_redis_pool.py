"""The live path's Redis pool (streams/broadcast.py): bounded, and callers wait for a free
connection instead of failing (a burst once got MaxConnectionsError and HTTP 500s)."""
import asyncio
import uuid

import pytest
from redis.asyncio import BlockingConnectionPool

from streams import broadcast, groups

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("live_state")]


async def test_callers_beyond_the_pool_size_wait_for_a_connection_instead_of_failing(settings):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "REDIS_POOL_SIZE": 2, "REDIS_POOL_TIMEOUT_SECONDS": 5}
    await broadcast.aclose_loop_resources()  # a new client with these settings
    client = broadcast.redis_client()
    pool = client.connection_pool
    assert isinstance(pool, BlockingConnectionPool) and pool.max_connections == 2
    key = f"{groups.prefix()}:pooltest:{uuid.uuid4().hex}"
    # Ten callers at once, each holding a connection for 0.1 s (BLPOP on an empty list).
    results = await asyncio.gather(*(client.blpop([key], timeout=0.1) for _ in range(10)))
    assert results == [None] * 10
    assert len(pool._available_connections) + len(pool._in_use_connections) <= 2
