"""Test media for the benchmarks: real JPEGs, made with Pillow, cached on disk.

- exact_size_jpeg(): one valid JPEG of an exact byte size (a frame payload for the
  load generator). The picture is encoded to just under the size, then padded with
  JPEG comment (COM) segments, which every decoder skips, so the bytes still decode.
- camera_frames(): a sequence of 1280x720 frames of a moving scene with sensor-like
  noise and a visible counter, so an H.264 encoder has realistic work (motion,
  detail, noise), unlike a static or flat picture.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

CACHE_ROOT = Path(os.environ.get("SIGHTLINE_BENCH_CACHE", Path(tempfile.gettempdir()) / "sightline-bench-cache"))
COM_MAX = 65533  # payload bytes per COM segment (length field includes its own 2 bytes)


def _scene(width: int, height: int, t: float, noise_sigma: float, seed_frame: int) -> Image.Image:
    """A moving scene: scrolling gradient, moving shapes, noise, frame counter."""
    phase = int(t * 40) % width
    gradient = Image.linear_gradient("L").resize((width, height)).rotate(0)
    r = gradient.transform((width, height), Image.Transform.AFFINE, (1, 0, phase, 0, 1, 0), fillcolor=0)
    g = gradient.transpose(Image.Transpose.ROTATE_180).resize((width, height))
    b = Image.new("L", (width, height), 90)
    image = Image.merge("RGB", (r, g, b))
    draw = ImageDraw.Draw(image)
    for i in range(6):
        x = int((t * (60 + 25 * i) + i * 170) % (width + 200)) - 100
        y = int(height * (0.15 + 0.13 * i))
        draw.ellipse((x, y, x + 120, y + 90), fill=(40 * i % 255, 200 - 25 * i, 60 + 30 * i))
        draw.rectangle((width - x, y + 40, width - x + 80, y + 100), outline=(255, 255, 255), width=3)
    # Checkerboard patch with fine detail that moves: hard for motion estimation.
    cell = 16
    ox = int(t * 30) % (cell * 2)
    for yy in range(0, 160, cell):
        for xx in range(0, 320, cell):
            if ((xx + yy) // cell) % 2 == 0:
                draw.rectangle((40 + xx + ox, height - 200 + yy, 40 + xx + ox + cell - 1, height - 200 + yy + cell - 1), fill=(230, 230, 230))
    draw.rectangle((10, 10, 430, 50), fill=(0, 0, 0))
    draw.text((20, 20), f"sightline bench frame {seed_frame:05d}  t={t:7.3f}s", fill=(255, 255, 0))
    if noise_sigma > 0:
        noise = Image.effect_noise((width, height), noise_sigma).convert("RGB")
        image = Image.blend(image, noise, 0.08)
    return image


def _encode(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _pad_with_comments(jpeg: bytes, size: int) -> bytes:
    """Insert COM segments right after SOI so the file is exactly `size` bytes."""
    missing = size - len(jpeg)
    if missing < 0:
        raise ValueError("JPEG already larger than the target size")
    segments = []
    while missing > 0:
        body = missing - 4 if missing <= COM_MAX + 4 else COM_MAX
        if 0 < missing - body - 4 < 4:  # never leave a remainder too small for a segment
            body -= 4
        if body < 0:
            raise ValueError("cannot pad by fewer than 4 bytes")
        segments.append(b"\xff\xfe" + struct.pack(">H", body + 2) + b"\x00" * body)
        missing -= body + 4
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def exact_size_jpeg(size: int, width: int = 1280, height: int = 720) -> Path:
    """A cached, valid JPEG file of exactly `size` bytes."""
    path = CACHE_ROOT / f"payload-{width}x{height}-{size}.jpg"
    if path.exists() and path.stat().st_size == size:
        return path
    image = _scene(width, height, 1.0, 40, 0)
    quality = 95
    data = _encode(image, quality)
    while len(data) > size - 8 and quality > 5:
        quality -= 5
        data = _encode(image, quality)
    if len(data) > size - 8:
        image = image.resize((width // 2, height // 2))
        data = _encode(image, 50)
    padded = _pad_with_comments(data, size)
    Image.open(io.BytesIO(padded)).load()  # still a decodable JPEG
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(padded)
    tmp.replace(path)
    return path


def camera_frames(count: int = 900, fps: int = 15, width: int = 1280, height: int = 720, quality: int = 85) -> Path:
    """Directory of `count` JPEGs frame_00000.jpg.. (cached; regenerated if incomplete)."""
    key = hashlib.sha256(f"v2-{count}-{fps}-{width}-{height}-{quality}".encode()).hexdigest()[:10]
    directory = CACHE_ROOT / f"frames-{width}x{height}-{fps}fps-{count}-{key}"
    done = directory / ".complete"
    if done.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        target = directory / f"frame_{n:05d}.jpg"
        if not target.exists():
            _scene(width, height, n / fps, 40, n).save(target, format="JPEG", quality=quality)
    done.write_text(str(count))
    return directory


if __name__ == "__main__":
    import sys
    import time

    started = time.perf_counter()
    print(exact_size_jpeg(100 * 1024), exact_size_jpeg(60 * 1024))
    if "--frames" in sys.argv:
        print(camera_frames())
    print(f"{time.perf_counter() - started:.1f} s")
