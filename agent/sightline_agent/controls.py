"""The camera's adjustable settings and the validation of commands that change them.

Pure: no sockets, no clocks. A command is validated as a whole before anything is
applied, so a command with one bad key changes nothing (the server and the
operator then see exactly one clear error).

Keys (docs/agent.md, "What an operator can change"; docs/protocol.md section 4):
- brightness, contrast: integers -100..100 (0 = unchanged image)
- fps: integer 1..max_fps (max_fps from welcome.limits, at most 60)
- resolution: "WxH", both even (H.264 4:2:0 needs even sizes), 16x16..3840x2160
- generic keys x_<name> (GENERIC_KEY_RE, as the protocol defines them): a JSON scalar (string up to 200
  characters, number, boolean) stored and reported back; null removes the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

MIN_WIDTH, MIN_HEIGHT = 16, 16
MAX_WIDTH, MAX_HEIGHT = 3840, 2160
MAX_FPS = 60
GENERIC_KEY_RE = re.compile(r"^x_[a-z0-9_]{1,30}$")
MAX_GENERIC_STRING = 200
MAX_GENERIC_KEYS = 32
_RESOLUTION_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


class InvalidSetting(ValueError):
    """A setting's value is out of range or of the wrong type; the message is sent to the operator."""


@dataclass
class CameraSettings:
    brightness: int = 0
    contrast: int = 0
    fps: int = 10
    width: int = 640
    height: int = 360
    generic: dict = field(default_factory=dict)

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"

    def as_dict(self) -> dict:
        return {
            "brightness": self.brightness,
            "contrast": self.contrast,
            "fps": self.fps,
            "resolution": self.resolution,
            **self.generic,
        }


def parse_resolution(value) -> tuple[int, int]:
    if not isinstance(value, str) or not _RESOLUTION_RE.match(value.strip().lower()):
        raise InvalidSetting(f"resolution must be a string 'WxH', got {value!r}")
    width, height = (int(part) for part in value.strip().lower().split("x"))
    if not (MIN_WIDTH <= width <= MAX_WIDTH and MIN_HEIGHT <= height <= MAX_HEIGHT):
        raise InvalidSetting(
            f"resolution {width}x{height} is outside {MIN_WIDTH}x{MIN_HEIGHT}..{MAX_WIDTH}x{MAX_HEIGHT}"
        )
    if width % 2 or height % 2:
        raise InvalidSetting(f"resolution {width}x{height} must have even width and height")
    return width, height


def _integer(name: str, value, low: int, high: int) -> int:
    # bool is an int subclass in Python; "brightness": true is a client bug, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSetting(f"{name} must be an integer between {low} and {high}, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidSetting(f"{name} must be an integer between {low} and {high}, got {value!r}")
        value = int(value)
    if not low <= value <= high:
        raise InvalidSetting(f"{name} must be an integer between {low} and {high}, got {value}")
    return value


def _generic(name: str, value):
    if not GENERIC_KEY_RE.match(name):
        raise InvalidSetting(f"unknown setting {name!r}: generic keys are x_ and 1-30 characters of [a-z0-9_]")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidSetting(f"{name} must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_GENERIC_STRING:
            raise InvalidSetting(f"{name} is longer than {MAX_GENERIC_STRING} characters")
        return value
    raise InvalidSetting(f"{name} must be a string, number, boolean or null, got {type(value).__name__}")


def validate(changes, max_fps: int = MAX_FPS) -> dict:
    """Check every key of a command's ``settings``; return the normalised changes.

    Raises InvalidSetting naming the first bad key; nothing is applied then.
    """
    if not isinstance(changes, dict) or not changes:
        raise InvalidSetting("settings must be a non-empty JSON object")
    fps_ceiling = max(1, min(MAX_FPS, int(max_fps)))
    normalised = {}
    for name, value in changes.items():
        if name in ("brightness", "contrast"):
            normalised[name] = _integer(name, value, -100, 100)
        elif name == "fps":
            normalised[name] = _integer(name, value, 1, fps_ceiling)
        elif name == "resolution":
            width, height = parse_resolution(value)
            normalised[name] = f"{width}x{height}"
        else:
            normalised[name] = _generic(str(name), value)
    return normalised


def apply(settings: CameraSettings, normalised: dict) -> dict:
    """Apply validated changes in place; return what was applied (the ack's ``applied``)."""
    generic_after = dict(settings.generic)
    for name, value in normalised.items():
        if name not in ("brightness", "contrast", "fps", "resolution"):
            if value is None:
                generic_after.pop(name, None)
            else:
                generic_after[name] = value
    # Checked before anything changes, so a refused command leaves no trace.
    if len(generic_after) > MAX_GENERIC_KEYS:
        raise InvalidSetting(f"at most {MAX_GENERIC_KEYS} generic settings can be stored")
    for name, value in normalised.items():
        if name == "brightness":
            settings.brightness = value
        elif name == "contrast":
            settings.contrast = value
        elif name == "fps":
            settings.fps = value
        elif name == "resolution":
            settings.width, settings.height = parse_resolution(value)
    settings.generic = generic_after
    return dict(normalised)


def apply_command(settings: CameraSettings, changes, max_fps: int = MAX_FPS) -> dict:
    """Validate then apply; all or nothing."""
    return apply(settings, validate(changes, max_fps=max_fps))


def apply_welcome(settings: CameraSettings, offered, max_fps: int = MAX_FPS) -> tuple[dict, dict]:
    """Apply the settings in a welcome key by key, skipping bad ones instead of
    refusing them all: the server's stored record is trusted but may predate a
    rule. Returns (applied, rejected {key: reason})."""
    applied, rejected = {}, {}
    if not isinstance(offered, dict):
        return applied, {"settings": "welcome.settings is not an object"}
    for name, value in offered.items():
        try:
            applied.update(apply(settings, validate({name: value}, max_fps=max_fps)))
        except InvalidSetting as exc:
            rejected[name] = str(exc)
    return applied, rejected
