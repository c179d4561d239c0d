"""Keyframe requests: the server asks a device for its next frame to be a keyframe.

Who asks: a new WebRTC peer (it must start at a keyframe), a browser's PLI/FIR
relayed by the WebRTC process, and a new MSE viewer. Requests travel through the
device's channel-layer group (groups.device_group) to whichever process holds the
device's socket; that consumer decides with KeyframeLimiter, once per device for
the whole installation, and sends the device {"type": "keyframe"} (docs/protocol.md).

The limit matters: an IDR costs several times a delta frame, and twenty viewers
losing packets at once must not make a camera send twenty keyframes a second.
"""
from __future__ import annotations

from streams.groups import device_group

# At most one forced keyframe per device in this many seconds. The reference agent
# sends one a second anyway, so this caps the extra cost at about a doubling.
MIN_INTERVAL_SECONDS = 0.5
KEYFRAME_EVENT = "device.keyframe"  # channel-layer message type (DeviceConsumer.device_keyframe)


class KeyframeLimiter:
    """Pure rate decision: may a keyframe request reach the device now?

    Requests beyond the rate are dropped, not queued: a keyframe sent a moment
    ago serves every requester that arrives before the next one is due.
    """

    def __init__(self, min_interval: float = MIN_INTERVAL_SECONDS):
        self.min_interval = min_interval
        self.last_sent: float | None = None
        self.dropped = 0

    def allow(self, now: float) -> bool:
        if self.last_sent is not None and 0 <= now - self.last_sent < self.min_interval:
            self.dropped += 1
            return False
        self.last_sent = now
        return True


def wants_keyframe_requests(codecs) -> bool:
    """Only H.264 devices get requests: every JPEG image already is a keyframe."""
    return bool(codecs) and "h264" in codecs


async def request_keyframe(channel_layer, device_id, reason: str) -> None:
    """Ask the process holding the device to have it send a keyframe (rate-limited there)."""
    await channel_layer.group_send(device_group(device_id), {"type": KEYFRAME_EVENT, "reason": reason[:40]})
