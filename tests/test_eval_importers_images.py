"""Official-layout importers of the image sources: COCO 2014, ImageNet-C and MVP-N.

For each source a small release is built from the fake raw trees of its own tests
(``test_eval_support.build_source_release``) and every official record is imported back: the imported episode
must equal the release's native episode (``meta`` aside; official files compared by path, and by bytes against
the files on disk). COCO records hold one image plus crop parameters, so the importer recomputes every view with
the builder's own code, pixel-identical to the native PNG views. An official-layout-only copy of ``test/`` must
load through ``pb_build.eval.data.load`` and score like the release; a record with a missing frame is an
``ImportFailure`` naming it. The official environments (Python 3.12, ``tests/official.py``) and the imported
episodes play the same scripted jobs (driver oracle, oracle by letters, proactive, abstain, first, reference and
fixed answer sequences) with the same outcomes, verdicts, shown options and frames (COCO: the official crop's
pixels). Hand-written records in the authors' style (§15 examples, views leaving the image, fractional steps)
import and play like the official environment too.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pb_build.builders import REGISTRY, coco_geometry
from pb_build.builders import coco as coco_builder
from pb_build.episode import Episode
from pb_build.eval import data
from pb_build.eval.importers import IMPORTERS, ImportFailure, import_record
from pb_build.eval.policies import get_policy
from pb_build.eval.runner import policy_decider, run_mcqa
from pb_build.eval.sources import alias
from pb_build.replay import oracle, play
from pb_build.strings import is_abstain

try:
    from official import replay_job, requires_official, run_official_report
    from test_eval_support import build_source_release, release_episodes, release_records
except ImportError:  # tests/ imported as a package
    from tests.official import replay_job, requires_official, run_official_report
    from tests.test_eval_support import build_source_release, release_episodes, release_records

SOURCES = ["coco", "imagenet-c", "mvp-n"]
COMPARED = ("num_turns", "correct_prediction", "max_steps", "answers", "options", "action_evaluations",
            "category_evaluations")


@dataclass
class Release:
    source: str
    name: str
    root: Path
    records: dict[int, dict[str, Any]]
    native: dict[int, Episode]
    imported: dict[int, Episode]

    @property
    def test_dir(self) -> Path:
        return self.root / "test"


@pytest.fixture(scope="module", params=SOURCES)
def release(request, tmp_path_factory) -> Release:
    source = request.param
    root = build_source_release(tmp_path_factory.mktemp(f"import-{source}"), source)
    name = REGISTRY[source].info.official_name
    records = release_records(root, source)
    imported = {sid: import_record(name, rec, root / "test") for sid, rec in records.items()}
    return Release(source, name, root, records, release_episodes(root, source), imported)


@functools.lru_cache(maxsize=4096)
def pil_pixels(data: bytes) -> tuple[tuple[int, int], str, str]:
    """Size, mode and sha256 of the raw pixels of an encoded image, decoded with PIL."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size, img.mode, hashlib.sha256(img.tobytes()).hexdigest()


def _bare(ep: Episode) -> Episode:
    return dataclasses.replace(ep, meta={}, official=None)


# ------------------------------------------------------------------------------------------------- round trip


def test_importers_are_registered():
    for source in SOURCES:
        assert REGISTRY[source].info.official_name in IMPORTERS


def test_round_trip_equals_the_native_episode(release: Release):
    assert release.records and set(release.records) == set(release.native)
    for sid, native in release.native.items():
        ep = release.imported[sid]
        assert _bare(ep) == _bare(native), f"{release.source} id {sid}"
        assert ep.meta == {"spec": native.meta["spec"]}  # the source spec, nothing of the provenance
        assert ep.official is not None and native.official is not None
        assert ep.official.name == native.official.name == release.name
        assert ep.official.record == native.official.record == {k: v for k, v in release.records[sid].items()
                                                                 if k != "id"}
        assert [f.path for f in ep.official.files] == [f.path for f in native.official.files]
        for f in ep.official.files:
            assert f.data == (release.test_dir / f.path).read_bytes(), f.path
        # every file the official environment can open is a file of the export
        reachable = REGISTRY.by_official_name(release.name).reachable_paths(release.records[sid])
        assert {f.path for f in ep.official.files} == set(reachable)


