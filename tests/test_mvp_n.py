"""MVP-N: raw tree reader, names file, construction rules, releases, official-environment agreement, bad input.

No real MVP-N sample is public, so every test builds ``data/test/<class>/<set>/<view>_<flag>.png`` trees itself
(small PNGs written with OpenCV) and a names CSV with invented product names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from datasets import load_dataset

from pb_build.build import SourceJob, build_release
from pb_build.builders import mvp_n
from pb_build.episode import Episode
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.matching import normalise_text
from pb_build.official import ACTION_KEYS
from pb_build.raw import mvp_n as raw
from pb_build.replay import POLICIES, play
from pb_build.strings import category_string, is_abstain
from pb_build.verify import verify_release
from pb_build.writers.native import from_row, read_rows

try:
    from official import replay_job, requires_official, run_official_report, standard_jobs
except ImportError:  # tests/ imported as a package
    from tests.official import replay_job, requires_official, run_official_report, standard_jobs

def mvp_n_source():
    from pb_build.builders import get_source

    return get_source("mvp-n")


NAME = "MVP-N"


# ---------------------------------------------------------------------------------------------------- raw trees

# (class, set) -> view stems <NNNN>_<flag>, written in the real naming <split>_<class>_<NNNN>_<flag>.png
# (see real_name); non-numeric tokens keep the short <view>_<flag>.png form the reader also accepts.
TREE: dict[tuple[str, str], list[str]] = {
    ("0000", "0001"): ["0003_0", "0001_0", "0005_0", "0002_1"],  # the spec's example set
    ("0000", "0002"): ["0010_0", "0011_1", "0012_1"],  # two informative views: one is used
    ("0001", "0001"): ["left_0", "right_0", "front_view_1"],  # non-numeric tokens: renumbered
    ("0010", "0007"): [f"{i:04d}_0" for i in range(7)] + ["0007_1"],  # 8 views: capped by max_views
    ("0010", "0008"): ["0001_1"],  # no uninformative view: excluded
    ("0027", "0003"): ["03_0", "3_0", "12_1"],  # tokens 03 and 3 collide as numbers: renumbered
    ("0041", "0001"): ["0001_0", "0002_1"],
    ("0043", "0005"): ["0100_0", "0200_0", "0300_1"],
}
N_BUILT = len(TREE) - 1  # the set without an uninformative view is excluded


def write_png(path: Path, seed: int, size: tuple[int, int] = (24, 32)) -> bytes:
    """A small distinct colour PNG written with OpenCV; returns its bytes."""
    rng = np.random.default_rng(seed)
    img = np.zeros((*size, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    cv2.rectangle(img, (2, 2), (2 + seed % 20, 2 + seed % 15), (255, 255, 255), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path.read_bytes()


def make_tree(root: Path, tree: dict[tuple[str, str], list[str]] = TREE, split: str = "test",
              size: tuple[int, int] = (24, 32)) -> Path:
    """``root/data/<split>/<class>/<set>/<file>`` for every entry of ``tree``; returns ``root``."""
    seed = 0
    for (class_id, set_name), stems in tree.items():
        for stem in stems:
            seed += 1
            write_png(root / "data" / split / class_id / set_name / real_name(split, class_id, stem), seed, size)
    return root


def real_name(split: str, class_id: str, stem: str) -> str:
    """``<split>_<class>_<NNNN>_<flag>.png`` for a numeric ``<NNNN>_<flag>`` stem, else ``<stem>.png``."""
    token, _, flag = stem.rpartition("_")
    return f"{split}_{class_id}_{stem}.png" if token.isdigit() and flag in ("0", "1") else f"{stem}.png"


def product_name(class_id: str) -> str:
    flavours = ("peach", "chocolate", "vanilla", "strawberry", "lemon")
    return f"Brand {int(class_id) // 2} whey drink {flavours[int(class_id) % 5]} {class_id}"


def write_names(path: Path, skip: tuple[str, ...] = (), extra: str = "") -> Path:
    lines = ["class_id,name", "# names copied from the MVP-N documentation (invented here)"]
    lines += [f"{c},{product_name(c)}" for c in raw.CLASSES if c not in skip]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


@pytest.fixture
def raw_tree(tmp_path: Path) -> tuple[Path, Path]:
    return make_tree(tmp_path / "mvpn"), write_names(tmp_path / "names.csv")


def build(raw_dir: Path, out: Path, workers: int = 1, skip_bad: bool = False, **config: Any) -> Path:
    build_release(out, [SourceJob(mvp_n, mvp_n.Config(**config), raw_dir)], workers=workers, progress=False,
                  skip_bad=skip_bad)
    return out


def records(release: Path) -> list[dict]:
    lines = (release / "test" / f"{NAME}_preprocessed.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def episodes(release: Path) -> dict[int, Episode]:
    entry = read_manifest(release)["sources"][0]
    return {row["id"]: from_row(row) for row in read_rows([release / p for p in entry["files"]["native"]])}


def frame_paths(rec: dict) -> list[str]:
    """The official path of each visited view k (flag 1 only at the last one)."""
    n, ids = rec["num_images"], rec["valid_images"]
    return [rec["image_template"].format(image=str(ids[k]).zfill(4), informative=int(k == n - 1)) for k in range(n)]


# ------------------------------------------------------------------------------------------------ pools, tables


def test_pools_follow_the_string_rules():
    assert len(mvp_n.PROACTIVE) == 11 == len(set(mvp_n.PROACTIVE))
    assert len(mvp_n.QUESTIONS) == 15 == len(set(mvp_n.QUESTIONS))
    assert len(mvp_n.ABSTAIN) == 3 and all(is_abstain(a) for a in mvp_n.ABSTAIN)
    rotate_keys = [k for k, a in ACTION_KEYS.items() if a == "ROTATE"]
    assert sorted(rotate_keys) == ["angle", "different", "orientation", "rotate", "view"]
    for opt in mvp_n.PROACTIVE:
        assert any(k in opt.lower() for k in rotate_keys), opt
        assert not is_abstain(opt) and opt.endswith("."), opt
    assert "Change the camera angle of the object." in mvp_n.PROACTIVE
    assert len({normalise_text(t) for t in (*mvp_n.PROACTIVE, *mvp_n.ABSTAIN)}) == 14
    assert mvp_n.HINT == "Hint: rotating the object could provide a more informative view."


def test_class_and_group_tables():
    assert raw.CLASSES == tuple(f"{i:04d}" for i in range(44))
    assert len(raw.GROUPS) == 19
    members = [c for g in raw.GROUPS for c in g]
    assert members == list(raw.CLASSES)  # every class in exactly one group, in id order
    assert [len(g) for g in raw.GROUPS] == [2, 2, 2, 2, 2, 5, 2, 2, 2, 2, 2, 2, 4, 2, 2, 2, 2, 2, 3]


def test_distractors_are_look_alikes_then_nearest_groups():
    for class_id in raw.CLASSES:
        for seed in range(5):
            picked = mvp_n.distractors(class_id, np.random.default_rng(seed))
            assert len(picked) == len(set(picked)) == 3 and class_id not in picked
            g0 = raw.GROUP_OF[class_id]
            own = [c for c in raw.GROUPS[g0] if c != class_id]
            # Every own-group member is used before any other group is touched.
            assert set(own[:3]) <= set(picked) if len(own) <= 3 else set(picked) <= set(own)
            dist = sorted(abs(raw.GROUP_OF[c] - g0) for c in picked)
            if len(own) < 3:
                assert max(dist) == 1, (class_id, picked)  # all 19 groups have a neighbour with >= 2 members
    # Group of 5: three of the four siblings; first group: the sibling and the next group.
    assert set(mvp_n.distractors("0012", np.random.default_rng(0))) <= {"0010", "0011", "0013", "0014"}
    assert sorted(mvp_n.distractors("0000", np.random.default_rng(0))) == ["0001", "0002", "0003"]
    # Last group (3 members): both siblings, then one from group 17 (its only neighbour).
    picked = mvp_n.distractors("0043", np.random.default_rng(1))
    assert {"0041", "0042"} <= set(picked) and set(picked) - {"0041", "0042"} <= {"0039", "0040"}
    # A group of 2 in the middle draws the other two from the 4 classes of both neighbouring groups.
    seen = set()
    for seed in range(40):
        picked = mvp_n.distractors("0016", np.random.default_rng(seed))
        assert "0015" in picked
        seen |= set(picked) - {"0015"}
    assert seen == {"0010", "0011", "0012", "0013", "0014", "0017", "0018"}


# ------------------------------------------------------------------------------------------------ raw reader


def test_reader_accepts_the_real_file_naming(tmp_path: Path):
    """Real MVP-N files are ``<split>_<class>_<NNNN>_<flag>.png`` (NNNN is not the set folder's number)."""
    real = {("0000", "0008"): ["test_0000_0004_1", "test_0000_0011_0", "test_0000_0012_0"]}
    root = make_tree(tmp_path / "r", real)
    (view_set,) = raw.iter_sets(raw.locate_split(root, "test"))
    assert [(v.token, v.flag) for v in view_set.views] == [("0004", 1), ("0011", 0), ("0012", 0)]
    assert raw.view_ids(view_set) == {"0004": 4, "0011": 11, "0012": 12}
    moved = root / "data" / "test" / "0000" / "0008" / "test_0001_0013_0.png"
    write_png(moved, 5)
    with pytest.raises(BadRecord, match=r"test_0001_0013_0\.png: file name says test/0001 but the file lies in "
                                        r"test/0000/"):
        list(raw.iter_sets(raw.locate_split(root, "test")))


def test_reader_streams_sets_in_sorted_order(tmp_path: Path):
    root = make_tree(tmp_path / "r")
    sets = list(raw.iter_sets(raw.locate_split(root, "test")))
    assert [(s.class_id, s.set_name) for s in sets] == sorted(TREE)
    first = sets[0]
    assert [v.file_name for v in first.views] == ["test_0000_0001_0.png", "test_0000_0002_1.png",
                                                  "test_0000_0003_0.png", "test_0000_0005_0.png"]
    assert [v.token for v in first.informative] == ["0002"]
    assert raw.view_ids(first) == {"0001": 1, "0002": 2, "0003": 3, "0005": 5}
    by = {(s.class_id, s.set_name): s for s in sets}
    assert raw.view_ids(by["0001", "0001"]) == {"front_view": 0, "left": 1, "right": 2}
    assert raw.view_ids(by["0027", "0003"]) == {"03": 0, "12": 1, "3": 2}
    # The split folder is found from the repository root, from data/ and from the split itself.
    for given in (root, root / "data", root / "data" / "test"):
        assert raw.locate_split(given, "test") == root / "data" / "test"
    with pytest.raises(PbBuildError, match=r"no MVP-N 'valid' folder .*data\.zip"):
        raw.locate_split(root, "valid")


def test_names_file_format(tmp_path: Path):
    path = write_names(tmp_path / "names.csv")
    names = raw.read_names(path, category_string)
    assert len(names) == 44 and names["0012"] == product_name("0012")
    # Short ids, quoted fields, a BOM and no header are accepted.
    alt = tmp_path / "alt.csv"
    alt.write_text("\ufeff" + "\n".join(f'{int(c)},"{product_name(c)}"' for c in raw.CLASSES), encoding="utf-8")
    assert raw.read_names(alt, category_string) == names


@pytest.mark.parametrize(("extra", "match"), [
    ("0003,Again\n", r"names\.csv:47: class 0003 is named twice \(first on line 6\)"),
    ("0044,Unknown\n", r"names\.csv:47: class_id '0044' is not one of the 44 MVP-N classes"),
    ('0005,"Peach, chocolate"\n', r"names\.csv:46: class 0005: .* contains a comma"),
    ("0005,Peach,chocolate\n", r"names\.csv:46: expected 2 fields 'class_id,name', got 3"),
    ("0005,X\n", r"names\.csv:46: class 0005: name 'X' must have at least 2 characters"),
    ("0005,a.b\n", r"names\.csv:46: class 0005: .*upper-case letter before '\.'"),
])
def test_names_file_errors_name_the_file_and_line(tmp_path: Path, extra: str, match: str):
    skip = ("0005",) if extra.startswith("0005") else ()
    path = write_names(tmp_path / "names.csv", skip=skip, extra=extra)
    with pytest.raises(BadRecord, match=match):
        raw.read_names(path, category_string)


def test_names_must_be_distinct_categories(tmp_path: Path):
    path = tmp_path / "names.csv"
    path.write_text("\n".join(f"{c},{product_name(c) if c != '0007' else product_name('0006').upper()}"
                              for c in raw.CLASSES) + "\n", encoding="utf-8")
    with pytest.raises(BadRecord, match=r"names\.csv:8: class 0007: .* same category string as class 0006"):
        raw.read_names(path, category_string)


# ------------------------------------------------------------------------------------------------ one release


@dataclass
class Release:
    root: Path
    raw: Path
    records: dict[int, dict[str, Any]]
    episodes: dict[int, Episode]
    by_set: dict[tuple[str, str], int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    base = tmp_path_factory.mktemp("mvpn")
    root = make_tree(base / "raw")
    names = write_names(base / "names.csv")
    out = build(root, base / "release", names=str(names), max_views=6)
    recs = {r["id"]: r for r in records(out)}
    eps = episodes(out)
    by_set = {(ep.meta["class_id"], ep.meta["set"]): sid for sid, ep in eps.items()}
    return Release(out, root, recs, eps, by_set)


def test_release_verifies_and_loads(release: Release):
    result = verify_release(release.root)
    assert result.problems == []
    [source] = result.sources
    assert source.rows == source.records == source.oracle_correct == N_BUILT
    ds = load_dataset(str(release.root), mvp_n.name, split="test")
    assert len(ds) == N_BUILT
    assert sorted(ds["id"]) == list(range(N_BUILT))
    for row in ds:
        rec = release.records[row["id"]]
        assert json.loads(row["official_record"]) == rec
        assert len(row["frames"]) == rec["num_images"] and row["frames"][0].size == (32, 24)
    entry = read_manifest(release.root)["sources"][0]
    notes = entry["notes"]
    names_bytes = (release.raw.parent / "names.csv").read_bytes()
    import hashlib

    assert notes["names_sha256"] == hashlib.sha256(names_bytes).hexdigest() and notes["names_file"] == "names.csv"
    assert notes["excluded_no_uninformative_view"] == ["mvp-n/test/0010/0008"]
    assert entry["ineligible"] == {"no uninformative view": 1}
    assert entry["ineligible_items"] == [{"key": "mvp-n/test/0010/0008", "reason": "no uninformative view",
                                          "detail": "no <view>_0.png file"}]
    assert notes["sets_found"] == len(TREE)
    assert entry["counts"] == {"samples": N_BUILT, "frames": sum(len(e.frames) for e in release.episodes.values()),
                               "official_files": sum(r["num_images"] for r in release.records.values()),
                               "skipped": 0}
    assert entry["parameters"]["names"].endswith("names.csv")
    assert all(f["path"].startswith("data/test/") for f in entry["raw"]["files"])
    assert "Non-commercial" in (release.root / "README.md").read_text()


def test_records_follow_the_official_contract(release: Release):
    # Sets in sorted (class, set) order, the excluded one missing.
    assert [release.by_set.get(k) for k in sorted(TREE)] == [0, 1, 2, 3, None, 4, 5, 6]
    for sid, rec in release.records.items():
        ep = release.episodes[sid]
        assert mvp_n_source().check_record(rec) == []
        n, ids = rec["num_images"], rec["valid_images"]
        assert n == len(ids) == len(ep.frames) == len(ep.states) == ep.max_steps >= 2
        assert rec["first_image"] == ids[0] and rec["reference_image"] == ids[-1]
        assert len(set(ids)) == n
        assert rec["image_template"] == f"MVP-N/test/{ep.meta['class_id']}/{ep.meta['set']}/" \
                                        "{image}_{informative}.png"
        assert len(rec["options"]) == 2 and sum(is_abstain(o) for o in rec["options"]) == 1
        assert rec["answer"] == product_name(ep.meta["class_id"]).capitalize() + "."
        # The raw views: uninformative ones first, the informative one last, bytes passed through unchanged.
        set_dir = release.raw / "data" / "test" / ep.meta["class_id"] / ep.meta["set"]
        assert [v.endswith("_0.png") for v in ep.meta["views"]] == [True] * (n - 1) + [False]
        for k, view in enumerate(ep.meta["views"]):
            assert ep.frames[k] == (set_dir / view).read_bytes()
        # Exactly the files the official environment can open, holding the frames in visiting order.
        for k, rel in enumerate(frame_paths(rec)):
            assert (release.root / "test" / rel).read_bytes() == ep.frames[k]
        assert sorted(set(frame_paths(rec))) == mvp_n_source().reachable_paths(rec)
        # Distractors: look-alike products (the rule itself is tested on its own), named from the names file.
        wrong = [c for c in rec["categories"] if c != rec["answer"]]
        assert sorted(wrong) == sorted(product_name(c).capitalize() + "." for c in ep.meta["distractor_classes"])
    exported = sorted(p.relative_to(release.root / "test").as_posix()
                      for p in (release.root / "test" / "MVP-N").rglob("*") if p.is_file())
    expected = sorted({p for rec in release.records.values() for p in mvp_n_source().reachable_paths(rec)})
    assert exported == expected


def test_view_rules(release: Release):
    rec = lambda key: release.records[release.by_set[key]]  # noqa: E731
    ep = lambda key: release.episodes[release.by_set[key]]  # noqa: E731
    # The spec's example set keeps its 4-digit ids; the informative view 0002 comes last.
    example = rec(("0000", "0001"))
    assert sorted(example["valid_images"]) == [1, 2, 3, 5] and example["valid_images"][-1] == 2
    assert frame_paths(example)[-1] == "MVP-N/test/0000/0001/0002_1.png"
    # Two informative views: one is shown last, the other is not used at all.
    two = rec(("0000", "0002"))
    assert two["num_images"] == 2 and two["valid_images"][0] == 10 and two["valid_images"][1] in (11, 12)
    assert ep(("0000", "0002")).meta["informative_views"] == ["test_0000_0011_1.png", "test_0000_0012_1.png"]
    # Non-numeric tokens are renumbered in sorted file order: front_view=0 (informative), left=1, right=2.
    named = rec(("0001", "0001"))
    assert named["valid_images"][-1] == 0 and sorted(named["valid_images"][:2]) == [1, 2]
    assert ep(("0001", "0001")).meta["views"][-1] == "front_view_1.png"
    colliding = rec(("0027", "0003"))
    assert colliding["valid_images"][-1] == 1 and sorted(colliding["valid_images"]) == [0, 1, 2]
    # Eight views with max_views=6: five of the seven uninformative views, then the informative one.
    capped = rec(("0010", "0007"))
    assert capped["num_images"] == 6 and capped["valid_images"][-1] == 7
    assert set(capped["valid_images"][:5]) < set(range(7))


# ------------------------------------------------------------------------------------------------ official env

LETTERS = ["A", "b.", "C. Some text.", "Banana", "nonsense"]


def _answer_sequences(rec: dict[str, Any]) -> list[tuple[list[str], bool]]:
    opts, cats, answer = rec["options"], rec["categories"], rec["answer"]
    pro_idx = next(i for i, o in enumerate(opts) if not is_abstain(o))
    pro, pl, al = opts[pro_idx], chr(65 + pro_idx), chr(65 + 1 - pro_idx)
    ans_idx = cats.index(answer)
    cl, wl = chr(67 + ans_idx), chr(67 + (ans_idx + 1) % 4)
    return [
        (LETTERS, False),
        ([f"{pl}. {pro}", f"{pl.lower()}.", cl], False),  # move by text then letter, then the answer's letter
        ([pl] * 10, False),  # always the proactive letter: wrong at the last turn
        ([f"{al}."], False),
        ([f"{wl}."], False),
        ([answer.rstrip(".")], False),
        ([pro.upper()], False),
        ([f"{cl}. Something else."], False),
        ([pro, answer], False),
        ([chr(65 + ans_idx)], True),
        ([pro], True),
    ]


@pytest.fixture(scope="module")
def played(release: Release):
    jobs = standard_jobs(release.records, _answer_sequences)
    report = run_official_report(NAME, release.root / "test", jobs)
    out = []
    for job, off in zip(jobs, report["jobs"], strict=True):
        rec = release.records[job["id"]]
        paths = {p: k for k, p in enumerate(frame_paths(rec))}
        out.append((job, off, replay_job(release.episodes[job["id"]], job), [paths.get(p) for p in off["images"]]))
    return report, out


@requires_official
def test_official_environment_agrees_with_the_replay(release: Release, played):
    report, outcomes = played
    assert report["records"] == len(release.records)
    problems = []
    for job, off, ours, frames in outcomes:
        where = f"id {job['id']} {job['policy']} {job.get('answers', '')}"
        if off["error"] or off["image_errors"] or not off["stopped"] or None in frames:
            problems.append(f"{where}: {off['error']} {off['image_errors']} {off['images']}")
            continue
        got = {"num_turns": off["num_turns"], "correct_prediction": off["correct_prediction"],
               "max_steps": off["max_steps"], "frames": frames, "answers": off["answers"],
               "options": off["options"], "action_evaluations": off["action_evaluations"],
               "category_evaluations": off["category_evaluations"]}
        diff = {k: (got[k], ours[k]) for k in got if got[k] != ours[k]}
        if diff:
            problems.append(f"{where}: (official, replay) {diff}")
    assert not problems, f"{len(problems)}/{len(outcomes)} jobs:\n" + "\n".join(problems[:15])
    verdicts = {v for _, off, _, _ in outcomes for v in off["action_evaluations"] + off["category_evaluations"]}
    assert verdicts == {"correct", "wrong", "mismatch"}


@requires_official
def test_official_oracle_scores_100_percent_after_every_rotation(release: Release, played):
    _, outcomes = played
    oracle = [o for o in outcomes if o[0]["policy"] == "oracle"]
    assert len(oracle) == len(release.records)
    for job, off, ours, frames in oracle:
        rec = release.records[job["id"]]
        n = rec["num_images"]
        assert off["correct_prediction"] is True and ours["correct_prediction"] is True
        assert off["num_turns"] == n and frames == list(range(n))
        assert off["images"] == frame_paths(rec)
        assert off["action_evaluations"] == ["correct"] * (n - 1) + ["mismatch"]
        assert off["hint_prompt"] == f"{rec['prompt']} {mvp_n.HINT}"


@requires_official
def test_official_always_proactive_rotates_to_the_end_and_fails(release: Release, played):
    _, outcomes = played
    for job, off, ours, frames in (o for o in outcomes if o[0]["policy"] == "proactive"):
        n = release.records[job["id"]]["num_images"]
        for res in (off, ours):
            assert res["num_turns"] == n and res["correct_prediction"] is False and res["max_steps"] is True
            assert res["action_evaluations"] == ["correct"] * (n - 1) + ["wrong"]
        assert frames == list(range(n))


@requires_official
def test_official_reference_first_and_abstain(release: Release, played):
    _, outcomes = played
    for job, off, ours, frames in outcomes:
        rec = release.records[job["id"]]
        if job["policy"] == "reference":
            assert off["images"] == [frame_paths(rec)[-1]] and off["correct_prediction"] and ours["correct_prediction"]
        elif job["policy"] in ("first", "abstain"):
            assert off["num_turns"] == ours["num_turns"] == 1 and frames == [0]
            assert off["correct_prediction"] is ours["correct_prediction"] is (job["policy"] == "first")


# ------------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_other_seed_differs(raw_tree, tmp_path: Path):
    root, names = raw_tree
    a = build(root, tmp_path / "a", names=str(names))
    b = build(root, tmp_path / "b", names=str(names), seed=0)
    c = build(root, tmp_path / "c", names=str(names), seed=1)
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    assert (a / "SHA256SUMS").read_bytes() != (c / "SHA256SUMS").read_bytes()
    assert records(a) != records(c)


def test_per_class_classes_and_image_size(tmp_path: Path):
    tree = {("0012", f"{s:04d}"): [f"{v:04d}_{int(v == 3)}" for v in range(4)] for s in range(6)}
    tree[("0013", "0000")] = ["0000_0", "0001_1"]
    root = make_tree(tmp_path / "r", tree, size=(90, 120))
    names = write_names(tmp_path / "names.csv")
    out = build(root, tmp_path / "a", names=str(names), per_class=4, classes="0012", image_size=60)
    recs = records(out)
    assert len(recs) == 4 and all("/0012/" in r["image_template"] for r in recs)
    assert verify_release(out).problems == []
    frame = cv2.imdecode(np.frombuffer(episodes(out)[0].frames[0], np.uint8), cv2.IMREAD_UNCHANGED)
    assert frame.shape[:2] == (45, 60)
    other = build(root, tmp_path / "b", names=str(names), per_class=4, classes="0012", image_size=60, seed=3)
    sets = lambda rel: {r["image_template"] for r in records(rel)}  # noqa: E731
    assert sets(out) != sets(other), "another seed resamples the sets"
    everything = build(root, tmp_path / "c", names=str(names), per_class=0)
    assert len(records(everything)) == 7
    with pytest.raises(PbBuildError, match="no usable set for class"):
        build(root, tmp_path / "d", names=str(names), classes="0012,0020")


def test_config_validation():
    with pytest.raises(PbBuildError, match="--max-views"):
        mvp_n.Config(max_views=1)
    with pytest.raises(PbBuildError, match="--split"):
        mvp_n.Config(split="val")
    with pytest.raises(PbBuildError, match="--classes: unknown class id"):
        mvp_n.Config(classes="0001,44")
    with pytest.raises(PbBuildError, match="--per-class"):
        mvp_n.Config(per_class=-1)
    with pytest.raises(PbBuildError, match="--image-size"):
        mvp_n.Config(image_size=8)
    assert mvp_n.sample_dir() is None
    with pytest.raises(PbBuildError, match=r"cannot be downloaded .*1rbjFXLtXGYSsgFN2r9AZtWxOVHGF5jAS.*--raw"):
        mvp_n.fetch(mvp_n.Config(), None, progress=False)


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_names_file_stops_with_one_clear_line(raw_tree, tmp_path: Path):
    root, _ = raw_tree
    with pytest.raises(PbBuildError) as info:
        build(root, tmp_path / "rel")
    message = str(info.value)
    assert "\n" not in message
    assert "documentation PDF" in message and "--names" in message and "class_id,name" in message
    assert not (tmp_path / "rel").exists()
    with pytest.raises(PbBuildError, match=r"nope\.csv: names file not found"):
        build(root, tmp_path / "rel", names=str(tmp_path / "nope.csv"))


def test_names_file_in_the_raw_folder_is_found_and_listed(raw_tree, tmp_path: Path):
    root, names = raw_tree
    (root / "names.csv").write_bytes(names.read_bytes())
    out = build(root, tmp_path / "rel", names="names.csv")
    entry = read_manifest(out)["sources"][0]
    assert entry["parameters"]["names"] == "names.csv"  # no machine path in the manifest
    listed = {f["path"]: f["sha256"] for f in entry["raw"]["files"]}
    assert listed["names.csv"] == entry["notes"]["names_sha256"]
    assert verify_release(out).problems == []


def test_names_file_missing_classes_is_an_error_naming_them(raw_tree, tmp_path: Path):
    root, _ = raw_tree
    names = write_names(tmp_path / "short.csv", skip=("0007", "0042"))
    with pytest.raises(BadRecord, match=r"short\.csv: names file misses class id\(s\) 0007, 0042"):
        build(root, tmp_path / "rel", names=str(names), skip_bad=True)  # never skippable
    assert not (tmp_path / "rel").exists()


def _leaves_nothing(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}") for p in tmp_path.iterdir())


def test_ineligible_sets_are_excluded_and_counted_or_errors_with_strict(tmp_path: Path):
    root = make_tree(tmp_path / "raw")
    names = write_names(tmp_path / "names.csv")
    s = root / "data" / "test"
    # valid, but no informative view:
    (s / "0041" / "0001" / "test_0041_0002_1.png").rename(s / "0041" / "0001" / "test_0041_0002_0.png")
    job = SourceJob(mvp_n, mvp_n.Config(names=str(names)), root)
    [report] = build_release(tmp_path / "rel", [job], progress=False)
    assert report.samples == N_BUILT - 1 and report.skipped == []
    assert report.ineligible_by_reason() == {"no informative view": 1, "no uninformative view": 1}
    entry = read_manifest(tmp_path / "rel")["sources"][0]
    assert entry["ineligible"] == {"no informative view": 1, "no uninformative view": 1}
    assert {i["key"] for i in entry["ineligible_items"]} == {"mvp-n/test/0041/0001", "mvp-n/test/0010/0008"}
    assert verify_release(tmp_path / "rel").problems == []
    with pytest.raises(PbBuildError, match=r"mvp-n: mvp-n/test/0010/0008: no uninformative view .*--strict"):
        build_release(tmp_path / "strict", [job], progress=False, strict=True)
    _leaves_nothing(tmp_path, tmp_path / "strict")


def test_the_build_summary_counts_ineligible_sets_and_strict_is_one_error_line(raw_tree, tmp_path: Path):
    from click.testing import CliRunner

    from pb_build.cli import main

    root, names = raw_tree
    args = ["mvp-n", "--raw", str(root), "--names", str(names), "--quiet", "--workers", "1"]
    run = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "rel")])
    assert run.exit_code == 0, run.output
    assert "excluded 1 ineligible item(s) by the source's rules; by reason: 1 x no uninformative view" in run.output
    assert f"{N_BUILT} samples" in run.output and "1 excluded" in run.output
    strict = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "strict"), "--strict"])
    assert strict.exit_code == 1 and strict.output.count("\n") == 1
    assert strict.output.startswith("error: mvp-n: mvp-n/test/0010/0008: no uninformative view")
    _leaves_nothing(tmp_path, tmp_path / "strict")


