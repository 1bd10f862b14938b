"""COCO 2014: raw reading, crop geometry, releases, bad input, and equivalence with the official environment.

Raw inputs are built in the exact published layout (``annotations/instances_val2014.json`` as one JSON line with
the published key order, ``val2014/COCO_val2014_<id>.jpg``, or the two published zips) with images synthesised
at the annotated sizes (``tests/coco_raw.py``); the real annotation sample in ``tests/data/coco2014`` is
used where present. The official environment (``COCO2014Environment``, Python 3.12) is driven over every exported
record by oracle, always-proactive, abstain, first-answer, reference and many raw-answer sequences; for every
turn its crop box, view size and view pixels are compared with the view our replay shows from the native parquet.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import threading
from collections import Counter
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from coco_raw import CATEGORIES, FIXTURE, RawTree, synth_jpeg, varied_tree
from datasets import load_dataset
from PIL import Image

from pb_build.build import SourceJob, build_release
from pb_build.builders import coco, coco_distractors, coco_geometry
from pb_build.episode import Episode
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.manifests.provenance import read_sums
from pb_build.raw import coco as raw
from pb_build.replay import Replay
from pb_build.verify import verify_release
from pb_build.writers.native import from_row, read_rows

try:
    from official import replay_job, requires_official, run_official_report
except ImportError:  # tests/ imported as a package
    from tests.official import replay_job, requires_official, run_official_report

NAME = "coco2014"


def build(raw_dir: Path, out: Path, workers: int = 1, skip_bad: bool = False, **config: Any) -> Path:
    build_release(out, [SourceJob(coco, coco.Config(**config), raw_dir)], workers=workers, progress=False,
                  skip_bad=skip_bad)
    return out


def records(release: Path) -> list[dict]:
    return [json.loads(line) for line in (release / "test" / f"{NAME}_preprocessed.jsonl").read_text().splitlines()]


def episodes(release: Path) -> dict[int, Episode]:
    entry = read_manifest(release)["sources"][0]
    return {row["id"]: from_row(row) for row in read_rows([release / p for p in entry["files"]["native"]])}


@functools.lru_cache(maxsize=4096)
def pil_pixels(data: bytes) -> tuple[tuple[int, int], str, str]:
    """Size, mode and sha256 of the raw pixels of an encoded image, decoded with PIL."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size, img.mode, hashlib.sha256(img.tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------- geometry


def _machine(direction: str, g: int, h0: int, v0: int, crop: dict, options: list[str]) -> coco_geometry.Machine:
    return coco_geometry.state_machine(coco_geometry.Geometry(direction, g, h0, v0, crop), options)


