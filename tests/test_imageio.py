"""The decoding guards: size limits from the header, mode conversion, re-encoding, one-line errors."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pb_build import imageio
from pb_build.errors import BadRecord, PbBuildError

REPO = Path(__file__).resolve().parent.parent


def png_bytes(mode: str = "RGB", size: tuple[int, int] = (8, 6)) -> bytes:
    img = Image.new(mode, size)
    if mode == "P":
        img.putpalette([i % 256 for i in range(768)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(mode: str = "RGB", size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (10, 20, 30, 40)[: len(mode)] if mode != "L" else 7).save(buf, format="JPEG")
    return buf.getvalue()


def noisy_png() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def forged_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 8x6 PNG whose IHDR (with a correct CRC) declares ``width`` x ``height``."""
    data = bytearray(png_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def forged_jpeg(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 8x6 baseline JPEG whose SOF0 declares ``width`` x ``height``."""
    data = bytearray(jpeg_bytes())
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("forge", [forged_png, forged_jpeg])
def test_forged_header_is_refused_before_decoding(forge) -> None:
    data = forge()
    with pytest.raises(BadRecord, match=r"^x\.img: image declares 30000x30000 pixels, over the limit"):
        imageio.decode_pil(data, "x.img")
    for call in (lambda: imageio.probe(data, "x.img"), lambda: imageio.check_decodes(data, "x.img"),
                 lambda: imageio.frame_bytes(data, "x.img", ".png")):
        with pytest.raises(BadRecord, match="30000x30000"):
            call()


def test_limits_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_bytes(size=(40, 30))
    monkeypatch.setenv(imageio.PIXELS_ENV, "1000")
    with pytest.raises(BadRecord, match="40x30 pixels, over the limit of 1000 pixels"):
        imageio.probe(data, "a.png")
    monkeypatch.setenv(imageio.PIXELS_ENV, "1200")
    monkeypatch.setenv(imageio.SIDE_ENV, "39")
    with pytest.raises(BadRecord, match="39 per side"):
        imageio.probe(data, "a.png")
    monkeypatch.setenv(imageio.SIDE_ENV, "lots")
    with pytest.raises(PbBuildError, match=r"\$PB_BUILD_MAX_SIDE must be a positive integer"):
        imageio.probe(data, "a.png")


@pytest.mark.parametrize("data, cause", [
    (b"", "image file is empty"),
    (b"not an image at all", "image does not decode: unknown or corrupt format"),
    (noisy_png()[:300], "image does not decode"),
    (jpeg_bytes(size=(64, 64))[:200], "image does not decode"),
])
def test_errors_are_one_line_naming_the_file(data: bytes, cause: str, capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(BadRecord) as err:
        imageio.frame_bytes(data, "raw/f.png", ".png")
    text = str(err.value)
    assert text.startswith(f"raw/f.png: {cause}") and "\n" not in text and "BytesIO" not in text
    out, errout = capfd.readouterr()
    assert "libpng" not in errout and not out


@pytest.mark.parametrize("mode, expect", [("L", "L"), ("RGB", "RGB"), ("RGBA", "RGB"), ("P", "RGB"), ("1", "L"),
                                          ("I;16", "L"), ("LA", "RGB"), ("CMYK", "RGB")])
def test_modes_become_stored_modes(mode: str, expect: str) -> None:
    if mode == "CMYK":
        data = jpeg_bytes("CMYK")
    else:
        data = png_bytes(mode)
    img = imageio.decode_pil(data, "m")
    assert img.mode == expect and img.size == (8, 6)
    stored = imageio.frame_bytes(data, "m", ".png")
    with Image.open(io.BytesIO(stored)) as out:
        assert out.format == "PNG" and out.mode in imageio.STORED_MODES
    assert (stored == data) == (mode in ("L", "RGB"))


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    img = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert np.asarray(imageio.decode_pil(buf.getvalue(), "deep")).max() == 255
    assert imageio.decode_bgr(buf.getvalue(), "deep").dtype == np.uint8


def test_bytes_not_matching_the_stored_format_are_reencoded() -> None:
    png, jpeg = png_bytes(), jpeg_bytes()
    assert imageio.frame_bytes(png, "a.png", ".png") == png
    assert imageio.frame_bytes(jpeg, "a.jpg", ".jpg") == jpeg
    as_jpeg = imageio.frame_bytes(png, "really-png.jpg", ".jpg")
    as_png = imageio.frame_bytes(jpeg, "really-jpeg.png", ".png")
    assert Image.open(io.BytesIO(as_jpeg)).format == "JPEG" and Image.open(io.BytesIO(as_png)).format == "PNG"


def test_bmp_frames_are_kept_or_reencoded_as_bmp() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (5, 3), (1, 2, 3)).save(buf, format="BMP")
    assert imageio.frame_bytes(buf.getvalue(), "f.bmp", ".bmp") == buf.getvalue()
    as_bmp = imageio.frame_bytes(png_bytes(), "really-png.bmp", ".bmp")
    assert Image.open(io.BytesIO(as_bmp)).format == "BMP"
    with pytest.raises(PbBuildError, match="frames can be stored as"):
        imageio.frame_bytes(png_bytes(), "x.gif", ".gif")


def test_resize_to_max_side() -> None:
    data = png_bytes(size=(400, 100))
    out = imageio.frame_bytes(data, "w.png", ".png", max_side=100)
    assert Image.open(io.BytesIO(out)).size == (100, 25)
    assert imageio.frame_bytes(data, "w.png", ".png", max_side=400) == data
    assert imageio.resize_max_side(np.zeros((10, 20, 3), np.uint8), 0).shape == (10, 20, 3)


def test_truncated_jpeg_without_end_marker() -> None:
    data = jpeg_bytes(size=(32, 32))
    with pytest.raises(BadRecord, match="truncated JPEG|does not decode"):
        imageio.check_decodes(data[:-2], "t.jpg")


def test_video_size_is_checked_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    imageio.open_video(video).release()
    monkeypatch.setenv(imageio.SIDE_ENV, "50")
    with pytest.raises(BadRecord, match=r"v\.avi: video declares 64x48 pixels"):
        imageio.open_video(video).release()


# Every entry point through which a builder or verify reads an image, fed a forged 30000x30000 header in a fresh
# process: each must refuse it with a BadRecord (or verify's None) and stay far below 300 MB of extra memory.
_MEMORY_PROBE = r"""
import json, resource, sys
from pathlib import Path
from pb_build.builders import coco, mvp_n, rod, vsod
from pb_build.errors import BadRecord
from pb_build.frames import decode
from pb_build.raw import coco as raw_coco, imagenet_c, mvp_n as raw_mvp_n

path = Path(sys.argv[1])
data = path.read_bytes()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
calls = {
    "rod": lambda: rod.load_frame(str(path), rod.Config(), ".png"),
    "rod --max-side": lambda: rod.load_frame(str(path), rod.Config(max_side=512), ".png"),
    "vsod": lambda: vsod.load_frame(str(path), 0, ".png"),
    "mvp-n": lambda: mvp_n.load_frame(raw_mvp_n.View(path=str(path), token="0", flag=1), 0),
    "coco header": lambda: raw_coco.image_header(raw_coco.Source(path)),
    "coco decode": lambda: coco.decode_image(data, raw_coco.Source(path), 30000, 30000),
    "imagenet-c tree": lambda: imagenet_c.read_image(path),
    "imagenet-c clean": lambda: imagenet_c.decode_rgb(data, path),
}
out = {}
for label, call in calls.items():
    try:
        call()
        out[label] = "accepted"
    except BadRecord as exc:
        out[label] = str(exc)
out["verify"] = "refused" if decode(data) is None else "accepted"
out["extra_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps(out))
"""


@pytest.mark.parametrize("forge", [forged_png, forged_jpeg])
def test_forged_header_costs_little_memory_on_every_source(forge, tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(forge())
    proc = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    extra_mb = result.pop("extra_kib") / 1024
    print(f"forged 30000x30000 header: peak extra memory {extra_mb:.1f} MB over {len(result)} entry points")
    assert result.pop("verify") == "refused"
    for label, message in result.items():
        assert "30000x30000" in message or "too many pixels" in message, (label, message)
    assert extra_mb < 300
    assert "libpng" not in proc.stderr
