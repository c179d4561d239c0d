"""Server-side control of connected devices, from any process (sync or async callers).

Commands travel as channel-layer messages to groups.device_group(device_id);
the consumer holding the device's socket forwards them, and sends the device's
ack back to the channel that asked (docs/protocol.md, "Commands"). Settings are
validated here, purely, before anything is sent, and again when the device
reports what it applied, before they are saved on the Device row.
"""
from __future__ import annotations

import math
import re
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from streams.groups import device_group

RANGE_KEYS = {"brightness": (-100, 100), "contrast": (-100, 100), "fps": (1, 60)}
RESOLUTION_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
MIN_SIDE, MAX_WIDTH, MAX_HEIGHT = 16, 7680, 4320
# Generic settings: any key starting "x_" (e.g. "x_ir_mode": "auto"), so that a
# typo in a known key is an error rather than a new setting.
GENERIC_KEY_RE = re.compile(r"^x_[a-z0-9_]{1,30}$")
MAX_GENERIC_VALUE_CHARS = 200
MAX_GENERIC_INT = 2**53  # integers a JavaScript page (and any JSON double) reads exactly
MAX_KEYS = 16

# Errors returned to the operator in command_result.error.
ERROR_TIMEOUT = "timeout"
ERROR_OFFLINE = "device_offline"
ERROR_FORBIDDEN = "forbidden"
ERROR_BUSY = "busy"

# The consumer holding the device stops accepting acks this share of
# COMMAND_TIMEOUT_SECONDS before the operator is told "timeout", so that an
# accepted ack's result (one channel-layer hop back) reaches the operator before
# the timer does: what the operator is told and what is saved always agree.
ACK_MARGIN_FRACTION = 0.1


class InvalidSettings(ValueError):
    pass


def _int_in_range(key: str, value, low: int, high: int) -> int:
    # Checked in this order so that NaN, ±inf and huge numbers never reach int().
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSettings(f"{key} must be an integer")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise InvalidSettings(f"{key} must be an integer")
    if not low <= int(value) <= high:
        raise InvalidSettings(f"{key} must be between {low} and {high}")
    return int(value)


def parse_resolution(value) -> tuple[int, int]:
    match = RESOLUTION_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise InvalidSettings("resolution must look like 1280x720")
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= width <= MAX_WIDTH and MIN_SIDE <= height <= MAX_HEIGHT):
        raise InvalidSettings(f"resolution must be between {MIN_SIDE}x{MIN_SIDE} and {MAX_WIDTH}x{MAX_HEIGHT}")
    return width, height


def validate_settings(raw, max_fps: int = 60) -> dict:
    """Return a clean copy of a settings object, or raise InvalidSettings."""
    if not isinstance(raw, dict) or not raw:
        raise InvalidSettings("settings must be a non-empty object")
    if len(raw) > MAX_KEYS:
        raise InvalidSettings(f"at most {MAX_KEYS} settings per command")
    clean = {}
    for key, value in raw.items():
        if key in RANGE_KEYS:
            low, high = RANGE_KEYS[key]
            clean[key] = _int_in_range(key, value, low, min(high, max_fps) if key == "fps" else high)
        elif key == "resolution":
            width, height = parse_resolution(value)
            clean[key] = f"{width}x{height}"
        elif isinstance(key, str) and GENERIC_KEY_RE.match(key):
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise InvalidSettings(f"{key} must be a string, number, boolean or null")
            # NaN and ±inf are not JSON: the database (jsonb) refuses them when the ack is saved.
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidSettings(f"{key} must be a finite number")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_GENERIC_INT:
                raise InvalidSettings(f"{key} must be between -{MAX_GENERIC_INT} and {MAX_GENERIC_INT}")
            if isinstance(value, str) and len(value) > MAX_GENERIC_VALUE_CHARS:
                raise InvalidSettings(f"{key} is longer than {MAX_GENERIC_VALUE_CHARS} characters")
            clean[key] = value
        else:
            raise InvalidSettings(f"unknown setting {str(key)[:40]!r} (generic settings start with x_)")
    return clean


def device_field_updates(applied: dict) -> dict:
    """Map validated settings to Device model fields (resolution -> width/height, x_* -> extra_settings)."""
    updates, extra = {}, {}
    for key, value in applied.items():
        if key in RANGE_KEYS:
            updates[key] = value
        elif key == "resolution":
            updates["width"], updates["height"] = parse_resolution(value)
        else:
            extra[key] = value
    if extra:
        updates["extra_settings"] = extra  # merged with the stored dict by save_applied_settings
    return updates


def save_applied_settings(device_id, applied: dict) -> None:
    """Persist settings a device acknowledged (sync; call through database_sync_to_async)."""
    from django.db import transaction

    from streams.models import Device

    updates = device_field_updates(applied)
    if not updates:
        return
    with transaction.atomic():
        device = Device.objects.select_for_update().filter(pk=device_id).first()
        if device is None:
            return
        if "extra_settings" in updates:
            updates["extra_settings"] = {**(device.extra_settings or {}), **updates["extra_settings"]}
        for field, value in updates.items():
            setattr(device, field, value)
        device.save(update_fields=list(updates))


async def adisconnect_device(device_id, reason: str, token_id=None) -> None:
    layer = get_channel_layer()
    await layer.group_send(
        device_group(device_id),
        {"type": "device.disconnect", "reason": reason, "token_id": token_id},
    )


def disconnect_device(device_id, reason: str, token_id=None) -> None:
    """Close the device's socket wherever it is connected (revoked token, disabled device)."""
    async_to_sync(adisconnect_device)(device_id, reason, token_id)


def ack_deadline(sent_at: float, timeout_seconds: float) -> float:
    """Time (same clock as sent_at) after which a device's ack of a command is ignored: not saved,
    not reported (the operator is told "timeout" at sent_at + timeout_seconds)."""
    return sent_at + timeout_seconds * (1 - ACK_MARGIN_FRACTION)


async def asend_command(device_id, command_id: str, settings: dict, reply_to: str,
                        timeout_seconds: float | None = None) -> None:
    """Ask the consumer holding the device to forward a command; the ack goes to reply_to.

    The message carries its ack deadline (wall clock), since the consumer holding
    the device may be in another process and must ignore an ack the operator was
    already told had timed out."""
    from django.conf import settings as django_settings

    if timeout_seconds is None:
        timeout_seconds = django_settings.SIGHTLINE["COMMAND_TIMEOUT_SECONDS"]
    layer = get_channel_layer()
    await layer.group_send(
        device_group(device_id),
        {"type": "device.command", "id": command_id, "settings": settings, "reply_to": reply_to,
         "deadline": ack_deadline(time.time(), timeout_seconds)},
    )
