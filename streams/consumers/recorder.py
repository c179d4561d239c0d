"""The device consumer's side of the recorder contract (recordings/recorder.py).

open_recorder(device, hello) -> DeviceRecorder | None; DeviceRecorder.submit(frame, received_at)
never blocks; close() is non-blocking. A recorder that fails to
open never stops the live stream: the device is told "recording": false.
"""
from __future__ import annotations

import logging

from channels.db import database_sync_to_async

log = logging.getLogger("streams.consumers.recorder")


def load_open_recorder():
    """recordings.recorder.open_recorder; the seam consumer tests replace to run live-only."""
    from recordings.recorder import open_recorder

    return open_recorder


async def open_recorder_safely(device, hello: dict):
    open_recorder = load_open_recorder()
    if open_recorder is None:  # live-only (consumer tests)
        return None
    try:
        # It may read the database (policy, quota), so off the event loop.
        return await database_sync_to_async(open_recorder)(device, hello)
    except Exception:
        log.exception("could not open a recorder for device %s; streaming live only", device.pk)
        return None
