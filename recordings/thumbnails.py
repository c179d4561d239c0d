"""Poster and timeline strip of a segment, with Pillow, from its MP4's keyframes.

Only keyframes are decoded (one about every second, see transcode.py), so the
cost is small whatever the frame rate.
"""
from __future__ import annotations

from pathlib import Path

import av
from PIL import Image

from recordings import constants


def keyframe_images(mp4_path, limit: int = 64) -> list[Image.Image]:
    images = []
    with av.open(str(mp4_path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        for picture in container.decode(stream):
            images.append(picture.to_image())
            if len(images) >= limit:
                break
    return images


def evenly_spaced(items: list, count: int) -> list:
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1) if count > 1 else 0
    return [items[round(i * step)] for i in range(count)]


def poster_image(frame: Image.Image) -> Image.Image:
    image = frame.convert("RGB")
    if image.width > constants.POSTER_MAX_WIDTH:
        height = round(image.height * constants.POSTER_MAX_WIDTH / image.width)
        image = image.resize((constants.POSTER_MAX_WIDTH, max(1, height)), Image.Resampling.BILINEAR)
    return image


def strip_image(frames: list[Image.Image], count: int = constants.STRIP_FRAMES,
                height: int = constants.STRIP_FRAME_HEIGHT) -> Image.Image:
    """The chosen frames side by side, each scaled to `height`."""
    chosen = evenly_spaced(frames, count)
    width = max(1, round(chosen[0].width * height / chosen[0].height))
    strip = Image.new("RGB", (width * len(chosen), height))
    for index, frame in enumerate(chosen):
        strip.paste(frame.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), (index * width, 0))
    return strip


def write_jpeg_atomically(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, "JPEG", quality=constants.JPEG_QUALITY)
    tmp.replace(path)


def make_thumbnails(mp4_path, poster_path: Path, strip_path: Path) -> None:
    """Write what is missing of poster and strip (temp name, then rename)."""
    if poster_path.exists() and strip_path.exists():
        return
    frames = keyframe_images(mp4_path)
    if not frames:
        raise ValueError(f"{mp4_path} has no decodable keyframe")
    if not poster_path.exists():
        write_jpeg_atomically(poster_image(frames[0]), poster_path)
    if not strip_path.exists():
        write_jpeg_atomically(strip_image(frames), strip_path)