@pytest.mark.parametrize(("mutate", "where", "cause"), [
    (lambda s: (s / "0041" / "0001" / "test_0041_0002_1.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken"),
     "data/test/0041/0001/test_0041_0002_1.png", "image does not decode"),
    (lambda s: write_png(s / "0041" / "0001" / "0004_2.png", 99),
     "data/test/0041/0001/0004_2.png", "file name is not <split>_<class>_<NNNN>_<flag>.png or <view>_<flag>.png"),
    (lambda s: write_png(s / "0041" / "0001" / "test_0041_0001_1.png", 99),
     "data/test/0041/0001", "view '0001' appears twice (test_0041_0001_0.png, test_0041_0001_1.png)"),
    (lambda s: write_png(s / "0050" / "0001" / "0001_1.png", 99),
     "data/test/0050", "unknown class folder '0050'"),
])
def test_bad_input_names_file_and_cause_or_is_skipped(tmp_path: Path, mutate, where: str, cause: str):
    root = make_tree(tmp_path / "raw")
    names = write_names(tmp_path / "names.csv")
    mutate(root / "data" / "test")
    out = tmp_path / "rel"
    with pytest.raises(BadRecord) as info:
        build(root, out, names=str(names))
    assert str(info.value.path).endswith(where) and cause in info.value.cause
    assert str(info.value).startswith(str(info.value.path)) and "\n" not in str(info.value)
    _leaves_nothing(tmp_path, out)
    # With --skip-bad the record is counted and the rest is built and verifies.
    job = SourceJob(mvp_n, mvp_n.Config(names=str(names)), root)
    [report] = build_release(out, [job], progress=False, skip_bad=True)
    entry = read_manifest(out)["sources"][0]
    assert entry["counts"]["skipped"] == 1 == len(report.skipped)
    [skipped] = entry["skipped"]
    assert skipped["path"] == where and cause in skipped["cause"]
    lost = 1 if where.startswith("data/test/0041") and "file name" not in cause else 0
    assert report.samples == N_BUILT - lost
    assert verify_release(out).problems == []


