"""Disable a device -> its live socket is closed at once (4003), wherever it is connected.
A person's access changes -> their browser sockets re-check it (4013, see the end).

Revoking a token does the same from DeviceToken.revoke(). Both go through
transaction.on_commit, so nothing is closed for a change that is rolled back.
"""
import asyncio
import logging
import threading

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.signals import access_changed
from streams.models import Device

log = logging.getLogger(__name__)


def _disconnect_disabled(device_id) -> None:
    from streams import control

    try:
        control.disconnect_device(device_id, reason="disabled")
    except Exception:  # saving a device must not fail because Redis is briefly away
        log.exception("could not disconnect disabled device %s", device_id)


@receiver(post_save, sender=Device, dispatch_uid="streams.disconnect_disabled_device")
def disconnect_when_disabled(sender, instance: Device, created: bool, update_fields=None, **kwargs):
    if created or instance.enabled:
        return
    if update_fields is not None and "enabled" not in update_fields:
        return
    device_id = instance.pk
    transaction.on_commit(lambda: _disconnect_disabled(device_id))


def _relay_access_changed(sender, user_id, session_key=None, **kwargs) -> None:
    """accounts announced that a person's access changed: tell their open browser sockets
    (streams/consumers/access.py re-checks and closes with 4013 what is no longer allowed)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from streams.groups import user_group

    event = {"type": "access.changed", "session_key": session_key}
    send = async_to_sync(get_channel_layer().group_send)
    if _loop_running_here():
        # ORM code run inside an event loop's thread (allowed by DJANGO_ALLOW_ASYNC_UNSAFE, as in
        # the browser tests): async_to_sync refuses that thread, so send from a short-lived one.
        sender = threading.Thread(target=send, args=(user_group(user_id), event), name="sightline-access-changed")
        sender.start()
        sender.join(timeout=5)
    else:
        send(user_group(user_id), event)


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


access_changed.connect(_relay_access_changed, dispatch_uid="streams.relay_access_changed")