def test_round_trip_keys_come_from_the_paths(release: Release):
    """The key is recovered from the official layout (never the id fallback) for pb-build's layouts."""
    for sid, ep in release.imported.items():
        assert ep.key == release.native[sid].key and "/id-" not in ep.key


@pytest.mark.parametrize("release", ["coco"], indirect=True)
def test_coco_views_are_the_official_crops(release: Release):
    """Each imported COCO view has the pixels of ``PIL.Image.crop`` of the image with the state's official box."""
    for sid, ep in release.imported.items():
        rec = release.records[sid]
        with Image.open(release.test_dir / rec["image_template"]) as img:
            img.load()
            for k, box in enumerate(release.native[sid].meta["view_boxes"]):
                view = img.crop(tuple(box))
                assert pil_pixels(ep.frames[k]) == (view.size, view.mode, hashlib.sha256(view.tobytes()).hexdigest())
        assert ep.frames[ep.reference_frame] == (release.test_dir / rec["image_template"]).read_bytes()


def test_oracle_replays_to_100_percent(release: Release):
    for sid, ep in release.imported.items():
        assert play(ep, oracle).correct, f"{release.source} id {sid}"


# ------------------------------------------------------------------------------------------ official folders


def _sorted(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(results, key=lambda r: r["id"])


def test_official_layout_folder_scores_like_the_release(release: Release, tmp_path: Path):
    official = tmp_path / "official"
    shutil.copytree(release.test_dir, official / "test")
    assert not list(official.rglob("*.parquet"))
    from_release = data.load(release.root, release.source)
    for query in (alias(release.name), release.name):
        from_official = data.load(official, query)
        assert from_official.kind == "official" and from_release.kind == "release"
        assert from_official.official_name == release.name and not from_official.failures
        assert from_official.fingerprint == from_release.fingerprint
        assert [i.sample_id for i in from_official.items] == [i.sample_id for i in from_release.items]
        for a, b in zip(from_release.items, from_official.items, strict=True):
            assert _bare(a.episode) == _bare(b.episode)
        for policy in ("oracle", "proactive"):
            ours = _sorted(run_mcqa(from_official.items, policy_decider(get_policy(policy)), batch_size=5))
            theirs = _sorted(run_mcqa(from_release.items, policy_decider(get_policy(policy)), batch_size=5))
            assert ours == theirs, policy
            if policy == "oracle":
                assert all(r["correct"] for r in ours) and len(ours) == len(release.records)


def test_missing_frame_is_an_import_failure_naming_the_record(release: Release, tmp_path: Path):
    official = tmp_path / "test"
    shutil.copytree(release.test_dir, official)
    sid = sorted(release.records)[1]
    files = [f.path for f in release.native[sid].official.files]
    victim = files[len(files) // 2]
    (official / victim).unlink()
    with pytest.raises(ImportFailure, match=f"{release.name} record {sid}: .*{re.escape(Path(victim).name)}"):
        import_record(release.name, release.records[sid], official)
    loaded = data.load(official, release.name)
    assert [f.sample_id for f in loaded.failures] == [sid]
    assert f"{release.name} record {sid}" in loaded.failures[0].reason
    assert len(loaded.items) == len(release.records) - 1


def test_bad_records_are_import_failures(release: Release):
    sid = sorted(release.records)[0]
    rec = release.records[sid]
    broken = [
        {k: v for k, v in rec.items() if k != "options"},
        {**rec, "answer": "Not a category."},
        {**rec, "options": [o for o in rec["options"] if "cannot" not in o.lower() and "do not" not in o.lower()]},
    ]
    if release.source == "imagenet-c":
        broken += [{**rec, "quality_answer": "Sharpen the image."}, {**rec, "first_image": 3}]
    if release.source == "mvp-n":
        broken.append({**rec, "valid_images": rec["valid_images"][:-1]})
    if release.source == "coco":
        loose = [o if is_abstain(o) else o.rstrip(".") + " now." for o in rec["options"]]
        broken += [{**rec, "direction": "sideways"}, {**rec, "options": [*rec["options"], "Move closer."]},
                   {**rec, "options": loose}]  # the action keys are there, but not the literal strings
    for bad in broken:
        with pytest.raises(ImportFailure, match=f"{release.name} record {sid}"):
            import_record(release.name, bad, release.test_dir)


# ---------------------------------------------------------------------------------- the official environment


def _driver_oracle(rep) -> str:
    """The official driver's 'oracle': the first correct option in stored order while there is one, else the answer."""
    st = rep.current
    valid = [i for i in st.shown if i in st.valid]
    return rep.episode.options[valid[0]] if valid and not rep.reference else rep.episode.answer


def _oracle_letters(ep: Episode) -> list[str]:
    """pb-build's oracle path, answered by letters only."""
    rep = play(ep, oracle)
    out = []
    replay = type(rep)(ep)
    for turn in rep.turns:
        out.append(chr(65 + replay.shown_texts().index(turn.answer)))
        replay.answer(turn.answer)
    return out


def _sequences(ep: Episode, rec: dict[str, Any]) -> list[list[str]]:
    opts, cats, answer = rec["options"], rec["categories"], rec["answer"]
    abstain = next(o for o in opts if is_abstain(o))
    pro = [o for o in opts if o != abstain]
    cl = chr(65 + len(opts) + cats.index(answer))
    return [
        _oracle_letters(ep),
        [pro[0]] * 10 + [answer],  # keeps choosing one move, also where it is hidden or no longer valid
        [pro[-1], pro[0], f"{cl}. {answer}"],
        ["A", "B", "C", "D"],
        [f"Z. {pro[0].lower()}", "nonsense"],
        [answer.rstrip(".")],
        [cats[(cats.index(answer) + 1) % 4]],
        [f"  {pro[0].upper()}  ", answer],
    ]


def _jobs(episodes: dict[int, Episode], records: dict[int, dict[str, Any]], views: bool) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    for sid in sorted(records):
        for policy in ("oracle", "proactive", "abstain", "first", "reference"):
            jobs.append({"id": sid, "policy": policy})
        for answers in _sequences(episodes[sid], records[sid]):
            jobs.append({"id": sid, "policy": "letters", "answers": answers})
    if views:
        for job in jobs:
            job["views"] = True
    return jobs


def _compare_with_official(name: str, test_dir: Path, episodes: dict[int, Episode],
                           records: dict[int, dict[str, Any]]) -> dict[str, int]:
    """Play every job officially and on the imported episodes; return how many jobs of each policy agreed."""
    coco = name == coco_builder.info.official_name
    jobs = _jobs(episodes, records, views=coco)
    report = run_official_report(name, test_dir, jobs)
    problems, seen = [], dict.fromkeys(("oracle", "oracle-letters", "proactive", "abstain", "first"), 0)
    for job, off in zip(jobs, report["jobs"], strict=True):
        where = f"{name} {job}"
        if off["error"] or off["image_errors"]:
            problems.append(f"{where}: official error {off['error'] or off['image_errors']}")
            continue
        ep = episodes[job["id"]]
        ours = replay_job(ep, job, {"oracle": _driver_oracle})
        diff = {k: (off[k], ours[k]) for k in COMPARED if off[k] != ours[k]}
        if diff:
            problems.append(f"{where}: (official, imported) {diff}")
            continue
        for turn, (rel, frame) in enumerate(zip(off["images"], ours["frames"], strict=True)):
            if coco:
                view = off["views"][turn]
                if (tuple(view["size"]), view["mode"], view["sha256"]) != pil_pixels(ep.frames[frame]):
                    problems.append(f"{where} turn {turn}: official view {view} differs from frame {frame}")
                if view["box"] is None and ep.frames[frame] != (test_dir / rel).read_bytes():
                    problems.append(f"{where} turn {turn}: the uncropped view is not the image file")
            elif ep.frames[frame] != (test_dir / rel).read_bytes():
                problems.append(f"{where} turn {turn}: frame {frame} is not {rel}")
        label = "oracle-letters" if job.get("answers") == _oracle_letters(ep) else job["policy"]
        if label in seen:
            seen[label] += 1
    assert not problems, f"{len(problems)}/{len(jobs)} jobs disagree:\n" + "\n".join(problems[:10])
    return seen


@requires_official
def test_official_environment_and_imported_episodes_agree(release: Release):
    seen = _compare_with_official(release.name, release.test_dir, release.imported, release.records)
    assert all(count >= len(release.records) for count in seen.values()), seen


# --------------------------------------------------------------------------- records in the authors' style


def _png(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _jpeg(path: Path, seed: int, size: tuple[int, int], mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[1] // 8 + 2, size[0] // 8 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=90)


Authored = tuple[dict[int, dict[str, Any]], dict[int, list[str]]]  # records; the paths of their frames, in order


def _write(test_dir: Path, name: str, records: list[dict[str, Any]], paths: dict[int, list[str]]) -> Authored:
    test_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (test_dir / f"{name}_preprocessed.jsonl").write_text(lines, encoding="utf-8")
    return {r["id"]: r for r in records}, paths


def _with_reference(paths: list[str], reference: str) -> list[str]:
    return paths if reference in paths else [*paths, reference]


MVPN_CATEGORIES = ["Selex whey protein drink peach.", "Selex sports whey protein powder peach.",
                   "Selex sports whey protein powder chocolate.", "Selex whey protein drink chocolate."]


def authors_mvp_n(test_dir: Path) -> Authored:
    """The §15 example (ids 3, 1, 5, 2; reference = the last view), one whose reference is another view (in a
    layout pb-build does not use, with an escaped brace), one whose valid_images is longer than num_images, and a
    single-view one."""
    base = {"prompt": "Could you name the object in this image?", "categories": MVPN_CATEGORIES,
            "answer": MVPN_CATEGORIES[3]}
    records = [
        {"id": 5, "image_template": "MVP-N/test/0012/0034/{image}_{informative}.png", "first_image": 3,
         "num_images": 4, "valid_images": [3, 1, 5, 2], "reference_image": 2,
         "options": ["Change the camera angle of the object.", "I do not know what is this object."], **base},
        {"id": 6, "image_template": "views/set_{{a}}/{image}-{informative}.png", "first_image": 7,
         "num_images": 3, "valid_images": [7, 8, 9], "reference_image": 4,
         "options": ["I cannot tell.", "Rotate the object."], **base},
        {"id": 7, "image_template": "MVP-N/test/0001/0002/{image}_{informative}.png", "first_image": 0,
         "num_images": 2, "valid_images": [0, 11, 12], "reference_image": 11,
         "options": ["Show the object from another angle.", "I cannot answer this question."], **base},
        {"id": 8, "image_template": "MVP-N/test/0001/0003/{image}_{informative}.png", "first_image": 4,
         "num_images": 1, "valid_images": [4], "reference_image": 4,
         "options": ["Please rotate the product.", "I cannot tell."], **base},
    ]
    paths = {}
    for rec in records:
        n, template = rec["num_images"], rec["image_template"]
        shown = [rec["first_image"], *rec["valid_images"][1:n]]
        turns = [template.format(image=f"{v:04d}", informative=int(k == n - 1)) for k, v in enumerate(shown)]
        paths[rec["id"]] = _with_reference(turns, template.format(image=f"{rec['reference_image']:04d}",
                                                                  informative=1))
        for k, path in enumerate(paths[rec["id"]]):
            _png(test_dir / path, rec["id"] * 10 + k)
    return _write(test_dir, "MVP-N", records, paths)


def authors_imagenet_c(test_dir: Path) -> Authored:
    """The §15 example, and one that starts at severity 3 with 3 images and a reference of severity 5."""
    base = {"categories": ["Perfume.", "Great_pyrenees.", "Alligator_lizard.", "Cello."], "answer": "Great_pyrenees."}
    records = [
        {"id": 2, "image_template": "ImageNet-C/gaussian_noise/{level}/n02111500/ILSVRC2012_val_00012345.JPEG",
         "first_image": 5, "num_images": 5, "reference_image": 1,
         "prompt": "Provide the classification of the object in the image.",
         "options": ["Denoise the image.", "I do not know what is this object.", "Increase image resolution.",
                     "Reduce brightness.", "Deblur the image."], "quality_answer": "Denoise the image.", **base},
        {"id": 9, "image_template": "inc/blur/{level}/x.jpg", "first_image": 3, "num_images": 3,
         "reference_image": 5, "prompt": "What is pictured in this image?",
         "options": ["Deblur the image.", "I cannot tell."], "quality_answer": "Deblur the image.", **base},
    ]
    paths = {}
    for rec in records:
        template, first = rec["image_template"], rec["first_image"]
        turns = [template.format(level=first - k) for k in range(rec["num_images"])]
        paths[rec["id"]] = _with_reference(turns, template.format(level=rec["reference_image"]))
        for k, path in enumerate(paths[rec["id"]]):
            _jpeg(test_dir / path, rec["id"] * 10 + k, (48, 40))
    return _write(test_dir, "ImageNet-C", records, paths)


COCO_BASE = {"first_image": 0, "num_images": 1, "reference_image": 0, "prompt": "Identify the object in this image.",
             "categories": ["Bowl.", "Sink.", "Cup.", "Toilet."], "answer": "Toilet."}


def authors_coco(test_dir: Path) -> Authored:
    """The §7 traces (the zoom one leaves the image on two sides), fractional steps and crops, two of them with
    running steps that never exhaust the axis in time (the last turn still shows the move), a greyscale image
    and a layout pb-build does not use."""
    image = "coco2014/val2014/COCO_val2014_{:012d}.jpg"
    records = [
        {"id": 0, "image_template": image.format(42),
         "options": [coco_geometry.LEFT, "I cannot answer this question.", coco_geometry.DOWN],
         "direction": "down_left",
         "granularity": 3, "horizontal_step": 40, "vertical_step": 30,
         "crop": {"top": 100, "left": 200, "height": 380, "width": 560}, **COCO_BASE},
        {"id": 1, "image_template": image.format(43), "options": ["I cannot tell.", coco_geometry.RIGHT],
         "direction": "right", "granularity": 4, "horizontal_step": 50, "vertical_step": 0,
         "crop": {"top": 120, "left": 100, "height": 400, "width": 300}, **COCO_BASE},
        {"id": 2, "image_template": image.format(44), "options": [coco_geometry.ZOOM, "I cannot tell."],
         "direction": "zoom", "granularity": 3, "horizontal_step": 40, "vertical_step": 30,
         "crop": {"top": 100, "left": 200, "height": 150, "width": 200}, **COCO_BASE},
        {"id": 3, "image_template": "other/place/photo.jpg",
         "options": [coco_geometry.ZOOM, "I do not know what is this object."], "direction": "zoom",
         "granularity": 3, "horizontal_step": 12.3, "vertical_step": 10,
         "crop": {"top": 100.5, "left": 120.2, "height": 40, "width": 50.7}, **COCO_BASE},
        {"id": 4, "image_template": image.format(46), "options": [coco_geometry.RIGHT, "I cannot tell."],
         "direction": "right", "granularity": 4, "horizontal_step": 13.7, "vertical_step": 0,
         "crop": {"top": 10.5, "left": 20.5, "height": 150.5, "width": 80.25}, **COCO_BASE},
        {"id": 5, "image_template": image.format(47),
         "options": [coco_geometry.UP, coco_geometry.RIGHT, "I cannot tell."], "direction": "up_right",
         "granularity": 3, "horizontal_step": 20, "vertical_step": 15,
         "crop": {"top": 90, "left": 10, "height": 200, "width": 150}, **COCO_BASE},
    ]
    sizes = [(600, 500), (520, 420), (600, 360), (320, 240), (200, 180), (240, 220)]
    for rec, size in zip(records, sizes, strict=True):
        _jpeg(test_dir / rec["image_template"], rec["id"], size, mode="L" if rec["id"] == 5 else "RGB")
    return _write(test_dir, "coco2014", records, {r["id"]: [r["image_template"]] for r in records})


AUTHORS = {"MVP-N": authors_mvp_n, "ImageNet-C": authors_imagenet_c, "coco2014": authors_coco}


@dataclass
class Authors:
    name: str
    test_dir: Path
    records: dict[int, dict[str, Any]]
    paths: dict[int, list[str]]
    episodes: dict[int, Episode]


@pytest.fixture(scope="module", params=sorted(AUTHORS))
def authors(request, tmp_path_factory) -> Authors:
    name = request.param
    test_dir = tmp_path_factory.mktemp(f"authors-{name}") / "test"
    records, paths = AUTHORS[name](test_dir)
    loaded = data.load(test_dir.parent, name)
    assert loaded.kind == "official" and not loaded.failures, loaded.failures
    episodes = {item.sample_id: item.episode for item in loaded.items}
    assert set(episodes) == set(records)
    return Authors(name, test_dir, records, paths, episodes)


def test_authors_records_import(authors: Authors):
    for sid, ep in authors.episodes.items():
        rec, paths = authors.records[sid], authors.paths[sid]
        assert ep.official is not None and ep.official.record == {k: v for k, v in rec.items() if k != "id"}
        assert [f.path for f in ep.official.files] == paths
        assert all(f.data == (authors.test_dir / f.path).read_bytes() for f in ep.official.files)
        assert play(ep, oracle).correct or sid in (3, 4) and authors.name == "coco2014", sid
        if authors.name != "coco2014":  # one frame per turn, then the reference when it is not a turn's frame
            n = rec["num_images"]
            assert [st.frame for st in ep.states] == list(range(n)) and ep.max_steps == n
            assert [f for f in ep.frames] == [(authors.test_dir / p).read_bytes() for p in paths]
            assert ep.reference_frame == paths.index(paths[-1]) and len(ep.frames) in (n, n + 1)
    eps = authors.episodes
    if authors.name == "MVP-N":
        assert eps[5].key == "mvp-n/test/0012/0034" and eps[6].key == "mvp-n/id-6"
        assert eps[5].reference_frame == 3 and eps[6].reference_frame == 3 and eps[7].reference_frame == 1
    if authors.name == "ImageNet-C":
        assert eps[2].key == "imagenet-c/n02111500/ILSVRC2012_val_00012345.JPEG" and eps[2].reference_frame == 4
        assert eps[9].key == "imagenet-c/id-9" and eps[9].reference_frame == 3
    if authors.name == "coco2014":
        assert eps[0].key == "coco/val2014/42" and eps[3].key == "coco/id-3"
        assert len(eps[0].states) == 9 and eps[0].max_steps == 6 and eps[0].reference_frame == 9
        zoom = eps[2]  # §7: the last view (40, -20, 560, 370) leaves the 600x360 image at the top and the bottom
        with Image.open(io.BytesIO(zoom.frames[3])) as view:
            pixels = np.asarray(view)
        assert pixels.shape[:2] == (390, 520) and not pixels[:20].any() and not pixels[-10:].any()
        assert pixels[20:-10].all(axis=-1).any()
        # fractional steps: the move is still shown at the last turn, where it leads nowhere (the episode ends)
        for sid in (3, 4):
            last = len(eps[sid].states) - 1
            st = eps[sid].states[last]
            assert len(eps[sid].states) == eps[sid].max_steps and st.valid and st.targets == (last,) * len(st.valid)


@requires_official
def test_authors_records_play_like_the_official_environment(authors: Authors):
    seen = _compare_with_official(authors.name, authors.test_dir, authors.episodes, authors.records)
    assert all(count >= len(authors.records) for count in seen.values()), seen
