"""COCO distractor choosers: hard negative categories for a COCO sample (pluggable; see ``--distractors``)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from pb_build.errors import PbBuildError
from pb_build.raw import coco as raw

# The documented similarity that tops up a supercategory with fewer than 3 other categories: each COCO
# supercategory's related supercategories, most related first.
RELATED_SUPERCATEGORIES: dict[str, tuple[str, ...]] = {
    "person": ("accessory", "sports", "animal"),
    "vehicle": ("outdoor", "sports", "electronic"),
    "outdoor": ("vehicle", "furniture", "indoor"),
    "animal": ("person", "food", "outdoor"),
    "accessory": ("sports", "indoor", "person"),
    "sports": ("accessory", "outdoor", "vehicle"),
    "kitchen": ("food", "appliance", "indoor"),
    "food": ("kitchen", "animal", "indoor"),
    "furniture": ("indoor", "appliance", "electronic"),
    "electronic": ("appliance", "indoor", "furniture"),
    "appliance": ("electronic", "kitchen", "furniture"),
    "indoor": ("furniture", "kitchen", "electronic"),
}


class DistractorChooser(Protocol):
    """Chooses 3 wrong categories for ``answer`` among ``candidates`` (every category of the file but the answer).

    Must be deterministic given ``rng`` (the sample's own generator) and return 3 distinct candidates.
    """

    def __call__(self, answer: raw.Category, candidates: Sequence[raw.Category],
                 rng: np.random.Generator) -> list[raw.Category]: ...


def supercategory_chooser(answer: raw.Category, candidates: Sequence[raw.Category],
                          rng: np.random.Generator) -> list[raw.Category]:
    """Same supercategory first, then the related supercategories in table order, then the rest; random within."""
    tiers: list[list[raw.Category]] = []
    order = (answer.supercategory, *RELATED_SUPERCATEGORIES.get(answer.supercategory, ()))
    used: set[int] = set()
    for sup in order:
        tier = sorted((c for c in candidates if c.supercategory == sup and c.id not in used), key=lambda c: c.name)
        used.update(c.id for c in tier)
        tiers.append(tier)
    tiers.append(sorted((c for c in candidates if c.id not in used), key=lambda c: c.name))
    chosen: list[raw.Category] = []
    for tier in tiers:
        if len(chosen) == 3:
            break
        chosen += [tier[i] for i in rng.permutation(len(tier))][: 3 - len(chosen)]
    return chosen


class EmbeddingChooser:
    """The 3 candidates whose embeddings are most cosine-similar to the answer's (ties broken by name)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PbBuildError(f"{path}: cannot read the embeddings file: {exc}") from None
        if not isinstance(table, dict) or not table:
            raise PbBuildError(f"{path}: the embeddings file must be a JSON object {{name: [floats]}}")
        vectors: dict[str, np.ndarray] = {}
        for key, vec in table.items():
            arr = np.asarray(vec, dtype=np.float64) if isinstance(vec, list) else np.zeros(0)
            norm = float(np.linalg.norm(arr)) if arr.ndim == 1 and arr.size else 0.0
            if not math.isfinite(norm) or norm == 0.0:
                raise PbBuildError(f"{path}: the embedding of {key!r} is not a non-zero list of numbers")
            vectors[key.lower()] = arr / norm
        sizes = {v.size for v in vectors.values()}
        if len(sizes) != 1:
            raise PbBuildError(f"{path}: embeddings have different lengths {sorted(sizes)}")
        self.vectors = vectors

    def missing(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if n.lower() not in self.vectors]

    def __call__(self, answer: raw.Category, candidates: Sequence[raw.Category],
                 rng: np.random.Generator) -> list[raw.Category]:
        target = self.vectors[answer.name.lower()]
        scored = sorted(candidates, key=lambda c: (-round(float(self.vectors[c.name.lower()] @ target), 12), c.name))
        return list(scored[:3])


def chooser_spec(spec: str) -> tuple[str, Path | None]:
    """Parse ``--distractors``: ('supercategory', None) or ('embeddings', path)."""
    if spec == "supercategory":
        return spec, None
    kind, sep, arg = spec.partition(":")
    if kind == "embeddings" and sep and arg:
        path = Path(arg).expanduser()
        if not path.is_file():
            raise PbBuildError(f"--distractors: embeddings file {path} does not exist")
        return kind, path
    raise PbBuildError(f"--distractors must be 'supercategory' or 'embeddings:<file.json>', got {spec!r}")


@functools.lru_cache(maxsize=4)
def get_chooser(spec: str) -> DistractorChooser:
    """The chooser named by ``--distractors`` (loaded once per process)."""
    kind, path = chooser_spec(spec)
    if kind == "embeddings":
        assert path is not None
        return EmbeddingChooser(path)
    return supercategory_chooser
