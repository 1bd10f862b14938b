"""Decoding frames and making thumbnails (aspect kept; small frames enlarged so they can be seen)."""

from __future__ import annotations

import io

from PIL import Image, features

THUMB_FORMAT = "webp" if features.check("webp") else "jpeg"


def decode(frame: bytes) -> Image.Image:
    """An encoded frame as an RGB image."""
    with Image.open(io.BytesIO(frame)) as img:
        return img.convert("RGB")


def fit(img: Image.Image, width: int, height: int) -> Image.Image:
    """``img`` scaled to fit in ``width`` x ``height`` with its aspect ratio kept (up or down)."""
    scale = min(width / img.width, height / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if size == img.size:
        return img
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST if scale >= 3 else \
        Image.Resampling.BICUBIC
    return img.resize(size, resample)


def thumbnail(frame: bytes, side: int, quality: int = 70, fmt: str = THUMB_FORMAT) -> bytes:
    """A small encoded thumbnail (at most ``side`` pixels on its longer side) of an encoded frame."""
    img = fit(decode(frame), side, side)
    buf = io.BytesIO()
    img.save(buf, format=fmt.upper(), quality=quality, **({"method": 4} if fmt == "webp" else {"optimize": True}))
    return buf.getvalue()
