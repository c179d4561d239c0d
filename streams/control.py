"""Server-side control of connected devices, from any process (sync or async callers)."""
from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from streams.groups import device_group


async def adisconnect_device(device_id, reason: str, token_id=None) -> None:
    layer = get_channel_layer()
    await layer.group_send(
        device_group(device_id),
        {"type": "device.disconnect", "reason": reason, "token_id": token_id},
    )


def disconnect_device(device_id, reason: str, token_id=None) -> None:
    """Close the device's socket wherever it is connected (revoked token, disabled device)."""
    async_to_sync(adisconnect_device)(device_id, reason, token_id)
