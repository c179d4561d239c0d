"""Names of channel-layer groups and Redis keys. One place, so processes agree.

- device_group: the consumer holding a device's socket joins it; commands,
  settings changes and forced disconnects are sent here.
- org_group: presence changes of an organisation's devices, for its viewers.
- user_group: every browser socket (viewer, wall, publish) of one user joins it;
  "access.changed" is sent here when the user's access changes (accounts/signals.py).
- frames_channel: Redis pub/sub channel carrying a device's frames, published
  once per frame by the ingesting process (streams/broadcast.py).
"""
from django.conf import settings


def prefix() -> str:
    """The Redis key prefix shared by the channel layer and Sightline's own keys."""
    return settings.CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "sightline")


def device_group(device_id) -> str:
    return f"device.{device_id}"


def org_group(organisation_id) -> str:
    return f"org.{organisation_id}"


def user_group(user_id) -> str:
    return f"user.{user_id}"


def frames_channel(device_id) -> str:
    return f"{prefix()}:frames:{device_id}"


def presence_key(device_id) -> str:
    return f"{prefix()}:presence:{device_id}"


def keyframe_key(device_id) -> str:
    """Latest keyframe/JPEG of a device, so a process with no cache can prime a new viewer."""
    return f"{prefix()}:keyframe:{device_id}"


def auth_failures_key(address: str) -> str:
    return f"{prefix()}:authfail:{address}"


def talk_key(device_id) -> str:
    """Who is talking to a device now (talk-back): one holder, with an expiry (streams/talkback.py)."""
    return f"{prefix()}:talk:{device_id}"


def webrtc_peers_key() -> str:
    """Sorted set: WebRTC process identity → last heartbeat (unix time); streams/webrtc_peer.py."""
    return f"{prefix()}:webrtc:peers"


def webrtc_stats_key(identity: str) -> str:
    """Hash of one WebRTC process's counters (peers, packets sent, encoder frames)."""
    return f"{prefix()}:webrtc:stats:{identity}"
