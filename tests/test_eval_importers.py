"""Official-layout folders -> episodes: importers invert the export, loader rules and kept-id lists apply."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from pb_build.errors import PbBuildError
from pb_build.eval import data
from pb_build.eval.importers import IMPORTERS, ImportFailure, import_record
from pb_build.eval.policies import get_policy
from pb_build.eval.runner import policy_decider, run_mcqa

try:
    from test_eval_support import build_sample_release, release_records
except ImportError:  # tests/ imported as a package
    from tests.test_eval_support import build_sample_release, release_records

@pytest.fixture(scope="module")
def qd_release(tmp_path_factory) -> Path:
    return build_sample_release(tmp_path_factory.mktemp("qd") / "release")


def test_official_layout_folder_runs_like_the_release(qd_release: Path, tmp_path: Path):
    """A bare official layout (``test/`` only) gives the same episodes and oracle results as the release."""
    official = tmp_path / "official"
    shutil.copytree(qd_release / "test", official / "test")
    from_release = data.load(qd_release, "quickdraw")
    from_official = data.load(official, "QD")
    assert from_official.kind == "official" and from_release.kind == "release"
    assert from_official.fingerprint == from_release.fingerprint
    assert [i.sample_id for i in from_official.items] == [i.sample_id for i in from_release.items]
    for a, b in zip(from_release.items, from_official.items, strict=True):
        a_spec_only = dataclasses.replace(a.episode, meta={"spec": a.episode.meta["spec"]}, official=None)
        assert a_spec_only == dataclasses.replace(b.episode, official=None)
    results = run_mcqa(from_official.items, policy_decider(get_policy("oracle")), batch_size=8)
    assert len(results) == len(from_official.items) and all(r["correct"] for r in results)
    flat = data.load(official / "test", "QuickDraw")  # the folder holding the JSONL directly
    assert len(flat.items) == len(from_official.items)


def test_keep_ids_lists(qd_release: Path, tmp_path: Path):
    as_list = tmp_path / "ids.json"
    as_list.write_text(json.dumps([0, 3, 5]))
    as_table = tmp_path / "table.json"
    as_table.write_text(json.dumps({"QuickDraw": [1, 2], "MVP-N": [0]}))
    as_python = tmp_path / "data_utils.py"
    as_python.write_text("import os\n\nFILTER = {'QuickDraw': [4, 7, 9], 'ImageNet-C': [1]}\n\n\ndef f():\n    pass\n")
    assert [i.sample_id for i in data.load(qd_release, "QD", keep_ids=as_list).items] == [0, 3, 5]
    assert [i.sample_id for i in data.load(qd_release, "QD", keep_ids=as_table).items] == [1, 2]
    loaded = data.load(qd_release, "QD", keep_ids=as_python)
    assert [i.sample_id for i in loaded.items] == [4, 7, 9]
    assert loaded.dropped["not_kept"] == len(release_records(qd_release, "quickdraw")) - 3
    missing = tmp_path / "other.json"
    missing.write_text(json.dumps({"MVP-N": [0]}))
    with pytest.raises(PbBuildError, match="no kept-id list for 'QuickDraw'"):
        data.load(qd_release, "QD", keep_ids=missing)
    with pytest.raises(PbBuildError, match="pb-build filter"):
        data.load(qd_release, "QD", filtered=True)


def test_loader_rules_and_failures(qd_release: Path, tmp_path: Path):
    """strong_occlusions == false rows are dropped; a record whose frame is missing is a recorded failure."""
    official = tmp_path / "official"
    shutil.copytree(qd_release / "test", official)
    jsonl = official / "QuickDraw_preprocessed.jsonl"
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    records[1]["strong_occlusions"] = False
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (official / records[2]["image_template"].format(image="0001")).unlink()
    loaded = data.load(official, "QD")
    assert loaded.dropped["strong_occlusions_false"] == 1
    assert [f.sample_id for f in loaded.failures] == [2]
    assert "0001.png" in loaded.failures[0].reason
    assert len(loaded.items) == len(records) - 2
    assert loaded.order[:3] == [0, 2, 3]


def test_limit_and_unknown_sources(qd_release: Path, tmp_path: Path):
    assert len(data.load(qd_release, "quickdraw", limit=5).items) == 5
    with pytest.raises(PbBuildError, match=r"source 'COCO' is not in this folder; it has: quickdraw \(QD\)"):
        data.load(qd_release, "COCO")
    with pytest.raises(PbBuildError, match="neither a pb-build release"):
        data.load(tmp_path, "QD")
    other = tmp_path / "other"
    other.mkdir()
    (other / "MVP-N_preprocessed.jsonl").write_text('{"id": 0}\n')
    if "MVP-N" not in IMPORTERS:
        with pytest.raises(PbBuildError, match="no importer for official source 'MVP-N' yet; importers exist for"):
            data.load(other, "MVP-N")


def test_import_failure_names_the_record(tmp_path: Path):
    with pytest.raises(ImportFailure, match="QuickDraw record 7"):
        import_record("QuickDraw", {"id": 7, "image_template": "x/{image}.png", "num_images": 2, "first_image": 0},
                      tmp_path)
