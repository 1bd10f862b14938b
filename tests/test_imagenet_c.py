"""ImageNet-C: class table, option table, the seeded corruption engine, releases from both raw layouts, the
official environment against our replay, determinism, and bad input.

Raw inputs are synthesised in the exact original layouts (ImageNet pictures cannot be redistributed): the
published tree ``<corruption>/<severity>/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG`` and clean ``<wnid>/<file>``
folders. The real class list is in ``tests/data/imagenet_c``.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image

from pb_build.build import SourceJob, build_release
from pb_build.builders import imagenet_c as inc
from pb_build.builders.imagenet_c_official import OFFICIAL
from pb_build.episode import Episode
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.matching import normalise_text
from pb_build.official import ACTION_KEYS
from pb_build.raw import imagenet_c as raw
from pb_build.raw.imagenet_classes import SYNSETS
from pb_build.strings import category_string, is_abstain
from pb_build.verify import verify_release
from pb_build.writers.native import from_row, read_rows

try:
    from conftest import IMAGECORRUPTIONS_PROBLEM
    from official import Outcome, describe, of_policy, play_both, requires_official, standard_jobs
except ImportError:  # tests/ imported as a package
    from tests.conftest import IMAGECORRUPTIONS_PROBLEM
    from tests.official import Outcome, describe, of_policy, play_both, requires_official, standard_jobs

FIXTURES = Path(__file__).resolve().parent / "data" / "imagenet_c"
NAME = "ImageNet-C"
JSONL = f"{NAME}_preprocessed.jsonl"

try:
    raw.corruption_engine_versions()
    ENGINE_PROBLEM = None
except PbBuildError as exc:
    ENGINE_PROBLEM = str(exc)
requires_engine = pytest.mark.skipif(ENGINE_PROBLEM is not None, reason=f"corruption engine unavailable: "
                                     f"{IMAGECORRUPTIONS_PROBLEM or ENGINE_PROBLEM}")

TENCH, CRANE_BIRD, CRANE_MACHINE = "n01440764", "n02012849", "n03126707"
MAILLOT, TANK_SUIT, GOLDFISH = "n03710637", "n03710721", "n01443537"
TREE_CORRUPTIONS = ("gaussian_noise", "motion_blur", "snow", "contrast", "pixelate", "spatter")
TREE_WNIDS = (TENCH, CRANE_BIRD, CRANE_MACHINE, GOLDFISH)
CLEAN_WNIDS = (TENCH, MAILLOT, TANK_SUIT)


# ------------------------------------------------------------------------------------------------ raw makers


def synthetic_rgb(seed: int, width: int, height: int) -> np.ndarray:
    """A smooth synthetic picture (upsampled random colour blocks plus a disc), uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(blocks).resize((width, height), Image.BILINEAR)).copy()
    yy, xx = np.mgrid[0:height, 0:width]
    disc = (yy - height / 2) ** 2 + (xx - width / 3) ** 2 < (min(width, height) / 4) ** 2
    img[disc] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