def test_raw_folder_without_the_layout(tmp_path: Path):
    names = write_names(tmp_path / "names.csv")
    (tmp_path / "empty" / "data" / "test").mkdir(parents=True)
    with pytest.raises(PbBuildError, match="no class folders"):
        build(tmp_path / "empty", tmp_path / "rel", names=str(names))
    with pytest.raises(PbBuildError, match="raw folder does not exist"):
        build(tmp_path / "missing", tmp_path / "rel", names=str(names))
    _leaves_nothing(tmp_path, tmp_path / "rel")


def test_interrupted_build_leaves_nothing(raw_tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root, names = raw_tree
    real = mvp_n.build
    calls = {"n": 0}

    def interrupted(unit, config):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(unit, config)

    monkeypatch.setattr(mvp_n, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(root, tmp_path / "rel", names=str(names))
    _leaves_nothing(tmp_path, tmp_path / "rel")


def test_replay_of_a_built_episode_matches_the_state_machine(release: Release):
    """Without the official package: the oracle needs n turns, always-proactive fails on the last view."""
    for ep in release.episodes.values():
        n = len(ep.frames)
        oracle = play(ep, POLICIES["oracle"])
        assert oracle.correct and oracle.num_turns == n and [t.frame for t in oracle.turns] == list(range(n))
        pro = play(ep, POLICIES["proactive"])
        assert not pro.correct and pro.num_turns == n and pro.turns[-1].action_verdict == "wrong"
        first = play(ep, POLICIES["first"])
        assert first.correct and first.num_turns == 1