def test_spec_trace_diagonal() -> None:
    """The official environment's diagonal trace (down_left, g=3): LEFT, LEFT, DOWN, DOWN, then the answer."""
    options = [coco_geometry.LEFT, "I cannot answer this question.", coco_geometry.DOWN]
    m = _machine("down_left", 3, 40, 30, {"top": 100, "left": 200, "height": 380, "width": 560}, options)
    assert m.max_steps == 6 and len(m.moves) == 9
    path = [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
    boxes = [(160, 100, 560, 410), (120, 100, 560, 410), (80, 100, 560, 410), (80, 100, 560, 440),
             (80, 100, 560, 470)]
    shown = [options, options, options[1:], options[1:], options[1:2]]
    for ab, box, opts in zip(path, boxes, shown, strict=True):
        k = m.moves.index(ab)
        assert m.boxes[k] == box and m.shown[k] == opts


def test_spec_trace_cardinal_and_zoom() -> None:
    crop = {"top": 120, "left": 100, "height": 400, "width": 300}
    m = _machine("right", 4, 50, 0, crop, [coco_geometry.RIGHT, "I cannot tell."])
    assert m.max_steps == 4 and m.moves == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert m.boxes == [(100, 120, 350, 400), (100, 120, 400, 400), (100, 120, 450, 400), (100, 120, 500, 400)]
    assert [coco_geometry.RIGHT in s for s in m.shown] == [True, True, True, False]
    crop = {"top": 100, "left": 200, "height": 150, "width": 200}
    z = _machine("zoom", 3, 40, 30, crop, [coco_geometry.ZOOM, "I cannot tell."])
    assert z.max_steps == 4 and z.moves == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert z.boxes == [(160, 70, 440, 280), (120, 40, 480, 310), (80, 10, 520, 340), (40, -20, 560, 370)]
    assert [coco_geometry.ZOOM in s for s in z.shown] == [True, True, True, False]


def test_geometry_invariants_over_random_images() -> None:
    """Every feasible (direction, granularity) pair yields views inside the image, >= 32 px, a final view holding
    the box, a first view with IoU <= 0.3 (<= 0.25 for two moving axes), a positive zero-step crop and the
    official view counts; the sampler reaches every pair."""
    gen = np.random.default_rng(7)
    seen: Counter = Counter()
    for trial in range(600):
        width, height = int(gen.integers(64, 700)), int(gen.integers(64, 700))
        w, h = gen.uniform(1, width), gen.uniform(1, height)
        bbox = (gen.uniform(0, width - w), gen.uniform(0, height - h), w, h)
        box = coco_geometry.ObjectBox.from_bbox(bbox, width, height)
        if not box.usable() or not coco_geometry.any_feasible(width, height, box):
            continue
        geo = coco_geometry.sample_geometry(np.random.default_rng(trial), width, height, box)
        d, g = geo.direction, geo.granularity
        seen[(d, g)] += 1
        opts = [coco_geometry.ZOOM] if d == "zoom" else [coco_geometry.OPTION_OF[p] for p in d.split("_")]
        m = coco_geometry.state_machine(geo, [*opts, "I cannot tell."])
        first_iou = coco._check_geometry(geo, m, width, height, box)
        assert first_iou <= (0.25 if d == "zoom" or "_" in d else 0.3)
        assert len(m.moves) == {"zoom": g + 1}.get(d, g * g if "_" in d else g)
        assert m.max_steps == {"zoom": g + 1}.get(d, 2 * g if "_" in d else g)
        c = geo.crop
        if d == "zoom":
            assert c["width"] >= 1 and c["height"] >= 1 and geo.horizontal_step >= 1 and geo.vertical_step >= 1
        else:
            assert c["width"] > c["left"] and c["height"] > c["top"]
            assert (geo.horizontal_step >= 1) == ("left" in d or "right" in d)
            assert (geo.vertical_step >= 1) == ("up" in d or "down" in d)
        for x1, y1, x2, y2 in m.boxes:  # every view is the same-size-or-larger superset of the previous ones
            assert x1 <= m.boxes[0][0] and y1 <= m.boxes[0][1] and x2 >= m.boxes[0][2] and y2 >= m.boxes[0][3]
    assert set(seen) == {(d, g) for d in coco_geometry.DIRECTIONS for g in coco_geometry.GRANULARITIES}


def test_feasibility_rules() -> None:
    # A box touching the left border cannot be revealed by moving right; a 40 px box is too small to zoom into.
    box = coco_geometry.ObjectBox(0, 100, 60, 200)
    assert not coco_geometry.feasible("right", 3, 640, 480, box) and coco_geometry.feasible("left", 3, 640, 480, box)
    assert not coco_geometry.feasible("zoom", 3, 640, 480, coco_geometry.ObjectBox(100, 100, 140, 300))
    assert coco_geometry.feasible("zoom", 3, 640, 480, coco_geometry.ObjectBox(100, 100, 300, 300))
    # An object filling a 60 px wide image: no 32 px strip shows at most 30% of it, and it is too narrow to zoom.
    full = coco_geometry.ObjectBox(0, 0, 60, 200)
    assert [d for d in coco_geometry.DIRECTIONS if coco_geometry.feasible(d, 4, 60, 200, full)] == ["up", "down"]
    # Boxes round outwards: [10.0, 24.5) -> 15 px (tiny), [10.0, 25.5) -> 16 px (the minimum side).
    assert not coco_geometry.ObjectBox.from_bbox((10.0, 10.0, 14.5, 300.0), 640, 480).usable()
    assert coco_geometry.ObjectBox.from_bbox((10.0, 10.0, 15.5, 300.0), 640, 480).usable()
    box = coco_geometry.ObjectBox.from_bbox((-3.2, 470.4, 30.0, 20.0), 640, 480)
    assert box == coco_geometry.ObjectBox(0, 470, 27, 480)
    assert not coco_geometry.ObjectBox.from_bbox((0, 0, 30, 30), 640, 480).usable()  # area 900 < 1024


# ---------------------------------------------------------------------------------------------------- raw


def test_reader_keeps_exactly_one_non_crowd_annotation(tmp_path: Path) -> None:
    tree = varied_tree(tmp_path / "raw", 3)
    tree.write()
    layout = raw.find_layout(tree.root, "val")
    ann = raw.load_annotations(layout.annotations)
    singles = [img.id for img, _ in ann.single_object()]
    # 90001 has two objects, 90002 a lone crowd region, 90003 an object plus a crowd region, 90005 nothing.
    assert singles == [100, 101, 102, 90004]
    assert ann.categories[18].name == "dog" and ann.categories[18].supercategory == "animal"
    img = ann.images[100]
    assert img.file_name == "COCO_val2014_000000000100.jpg" and raw.image_header(layout.image_source(img.file_name)) \
        == (img.width, img.height)


def test_reader_on_the_real_annotation_sample(tmp_path: Path) -> None:
    body = json.loads(FIXTURE.read_text())
    assert list(body) == ["info", "images", "licenses", "annotations", "categories"]
    src = raw.Source(FIXTURE)
    with pytest.raises(BadRecord, match=r"annotations\[0\] \(id 156\): image_id 558840 is not in 'images'"):
        raw.load_annotations(src)
    skipped: list[BadRecord] = []
    ann = raw.load_annotations(src, skipped.append)
    assert len(ann.categories) == 80 and len(ann.images) == 100 and len(skipped) == 99
    assert all("dangling" in s.cause for s in skipped)
    [(image, annotation)] = list(ann.single_object())
    assert (image.id, image.width, image.height, annotation.id) == (173350, 640, 480, 3488)
    assert annotation.bbox == (266.67, 0.0, 201.69, 269.58) and ann.categories[annotation.category_id].name == "dog"
    assert sorted(c.id for c in ann.categories.values())[-1] == 90 and 12 not in ann.categories


# ---------------------------------------------------------------------------------------------------- releases


@dataclass
class Release:
    root: Path
    tree: RawTree
    records: dict[int, dict[str, Any]]
    episodes: dict[int, Episode]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    base = tmp_path_factory.mktemp("coco")
    tree = varied_tree(base / "raw", 45)
    tree.write()
    out = build(tree.root, base / "rel")
    return Release(out, tree, {r["id"]: r for r in records(out)}, episodes(out))


def test_release_verifies_loads_and_exports_the_original_image(release: Release) -> None:
    out = release.root
    result = verify_release(out)
    assert result.problems == []
    assert result.sources[0].oracle_correct == result.sources[0].rows == len(release.records) == 45
    ds = load_dataset(str(out), coco.name, split="test")
    assert len(ds) == 45 and sorted(ds["id"]) == list(range(45))
    entry = read_manifest(out)["sources"][0]
    assert entry["notes"]["counts"] == {"images": 50, "single_object": 46, "tiny_box": 1, "no_feasible_crop": 0,
                                        "selected": 45}
    assert entry["ineligible"] == {"object box too small": 1} and len(entry["ineligible_items"]) == 1
    assert Counter(r["direction"] for r in release.records.values()).keys() == set(coco_geometry.DIRECTIONS)
    assert {r["granularity"] for r in release.records.values()} == {3, 4, 5}
    sums = read_sums(out)
    for sid, rec in release.records.items():
        ep = release.episodes[sid]
        assert list(rec) == ["id", "image_template", "first_image", "num_images", "reference_image", "prompt",
                             "options", "categories", "answer", "direction", "granularity", "horizontal_step",
                             "vertical_step", "crop"]
        name = rec["image_template"].rsplit("/", 1)[1]
        assert rec["image_template"] == f"coco2014/val2014/{name}"
        assert (rec["first_image"], rec["num_images"], rec["reference_image"]) == (0, 1, 0)
        assert list(rec["crop"]) == ["top", "left", "height", "width"]
        assert all(isinstance(v, int) for v in (*rec["crop"].values(), rec["horizontal_step"], rec["vertical_step"]))
        original = release.tree.image_bytes[name]
        assert (out / "test" / rec["image_template"]).read_bytes() == original == ep.frames[ep.reference_frame]
        assert [f.path for f in ep.official.files] == [rec["image_template"]]
        assert f"test/{rec['image_template']}" in sums
        proactive = [o for o in rec["options"] if "cannot" not in o.lower() and "do not" not in o.lower()]
        d = rec["direction"]
        expected = [coco_geometry.ZOOM] if d == "zoom" else [coco_geometry.OPTION_OF[p] for p in d.split("_")]
        assert sorted(proactive) == sorted(expected) and len(rec["options"]) == len(expected) + 1
        assert ep.hint == (coco.HINT_ZOOM if d == "zoom" else coco.HINT_MOVE)
        assert len(ep.frames) == len(ep.states) + 1 and ep.meta["first_view_iou"] <= coco_geometry.MAX_IOU
        for k, st in enumerate(ep.states):  # every state's view is stored, with the size of its box
            x1, y1, x2, y2 = ep.meta["view_boxes"][st.frame]
            assert pil_pixels(ep.frames[st.frame])[0] == (x2 - x1, y2 - y1), f"id {sid} state {k}"
    row = ds[0]
    assert len(row["frames"]) == len(row["states"]) + 1 and row["frames"][-1].size == (
        release.episodes[0].meta["width"], release.episodes[0].meta["height"])


def test_views_are_lossless_crops_of_the_decoded_image(release: Release) -> None:
    for sid in (0, 5, 16):
        ep = release.episodes[sid]
        with Image.open(io.BytesIO(ep.frames[ep.reference_frame])) as img:
            for k, box in enumerate(ep.meta["view_boxes"]):
                assert pil_pixels(ep.frames[k])[2] == hashlib.sha256(img.crop(tuple(box)).tobytes()).hexdigest()


def test_distractors_are_hard_negatives(release: Release) -> None:
    sup = {c["name"]: c["supercategory"] for c in release.tree.categories}
    by_string = {n.capitalize() + ".": n for n in sup}
    for rec in release.records.values():
        answer = by_string[rec["answer"]]
        others = [by_string[c] for c in rec["categories"] if c != rec["answer"]]
        same = [o for o in others if sup[o] == sup[answer]]
        n_same = sum(1 for n in sup if sup[n] == sup[answer]) - 1
        assert len(same) == min(3, n_same), (answer, others)
        if answer == "person":  # no other person category: the related supercategory (accessory) fills in
            assert sorted(others) == ["backpack", "handbag", "umbrella"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    tree = varied_tree(tmp_path / "raw", 8)
    tree.write()
    a = build(tree.root, tmp_path / "a")
    b = build(tree.root, tmp_path / "b", seed=0)
    c = build(tree.root, tmp_path / "c", seed=1)
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    assert (a / "SHA256SUMS").read_bytes() != (c / "SHA256SUMS").read_bytes()
    geo = lambda rel: [(r["direction"], r["granularity"], r["crop"]) for r in records(rel)]  # noqa: E731
    assert geo(a) != geo(c)


def test_per_class_selection_and_neighbour_independence(tmp_path: Path) -> None:
    tree = varied_tree(tmp_path / "raw", 12, categories=CATEGORIES[:4])
    tree.write()
    out = build(tree.root, tmp_path / "one", per_class=1)
    answers = [r["answer"] for r in records(out)]
    assert len(answers) == len(set(answers)) == 4  # 4 categories, one image each
    other = build(tree.root, tmp_path / "other", per_class=1, seed=3)
    assert [r["image_template"] for r in records(other)] != [r["image_template"] for r in records(out)]
    # A sample does not depend on the rest of the file: remove one image and rebuild everything.
    by_path = lambda rel: {r["image_template"]: {k: v for k, v in r.items() if k != "id"} for r in records(rel)}  # noqa: E731
    full = by_path(build(tree.root, tmp_path / "f"))
    tree.images = [i for i in tree.images if i["id"] != 104]
    tree.annotations = [a for a in tree.annotations if a["image_id"] != 104]
    shutil.rmtree(tree.root)
    tree.write()
    fewer = by_path(build(tree.root, tmp_path / "g"))
    assert len(fewer) == len(full) - 1 and all(full[k] == v for k, v in fewer.items())


def test_zipped_archives_give_the_same_release(tmp_path: Path) -> None:
    tree = varied_tree(tmp_path / "folder", 6)
    tree.write()
    zipped = RawTree(tmp_path / "zipped", images=tree.images, annotations=tree.annotations,
                     image_bytes=tree.image_bytes)
    zipped.write(zipped=True)
    a = build(tree.root, tmp_path / "a")
    b = build(zipped.root, tmp_path / "b")
    sums_a, sums_b = read_sums(a), read_sums(b)
    assert {k: v for k, v in sums_a.items() if k != "manifest.json"} == \
        {k: v for k, v in sums_b.items() if k != "manifest.json"}
    raw_files = [f["path"] for f in read_manifest(b)["sources"][0]["raw"]["files"]]
    assert raw_files == ["annotations_trainval2014.zip", "val2014.zip"]
    assert [f["path"] for f in read_manifest(a)["sources"][0]["raw"]["files"]][0] == \
        "annotations/instances_val2014.json"
    assert verify_release(b).problems == []


def test_train_split(tmp_path: Path) -> None:
    tree = varied_tree(tmp_path / "raw", 4, split="train")
    tree.write()
    with pytest.raises(PbBuildError, match="no annotations/instances_val2014.json"):
        build(tree.root, tmp_path / "val")
    out = build(tree.root, tmp_path / "train", split="train")
    recs = records(out)
    assert len(recs) == 4 and all(r["image_template"].startswith("coco2014/train2014/COCO_train2014_") for r in recs)
    assert read_manifest(out)["sources"][0]["keys"][0] == "coco/train2014/100"
    assert verify_release(out).problems == []


def test_jpeg_frames(tmp_path: Path, release: Release) -> None:
    out = build(release.tree.root, tmp_path / "jpeg", frame_format="jpeg", jpeg_quality=90)
    assert verify_release(out).problems == []
    eps = episodes(out)
    for sid in (0, 7):
        png, jpg = release.episodes[sid], eps[sid]
        assert jpg.meta["view_boxes"] == png.meta["view_boxes"] and jpg.frames[-1] == png.frames[-1]
        for k in range(len(jpg.states)):
            assert jpg.frames[k][:2] == b"\xff\xd8"
            a = np.asarray(Image.open(io.BytesIO(jpg.frames[k])), dtype=np.int16)
            b = np.asarray(Image.open(io.BytesIO(png.frames[k])), dtype=np.int16)
            mse = float(((a - b).astype(np.float64) ** 2).mean())
            assert a.shape == b.shape and 10 * np.log10(255**2 / mse) > 28  # PSNR of the noisy synthetic image


def test_embedding_distractors(tmp_path: Path) -> None:
    tree = varied_tree(tmp_path / "raw", 3)
    tree.write()
    names = [c["name"] for c in tree.categories]
    vectors = {n: [1.0, float(i)] for i, n in enumerate(names)}  # neighbours in table order are most similar
    emb = tmp_path / "emb.json"
    emb.write_text(json.dumps(vectors))
    out = build(tree.root, tmp_path / "rel", distractors=f"embeddings:{emb}")
    for rec in records(out):
        answer = rec["answer"][:-1].lower()
        target = np.array(vectors[answer]) / np.linalg.norm(vectors[answer])
        sims = sorted(((-float(np.array(v) @ target / np.linalg.norm(v)), n) for n, v in vectors.items()
                       if n != answer))
        assert sorted(c[:-1].lower() for c in rec["categories"] if c != rec["answer"]) == sorted(n for _, n in sims[:3])
    del vectors["tv"]
    emb.write_text(json.dumps(vectors))
    coco_distractors.get_chooser.cache_clear()
    with pytest.raises(PbBuildError, match=r"emb\.json: no embedding for category 'tv'"):
        build(tree.root, tmp_path / "rel2", distractors=f"embeddings:{emb}")
    coco_distractors.get_chooser.cache_clear()


def test_supercategory_chooser_tops_up_by_related_supercategories() -> None:
    cats = [raw.Category(cid, n, s, i) for i, (cid, n, s) in enumerate(CATEGORIES)]
    by_name = {c.name: c for c in cats}
    rng = np.random.default_rng(0)
    bottle = by_name["bottle"]  # kitchen: wine glass; related: food (none), appliance (none), indoor (toothbrush)
    picks = coco_distractors.supercategory_chooser(bottle, [c for c in cats if c is not bottle], rng)
    assert [c.name for c in picks[:2]] == ["wine glass", "toothbrush"] and picks[2].name not in ("bottle",)
    dog = by_name["dog"]
    picks = coco_distractors.supercategory_chooser(dog, [c for c in cats if c is not dog], rng)
    assert {c.supercategory for c in picks} == {"animal"} and len({c.id for c in picks}) == 3


def test_config_validation(tmp_path: Path) -> None:
    for kwargs, flag in (({"split": "test"}, "--split"), ({"per_class": -1}, "--per-class"),
                         ({"frame_format": "gif"}, "--frame-format"), ({"jpeg_quality": 0}, "--jpeg-quality"),
                         ({"distractors": "clip"}, "--distractors"),
                         ({"distractors": f"embeddings:{tmp_path / 'none.json'}"}, "--distractors")):
        with pytest.raises(PbBuildError, match=flag):
            coco.Config(**kwargs)
    assert coco.sample_dir() is None


def test_fetch_downloads_the_published_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fetch() against a local server laid out like images.cocodataset.org; the zips are read in place."""
    tree = varied_tree(tmp_path / "src", 3)
    tree.write(zipped=True)
    site = tmp_path / "site"
    (site / "annotations").mkdir(parents=True)
    (site / "zips").mkdir()
    shutil.copy(tree.root / "annotations_trainval2014.zip", site / "annotations")
    shutil.copy(tree.root / "val2014.zip", site / "zips")
    handler = partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(raw.URL_ENV, f"http://127.0.0.1:{server.server_port}")
        folder = coco.fetch(coco.Config(), tmp_path / "cache", progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert folder == tmp_path / "cache" / "coco2014"
    assert sorted(p.name for p in folder.iterdir()) == ["annotations_trainval2014.zip", "val2014.zip"]
    out = build(folder, tmp_path / "rel")
    assert len(records(out)) == 3 and verify_release(out).problems == []


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


# ---------------------------------------------------------------------------------------------------- bad input


def _small_tree(root: Path) -> RawTree:
    tree = RawTree(root)
    tree.add_image(1, 240, 180, [(18, [60.0, 40.0, 100.0, 90.0])])
    tree.add_image(2, 200, 200, [(17, [20.5, 30.5, 120.0, 110.0])])
    tree.add_image(3, 220, 160, [(3, [90.0, 20.0, 100.0, 120.0])])
    return tree


def _assert_nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"


@pytest.mark.parametrize("case", ["image_missing_key", "annotation_missing_key", "dangling_image_id",
                                  "unknown_category", "missing_image", "not_an_image", "truncated_image",
                                  "wrong_size"])
def test_bad_records_name_file_and_cause_and_skip_is_counted(tmp_path: Path, case: str) -> None:
    tree = _small_tree(tmp_path / "raw")
    img2 = "COCO_val2014_000000000002.jpg"
    expect_path, expect_cause = "annotations/instances_val2014.json", ""
    if case == "image_missing_key":
        del tree.images[1]["width"]
        expect_cause = r"images\[1\] \(id 2\): missing key\(s\) width"
    elif case == "annotation_missing_key":
        del tree.annotations[1]["bbox"]
        expect_cause = r"annotations\[1\] \(id 1002\): missing key\(s\) bbox"
    elif case == "dangling_image_id":
        tree.annotations[1]["image_id"] = 777
        expect_cause = r"annotations\[1\] \(id 1002\): image_id 777 is not in 'images' \(dangling\)"
    elif case == "unknown_category":
        tree.annotations[1]["category_id"] = 12
        expect_cause = r"annotations\[1\] \(id 1002\): category_id 12 is not in 'categories'"
    elif case == "missing_image":
        del tree.image_bytes[img2]
        expect_path, expect_cause = f"val2014/{img2}", "image file is missing"
    elif case == "not_an_image":
        tree.image_bytes[img2] = b"<html>not found</html>"
        expect_path, expect_cause = f"val2014/{img2}", "image does not decode: unknown or corrupt format"
    elif case == "truncated_image":
        tree.image_bytes[img2] = tree.image_bytes[img2][:-300]  # the header is intact, the scan data is cut
        expect_path, expect_cause = f"val2014/{img2}", "image does not decode: image file is truncated"
    elif case == "wrong_size":
        tree.image_bytes[img2] = synth_jpeg(210, 200, 2)
        expect_path, expect_cause = f"val2014/{img2}", "image is 210x200 but the annotation file says 200x200"
    tree.write()
    out = tmp_path / "rel"
    with pytest.raises(BadRecord, match=f"{expect_path}: {expect_cause}"):
        build(tree.root, out)
    _assert_nothing_written(tmp_path, out)
    [report] = build_release(out, [SourceJob(coco, coco.Config(), tree.root)], progress=False, skip_bad=True)
    assert report.samples == 2  # image 2 is excluded (a bad annotation makes its object count unknown)
    entry = read_manifest(out)["sources"][0]
    assert entry["counts"]["skipped"] == 1
    [skipped] = entry["skipped"]
    assert skipped["path"] == expect_path and skipped["line"] is None
    assert verify_release(out).problems == []
    assert all("000000000002" not in r["image_template"] for r in records(out))


@pytest.mark.parametrize("case", ["malformed_json", "missing_top_level_key", "not_a_list", "no_annotation_file",
                                  "no_image_folder", "too_few_categories"])
def test_unusable_annotation_files_stop_the_build_even_with_skip_bad(tmp_path: Path, case: str) -> None:
    tree = _small_tree(tmp_path / "raw")
    tree.write()
    path = tree.annotation_path
    if case == "malformed_json":
        text = json.dumps(tree.body(), indent=1).splitlines()
        text[7] = text[7].rstrip(",") + " oops,"
        path.write_text("\n".join(text))
        error, match = BadRecord, r"instances_val2014\.json:8: malformed JSON"
    elif case == "missing_top_level_key":
        body = tree.body()
        del body["annotations"]
        path.write_text(json.dumps(body))
        error, match = BadRecord, r"instances_val2014\.json: missing top-level key 'annotations'"
    elif case == "not_a_list":
        path.write_text(json.dumps({**tree.body(), "images": {"1": {}}}))
        error, match = BadRecord, r"instances_val2014\.json: top-level key 'images' is not a list"
    elif case == "no_annotation_file":
        path.unlink()
        error, match = PbBuildError, r"raw: no annotations/instances_val2014\.json"
    elif case == "no_image_folder":
        shutil.rmtree(tree.root / "val2014")
        error, match = PbBuildError, r"raw: no val2014/ image folder \(nor val2014\.zip\)"
    else:
        used = [c for c in tree.categories if c["id"] in (3, 17, 18)]  # the categories the annotations name
        path.write_text(json.dumps({**tree.body(), "categories": used}))
        error, match = PbBuildError, "needs at least 4 categories"
    out = tmp_path / "rel"
    for skip_bad in (False, True):
        with pytest.raises(error, match=match):
            build(tree.root, out, skip_bad=skip_bad)
        _assert_nothing_written(tmp_path, out)


def test_bad_zip_member_names_the_archive(tmp_path: Path) -> None:
    tree = _small_tree(tmp_path / "raw")
    del tree.image_bytes["COCO_val2014_000000000003.jpg"]
    tree.write(zipped=True)
    with pytest.raises(BadRecord, match=r"val2014\.zip: the archive has no member val2014/COCO_val2014_000000000003"):
        build(tree.root, tmp_path / "rel")


# ---------------------------------------------------------------------------------------------------- official


def _walks(ep: Episode, rec: dict, rng: np.random.Generator, n: int) -> list[list[str]]:
    """Raw answer sequences made by playing our replay with random choices of every kind: a shown option or a
    category by text or letter (valid or not), an option hidden in this state, garbage."""
    out = []
    for _ in range(n):
        rep = Replay(ep)
        answers: list[str] = []
        while not rep.done:
            shown = rep.shown_texts()
            n_opt = len(shown) - 4
            hidden = [o for o in ep.options if o not in shown]
            kind = rng.choice(["option", "option", "option_letter", "category", "category_letter", "hidden",
                               "noise"], p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
            if kind == "option" and n_opt:
                text = shown[int(rng.integers(n_opt))]
            elif kind == "option_letter" and n_opt:
                text = chr(65 + int(rng.integers(n_opt))) + "."
            elif kind == "category":
                text = rec["categories"][int(rng.integers(4))]
            elif kind == "category_letter":
                text = chr(65 + n_opt + int(rng.integers(4)))
            elif kind == "hidden" and hidden:
                text = hidden[0]
            else:
                text = "Move the camera."
            answers.append(text)
            rep.answer(text)
        out.append(answers)
    return out


def _scripted(ep: Episode, rec: dict) -> list[list[str]]:
    """Deterministic walks: each proactive option until it disappears (then once more: hidden), both orders."""
    opts = [o for o in rec["options"] if "cannot" not in o.lower() and "do not" not in o.lower()]
    g = rec["granularity"]
    moves = g if rec["direction"] == "zoom" else g - 1
    seqs = []
    for order in (opts, opts[::-1]):
        seq = [o for o in order for _ in range(moves)]
        seqs.append([*seq, rec["answer"]])
        seqs.append([*seq[: moves + 1], order[0]])  # the first option again once it is hidden
    if len(opts) == 2:  # diagonal: reach every (a, b) of the grid, alternating the axes, then answer
        horizontal = next(o for o in opts if "to the" in o)
        vertical = next(o for o in opts if o != horizontal)
        for a in range(moves + 1):
            for b in range(moves + 1):
                pairs = [m for k in range(max(a, b)) for m in ((horizontal,) if k < a else ()) +
                         ((vertical,) if k < b else ())]
                seqs.append([*pairs, rec["answer"]])
    return seqs


def _jobs(rel: Release) -> list[dict[str, Any]]:
    rng = np.random.default_rng(2024)
    jobs: list[dict[str, Any]] = []
    for sid in sorted(rel.records):
        ep, rec = rel.episodes[sid], rel.records[sid]
        for policy in ("oracle", "proactive", "abstain", "first", "reference"):
            jobs.append({"id": sid, "policy": policy, "views": True})
        for answers in _scripted(ep, rec) + _walks(ep, rec, rng, 6):
            jobs.append({"id": sid, "policy": "letters", "answers": answers, "views": True})
    return jobs


@pytest.fixture(scope="module")
def played(release: Release) -> list[tuple[dict, dict, dict]]:
    jobs = _jobs(release)
    report = run_official_report(NAME, release.root / "test", jobs)
    assert report["records"] == len(release.records)
    return [(job, off, replay_job(release.episodes[job["id"]], job))
            for job, off in zip(jobs, report["jobs"], strict=True)]


def _describe(job: dict) -> str:
    return f"id {job['id']} {job['policy']} {job.get('answers', '')}"


@requires_official
def test_official_and_replay_agree_turn_by_turn_including_views(release: Release, played) -> None:
    """Same turns, verdicts, shown options and outcome; and at every turn the official crop box, view size, mode
    and pixels equal the native frame of the state our replay is in."""
    problems = []
    for job, off, ours in played:
        if off["error"] or off["image_errors"] or not off["stopped"]:
            problems.append(f"{_describe(job)}: {off['error'] or off['image_errors'] or 'did not stop'}")
            continue
        got = {k: off[k] for k in ("num_turns", "correct_prediction", "max_steps", "answers", "options",
                                   "action_evaluations", "category_evaluations")}
        diff = {k: (got[k], ours[k]) for k in got if got[k] != ours[k]}
        if diff:
            problems.append(f"{_describe(job)}: (official, replay) {diff}")
            continue
        ep, rec = release.episodes[job["id"]], release.records[job["id"]]
        assert off["images"] == [rec["image_template"]] * off["num_turns"]
        for turn, (view, frame) in enumerate(zip(off["views"], ours["frames"], strict=True)):
            size, mode, digest = pil_pixels(ep.frames[frame])
            if frame == ep.reference_frame:
                box = None
            else:
                box = ep.meta["view_boxes"][frame]
            if [view["box"], tuple(view["size"]), view["mode"], view["sha256"]] != [box, size, mode, digest]:
                problems.append(f"{_describe(job)} turn {turn}: official view {view} != ours {box} {size} {mode}")
    assert not problems, f"{len(problems)} disagreements in {len(played)} jobs:\n" + "\n".join(problems[:10])


@requires_official
def test_official_oracle_and_proactive_score_100_with_the_expected_steps(release: Release, played) -> None:
    """Cardinal: g turns (g - 1 moves); diagonal: 2g - 1 turns (g - 1 moves per axis); zoom: g + 1 turns."""
    checked = Counter()
    for job, off, ours in played:
        if job["policy"] not in ("oracle", "proactive"):
            continue
        rec = release.records[job["id"]]
        d, g = rec["direction"], rec["granularity"]
        turns = g + 1 if d == "zoom" else (2 * g - 1 if "_" in d else g)
        for res in (off, ours):
            assert res["correct_prediction"] is True and res["num_turns"] == turns, _describe(job)
            assert res["action_evaluations"] == ["correct"] * (turns - 1) + ["mismatch"]
            assert res["category_evaluations"][-1] == "correct"
            assert res["max_steps"] is (d == "zoom" or "_" not in d)
        assert off["views"][-1]["box"] == release.episodes[job["id"]].meta["view_boxes"][-1]
        checked[job["policy"]] += 1
    assert checked == {"oracle": len(release.records), "proactive": len(release.records)}


@requires_official
def test_official_other_policies_and_coverage(release: Release, played) -> None:
    seen_action, seen_category, hidden_mismatch = set(), set(), 0
    for job, off, _ours in played:
        rec = release.records[job["id"]]
        if job["policy"] == "abstain":
            assert off["num_turns"] == 1 and not off["correct_prediction"]
        if job["policy"] in ("first", "reference"):
            assert off["num_turns"] == 1 and off["correct_prediction"]
        if job["policy"] == "reference":
            assert off["options"] == [rec["categories"]] and off["views"][0]["box"] is None
        if job["policy"] == "letters":
            seen_action.update(off["action_evaluations"])
            seen_category.update(off["category_evaluations"])
            last = off["answers"][-1]
            if last in rec["options"] and last not in off["options"][-1]:
                hidden_mismatch += 1
                assert off["action_evaluations"][-1] == "mismatch" and not off["correct_prediction"]
    assert seen_action == seen_category == {"correct", "wrong", "mismatch"}
    assert hidden_mismatch >= len(release.records)  # every record: a move chosen after its option disappeared
    # Every state of every episode is visited by some job (the walks cover the diagonal grids).
    visited = {(job["id"], f) for job, _off, ours in played for f in ours["frames"]}
    for sid, ep in release.episodes.items():
        assert {(sid, st.frame) for st in ep.states} <= visited, f"id {sid}: some states were never visited"


@requires_official
def test_official_hint_prompt(release: Release, played) -> None:
    for job, off, _ in played:
        if job["policy"] == "first":
            ep = release.episodes[job["id"]]
            assert off["hint_prompt"] == f"{ep.prompt} {ep.hint}"


@requires_official
def test_spec_traces_in_the_official_environment(tmp_path: Path) -> None:
    """The official environment reproduces the traces of the tests above, and our copies of its box and option rules
    agree with it (boxes reported by the official transform)."""
    test = tmp_path / "test"
    (test / "coco2014" / "val2014").mkdir(parents=True)
    (test / "coco2014" / "val2014" / "x.jpg").write_bytes(synth_jpeg(640, 480, 1))
    common = {"image_template": "coco2014/val2014/x.jpg", "first_image": 0, "num_images": 1, "reference_image": 0,
              "prompt": "Identify the object in this image.", "categories": ["Bowl.", "Sink.", "Cup.", "Toilet."],
              "answer": "Toilet."}
    recs = [
        {"id": 0, **common, "options": [coco_geometry.LEFT, "I cannot answer this question.", coco_geometry.DOWN],
         "direction": "down_left", "granularity": 3, "horizontal_step": 40, "vertical_step": 30,
         "crop": {"top": 100, "left": 200, "height": 380, "width": 560}},
        {"id": 1, **common, "options": [coco_geometry.RIGHT, "I cannot tell."], "direction": "right", "granularity": 4,
         "horizontal_step": 50, "vertical_step": 0, "crop": {"top": 120, "left": 100, "height": 400, "width": 300}},
        {"id": 2, **common, "options": [coco_geometry.ZOOM, "I cannot tell."], "direction": "zoom", "granularity": 3,
         "horizontal_step": 40, "vertical_step": 30, "crop": {"top": 100, "left": 200, "height": 150, "width": 200}},
    ]
    (test / f"{NAME}_preprocessed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    moves = [coco_geometry.LEFT, coco_geometry.LEFT, coco_geometry.DOWN, coco_geometry.DOWN]
    jobs = [{"id": 0, "policy": "letters", "answers": [*moves, "E"], "views": True},
            {"id": 1, "policy": "oracle", "views": True}, {"id": 2, "policy": "oracle", "views": True}]
    diag, right, zoom = run_official_report(NAME, test, jobs)["jobs"]
    assert [v["box"] for v in diag["views"]] == [[160, 100, 560, 410], [120, 100, 560, 410], [80, 100, 560, 410],
                                                 [80, 100, 560, 440], [80, 100, 560, 470]]
    assert [len(o) - 4 for o in diag["options"]] == [3, 3, 2, 2, 1] and diag["correct_prediction"]
    assert [v["box"] for v in right["views"]] == [[100, 120, 350, 400], [100, 120, 400, 400], [100, 120, 450, 400],
                                                  [100, 120, 500, 400]]
    assert right["num_turns"] == 4 and right["max_steps"] and right["correct_prediction"]
    assert [v["box"] for v in zoom["views"]] == [[160, 70, 440, 280], [120, 40, 480, 310], [80, 10, 520, 340],
                                                 [40, -20, 560, 370]]
    assert [len(o) - 4 for o in zoom["options"]] == [2, 2, 2, 1] and zoom["correct_prediction"]
    for rec, res in zip(recs, (diag, right, zoom), strict=True):  # our copies of the official rules agree
        geo = coco_geometry.Geometry(rec["direction"], rec["granularity"], rec["horizontal_step"], rec["vertical_step"],
                            rec["crop"])
        m = coco_geometry.state_machine(geo, rec["options"])
        assert all(list(v["box"]) in [list(b) for b in m.boxes] for v in res["views"])


@requires_official
def test_real_annotation_sample_builds_and_runs_officially(tmp_path: Path) -> None:
    """The real sample: 99 of its 100 annotations name images outside the sample (dangling); with --skip-bad the one
    single-object image (173350, a dog) is built, with an image synthesised at its annotated 640x480."""
    body = json.loads(FIXTURE.read_text())
    root = tmp_path / "raw"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(FIXTURE, root / "annotations" / "instances_val2014.json")
    (root / "val2014").mkdir()
    for img in body["images"]:
        (root / "val2014" / img["file_name"]).write_bytes(synth_jpeg(img["width"], img["height"], img["id"] % 1000))
    with pytest.raises(BadRecord, match=r"instances_val2014\.json: annotations\[0\] \(id 156\): image_id 558840"):
        build(root, tmp_path / "strict")
    out = tmp_path / "rel"
    [report] = build_release(out, [SourceJob(coco, coco.Config(), root)], progress=False, skip_bad=True)
    assert report.samples == 1 and len(report.skipped) == 99
    [rec] = records(out)
    assert rec["image_template"] == "coco2014/val2014/COCO_val2014_000000173350.jpg" and rec["answer"] == "Dog."
    animals = {"Cat.", "Horse.", "Sheep.", "Cow.", "Elephant.", "Bear.", "Zebra.", "Giraffe.", "Bird."}
    assert set(rec["categories"]) - {"Dog."} <= animals
    assert verify_release(out).problems == []
    assert len(load_dataset(str(out), coco.name, split="test")) == 1
    [ep] = episodes(out).values()
    jobs = [{"id": 0, "policy": p, "views": True} for p in ("oracle", "proactive", "abstain", "first", "reference")]
    results = run_official_report(NAME, out / "test", jobs)["jobs"]
    for job, off in zip(jobs, results, strict=True):
        ours = replay_job(ep, job)
        assert off["error"] is None and off["num_turns"] == ours["num_turns"]
        assert off["correct_prediction"] == ours["correct_prediction"] == (job["policy"] != "abstain")
        for view, frame in zip(off["views"], ours["frames"], strict=True):
            assert (tuple(view["size"]), view["mode"], view["sha256"]) == pil_pixels(ep.frames[frame])


@pytest.mark.skipif(not os.environ.get("PB_RUN_SLOW"), reason="slow: set PB_RUN_SLOW=1")
@pytest.mark.slow
def test_many_seeds_build_and_verify(tmp_path: Path) -> None:
    tree = varied_tree(tmp_path / "raw", 60, seed=5)
    tree.write()
    for seed in range(5):
        out = build(tree.root, tmp_path / f"s{seed}", seed=seed)
        assert verify_release(out).problems == []
