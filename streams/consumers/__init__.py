"""Channels consumers of the live path. Thin: parsing is in agent/sightline_agent/protocol.py,
permissions in accounts/tenancy.py, fan-out in streams/broadcast.py, commands in
streams/control.py, presence in streams/presence.py, limits in streams/limits.py."""
from streams.consumers.device import DeviceConsumer
from streams.consumers.viewer import ViewerConsumer
from streams.consumers.wall import WallConsumer

__all__ = ["DeviceConsumer", "ViewerConsumer", "WallConsumer"]
