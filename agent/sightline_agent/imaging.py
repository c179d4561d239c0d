"""Pure image operations: the synthetic test pattern and brightness/contrast.

Both are used by the sources and unit-tested without any socket or encoder.
"""
from __future__ import annotations

import functools
import os
from datetime import datetime, timezone

from PIL import Image, ImageDraw, ImageEnhance, ImageFont

# SMPTE-like bars: easy to judge colour, brightness and contrast changes by eye.
BAR_COLOURS = [
    (192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
    (192, 0, 192), (192, 0, 0), (0, 0, 192), (16, 16, 16),
]
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono-Bold.ttf",
)


def brightness_table(brightness: int) -> list[int]:
    """Lookup table adding a black-level offset of ``brightness * 1.28`` (clipped).

    An offset, not Pillow's multiplicative Brightness enhancer: scaling leaves
    black black, and a camera image (like the pattern's black clock band) has
    large dark areas, so an operator asking for +50 would see little change.
    -100 and +100 shift by ±128 levels, enough to crush or wash out any scene.
    """
    offset = round(brightness * 1.28)
    return [min(255, max(0, level + offset)) for level in range(256)]


def adjust(image: Image.Image, brightness: int, contrast: int) -> Image.Image:
    """Apply camera-style brightness and contrast, each -100..100 with 0 = unchanged.

    Contrast uses Pillow's ImageEnhance.Contrast with factor 1 + contrast/100:
    -100 is flat mean grey, +100 doubles the distance from the mean grey.
    Brightness is applied after contrast as an offset (brightness_table), so
    contrast does not pull the offset back towards grey.
    """
    if contrast:
        image = ImageEnhance.Contrast(image).enhance(1.0 + contrast / 100.0)
    if brightness:
        image = image.point(brightness_table(brightness) * len(image.getbands()))
    return image


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    for path in _FONT_CANDIDATES:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4)
def _bar_strip(width: int, height: int) -> Image.Image:
    """Bars twice as wide as the frame, so any scroll offset is one crop."""
    bar = max(1, width // len(BAR_COLOURS))
    period = bar * len(BAR_COLOURS)
    strip = Image.new("RGB", (width + period, height))
    draw = ImageDraw.Draw(strip)
    for x in range(0, width + period, bar):
        colour = BAR_COLOURS[(x // bar) % len(BAR_COLOURS)]
        draw.rectangle([x, 0, x + bar - 1, height - 1], fill=colour)
    return strip


def _triangle(position: int, span: int) -> int:
    """0, 1, ... span, span-1, ... 0: a bounce along a line of ``span`` steps."""
    if span <= 0:
        return 0
    phase = position % (2 * span)
    return phase if phase <= span else 2 * span - phase


def render_pattern(frame_index: int, captured_at: float, width: int, height: int) -> Image.Image:
    """One frame of the moving test pattern.

    Scrolling bars and a bouncing square give the encoder motion; the UTC time
    and frame counter are large enough to read on a phone, so latency can be
    judged by eye against a clock. Every frame differs from the previous one
    (the bars move at least one pixel and the counter changes).
    """
    strip = _bar_strip(width, height)
    bar = max(1, width // len(BAR_COLOURS))
    period = bar * len(BAR_COLOURS)
    step = max(1, width // 160)
    offset = (frame_index * step) % period
    image = strip.crop((offset, 0, offset + width, height))
    draw = ImageDraw.Draw(image)

    box = max(4, min(width, height) // 6)
    x = _triangle(frame_index * max(1, width // 80), width - box)
    y = _triangle(frame_index * max(1, height // 60), height // 2 - box)
    draw.rectangle([x, y, x + box - 1, y + box - 1], fill=(255, 255, 255), outline=(0, 0, 0))

    when = datetime.fromtimestamp(captured_at, tz=timezone.utc)
    clock = when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    big = _font(max(8, height // 7))
    small = _font(max(6, height // 16))
    band_top = height // 2
    draw.rectangle([0, band_top, width - 1, height - 1], fill=(0, 0, 0))
    margin = max(2, width // 40)
    draw.text((margin, band_top + margin // 2), clock, font=big, fill=(255, 255, 255))
    line2 = f"{when:%Y-%m-%d} UTC   frame {frame_index:07d}"
    draw.text((margin, band_top + margin // 2 + int(big.size * 1.25)), line2, font=small, fill=(255, 255, 0))
    return image
