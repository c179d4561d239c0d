"""/ws/wall/<organisation_id>/: presence and stream stats for an organisation's device wall."""
from __future__ import annotations

import uuid

from channels.db import database_sync_to_async

from accounts.permissions import VIEW
from accounts.tenancy import devices_for, organisations_for
from streams import metrics, presence
from streams.broadcast import redis_client
from streams.consumers.access import AccessWatcher
from streams.consumers.base import SightlineSocket
from streams.consumers.viewer import browser_user_or_refusal
from streams.groups import org_group
from streams.limits import Limits
from sightline_agent.protocol import Close, ProtocolError

STATS_FIELDS = ("fps", "bitrate_bps", "seq_gaps", "capture_to_server_ms")


def canonical_organisation_id(raw: str) -> str | None:
    """The id in the form groups are named with (lower-case, hyphenated), or None if it is no UUID.

    The tenant lookup reads any spelling uuid.UUID reads (upper-case, `urn:uuid:...`,
    `{...}`), but channel-layer groups are named from the canonical form: a wall
    that joined `org.URN:UUID:...` crashed the handshake, one that joined
    `org.ABCD...` was accepted and never heard an event. So the wall works in the
    canonical form from the URL on."""
    try:
        return str(uuid.UUID(raw))
    except (ValueError, TypeError, AttributeError):
        return None


def _wall_devices(user, organisation_id):
    """The organisation's devices this user may see, or None if the organisation is not theirs."""
    try:
        organisation = organisations_for(user, VIEW).filter(pk=organisation_id).first()
    except Exception:  # malformed id
        return None
    if organisation is None:
        return None
    return list(devices_for(user, VIEW, organisation=organisation))


class WallConsumer(AccessWatcher, SightlineSocket):
    endpoint = "wall"

    async def connect(self):
        limits = Limits.from_settings()
        self.heartbeat_seconds = limits.heartbeat_seconds
        self.dead_after_seconds = limits.dead_after_seconds
        self.visible: set[str] = set()
        checked = await browser_user_or_refusal(self)
        if checked is None:
            return
        user, failures, address = checked
        await self.watch_access(user)
        organisation_id = canonical_organisation_id(self.scope["url_route"]["kwargs"]["organisation_id"])
        devices = await database_sync_to_async(_wall_devices)(user, organisation_id) if organisation_id else None
        if devices is None:
            await failures.record(address)
            metrics.AUTH_FAILURES.labels(self.endpoint, "not_found").inc()
            return await self.refuse(Close.NOT_FOUND, "no such organisation")
        self.visible = {str(device.pk) for device in devices}
        self.hidden: set[str] = set()  # devices of the organisation this member may not see (grants)
        self.user, self.organisation_id = user, organisation_id
        group = org_group(organisation_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)
        await self.accept_socket()
        await self._send_devices(devices)

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        self.heard()
        try:
            message = self.parse_browser_text(text_data, {"ping", "pong"})
            if message["type"] == "ping":
                await self.send_message(self.pong_for(message))
        except ProtocolError as error:
            await self.refuse(error.code, error.message)

    async def presence_changed(self, event):
        if self.closing:
            return
        device_id = event["device_id"]
        if device_id not in self.visible and device_id not in self.hidden:
            await self._refresh_devices(device_id)
        if device_id in self.visible and not self.closing:
            await self.send_message({**event, "type": "presence"})

    async def _refresh_devices(self, device_id: str) -> None:
        """A device this wall has not heard of (added since it connected): re-read the list
        through the tenant lookup and, if it changed, send it again (the page adds the tile)."""
        devices = await database_sync_to_async(_wall_devices)(self.user, self.organisation_id)
        if devices is None:  # the membership is gone
            return await self.refuse(Close.NOT_FOUND, "no such organisation")
        visible = {str(device.pk) for device in devices}
        if device_id not in visible:
            self.hidden.add(device_id)
        if visible != self.visible:
            self.visible = visible
            await self._send_devices(devices)

    async def access_allows(self, user) -> bool:
        """Still a member: stay open, and if grants changed send the new device list (the
        page drops or adds tiles; each tile's own viewer socket re-checks itself)."""
        devices = await database_sync_to_async(_wall_devices)(user, self.organisation_id)
        if devices is None:
            return False
        visible = {str(device.pk) for device in devices}
        if visible != self.visible:
            self.hidden = (self.hidden | self.visible) - visible
            self.visible = visible
            await self._send_devices(devices)
        return True

    async def _send_devices(self, devices) -> None:
        """The whole list with live presence; the page reconciles its tiles with it."""
        live = await presence.snapshot(redis_client(), [device.pk for device in devices])
        sources = await presence.sources(redis_client(), [device.pk for device in devices])
        await self.send_message({
            "type": "devices",
            "devices": [presence.device_summary(device, live.get(str(device.pk)), sources.get(str(device.pk)))
                        for device in devices],
        })

    async def stream_stats(self, event):
        if event["device_id"] in self.visible and not self.closing:
            await self.send_message(
                {"type": "stats", "device_id": event["device_id"], **{k: event.get(k) for k in STATS_FIELDS}}
            )

    async def disconnect(self, code):
        self.closing = True
        await self.stop_tasks()
