"""One harness over the registry: every built-in source builds from its raw-tree generator, gives the same bytes
with 1 and 2 workers, verifies, loads with ``load_dataset``, round-trips through the official layout (export ->
import equals the episode) and scores 100% with the oracle policy in the evaluator.

Each source contributes only its raw-tree generator (``RAW_TREES``, from its own test module); its construction
rules stay in ``test_<source>.py``. The eighth, third-party source goes through the same checks in
``test_third_party_source.py``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset

from pb_build.build import SourceJob, build_release
from pb_build.builders import REGISTRY, get_builder
from pb_build.episode import Episode
from pb_build.eval import data
from pb_build.eval.policies import get_policy
from pb_build.eval.runner import policy_decider, run_mcqa
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.verify import verify_release
from pb_build.writers.native import from_row, read_rows

try:
    import changeit_raw
    import coco_raw
    import test_imagenet_c
    import test_mvp_n
    import test_rod
    import test_vsod
except ImportError:  # tests/ imported as a package
    from tests import changeit_raw, coco_raw, test_imagenet_c, test_mvp_n, test_rod, test_vsod

RawTree = Callable[[Path], tuple[Path, dict[str, Any]]]


def _quickdraw(_: Path) -> tuple[Path, dict[str, Any]]:
    return get_builder("quickdraw").sample_dir(), {}


def _mvp_n(root: Path) -> tuple[Path, dict[str, Any]]:
    return test_mvp_n.make_tree(root / "mvpn"), {"names": str(test_mvp_n.write_names(root / "names.csv"))}


def _vsod(root: Path) -> tuple[Path, dict[str, Any]]:
    raw, labels = test_vsod.make_tree(root)
    return raw, {"labels": str(labels)}


def _coco(root: Path) -> tuple[Path, dict[str, Any]]:
    tree = coco_raw.varied_tree(root / "coco", 12)
    tree.write()
    return tree.root, {}


def _changeit(root: Path) -> tuple[Path, dict[str, Any]]:
    return changeit_raw.make_raw(root), {}


RAW_TREES: dict[str, RawTree] = {
    "quickdraw": _quickdraw,
    "rod": lambda root: (test_rod.make_tree(root / "rod"), {}),
    "vsod": _vsod,
    "mvp-n": _mvp_n,
    "imagenet-c": lambda root: (test_imagenet_c.make_tree(root / "inc"), {"per_class": 2}),
    "coco": _coco,
    "changeit": _changeit,
}
BUILT_IN = sorted(name for name, source in REGISTRY.items() if source.origin == "built-in")


@dataclasses.dataclass(frozen=True)
class Built:
    source: str
    raw: Path
    config: Any
    release: Path


def build(source: str, raw: Path, config: Any, out: Path, workers: int) -> Path:
    build_release(out, [SourceJob(get_builder(source), config, raw)], workers=workers, progress=False)
    return out


@pytest.fixture(scope="module", params=BUILT_IN)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    source = get_builder(request.param)
    base = tmp_path_factory.mktemp(request.param)
    raw, params = RAW_TREES[request.param](base / "raw")
    config = source.Config(**params)
    return Built(request.param, raw, config, build(request.param, raw, config, base / "release", workers=1))


def native_episodes(release: Path) -> dict[int, Episode]:
    entry = read_manifest(release)["sources"][0]
    return {row["id"]: from_row(row) for row in read_rows([release / p for p in entry["files"]["native"]])}


def test_every_built_in_source_has_a_raw_tree() -> None:
    assert set(RAW_TREES) == set(BUILT_IN)


def test_one_and_two_workers_give_the_same_bytes(built: Built, tmp_path: Path) -> None:
    two = build(built.source, built.raw, built.config, tmp_path / "two", workers=2)
    assert (two / "SHA256SUMS").read_bytes() == (built.release / "SHA256SUMS").read_bytes()


def test_release_verifies_and_loads(built: Built) -> None:
    result = verify_release(built.release)
    assert result.problems == []
    check = result.sources[0]
    assert check.rows == check.records == check.oracle_correct > 0
    ds = load_dataset(str(built.release), built.source, split="test")
    assert len(ds) == check.rows
    assert all(len(row["frames"]) >= 1 for row in ds)


def _without_files(ep: Episode) -> Episode:
    return dataclasses.replace(ep, official=dataclasses.replace(ep.official, files=()))


def test_official_export_then_import_gives_the_episode(built: Built) -> None:
    source = get_builder(built.source)
    test_dir = built.release / "test"
    lines = (test_dir / f"{source.info.official_name}_preprocessed.jsonl").read_text(encoding="utf-8")
    natives = native_episodes(built.release)
    for record in map(json.loads, lines.splitlines()):
        native = natives[record["id"]]
        imported = source.import_record(record, test_dir)
        assert [f.path for f in imported.official.files] == [f.path for f in native.official.files]
        for f in imported.official.files:
            assert f.data == (test_dir / f.path).read_bytes(), f.path
        assert imported.meta == {"spec": native.meta["spec"]}
        assert _without_files(imported) == dataclasses.replace(_without_files(native), meta=imported.meta)


def test_evaluator_oracle_scores_100_percent(built: Built) -> None:
    dataset = data.load(built.release, built.source)
    assert dataset.items and not dataset.failures
    results = run_mcqa(dataset.items, policy_decider(get_policy("oracle")), batch_size=4)
    assert len(results) == len(dataset.items) and all(r["correct"] for r in results)
