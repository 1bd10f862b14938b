"""Generate the bundled QuickDraw demo sample: synthetic drawings made by pb-build, in the simplified format.

These are not Google's drawings: simple parametric shapes with jitter, so that ``pb-build quickdraw --sample``
runs anywhere. Regenerate with ``python -m pb_build.sample.make_quickdraw``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

PER_CATEGORY = 12
Stroke = list[list[int]]


def _pts(rng: np.random.Generator, xy: list[tuple[float, float]]) -> Stroke:
    jitter = rng.normal(0, 2.0, size=(len(xy), 2))
    arr = np.clip(np.round(np.asarray(xy, float) + jitter), 0, 255).astype(int)
    return [arr[:, 0].tolist(), arr[:, 1].tolist()]


def _circle(cx: float, cy: float, r: float, n: int = 16, start: float = 0.0, end: float = 2 * math.pi):
    return [(cx + r * math.cos(start + (end - start) * i / n), cy + r * math.sin(start + (end - start) * i / n))
            for i in range(n + 1)]


def house(rng: np.random.Generator) -> list[Stroke]:
    w, h = rng.uniform(120, 180), rng.uniform(90, 130)
    x0, y0 = rng.uniform(20, 235 - w), rng.uniform(110, 250 - h)
    strokes = [_pts(rng, [(x0, y0), (x0, y0 + h), (x0 + w, y0 + h), (x0 + w, y0), (x0, y0)]),
               _pts(rng, [(x0 - 8, y0), (x0 + w / 2, y0 - rng.uniform(60, 100)), (x0 + w + 8, y0)]),
               _pts(rng, [(x0 + w * 0.4, y0 + h), (x0 + w * 0.4, y0 + h * 0.5), (x0 + w * 0.6, y0 + h * 0.5),
                          (x0 + w * 0.6, y0 + h)])]
    if rng.random() < 0.7:
        strokes.append(_pts(rng, [(x0 + 12, y0 + 15), (x0 + 35, y0 + 15), (x0 + 35, y0 + 38), (x0 + 12, y0 + 38),
                                  (x0 + 12, y0 + 15)]))
    return strokes


def sun(rng: np.random.Generator) -> list[Stroke]:
    cx, cy, r = rng.uniform(100, 155), rng.uniform(100, 155), rng.uniform(35, 55)
    strokes = [_pts(rng, _circle(cx, cy, r))]
    for k in range(int(rng.integers(5, 10))):
        a = 2 * math.pi * k / 8 + rng.uniform(-0.1, 0.1)
        strokes.append(_pts(rng, [(cx + (r + 10) * math.cos(a), cy + (r + 10) * math.sin(a)),
                                  (cx + (r + 45) * math.cos(a), cy + (r + 45) * math.sin(a))]))
    return strokes


def smiley_face(rng: np.random.Generator) -> list[Stroke]:
    cx, cy, r = rng.uniform(110, 145), rng.uniform(110, 145), rng.uniform(80, 105)
    return [_pts(rng, _circle(cx, cy, r, 24)),
            _pts(rng, _circle(cx - r * 0.35, cy - r * 0.3, r * 0.1, 8)),
            _pts(rng, _circle(cx + r * 0.35, cy - r * 0.3, r * 0.1, 8)),
            _pts(rng, _circle(cx, cy + r * 0.05, r * 0.5, 10, 0.2 * math.pi, 0.8 * math.pi))]


def the_eiffel_tower(rng: np.random.Generator) -> list[Stroke]:
    top, base = rng.uniform(5, 30), rng.uniform(230, 255)
    cx, half = rng.uniform(110, 145), rng.uniform(70, 100)
    strokes = [_pts(rng, [(cx - 4, top), (cx - 20, (top + base) / 2), (cx - half, base)]),
               _pts(rng, [(cx + 4, top), (cx + 20, (top + base) / 2), (cx + half, base)])]
    for frac in (0.45, 0.7):
        y = top + (base - top) * frac
        w = 15 + (half - 15) * (frac - 0.4) * 1.6
        strokes.append(_pts(rng, [(cx - w, y), (cx + w, y)]))
    if rng.random() < 0.6:
        strokes.append(_pts(rng, _circle(cx, base, half * 0.45, 8, math.pi, 2 * math.pi)))
    return strokes


SHAPES = {"house": house, "sun": sun, "smiley face": smiley_face, "The Eiffel Tower": the_eiffel_tower}


def make(out: Path) -> None:
    """Write ``<category>.ndjson`` files with PER_CATEGORY synthetic drawings each into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for c_idx, (word, shape) in enumerate(SHAPES.items()):
        rng = np.random.default_rng(1000 + c_idx)
        lines = []
        for i in range(PER_CATEGORY):
            record = {
                "word": word,
                "countrycode": "ZZ",
                "timestamp": f"2026-01-01 00:00:{i:02d}.00000 UTC",
                "recognized": i % 6 != 5,  # a few unrecognised drawings, as in the real files
                "key_id": str(9_000_000_000_000_000 + c_idx * 1000 + i),
                "drawing": shape(rng),
            }
            lines.append(json.dumps(record, separators=(",", ":")))
        (out / f"{word}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    make(Path(__file__).resolve().parent / "quickdraw")