def jpeg_bytes(img: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def file_name(wnid: str, i: int) -> str:
    return f"ILSVRC2012_val_{raw.WNIDS.index(wnid) * 50 + i + 1:08d}.JPEG"


def make_tree(root: Path, corruptions=TREE_CORRUPTIONS, wnids=TREE_WNIDS, per_class: int = 4,
              size: int = 32) -> Path:
    """The published layout: the same images under every corruption, noisier at higher severities."""
    for c_idx, corruption in enumerate(corruptions):
        for severity in raw.SEVERITIES:
            for w_idx, wnid in enumerate(wnids):
                folder = root / corruption / str(severity) / wnid
                folder.mkdir(parents=True)
                for i in range(per_class):
                    img = synthetic_rgb(w_idx * 100 + i, size, size).astype(np.int16)
                    noise = np.random.default_rng([c_idx, severity, w_idx, i]).normal(0, 8 * severity, img.shape)
                    img = np.clip(img + noise, 0, 255).astype(np.uint8)
                    (folder / file_name(wnid, i)).write_bytes(jpeg_bytes(img))
    return root


def make_clean(root: Path, wnids=CLEAN_WNIDS, per_class: int = 3) -> Path:
    """Clean ImageNet-val-style class folders; one PNG and one greyscale JPEG among them."""
    for w_idx, wnid in enumerate(wnids):
        folder = root / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = synthetic_rgb(1000 + w_idx * 10 + i, 64 + 8 * i, 48)
            path = folder / file_name(wnid, i)
            if w_idx == 1 and i == 0:
                Image.fromarray(img).save(path.with_suffix(".png"))
            elif w_idx == 2 and i == 1:
                Image.fromarray(img).convert("L").save(path, format="JPEG", quality=90)
            else:
                path.write_bytes(jpeg_bytes(img, 92))
    return root




def build(raw_dir: Path, out: Path, workers: int = 1, skip_bad: bool = False, **config: Any) -> Path:
    build_release(out, [SourceJob(inc, inc.Config(**config), raw_dir)], workers=workers, progress=False,
                  skip_bad=skip_bad)
    return out


def records(release: Path) -> list[dict]:
    return [json.loads(line) for line in (release / "test" / JSONL).read_text().splitlines()]


def corruption_of(rec: dict) -> str:
    return rec["image_template"].split("/")[1]


# ------------------------------------------------------------------------------------------------ class table


def test_class_table_matches_the_timm_lists() -> None:
    lines = [tuple(line.rstrip("\n").split("\t")) for line in
             (FIXTURES / "imagenet1k_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines()]
    assert list(SYNSETS) == lines
    wnids = (FIXTURES / "imagenet_synsets.txt").read_text().split()
    assert list(raw.WNIDS) == wnids == sorted(wnids) and len(wnids) == 1000


def test_class_names_are_official_style_and_unique() -> None:
    cats = {w: category_string(n) for w, n in inc.CLASS_NAMES.items()}
    assert len(cats) == 1000
    assert cats["n02111500"] == "Great_pyrenees."
    assert cats["n01689811"] == "Alligator_lizard."
    assert cats[TENCH] == "Tench." and cats["n01484850"] == "Great_white_shark."
    assert cats[CRANE_BIRD] == "Crane_(bird)." and cats[CRANE_MACHINE] == "Crane_(machine)."
    assert cats[MAILLOT] == "Maillot_(tights)." and cats[TANK_SUIT] == "Maillot_(tank_suit)."
    assert cats["n02113186"] == "Cardigan_(corgi)." and cats["n02963159"] == "Cardigan_(sweater)."
    normalised = [normalise_text(c) for c in cats.values()]
    assert len(set(normalised)) == 1000, "two classes would look identical to the matcher"
    for c in cats.values():
        assert "," not in c and c == category_string(c[:-1]) and len(c) >= 3
    # Without the six renamings exactly those names collide.
    plain = {w: category_string(lemma.split(",")[0].replace(" ", "_")) for w, lemma in SYNSETS}
    seen: dict[str, list[str]] = {}
    for w, c in plain.items():
        seen.setdefault(normalise_text(c), []).append(w)
    assert sorted(w for ws in seen.values() if len(ws) > 1 for w in ws) == sorted(inc.DISAMBIGUATED)


def test_option_tables() -> None:
    keys = [k for k, a in ACTION_KEYS.items() if a in OFFICIAL.actions]
    assert sorted(inc.QUALITY_OPTIONS) == sorted(keys)
    for key, option in inc.QUALITY_OPTIONS.items():
        assert [k for k in keys if k in option.lower()] == [key], option
        assert not is_abstain(option) and option.endswith(".") and "," not in option
    assert set(inc.ACTION_OF) == set(raw.CORRUPTIONS) and len(raw.CORRUPTIONS) == 19
    assert len(inc.BENCHMARK_CORRUPTIONS) == 16 and not {"snow", "frost", "fog"} & set(inc.BENCHMARK_CORRUPTIONS)
    assert {inc.ACTION_OF[c] for c in inc.BENCHMARK_CORRUPTIONS} == set(inc.QUALITY_OPTIONS)
    assert len(set(inc.QUESTIONS)) == 15 and len(set(inc.ABSTAIN)) == 3 and all(map(is_abstain, inc.ABSTAIN))


# ------------------------------------------------------------------------------------------------ corruption engine

# Corruptions without any random draw.
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression",
                 "gaussian_blur", "saturate"}


@requires_engine
@pytest.mark.parametrize("corruption", raw.CORRUPTIONS)
def test_every_corruption_runs_and_is_seeded(corruption: str) -> None:
    img = synthetic_rgb(7, 48, 40)
    a = raw.corrupt(img, corruption, 5, seed=11)
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert not np.array_equal(a, img)
    assert np.array_equal(a, raw.corrupt(img, corruption, 5, seed=11))
    assert not np.array_equal(a, raw.corrupt(img, corruption, 1, seed=11))
    if corruption not in DETERMINISTIC:
        assert not np.array_equal(a, raw.corrupt(img, corruption, 5, seed=12))


@requires_engine
def test_engine_patches_nothing_global() -> None:
    raw.corrupt(synthetic_rgb(1, 40, 40), "fog", 3, seed=1)
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        assert not hasattr(np, "float_")
    state = np.random.get_state()[1].copy()
    raw.corrupt(synthetic_rgb(1, 40, 40), "gaussian_noise", 3, seed=1)
    assert np.array_equal(state, np.random.get_state()[1]), "the global NumPy RNG must not be used"


@requires_engine
@pytest.mark.parametrize("corruption", ["gaussian_noise", "shot_noise", "motion_blur", "contrast", "pixelate",
                                        "spatter", "elastic_transform", "jpeg_compression"])
def test_engine_matches_the_unpatched_package(corruption: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where imagecorruptions still works unpatched, the adapter gives its exact output for the same seed.

    The package is imported the ordinary way (its ``pkg_resources`` import stubbed when setuptools no longer
    ships it) and driven through the global NumPy RNG, as its users do.
    """
    import importlib
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("pkg_resources") is None:
        monkeypatch.setitem(sys.modules, "pkg_resources", types.SimpleNamespace(resource_filename=None))
    for mod in ("imagecorruptions", "imagecorruptions.corruptions"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        package = importlib.import_module("imagecorruptions")
    img = synthetic_rgb(3, 48, 40)
    saved = np.random.get_state()
    try:
        np.random.seed(5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = package.corrupt(img, severity=3, corruption_name=corruption)
    finally:
        np.random.set_state(saved)
        for mod in ("imagecorruptions", "imagecorruptions.corruptions"):
            sys.modules.pop(mod, None)
    assert np.array_equal(raw.corrupt(img, corruption, 3, seed=5), expected)


def test_missing_engine_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    make_clean(tmp_path / "clean", wnids=(TENCH,), per_class=1)
    raw._engine.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name, *a: None)
    try:
        with pytest.raises(PbBuildError, match="needs the imagecorruptions package.*pip install imagecorruptions"):
            inc.plan(tmp_path / "clean", inc.Config(), None)
    finally:
        monkeypatch.undo()
        raw._engine.cache_clear()


# ------------------------------------------------------------------------------------------------ releases


@dataclass
class Release:
    """A built release: the official records and the episodes read back from the native shards, by id."""

    root: Path
    raw: Path
    layout: str
    records: dict[int, dict[str, Any]]
    episodes: dict[int, Episode]
    test_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.test_dir = self.root / "test"

    def frame_paths(self, sample_id: int) -> dict[str, int]:
        """Official relative path of each severity -> native frame index (frame k is severity 5 - k)."""
        template = self.records[sample_id]["image_template"]
        return {template.format(level=level): 5 - level for level in raw.SEVERITIES}


def _release(out: Path, raw_dir: Path, config: inc.Config, layout: str) -> Release:
    build_release(out, [SourceJob(inc, config, raw_dir)], workers=1, progress=False)
    files = read_manifest(out)["sources"][0]["files"]
    recs = {r["id"]: r for r in records(out)}
    episodes = {row["id"]: from_row(row) for row in read_rows([out / p for p in files["native"]])}
    return Release(out, raw_dir, layout, recs, episodes)


@pytest.fixture(scope="module")
def tree_release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    base = tmp_path_factory.mktemp("inc-tree")
    return _release(base / "release", make_tree(base / "raw"), inc.Config(per_class=3), "imagenet-c")


@pytest.fixture(scope="module")
def clean_release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    if ENGINE_PROBLEM:
        pytest.skip(f"corruption engine unavailable: {IMAGECORRUPTIONS_PROBLEM or ENGINE_PROBLEM}")
    base = tmp_path_factory.mktemp("inc-clean")
    return _release(base / "release", make_clean(base / "raw"), inc.Config(per_class=2, image_size=48), "clean")


@pytest.fixture(scope="module", params=["tree", "clean"])
def release(request: pytest.FixtureRequest) -> Release:
    return request.getfixturevalue(f"{request.param}_release")


def test_release_verifies_and_loads(release: Release) -> None:
    result = verify_release(release.root)
    assert result.problems == []
    n = len(release.records)
    assert n == (12 if release.layout == "imagenet-c" else 6)
    assert result.sources[0].oracle_correct == result.sources[0].rows == n
    ds = load_dataset(str(release.root), inc.name, split="test")
    assert len(ds) == n
    assert [len(row["frames"]) for row in ds] == [5] * n
    assert [json.loads(row["official_record"]) for row in ds] == [release.records[i] for i in range(n)]
    entry = read_manifest(release.root)["sources"][0]
    assert entry["notes"]["layout"] == release.layout
    assert entry["counts"]["samples"] == n and entry["counts"]["official_files"] == 5 * n
    assert len(entry["raw"]["files"]) == (5 * n if release.layout == "imagenet-c" else n)


def test_records_follow_the_contract(release: Release) -> None:
    per_class: dict[str, int] = {}
    for sid, rec in release.records.items():
        ep = release.episodes[sid]
        corruption = corruption_of(rec)
        wnid = rec["image_template"].split("/")[3]
        per_class[wnid] = per_class.get(wnid, 0) + 1
        assert corruption in inc.BENCHMARK_CORRUPTIONS
        assert (rec["first_image"], rec["num_images"], rec["reference_image"]) == (5, 5, 1)
        assert rec["image_template"].split("/")[2] == "{level}"
        assert rec["quality_answer"] == inc.QUALITY_OPTIONS[inc.ACTION_OF[corruption]]
        opts = rec["options"]
        assert len(opts) == 5 and sum(map(is_abstain, opts)) == 1 and rec["quality_answer"] in opts
        quality = [o for o in opts if not is_abstain(o)]
        assert len(set(quality)) == 4 and set(quality) <= set(inc.QUALITY_OPTIONS.values())
        assert rec["answer"] == category_string(inc.CLASS_NAMES[wnid]) and rec["answer"] in rec["categories"]
        assert len({normalise_text(c) for c in rec["categories"]}) == 4
        assert rec["prompt"] in inc.QUESTIONS
        assert ep.max_steps == 5 and ep.reference_frame == 4 and ep.hint == inc.HINT
        assert [s.frame for s in ep.states] == [0, 1, 2, 3, 4]
        assert all(s.shown == (0, 1, 2, 3, 4) for s in ep.states)
        q = opts.index(rec["quality_answer"])
        assert [s.valid for s in ep.states] == [(q,)] * 4 + [()]
        assert ep.meta["corruption"] == corruption and ep.meta["wnid"] == wnid
        for rel, k in release.frame_paths(sid).items():
            assert (release.test_dir / rel).read_bytes() == ep.frames[k], rel
        assert len(set(ep.frames)) == 5
    expected = 3 if release.layout == "imagenet-c" else 2
    assert set(per_class.values()) == {expected}


def test_tree_frames_are_the_raw_files_byte_for_byte(tree_release: Release) -> None:
    for rec in tree_release.records.values():
        for level in raw.SEVERITIES:
            rel = rec["image_template"].format(level=level)
            assert (tree_release.test_dir / rel).read_bytes() == (tree_release.raw / rel.split("/", 1)[1]).read_bytes()
    # snow is one of the 19 but not of the default 16: its folder is present and never used.
    assert "snow" not in {corruption_of(r) for r in tree_release.records.values()}
    answers = {r["answer"] for r in tree_release.records.values()}
    assert {"Crane_(bird).", "Crane_(machine)."} <= answers


def test_clean_frames_are_regenerated_jpegs(clean_release: Release) -> None:
    entry = read_manifest(clean_release.root)["sources"][0]
    assert "imagecorruptions" in entry["notes"]["versions"]
    assert "CenterCrop(48)" in entry["notes"]["frames"]
    for ep in clean_release.episodes.values():
        for frame in ep.frames:
            with Image.open(io.BytesIO(frame)) as img:
                assert img.format == "JPEG" and img.size == (48, 48) and img.mode == "RGB"
    names = {r["image_template"].rsplit("/", 1)[1] for r in clean_release.records.values()}
    assert all(n.endswith(".JPEG") for n in names)  # the PNG input is written as <stem>.JPEG


# ------------------------------------------------------------------------------------------------ official vs replay


def _sequences(rec: dict[str, Any]) -> list[tuple[list[str], bool]]:
    """Raw answer sequences: (answers, reference)."""
    opts, cats, answer = rec["options"], rec["categories"], rec["answer"]
    q = opts.index(rec["quality_answer"])
    wrong_q = next(i for i, o in enumerate(opts) if i != q and not is_abstain(o))
    ql, wl = chr(65 + q), chr(65 + wrong_q)
    cl = chr(65 + 5 + cats.index(answer))
    xl = chr(65 + 5 + (cats.index(answer) + 1) % 4)
    return [
        ([ql], False),  # the valid fix by letter every turn: the last one fails
        ([rec["quality_answer"]] * 4 + [opts[wrong_q]], False),  # four fixes, then a wrong fix at the last turn
        ([wl], False),  # a wrong fix at once
        ([opts[wrong_q]], False),
        ([ql, f"{ql.lower()}.", cl], False),  # two fixes, then the answer by letter
        ([f"{ql}. {rec['quality_answer']}", answer], False),
        ([ql, ql, ql, ql, cl], False),  # answer exactly at the last turn
        ([ql, xl], False),  # a wrong category after a fix
        ([rec["quality_answer"].rstrip(".")], False),  # no trailing period: mismatch
        (["J"], False),  # letter beyond the nine shown
        (["", "nonsense"], False),
        ([chr(65 + cats.index(answer))], True),  # reference: categories lettered from A
        ([ql], True),
    ]


@pytest.fixture(scope="module")
def played(release: Release) -> tuple[dict[str, Any], list[Outcome]]:
    jobs = standard_jobs(release.records, _sequences)
    return play_both(NAME, release.test_dir, jobs, release.episodes, release.frame_paths)


@requires_official
def test_official_runs_every_record_cleanly(release: Release, played) -> None:
    report, outcomes = played
    assert report["records"] == len(release.records) and sorted(report["ids"]) == sorted(release.records)
    problems = []
    for o in outcomes:
        off = o.official
        if off["error"] or off["image_errors"] or not off["stopped"] or None in o.official_frames:
            problems.append(f"{describe(o)}: {off['error']} {off['image_errors']} {off['images']}")
    assert not problems, "\n".join(problems[:20])


@requires_official
def test_official_and_replay_agree(played) -> None:
    _, outcomes = played
    disagreements = []
    for o in outcomes:
        off = o.official
        got = {
            "num_turns": off["num_turns"], "correct_prediction": off["correct_prediction"],
            "max_steps": off["max_steps"], "frames": o.official_frames, "answers": off["answers"],
            "options": off["options"], "action_evaluations": off["action_evaluations"],
            "category_evaluations": off["category_evaluations"],
        }
        diff = {k: (got[k], o.ours[k]) for k in got if got[k] != o.ours[k]}
        if diff:
            disagreements.append(f"{describe(o)}: (official, replay) {diff}")
    assert not disagreements, f"{len(disagreements)}/{len(outcomes)} disagree:\n" + "\n".join(disagreements[:15])


@requires_official
def test_oracle_scores_100_percent_after_four_fixes(release: Release, played) -> None:
    _, outcomes = played
    oracle = of_policy(outcomes, "oracle")
    assert len(oracle) == len(release.records)
    assert all(o.official["correct_prediction"] for o in oracle), [describe(o) for o in oracle]
    for o in oracle:
        assert o.official["num_turns"] == 5 and o.official_frames == [0, 1, 2, 3, 4]
        assert o.official["images"][0].split("/")[2] == "5" and o.official["images"][-1].split("/")[2] == "1"
        assert o.official["action_evaluations"] == ["correct"] * 4 + ["mismatch"]
        assert o.official["category_evaluations"][-1] == "correct"
        assert o.official["hint_prompt"] == f"{release.records[o.job['id']]['prompt']} {inc.HINT}"


@requires_official
def test_always_proactive_outcomes(release: Release, played) -> None:
    """The first non-abstain option every turn: when it is the valid fix, five turns and a failure at the last
    (a valid fix there is wrong, and max_steps is hit); otherwise a wrong fix ends the episode at turn 1."""
    _, outcomes = played
    walked = 0
    for o in of_policy(outcomes, "proactive"):
        rec = release.records[o.job["id"]]
        first = next(x for x in rec["options"] if not is_abstain(x))
        for res, frames in ((o.official, o.official_frames), (o.ours, o.ours["frames"])):
            assert res["correct_prediction"] is False, describe(o)
            if first == rec["quality_answer"]:
                assert res["num_turns"] == 5 and frames == [0, 1, 2, 3, 4] and res["max_steps"] is True
                assert res["action_evaluations"] == ["correct"] * 4 + ["wrong"]
            else:
                assert res["num_turns"] == 1 and frames == [0] and res["action_evaluations"] == ["wrong"]
            assert set(res["category_evaluations"]) == {"mismatch"}
        walked += first == rec["quality_answer"]
    assert walked > 0, "no record puts the valid fix first; the five-turn path went untested"


@requires_official
def test_single_turn_policies(release: Release, played) -> None:
    _, outcomes = played
    for policy, correct in (("first", True), ("abstain", False), ("reference", True)):
        for o in of_policy(outcomes, policy):
            for res in (o.official, o.ours):
                assert res["num_turns"] == 1 and res["correct_prediction"] is correct, describe(o)
            rec = release.records[o.job["id"]]
            assert o.official_frames == ([4] if policy == "reference" else [0])
            if policy == "reference":
                assert o.official["options"] == [rec["categories"]]


@requires_official
def test_letter_sequences_cover_every_verdict(played) -> None:
    _, outcomes = played
    letters = of_policy(outcomes, "letters")
    assert {v for o in letters for v in o.official["action_evaluations"]} == {"correct", "wrong", "mismatch"}
    assert {v for o in letters for v in o.official["category_evaluations"]} == {"correct", "wrong", "mismatch"}
    assert any(o.official["correct_prediction"] and o.official["num_turns"] == 5 for o in letters)


# ------------------------------------------------------------------------------------------------ determinism


@requires_engine
def test_seeds_rebuild_identically_and_differ(tmp_path: Path) -> None:
    clean = make_clean(tmp_path / "clean")
    tree = make_tree(tmp_path / "tree", corruptions=("gaussian_noise", "pixelate"), wnids=(TENCH, GOLDFISH))
    for raw_dir, extra in ((clean, {"image_size": 40}), (tree, {})):
        a = build(raw_dir, tmp_path / f"{raw_dir.name}-a", per_class=2, **extra)
        b = build(raw_dir, tmp_path / f"{raw_dir.name}-b", per_class=2, seed=0, **extra)
        c = build(raw_dir, tmp_path / f"{raw_dir.name}-c", per_class=2, seed=1, **extra)
        assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
        assert (a / "SHA256SUMS").read_bytes() != (c / "SHA256SUMS").read_bytes()


@requires_engine
def test_one_and_two_workers_give_the_same_bytes(tmp_path: Path) -> None:
    clean = make_clean(tmp_path / "clean")
    one = build(clean, tmp_path / "one", workers=1, per_class=3, image_size=40)
    two = build(clean, tmp_path / "two", workers=2, per_class=3, image_size=40)
    assert (one / "SHA256SUMS").read_bytes() == (two / "SHA256SUMS").read_bytes()


def test_choices_do_not_depend_on_neighbours(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", corruptions=("gaussian_noise", "pixelate", "spatter"), wnids=(TENCH,),
                     per_class=6)
    config = inc.Config(per_class=3)
    before = {u.key: u.payload.corruption for u in inc.plan(tree, config, None).units}
    shutil.rmtree(tree / "spatter")
    after = {u.key: u.payload.corruption for u in inc.plan(tree, config, None).units}
    assert set(before) == set(after)
    assert all(after[k] == c for k, c in before.items() if c != "spatter")
    # Dropping an image that was not chosen changes nothing; dropping a chosen one replaces only it.
    chosen = sorted(after)
    files = [f"ILSVRC2012_val_{raw.WNIDS.index(TENCH) * 50 + i + 1:08d}.JPEG" for i in range(6)]
    victim = next(f for f in files if f"{inc.name}/{TENCH}/{f}" in chosen)
    for corruption in ("gaussian_noise", "pixelate"):
        for severity in raw.SEVERITIES:
            (tree / corruption / str(severity) / TENCH / victim).unlink()
    again = {u.key for u in inc.plan(tree, config, None).units}
    assert len(again) == 3 and len(again & set(chosen)) == 2


def test_classes_and_corruptions_options(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", corruptions=("gaussian_noise", "pixelate", "fog"), wnids=(TENCH, GOLDFISH),
                     per_class=2)
    units = inc.plan(tree, inc.Config(per_class=2, classes=GOLDFISH, corruptions="fog"), None).units
    assert [u.key.split("/")[1] for u in units] == [GOLDFISH, GOLDFISH]
    assert {u.payload.corruption for u in units} == {"fog"}
    units = inc.plan(tree, inc.Config(per_class=2, corruptions="all"), None).units
    assert len(units) == 4
    with pytest.raises(PbBuildError, match="no folder for corruption.*snow"):
        inc.plan(tree, inc.Config(corruptions="snow,fog"), None)
    with pytest.raises(PbBuildError, match=f"no class folder for wnid.*{MAILLOT}"):
        inc.plan(tree, inc.Config(classes=MAILLOT), None)
    only_fog = make_tree(tmp_path / "fog", corruptions=("fog",), wnids=(TENCH,), per_class=1)
    with pytest.raises(PbBuildError, match="no folder for any of the 16 'benchmark' corruptions"):
        inc.plan(only_fog, inc.Config(), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PbBuildError, match="neither an ImageNet-C tree"):
        inc.plan(tmp_path / "empty", inc.Config(), None)
    with pytest.raises(PbBuildError, match="does not exist"):
        inc.plan(tmp_path / "nope", inc.Config(), None)


@requires_engine  # a clean layout regenerates corruptions, so the engine is checked before the folders
def test_clean_layout_on_a_corrupted_tree_names_the_folder(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", corruptions=("fog",), wnids=(TENCH,), per_class=1)
    with pytest.raises(BadRecord, match="tree/fog: 'fog' is not a WordNet id folder"):
        inc.plan(tree, inc.Config(layout="clean"), None)


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"per_class": 0}, "--per-class"), ({"layout": "flat"}, "--layout"), ({"corruptions": "rain"}, "--corruptions"),
    ({"corruptions": ","}, "--corruptions"), ({"classes": "n00000001"}, "--classes"),
    ({"image_size": 16}, "--image-size"), ({"jpeg_quality": 0}, "--jpeg-quality"),
])
def test_config_validation_names_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(PbBuildError, match=flag):
        inc.Config(**kwargs)


def test_fetch_says_where_to_get_the_data() -> None:
    with pytest.raises(PbBuildError, match=r"zenodo\.org/record/2235448.*--raw"):
        inc.fetch(inc.Config(), None, progress=False)
    assert inc.sample_dir() is None


# ------------------------------------------------------------------------------------------------ bad input

Mutator = Callable[[Path], Path | list[Path]]  # breaks a raw folder; returns the path(s) the error may name


def _severity_six(root: Path) -> Path:
    shutil.copytree(root / "pixelate" / "5", root / "pixelate" / "6")
    return root / "pixelate" / "6"


def _missing_severity(root: Path) -> Path:
    shutil.rmtree(root / "pixelate" / "3")
    return root / "pixelate"


def _file_in_corruption(root: Path) -> Path:
    (root / "pixelate" / "notes.txt").write_text("x")
    return root / "pixelate" / "notes.txt"


def _unknown_corruption(root: Path) -> Path:
    shutil.copytree(root / "pixelate", root / "noise")
    return root / "noise"


def _unknown_wnid_tree(root: Path) -> Path:
    (root / "pixelate" / "2" / "n99999999").mkdir()
    return root / "pixelate" / "2" / "n99999999"


def _not_a_wnid_tree(root: Path) -> Path:
    (root / "gaussian_noise" / "4" / "tench").mkdir()
    return root / "gaussian_noise" / "4" / "tench"


def _missing_at_one_severity(root: Path) -> list[Path]:
    victims = [root / c / "2" / TENCH / file_name(TENCH, 0) for c in ("gaussian_noise", "pixelate")]
    for victim in victims:
        victim.unlink()
    return victims


def _undecodable_tree(root: Path) -> list[Path]:
    truncated = root / "pixelate" / "3" / GOLDFISH / file_name(GOLDFISH, 1)
    truncated.write_bytes(truncated.read_bytes()[:200])
    garbage = root / "gaussian_noise" / "3" / GOLDFISH / file_name(GOLDFISH, 1)
    garbage.write_bytes(b"not an image at all")
    return [truncated, garbage]


def _non_image_file(root: Path) -> Path:
    (root / "pixelate" / "5" / TENCH / "readme.txt").write_text("x")
    return root / "pixelate" / "5" / TENCH / "readme.txt"


TREE_CASES: dict[str, tuple[Mutator, str]] = {
    "severity 6": (_severity_six, "unexpected entry '6' in a corruption folder"),
    "missing severity": (_missing_severity, "missing severity folder(s) 3"),
    "file in corruption folder": (_file_in_corruption, "unexpected entry 'notes.txt'"),
    "unknown corruption": (_unknown_corruption, "unknown corruption folder 'noise'"),
    "unknown wnid": (_unknown_wnid_tree, "unknown wnid n99999999"),
    "not a wnid": (_not_a_wnid_tree, "not a WordNet id folder"),
    "missing at one severity": (_missing_at_one_severity, "not at severity 2"),
    "does not decode": (_undecodable_tree, "image does not decode"),
    "non-image file": (_non_image_file, "not an image file"),
}


def _undecodable_clean(root: Path) -> Path:
    path = root / TENCH / file_name(TENCH, 2)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    return path


def _unknown_wnid_clean(root: Path) -> Path:
    (root / "n00000042").mkdir()
    return root / "n00000042"


def _not_a_wnid_clean(root: Path) -> Path:
    (root / "val_labels.txt").write_text("x")
    return root / "val_labels.txt"


def _same_stem(root: Path) -> Path:
    src = root / TENCH / file_name(TENCH, 1)
    shutil.copy(src, src.with_suffix(".jpg"))
    return src.with_suffix(".jpg")


CLEAN_CASES: dict[str, tuple[Mutator, str]] = {
    "does not decode": (_undecodable_clean, "image does not decode"),
    "unknown wnid": (_unknown_wnid_clean, "unknown wnid n00000042"),
    "not a wnid": (_not_a_wnid_clean, "not a WordNet id folder"),
    "same stem": (_same_stem, "both would be written as"),
}


def _check_bad_input(tmp_path: Path, raw_dir: Path, mutate: Mutator, cause: str, **config: Any) -> None:
    named = mutate(raw_dir)
    paths = named if isinstance(named, list) else [named]
    out = tmp_path / "rel"
    with pytest.raises(BadRecord) as info:
        build(raw_dir, out, **config)
    message = str(info.value)
    assert cause in message and any(message.startswith(f"{p}: ") for p in paths), message
    assert not out.exists() and not list(tmp_path.glob(".rel*")), "nothing may be left after a failed build"
    build(raw_dir, out, skip_bad=True, **config)
    entry = read_manifest(out)["sources"][0]
    assert entry["counts"]["skipped"] == len(entry["skipped"]) >= 1
    assert any(cause in s["cause"] for s in entry["skipped"]), entry["skipped"]
    assert entry["counts"]["samples"] >= 1
    assert verify_release(out).problems == []


@pytest.mark.parametrize("case", sorted(TREE_CASES))
def test_bad_tree_input(tmp_path: Path, case: str) -> None:
    mutate, cause = TREE_CASES[case]
    raw_dir = make_tree(tmp_path / "raw", corruptions=("gaussian_noise", "pixelate"), wnids=(TENCH, GOLDFISH),
                        per_class=2)
    _check_bad_input(tmp_path, raw_dir, mutate, cause, per_class=2)


@requires_engine
@pytest.mark.parametrize("case", sorted(CLEAN_CASES))
def test_bad_clean_input(tmp_path: Path, case: str) -> None:
    mutate, cause = CLEAN_CASES[case]
    raw_dir = make_clean(tmp_path / "raw", wnids=(TENCH, GOLDFISH), per_class=3)
    _check_bad_input(tmp_path, raw_dir, mutate, cause, per_class=3, image_size=32, corruptions="contrast,pixelate")
