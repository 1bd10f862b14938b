"""The font of rendered images: DejaVu Sans, matplotlib's copy first (a dependency, so the same bytes on every
machine with the same versions: release previews must not depend on the system's fonts), else the system's, else
Pillow's."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

_SYSTEM = Path("/usr/share/fonts/truetype/dejavu")
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _candidates(bold: bool) -> list[Path]:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    out = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin:
        out.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / name)
    return [*out, _SYSTEM / name]


@lru_cache(maxsize=32)
def font(size: int, bold: bool = False) -> Font:
    """A TrueType font of ``size`` pixels (DejaVu Sans, which has the check and cross marks used here)."""
    for path in _candidates(bold):
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def wrap(text: str, fnt: Font, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels (long words are cut)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}" if line else word
            if fnt.getlength(trial) <= width:
                line = trial
                continue
            if line:
                lines.append(line)
            while fnt.getlength(word) > width and len(word) > 1:
                cut = max(1, int(len(word) * width / fnt.getlength(word)) - 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines
