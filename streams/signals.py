"""Disable a device -> its live socket is closed at once (4003), wherever it is connected.

Revoking a token does the same from DeviceToken.revoke(). Both go through
transaction.on_commit, so nothing is closed for a change that is rolled back.
"""
import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

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
