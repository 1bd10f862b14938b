"""Shared helpers of the evaluator tests (``tests/test_eval_*.py``): releases of every source, eval-extra checks.

``build_source_release`` builds a small release of any of the seven sources: QuickDraw from its bundled sample,
the others from the raw trees their own test modules generate (ChangeIt's from the real annotation samples in
``tests/data``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

try:
    from conftest import EVAL_HINT
except ImportError:  # tests/ imported as a package
    from tests.conftest import EVAL_HINT
from pb_build.build import SourceJob, build_release
from pb_build.builders import REGISTRY
from pb_build.episode import Episode
from pb_build.writers.native import from_row, read_rows

SAMPLE_SOURCES = sorted(n for n, b in REGISTRY.items() if b.sample_dir() is not None)
ALL_SOURCES = sorted(REGISTRY)


def build_sample_release(out: Path, source: str = "quickdraw", **config: Any) -> Path:
    """A release of ``source`` built from its bundled sample."""
    builder = REGISTRY[source]
    build_release(out, [SourceJob(builder, builder.Config(**config), builder.sample_dir(), True)], workers=1,
                  progress=False)
    return out


def _job(builder_name: str, raw: Path, **config: Any) -> SourceJob:
    builder = REGISTRY[builder_name]
    return SourceJob(builder, builder.Config(**config), raw)


def source_job(base: Path, source: str) -> SourceJob:
    """The build job of a small release of ``source``, its raw inputs made under ``base`` (skips when they are
    not available)."""
    if source == "quickdraw":
        builder = REGISTRY[source]
        return SourceJob(builder, builder.Config(), builder.sample_dir(), True)
    if source == "rod":
        from test_rod import make_tree

        return _job(source, make_tree(base / "raw"))
    if source == "vsod":
        from test_vsod import make_tree

        raw, labels = make_tree(base)
        return _job(source, raw, labels=str(labels))
    if source == "mvp-n":
        from test_mvp_n import make_tree, write_names

        return _job(source, make_tree(base / "raw"), names=str(write_names(base / "names.csv")), max_views=6)
    if source == "imagenet-c":
        from test_imagenet_c import make_tree

        return _job(source, make_tree(base / "raw"), per_class=3)
    if source == "changeit":
        from changeit_raw import make_raw

        return _job(source, make_raw(base / "raw"))
    if source == "coco":
        from coco_raw import varied_tree

        tree = varied_tree(base / "raw", 12)
        tree.write()
        return _job(source, tree.root)
    raise ValueError(f"no test release recipe for {source!r}")


def build_source_release(base: Path, source: str) -> Path:
    """A small release of ``source`` under ``base`` (skips when its raw inputs are not available)."""
    out = base / "release"
    build_release(out, [source_job(base, source)], workers=1, progress=False)
    return out


def release_entry(release: Path, source: str) -> dict[str, Any]:
    manifest = json.loads((release / "manifest.json").read_text(encoding="utf-8"))
    return next(e for e in manifest["sources"] if e["source"] == source)


def release_episodes(release: Path, source: str) -> dict[int, Episode]:
    """The episodes of a release, by id, read back from the native shards."""
    entry = release_entry(release, source)
    return {row["id"]: from_row(row) for row in read_rows([release / p for p in entry["files"]["native"]])}


def release_records(release: Path, source: str) -> dict[int, dict[str, Any]]:
    entry = release_entry(release, source)
    with open(release / entry["files"]["official"], encoding="utf-8") as handle:
        return {r["id"]: r for r in map(json.loads, handle)}


def eval_extra_missing() -> str | None:
    """Why the eval extra cannot be used (None when torch and transformers import)."""
    for name in ("torch", "transformers"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed: {EVAL_HINT}"
    return None


requires_eval_extra = pytest.mark.skipif(eval_extra_missing() is not None, reason=eval_extra_missing() or "")

