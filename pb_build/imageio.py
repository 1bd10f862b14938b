"""Every image and video pb-build decodes goes through here, guarded before any pixel is decoded.

* **Size limits**: the width and height are read from the header (Pillow's ``Image.open`` reads only the
  header) and checked against a pixel-count and a side limit before decoding, so a forged header declaring
  30000x30000 pixels costs nothing. Defaults: :data:`DEFAULT_MAX_PIXELS` and :data:`DEFAULT_MAX_SIDE`; set
  ``$PB_BUILD_MAX_PIXELS`` / ``$PB_BUILD_MAX_SIDE`` to change them (worker processes inherit them).
* **Modes**: a release stores 8-bit greyscale (``L``) or RGB frames. Other modes are converted: bilevel to
  ``L``; 16-bit and 32-bit greyscale scaled to ``L``; palette, CMYK, YCbCr, LAB, HSV and any alpha channel to
  RGB (alpha is dropped, as ``Image.convert("RGB")`` does).
* **Formats**: a frame whose bytes are not the format its release name says (a ``.jpg`` that is really a PNG),
  or whose mode is not stored as-is, is re-encoded; otherwise the raw bytes are kept.
* **Messages**: every failure is one :class:`BadRecord` naming the file. Images are decoded with Pillow, which
  prints nothing on stderr (OpenCV's libpng prints ``libpng error:`` lines); OpenCV only resizes and encodes.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from pb_build.errors import BadRecord, PbBuildError

DEFAULT_MAX_PIXELS = 64_000_000  # 8000x8000; a 48 MP phone photo fits, its decoded RGB array is ~150 MB
DEFAULT_MAX_SIDE = 16_384
PIXELS_ENV = "PB_BUILD_MAX_PIXELS"
SIDE_ENV = "PB_BUILD_MAX_SIDE"

# Fixed PNG settings keep encoded bytes identical across runs and machines with the same OpenCV.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]
# Line drawings (a few grey levels on a flat background): no row filter and run-length zlib encode 4-5x faster
# than PNG_PARAMS and give files about a quarter smaller (measured on QuickDraw frames).
PNG_LINE_ART_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
                       cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
STORED_MODES = ("L", "RGB")
_FORMAT_OF_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}


@dataclass(frozen=True)
class Limits:
    """The largest image accepted: total pixels and longest side."""

    pixels: int = DEFAULT_MAX_PIXELS
    side: int = DEFAULT_MAX_SIDE


def limits() -> Limits:
    """The limits in force: the defaults, or ``$PB_BUILD_MAX_PIXELS`` / ``$PB_BUILD_MAX_SIDE``."""
    values = []
    for env, default in ((PIXELS_ENV, DEFAULT_MAX_PIXELS), (SIDE_ENV, DEFAULT_MAX_SIDE)):
        text = os.environ.get(env, "").strip()
        if not text:
            values.append(default)
            continue
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise PbBuildError(f"${env} must be a positive integer, got {text!r}")
        values.append(value)
    return Limits(*values)


def check_size(width: int, height: int, where: str | Path, what: str = "image") -> None:
    """Raise :class:`BadRecord` when a ``width`` x ``height`` frame is empty or over :func:`limits`."""
    lim = limits()
    if width < 1 or height < 1:
        raise BadRecord(where, f"{what} declares an empty size {width}x{height}")
    if max(width, height) > lim.side or width * height > lim.pixels:
        raise BadRecord(where, f"{what} declares {width}x{height} pixels, over the limit of {lim.pixels} pixels "
                               f"and {lim.side} per side (${PIXELS_ENV}, ${SIDE_ENV})")


def _open(data: bytes | IO[bytes], where: str | Path) -> Any:
    """A Pillow image over ``data`` (bytes or a binary file) with only its header read, its size checked."""
    from PIL import Image

    if isinstance(data, bytes | bytearray) and not data:
        raise BadRecord(where, "image file is empty")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # our own limit is checked below, with a clearer message
        img = Image.open(io.BytesIO(data) if isinstance(data, bytes | bytearray) else data)
    except Exception as exc:  # Pillow raises many types on a bad header (OSError, SyntaxError, ValueError, ...)
        raise BadRecord(where, f"image does not decode: {_cause(exc)}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    try:
        check_size(img.width, img.height, where)
    except BadRecord:
        img.close()
        raise
    return img


def probe(data: bytes | IO[bytes], where: str | Path) -> tuple[int, int, str]:
    """(width, height, Pillow format) from the header only (of bytes or a binary file); raises
    :class:`BadRecord` when unusable."""
    with _open(data, where) as img:
        return img.width, img.height, img.format or ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _cause(exc: BaseException) -> str:
    # Pillow names the stream object ("<_io.BytesIO object at 0x...>"); the file is named by BadRecord already.
    text = _first_line(exc)
    if "<_io.BytesIO object" in text or "cannot identify image file" in text:
        return "unknown or corrupt format"
    return text


def to_stored_mode(img: Any) -> Any:
    """``img`` in a mode the release stores (``L`` or ``RGB``); see the module docstring for the mapping."""
    if img.mode in STORED_MODES:
        return img
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(pixels.max(initial=0.0)), 1.0)
        from PIL import Image

        return Image.fromarray(np.clip(pixels * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def decode_pil(data: bytes, where: str | Path, mode: str | None = None) -> Any:
    """Decode ``data`` completely into a Pillow image in a stored mode (or ``mode``, e.g. ``"RGB"``).

    No EXIF rotation is applied (the official environments open images with plain ``Image.open``). A truncated
    or corrupt file is a :class:`BadRecord` naming ``where``.
    """
    img = _open(data, where)
    try:
        with img:
            img.load()
            out = to_stored_mode(img)
            if mode is not None and out.mode != mode:
                out = out.convert(mode)
            if out is img:
                out = img.copy()
            return out
    except BadRecord:
        raise
    except Exception as exc:
        raise BadRecord(where, f"image does not decode: {_cause(exc)}") from None


def decode_bgr(data: bytes, where: str | Path) -> np.ndarray:
    """Decode ``data`` into a uint8 array for OpenCV: HxW (greyscale) or HxWx3 BGR."""
    pixels = np.asarray(decode_pil(data, where))
    return pixels if pixels.ndim == 2 else np.ascontiguousarray(pixels[:, :, ::-1])


def check_decodes(data: bytes, where: str | Path) -> tuple[int, int, str, str]:
    """Check that ``data`` decodes completely; (width, height, format, mode) from the header.

    A JPEG is decoded at 1/8 scale (DCT scaling still reads every byte, so truncation and corruption fail as a
    full decode would, at a fraction of the cost).
    """
    img = _open(data, where)
    try:
        with img:
            info = (img.width, img.height, img.format or "", img.mode)
            if img.format == "JPEG":
                img.draft(img.mode if img.mode in STORED_MODES else "RGB",
                          (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except BadRecord:
        raise
    except Exception as exc:
        raise BadRecord(where, f"image does not decode: {_cause(exc)}") from None
    if info[2] == "JPEG" and b"\xff\xd9" not in data[-1024:]:
        raise BadRecord(where, "truncated JPEG (no end-of-image marker)")
    return info


def read_bytes(path: str | Path) -> bytes:
    """A raw file's bytes; an unreadable file is a :class:`BadRecord`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadRecord(path, f"cannot read: {exc.strerror or exc}") from None


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` shrunk (OpenCV INTER_AREA) so its longer side is at most ``max_side``; 0 keeps it."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def encode_png(image: np.ndarray, params: list[int] = PNG_PARAMS) -> bytes:
    """Encode a grey or BGR uint8 image as PNG (with :data:`PNG_PARAMS` unless other ``params`` are given)."""
    return _imencode(image, ".png", params, "PNG")


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """Encode a grey or BGR uint8 image as baseline JPEG with fixed settings (identical bytes for identical input)."""
    return _imencode(image, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality], "JPEG")


def encode(image: np.ndarray, suffix: str, quality: int = 90) -> bytes:
    """Encode ``image`` in the format of a release file name ending in ``suffix`` (``.png``, ``.jpg``)."""
    fmt = stored_format(suffix)
    if fmt == "JPEG":
        return encode_jpeg(image, quality)
    return _imencode(image, suffix.lower(), PNG_PARAMS if fmt == "PNG" else [], fmt)


def _imencode(image: np.ndarray, suffix: str, params: list[int], fmt: str) -> bytes:
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode the frame as {fmt}")
    return buf.tobytes()


def stored_format(suffix: str) -> str:
    """The Pillow format name a release file ending in ``suffix`` must hold."""
    try:
        return _FORMAT_OF_SUFFIX[suffix.lower()]
    except KeyError:
        raise PbBuildError(f"frames can be stored as {', '.join(sorted(_FORMAT_OF_SUFFIX))}, not {suffix!r}") from None


def load_frame(path: str | Path, suffix: str, max_side: int = 0, quality: int = 90) -> bytes:
    """The exported bytes of one raw image stored under a name ending in ``suffix``.

    The raw bytes when they decode, hold the stored format and a stored mode, and fit ``max_side`` (0: no
    limit); otherwise the decoded image, in a stored mode and shrunk to ``max_side``, re-encoded in the stored
    format (JPEG at ``quality``).
    """
    data = read_bytes(path)
    return frame_bytes(data, path, suffix, max_side, quality)


def frame_bytes(data: bytes, where: str | Path, suffix: str, max_side: int = 0, quality: int = 90) -> bytes:
    """:func:`load_frame` on bytes already read."""
    width, height, fmt, mode = check_decodes(data, where)
    if fmt == stored_format(suffix) and mode in STORED_MODES and (not max_side or max(width, height) <= max_side):
        return data
    return encode(resize_max_side(decode_bgr(data, where), max_side), suffix, quality)


def open_video(path: str | Path) -> cv2.VideoCapture:
    """An OpenCV capture of a video decoding on one thread, its frame size checked from the container header
    before any frame is decoded; check ``isOpened()`` (a file FFmpeg cannot open gives a closed capture)."""
    # One decoder thread: FFmpeg's default starts one per core, 5x slower to open, and the threads of parallel
    # workers would compete for the same cores
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if capture.isOpened():
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width or height:
            try:
                check_size(width, height, path, "video")
            except BadRecord:
                capture.release()
                raise
    return capture
