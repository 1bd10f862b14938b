"""ROD (Realistic-Occlusion-Dataset): name parsing, sweeps, the state machine, releases, the official environment
and bad input.

No real ROD sample is public in the project, so every raw tree is made here: small JPEG/PNG sweeps written with
OpenCV under the assumed ROD names (``natural_bluebl_greenr-banana-s{k}.jpg``), with and without class folders
(see :mod:`pb_build.raw.rod` for the layout assumptions). Each frame is distinct (a per-sweep background and a
bar at a per-position offset), so frames can be told apart by their bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import huggingface_hub
import numpy as np
import pytest
from click.testing import CliRunner
from datasets import load_dataset
from hub_emulator import Entry, HubHandler, HubServer, Repo

from pb_build.build import SourceJob, build_release
from pb_build.builders import rod
from pb_build.cli import main as cli_main
from pb_build.episode import Episode
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.raw import checksums
from pb_build.raw import download as raw_download
from pb_build.raw import rod as raw
from pb_build.replay import Replay, oracle, play
from pb_build.verify import verify_release
from pb_build.writers.native import from_row, read_rows

try:
    from official import replay_job, requires_official, run_official_report
except ImportError:  # tests/ imported as a package
    from tests.official import replay_job, requires_official, run_official_report

NAME = "Realistic-Occlusion-Dataset"
JSONL = f"test/{NAME}_preprocessed.jsonl"
BANANA = "natural_bluebl_greenr-banana"
CUP = "natural_redbl_bluebl-cup"
HAT = "dim_redcb_greenr-cowboy_hat"
VASE = "natural_bluebl_redbl-vase"


# ----------------------------------------------------------------------------------------------------------------
# Raw trees.


def frame_image(sweep: str, k: int, size: tuple[int, int] = (40, 30)) -> np.ndarray:
    """A small BGR image unique to (sweep, position)."""
    seed = int.from_bytes(hashlib.sha256(sweep.encode()).digest()[:3], "big")
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (seed & 255, (seed >> 8) & 255, (seed >> 16) & 255)
    x = 1 + 2 * k
    cv2.rectangle(img, (x, 2), (x + 2, h - 3), (255, 255, 255), -1)
    return img


def make_sweep(root: Path, name: str, folder: str | None = None, skip: tuple[int, ...] = (), ext: str = ".jpg",
               positions: range = range(14), size: tuple[int, int] = (40, 30)) -> Path:
    """Write a sweep ``<name>-s<k><ext>`` (k in ``positions`` minus ``skip``) into ``root[/folder]``."""
    where = root / folder if folder else root
    where.mkdir(parents=True, exist_ok=True)
    for k in positions:
        if k in skip:
            continue
        ok, buf = cv2.imencode(ext.lower(), frame_image(name, k, size))
        assert ok
        (where / f"{name}-s{k}{ext}").write_bytes(buf.tobytes())
    return where


def make_tree(root: Path) -> Path:
    """Four sweeps: banana lacking s6 (class folder), cup complete (class folder), cowboy hat lacking s3 as PNG
    directly in the raw folder, vase in a folder that is not a class folder with upper-case suffixes."""
    make_sweep(root, BANANA, "banana", skip=(6,))
    make_sweep(root, CUP, "cup")
    make_sweep(root, HAT, None, skip=(3,), ext=".png")
    make_sweep(root, VASE, "rod_1", ext=".JPG")
    (root / "README.txt").write_text("not an image")
    (root / "banana" / "._natural_bluebl_greenr-banana-s1.jpg").write_bytes(b"AppleDouble")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "raw")


def build(raw_dir: Path, out: Path, workers: int = 1, skip_bad: bool = False, **config: Any) -> Path:
    build_release(out, [SourceJob(rod, rod.Config(**config), raw_dir)], workers=workers, progress=False,
                  skip_bad=skip_bad)
    return out


def records(release: Path) -> list[dict]:
    return [json.loads(line) for line in (release / JSONL).read_text(encoding="utf-8").splitlines()]


def episodes(release: Path) -> dict[int, Episode]:
    entry = read_manifest(release)["sources"][0]
    return {row["id"]: from_row(row) for row in read_rows([release / p for p in entry["files"]["native"]])}


def by_sweep(release: Path) -> dict[str, tuple[dict, Episode]]:
    eps = episodes(release)
    return {eps[r["id"]].meta["sweep"]: (r, eps[r["id"]]) for r in records(release)}


def option(ep: Episode, direction: str) -> str:
    return next(o for o in ep.options if o.endswith(f"to the {direction}."))


def walk(ep: Episode, answers: list[str]) -> Replay:
    rep = Replay(ep)
    while not rep.done:
        rep.answer(answers[min(rep.num_turns, len(answers) - 1)])
    return rep


# ----------------------------------------------------------------------------------------------------------------
# Names, sweeps and occluder descriptions.


@pytest.mark.parametrize(("rel", "sweep", "category", "position", "occluders"), [
    ("banana/natural_bluebl_greenr-banana-s6.jpg", BANANA, "banana", 6, ("bluebl", "greenr")),
    ("natural_bluebl_greenr-banana-s13.JPEG", BANANA, "banana", 13, ("bluebl", "greenr")),
    ("cowboy hat/dim_redcb-cowboy hat-s0.png", "dim_redcb-cowboy hat", "cowboy hat", 0, ("redcb",)),
    ("rod_0/x_a_b_c-Cowboy-Hat-s2.jpg", "x_a_b_c-Cowboy-Hat", "cowboy hat", 2, ("a", "b", "c")),
    ("cowboy_hat/dim_redcb-cowboyhat-s10.jpg", "dim_redcb-cowboyhat", "cowboy hat", 10, ("redcb",)),
])
def test_parse_name(tmp_path: Path, rel: str, sweep: str, category: str, position: int, occluders: tuple) -> None:
    img = raw.parse_name(tmp_path / rel, tmp_path)
    assert (img.sweep, img.category, img.position, img.occluders, img.rel) == (sweep, category, position,
                                                                                occluders, rel)
    assert img.suffix == Path(rel).suffix.lower()


@pytest.mark.parametrize(("rel", "cause"), [
    ("banana/banana.jpg", "does not follow"),
    ("natural-banana-s3.jpg", "does not follow"),  # no occluder token
    ("natural_bluebl_greenr-banana-sX.jpg", "does not follow"),
    ("natural_bluebl_greenr-banana.jpg", "does not follow"),
    ("natural_blue{bl}-banana-s1.jpg", "does not follow"),
    ("natural_bluebl_greenr-apple-s3.jpg", "unknown class 'apple'"),
    ("cup/natural_bluebl_greenr-banana-s3.jpg", "the file name says class 'banana' but its class folder is 'cup'"),
])
def test_parse_name_rejects(tmp_path: Path, rel: str, cause: str) -> None:
    with pytest.raises(BadRecord, match=cause) as err:
        raw.parse_name(tmp_path / rel, tmp_path)
    assert str(err.value).startswith(str(tmp_path / rel) + ": ")


def test_fill_source_is_nearest_circular_and_prefers_the_next_position() -> None:
    everything = set(range(14))
    assert raw.fill_source(6, everything - {6}) == 7
    assert raw.fill_source(13, everything - {13}) == 0
    assert raw.fill_source(6, everything - {6, 7}) == 5
    assert raw.fill_source(6, everything - {5, 6, 7}) == 8
    assert raw.fill_source(3, {0}) == 0


def test_builtin_descriptions() -> None:
    assert raw.builtin_description("bluebl") == "blue blocks"
    assert raw.builtin_description("RedCB") == "red cardboard"
    assert raw.builtin_description("greyblocks") == "grey blocks"
    assert raw.builtin_description("greenr") is None
    assert raw.builtin_description("bl") is None


def write_table(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_occluder_table_lookup_order(tmp_path: Path) -> None:
    table = raw.read_occluder_table(write_table(tmp_path / "occ.tsv", "# token<TAB>description\n\n"
                                                "BlueBl\tblue wooden blocks\n"
                                                "bluebl_redbl\tblue and red blocks\n"
                                                "greenr\tgreen rubber ring\n"))
    assert table.sha256 == hashlib.sha256((tmp_path / "occ.tsv").read_bytes()).hexdigest()
    img = lambda name: raw.parse_name(tmp_path / f"{name}-s0.jpg", tmp_path)  # noqa: E731
    sweep = lambda name: raw.group_sweeps([img(name)], max_missing=13)[0]  # noqa: E731
    assert raw.describe(sweep("natural_bluebl_redbl-vase"), table) == ("blue and red blocks", "table:bluebl_redbl")
    assert raw.describe(sweep(BANANA), table) == ("blue wooden blocks", "table:bluebl")
    assert raw.describe(sweep("natural_greenr_bluebl-cup"), table) == ("green rubber ring", "table:greenr")
    assert raw.describe(sweep("natural_redcb_greenr-cup"), table) == ("red cardboard", "built-in")
    assert raw.describe(sweep(BANANA), None) == ("blue blocks", "built-in")
    assert raw.describe(sweep("natural_greenr_bluebl-cup"), None) == ("occluder", "neutral")
    bom = write_table(tmp_path / "bom.tsv", "\ufeffgreenr\tgreen rubber ring\n")
    assert raw.read_occluder_table(bom).entries == {"greenr": "green rubber ring"}


@pytest.mark.parametrize(("text", "line", "cause"), [
    ("bluebl blue blocks\n", 1, "expected '<token><TAB><description>'"),
    ("# c\nbluebl\tmove it to the left\n", 2, "contains 'to the left'"),
    ("bluebl\tblocks I cannot name\n", 1, "contains 'cannot'"),
    ("bluebl\tblue, red\n", 1, "must be letters, digits"),
    ("bluebl\tblue.\n", 1, "must be letters, digits"),
    ("bluebl\tblue blocks\nBLUEBL\tred blocks\n", 2, "listed twice"),
    ("blue-bl\tblue blocks\n", 1, "is not an occluder token"),
    ("bluebl\t\n", 1, "expected '<token><TAB><description>'"),
])
def test_bad_occluder_tables(tmp_path: Path, text: str, line: int, cause: str) -> None:
    path = write_table(tmp_path / "occ.tsv", text)
    with pytest.raises(BadRecord, match=cause) as err:
        raw.read_occluder_table(path)
    assert err.value.location == f"{path}:{line}"
    with pytest.raises(BadRecord, match="no entries"):
        raw.read_occluder_table(write_table(tmp_path / "empty.tsv", "# nothing\n"))


def test_config_validation(tmp_path: Path) -> None:
    for kwargs, flag in [({"occluders": str(tmp_path / "nope.tsv")}, "--occluders"), ({"max_missing": 13},
                         "--max-missing"), ({"max_side": 5}, "--max-side"), ({"jpeg_quality": 0}, "--jpeg-quality")]:
        with pytest.raises(PbBuildError, match=flag):
            rod.Config(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Releases and episodes.


def test_release_verifies_loads_and_matches_the_raw_tree(tree: Path, tmp_path: Path) -> None:
    out = build(tree, tmp_path / "rel")
    assert verify_release(out).problems == []
    recs = records(out)
    assert [r["id"] for r in recs] == [0, 1, 2, 3]
    assert [r["answer"] for r in recs] == ["Banana.", "Cowboy hat.", "Cup.", "Vase."]  # by (class, sweep)
    ds = load_dataset(str(out), "rod", split="test")
    assert len(ds) == 4 and ds[2]["frames"][0].size == (40, 30)
    assert [json.loads(row["official_record"]) for row in ds] == recs
    sweeps = by_sweep(out)
    for sweep, folder, ext in ((BANANA, "banana", ".jpg"), (CUP, "cup", ".jpg"), (HAT, "cowboy_hat", ".png"),
                               (VASE, "vase", ".jpg")):
        rec, ep = sweeps[sweep]
        assert rec["image_template"] == f"{NAME}/{folder}/{sweep}-s{{image}}{ext}"
        assert (rec["first_image"], rec["num_images"], rec["reference_image"]) == (7, 14, 0)
        assert ep.max_steps == 14 and ep.reference_frame == 0 and ep.hint == rod.HINT
        assert ep.meta["reference_prompt"] == "What type of object is in the image?"
        occluder = ep.meta["occluder"]
        assert sorted(rec["options"]) == sorted([f"Move the {occluder} to the left.",
                                                 f"Move the {occluder} to the right.", ep.options[ep.abstain[0]]])
        assert ep.options[ep.abstain[0]] in rod.ABSTAIN
        assert rec["prompt"] in [q.format(occluder=occluder) for q in rod.QUESTIONS]
        assert len(set(rec["categories"])) == 4 and rec["answer"] in rec["categories"]
        assert {c[:-1].lower() for c in rec["categories"]} <= set(raw.CLASSES)
        for k in range(14):
            exported = (out / "test" / rec["image_template"].format(image=k)).read_bytes()
            assert exported == ep.frames[k]
            source = ep.meta["raw_files"][k]
            if source is not None:
                assert exported == (tree / source).read_bytes(), "frames are the raw bytes by default"
    assert {s: sweeps[s][1].meta["occluder"] for s in sweeps} == {
        BANANA: "blue blocks", CUP: "red blocks", HAT: "red cardboard", VASE: "blue blocks"}
    # Missing positions: a copy of the next position, recorded in meta and in the plan notes.
    assert sweeps[BANANA][1].meta["filled"] == {"6": 7} and sweeps[HAT][1].meta["filled"] == {"3": 4}
    assert sweeps[BANANA][1].frames[6] == sweeps[BANANA][1].frames[7]
    assert sweeps[HAT][1].frames[3] == sweeps[HAT][1].frames[4] != sweeps[HAT][1].frames[2]
    assert sweeps[CUP][1].meta["filled"] == {} and len(set(sweeps[CUP][1].frames)) == 14
    entry = read_manifest(out)["sources"][0]
    assert entry["notes"]["missing_positions"] == {BANANA: [6], HAT: [3]}
    assert entry["notes"]["occluder_table"] is None
    assert len(entry["raw"]["files"]) == 13 + 14 + 13 + 14
    assert entry["keys"] == [f"rod/{s}" for s in (BANANA, HAT, CUP, VASE)]


def test_state_machine_first_turn_and_circular_moves(tree: Path, tmp_path: Path) -> None:
    sweeps = by_sweep(build(tree, tmp_path / "rel"))
    _, cup = sweeps[CUP]
    first = cup.states[cup.initial_state]
    assert first.frame == 7 and not first.answer_valid and len(first.valid) == 2
    assert all(s.answer_valid for i, s in enumerate(cup.states) if i != cup.initial_state)
    assert len(cup.states) == 15  # the first turn + one state per position
    # Answering at once is wrong: only the moves are valid at the first turn.
    rep = walk(cup, [cup.answer])
    assert rep.num_turns == 1 and not rep.correct and rep.turns[0].category_verdict == "wrong"
    # ... but the same frame 7 reached later accepts the answer.
    rep = walk(cup, [option(cup, "left"), option(cup, "right"), cup.answer])
    assert [t.frame for t in rep.turns] == [7, 6, 7] and rep.correct
    left = walk(cup, [option(cup, "left")])
    assert [t.frame for t in left.turns] == [7, 6, 5, 4, 3, 2, 1, 0, 13, 12, 11, 10, 9, 8] and not left.correct
    right = walk(cup, [option(cup, "right")])
    assert [t.frame for t in right.turns] == [7, 8, 9, 10, 11, 12, 13, 0, 1, 2, 3, 4, 5, 6]
    for direction in ("left", "right"):
        rep = walk(cup, [option(cup, direction)] * 7 + [cup.answer])
        assert rep.correct and rep.num_turns == 8 and rep.turns[-1].frame == 0


def test_official_rewrite_of_banana_s6_is_reproduced(tree: Path, tmp_path: Path) -> None:
    """After a LEFT the official environment opens s5 for position 6 (s5 is shown twice); otherwise s7."""
    sweeps = by_sweep(build(tree, tmp_path / "rel"))
    _, banana = sweeps[BANANA]
    assert banana.meta["official_rewrite"] == {"6": {"LEFT": 5, "RIGHT": 7}}
    assert len(banana.states) == 16  # position 6 has one state per way of arriving
    left = walk(banana, [option(banana, "left")])
    assert [t.frame for t in left.turns] == [7, 5, 5, 4, 3, 2, 1, 0, 13, 12, 11, 10, 9, 8]
    right = walk(banana, [option(banana, "right")])
    assert [t.frame for t in right.turns] == [7, 8, 9, 10, 11, 12, 13, 0, 1, 2, 3, 4, 5, 7]
    back = walk(banana, [option(banana, "left"), option(banana, "right"), option(banana, "left")] + [banana.answer])
    assert [t.frame for t in back.turns] == [7, 5, 7, 5] and back.correct
    # Other sweeps are not rewritten, even with a missing s3.
    assert sweeps[HAT][1].meta["official_rewrite"] == {} and len(sweeps[HAT][1].states) == 15


def test_resized_frames(tree: Path, tmp_path: Path) -> None:
    make_sweep(tree, "natural_redbl_x-plate", "plate", size=(200, 120))
    out = build(tree, tmp_path / "rel", max_side=64, jpeg_quality=80)
    assert verify_release(out).problems == []
    sweeps = by_sweep(out)
    rec, ep = sweeps[HAT]
    assert rec["image_template"].endswith("-s{image}.jpg"), "resized PNG sweeps are exported as JPEG"
    plate = cv2.imdecode(np.frombuffer(sweeps["natural_redbl_x-plate"][1].frames[0], np.uint8), cv2.IMREAD_COLOR)
    assert plate.shape[:2] == (38, 64)
    small = cv2.imdecode(np.frombuffer(ep.frames[0], np.uint8), cv2.IMREAD_COLOR)
    assert small.shape[:2] == (30, 40), "smaller images are re-encoded, not enlarged"
    assert read_manifest(out)["sources"][0]["notes"]["frames"] == "JPEG q80, longer side <= 64"


def test_occluder_table_in_a_build(tree: Path, tmp_path: Path) -> None:
    make_sweep(tree, "natural_greenr_bluebl-vase", "vase")
    neutral = by_sweep(build(tree, tmp_path / "neutral"))["natural_greenr_bluebl-vase"][1]
    assert neutral.meta["occluder"] == "occluder" and "Move the occluder to the left." in neutral.options
    table = write_table(tmp_path / "occ.tsv", "greenr\tgreen rubber ring\nbluebl_greenr\tblue and green blocks\n")
    out = build(tree, tmp_path / "rel", occluders=str(table))
    assert verify_release(out).problems == []
    sweeps = by_sweep(out)
    assert sweeps["natural_greenr_bluebl-vase"][1].meta["occluder"] == "green rubber ring"
    assert sweeps[BANANA][1].meta["occluder"] == "blue and green blocks"
    assert sweeps[BANANA][1].meta["occluder_source"] == "table:bluebl_greenr"
    assert "Move the green rubber ring to the left." in sweeps["natural_greenr_bluebl-vase"][0]["options"]
    notes = read_manifest(out)["sources"][0]["notes"]
    digest = hashlib.sha256(table.read_bytes()).hexdigest()
    # the table is recorded by file name and content hash, never by a machine path
    assert notes["occluder_table"] == {"path": "occ.tsv", "sha256": digest, "entries": 2}
    assert read_manifest(out)["sources"][0]["tables"] == {"occluders": {"file": "occ.tsv", "sha256": digest}}
    assert str(tmp_path) not in (out / "manifest.json").read_text()


def test_same_seed_is_byte_identical_and_other_seed_differs(tree: Path, tmp_path: Path) -> None:
    a = build(tree, tmp_path / "a")
    b = build(tree, tmp_path / "b", seed=0)
    c = build(tree, tmp_path / "c", seed=1)
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    assert (a / "SHA256SUMS").read_bytes() != (c / "SHA256SUMS").read_bytes()
    assert [r["image_template"] for r in records(a)] == [r["image_template"] for r in records(c)]
    assert [(r["prompt"], r["options"], r["categories"]) for r in records(a)] != \
        [(r["prompt"], r["options"], r["categories"]) for r in records(c)]


def test_a_sample_does_not_depend_on_its_neighbours(tree: Path, tmp_path: Path) -> None:
    before = {r["image_template"]: {k: v for k, v in r.items() if k != "id"} for r in records(build(tree, tmp_path
                                                                                                  / "a"))}
    make_sweep(tree, "natural_redbl_x-baseball", "baseball")
    after = {r["image_template"]: {k: v for k, v in r.items() if k != "id"} for r in records(build(tree, tmp_path
                                                                                                 / "b"))}
    assert len(after) == len(before) + 1
    assert all(after[t] == before[t] for t in before)


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one clear error naming the file and cause, nothing written; or counted skips with skip_bad.


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _forge_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b"\xff\xc0")  # baseline SOF0: length, precision, height, width
    data[at + 5:at + 9] = (30000).to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))


BAD_CASES = {
    # name: (damage, file named in the error (relative to raw), cause, sweeps lost, skipped records)
    "unparseable name": (lambda r: (r / "banana" / "IMG_0042.jpg").write_bytes(b"x"), "banana/IMG_0042.jpg",
                         "does not follow", 0, 1),
    "unknown class": (lambda r: (r / "natural_bluebl_greenr-apple-s3.jpg").write_bytes(b"x"),
                      "natural_bluebl_greenr-apple-s3.jpg", "unknown class 'apple'", 0, 1),
    "position out of range": (lambda r: make_sweep(r, CUP, "cup", positions=range(14, 15)), f"cup/{CUP}-s14.jpg",
                              "outside the 14-position sweep", 1, 1),
    "duplicate position": (lambda r: make_sweep(r, CUP, "extra", positions=range(3, 4)), f"extra/{CUP}-s3.jpg",
                           f"duplicate of cup/{CUP}-s3.jpg", 1, 1),
    "too many missing": (lambda r: [(r / "cup" / f"{CUP}-s{k}.jpg").unlink() for k in (2, 9)], f"cup/{CUP}-s*",
                         "missing s2, s9\\); at most 1 may be missing", 1, 1),
    "missing reference": (lambda r: (r / "cup" / f"{CUP}-s0.jpg").unlink(), f"cup/{CUP}-s*",
                          "position s0 \\(the unoccluded reference view\\) is missing", 1, 1),
    "mixed file types": (lambda r: [(r / "cup" / f"{CUP}-s5.jpg").unlink(), make_sweep(r, CUP, "cup", ext=".png",
                                    positions=range(5, 6))], f"cup/{CUP}-s0.jpg", "mixes file types .jpg, .png", 1, 1),
    "garbage image": (lambda r: (r / "cup" / f"{CUP}-s4.jpg").write_bytes(b"\xff\xd8 not a jpeg"),
                      f"cup/{CUP}-s4.jpg", "image does not decode", 1, 1),
    "forged 30000x30000 header": (lambda r: _forge_size(r / "cup" / f"{CUP}-s7.jpg"), f"cup/{CUP}-s7.jpg",
                                  "image declares 30000x30000 pixels, over the limit", 1, 1),
    "truncated image": (lambda r: _truncate(r / "banana" / f"{BANANA}-s9.jpg"), f"banana/{BANANA}-s9.jpg",
                        "image does not decode", 1, 1),
    "class folder contradicts name": (lambda r: make_sweep(r, "natural_redbl_x-plate", "vase"),
                                      "vase/natural_redbl_x-plate-s0.jpg", "says class 'plate' but its class folder",
                                      0, 14),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_stops_with_file_and_cause(tree: Path, tmp_path: Path, case: str) -> None:
    damage, rel, cause, _, _ = BAD_CASES[case]
    damage(tree)
    out = tmp_path / "rel"
    with pytest.raises(BadRecord, match=cause) as err:
        build(tree, out)
    assert str(err.value.path) == str(tree / rel)
    assert str(err.value).startswith(str(tree / rel) + ": ")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"], "nothing half-written"


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_counted_with_skip_bad(tree: Path, tmp_path: Path, case: str) -> None:
    damage, rel, cause, lost, n_skipped = BAD_CASES[case]
    damage(tree)
    out = build(tree, tmp_path / "rel", skip_bad=True)
    entry = read_manifest(out)["sources"][0]
    assert entry["counts"]["skipped"] == n_skipped == len(entry["skipped"])
    assert any(s["path"] == rel for s in entry["skipped"]), entry["skipped"]
    assert all(s["cause"] for s in entry["skipped"])
    assert entry["counts"]["samples"] == 4 - lost
    assert verify_release(out).problems == []


def test_symlinks_leaving_raw_need_follow_symlinks(tree: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    frame = tree / "cup" / f"{CUP}-s5.jpg"
    outside = tmp_path / "elsewhere.jpg"
    frame.rename(outside)
    frame.symlink_to(outside)
    monkeypatch.setenv("PB_BUILD_FOLLOW_SYMLINKS", "0")  # also undoes what --follow-symlinks sets below
    with pytest.raises(BadRecord, match=r"-s5\.jpg: is a symlink leading outside --raw .*--follow-symlinks"):
        build(tree, tmp_path / "rel")
    assert not (tmp_path / "rel").exists()
    result = CliRunner().invoke(cli_main, ["rod", "--raw", str(tree), "--out", str(tmp_path / "cli"), "--quiet",
                                           "--follow-symlinks"])
    assert result.exit_code == 0, result.output
    assert verify_release(tmp_path / "cli").problems == []


def test_empty_raw_folder(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(PbBuildError, match="no ROD images"):
        build(tmp_path / "raw", tmp_path / "rel")
    with pytest.raises(PbBuildError, match="does not exist"):
        build(tmp_path / "missing", tmp_path / "rel")


# ----------------------------------------------------------------------------------------------------------------
# Fetching from a local HTTP server (127.0.0.1 only).


class FlakyHub(HubHandler):
    """The Hub emulator, failing the next ``server.flaky`` file downloads with HTTP 503."""

    def h_resolve(self, repo: str, rev: str, path: str) -> None:
        if self.command == "GET" and self.server.flaky > 0:  # type: ignore[attr-defined]
            self.server.flaky -= 1  # type: ignore[attr-defined]
            self._error(503, "try again later")
            return
        super().h_resolve(repo, rev, path)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The Hub emulator on 127.0.0.1 holding an (empty) ROD dataset repo; checksum tables from ``tmp/sums``."""
    server = HubServer({"hf_test_read"})  # the emulator checks a token on every call
    server.RequestHandlerClass = FlakyHub
    server.flaky = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    c = huggingface_hub.constants
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(c, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_read")
    monkeypatch.setattr(raw_download, "RETRY_DELAY_S", 0.0)
    (tmp_path / "sums").mkdir()
    monkeypatch.setattr(checksums, "TABLES", tmp_path / "sums")
    yield server
    server.shutdown()
    server.server_close()


def publish(hub: HubServer, files: dict[str, bytes], sums: Path | None = None) -> None:
    """Put ``files`` into the emulator's ROD repo (as LFS files) and, with ``sums``, write their checksum table."""
    state = hub.state
    repo = state.repos.setdefault(raw.REPO_ID, Repo(private=False))
    entries = {}
    for name, data in files.items():
        oid = hashlib.sha256(data).hexdigest()
        state.lfs[oid] = data
        entries[name] = Entry(size=len(data), lfs=oid)
    repo.branches["main"] = state.new_commit(repo, repo.branches.get("main"), "add", "", entries)
    if sums is not None:
        sums.write_text("".join(f"{n}\t{len(d)}\t{hashlib.sha256(d).hexdigest()}\n" for n, d in files.items()))


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _archives(src: Path) -> dict[str, bytes]:
    files = sorted(p for p in src.rglob("*") if p.is_file())
    half = len(files) // 2
    return {"rod_0.tar.gz": _tar({f"rod/{p.relative_to(src).as_posix()}": p.read_bytes() for p in files[:half]}),
            "rod_1.tar.gz": _tar({f"rod/{p.relative_to(src).as_posix()}": p.read_bytes() for p in files[half:]})}


def test_fetch_downloads_from_the_hub_unpacks_and_builds(hub: HubServer, tmp_path: Path) -> None:
    publish(hub, _archives(make_tree(tmp_path / "src")), tmp_path / "sums" / "rod.tsv")
    hub.flaky = 2  # type: ignore[attr-defined]  # two 503s: retried with backoff
    cache = tmp_path / "cache"
    images = raw.fetch(cache, progress=False)
    assert hub.flaky == 0  # type: ignore[attr-defined]
    assert images == cache / "rod" / "images"
    assert sorted(p.name for p in images.iterdir()) == ["rod_0", "rod_1"]
    assert (cache / "rod" / "hub").is_dir(), "downloads live in the huggingface_hub cache layout"
    out = build(images, tmp_path / "rel")
    assert verify_release(out).problems == [] and len(records(out)) == 4
    hub.shutdown()  # a second fetch reuses the cache (the server is no longer needed)
    assert raw.fetch(cache, progress=False) == images


def test_fetch_checks_the_checksum_table(hub: HubServer, tmp_path: Path) -> None:
    archives = _archives(make_tree(tmp_path / "src"))
    publish(hub, archives, tmp_path / "sums" / "rod.tsv")
    publish(hub, {"rod_0.tar.gz": archives["rod_1.tar.gz"]})  # the Hub now serves other bytes than recorded
    with pytest.raises(PbBuildError, match=r"rod_0.tar.gz: .*(bytes, expected|sha256 differs).*delete it"):
        raw.fetch(tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "rod" / "images" / "rod_0").exists()


def test_fetch_names_the_url_of_a_missing_file(hub: HubServer, tmp_path: Path) -> None:
    publish(hub, {"rod_0.tar.gz": _tar({})})
    with pytest.raises(PbBuildError, match=r"/datasets/arielnlee/Realistic-Occlusion-Dataset/resolve/main/"
                                           r"rod_1\.tar\.gz: HTTP 404"):
        raw.fetch(tmp_path / "cache", progress=False)


def test_fetch_gives_up_after_retries(hub: HubServer, tmp_path: Path) -> None:
    publish(hub, {"rod_0.tar.gz": _tar({}), "rod_1.tar.gz": _tar({})})
    hub.flaky = 100  # type: ignore[attr-defined]
    with pytest.raises(PbBuildError, match=r"rod_0\.tar\.gz: HTTP 503"):
        raw.fetch(tmp_path / "cache", progress=False)
    assert hub.flaky == 100 - (raw_download.DEFAULT_RETRIES + 1)  # type: ignore[attr-defined]


def test_fetch_rejects_unsafe_archives(hub: HubServer, tmp_path: Path) -> None:
    publish(hub, {"rod_0.tar.gz": _tar({"../evil-s1.jpg": b"x"}), "rod_1.tar.gz": _tar({})})
    with pytest.raises(PbBuildError, match="unsafe member path"):
        raw.fetch(tmp_path / "cache", progress=False)
    assert not (tmp_path / "evil-s1.jpg").exists()
    assert not (tmp_path / "cache" / "rod" / "images" / "rod_0").exists()


def test_checksum_tables_parse() -> None:
    for source in ("rod", "coco"):
        assert checksums.read_table(source), source
    assert checksums.read_table("rod")["rod_0.tar.gz"].size == 1_350_865_094


# ----------------------------------------------------------------------------------------------------------------
# The official environment against our replay of the episodes read back from the native shards.


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("rod-official")
    return build(make_tree(base / "raw"), base / "rel")


def _jobs(recs: list[dict], eps: dict[int, Episode]) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    for rec in recs:
        sid, ep = rec["id"], eps[rec["id"]]
        left, right, answer = option(ep, "left"), option(ep, "right"), ep.answer
        letter = {text: chr(65 + i) for i, text in enumerate(rec["options"])}
        cat_letter = chr(65 + 3 + rec["categories"].index(answer))
        wrong = next(c for c in rec["categories"] if c != answer)
        oracle_answers = [t.answer for t in play(ep, oracle).turns]
        jobs += [
            {"id": sid, "policy": "letters", "answers": oracle_answers, "tag": "oracle"},
            {"id": sid, "policy": "letters", "answers": [left], "tag": "left"},
            {"id": sid, "policy": "letters", "answers": [right], "tag": "right"},
            {"id": sid, "policy": "letters", "answers": [answer], "tag": "first"},
            {"id": sid, "policy": "proactive"},
            {"id": sid, "policy": "abstain"},
            {"id": sid, "policy": "reference", "reference": True},
            {"id": sid, "policy": "letters", "answers": [letter[left], letter[right].lower() + ".", letter[left],
                                                         cat_letter]},
            {"id": sid, "policy": "letters", "answers": [f"{letter[right]}. {right}", left, right, wrong]},
            {"id": sid, "policy": "letters", "answers": [cat_letter]},  # the answer's letter at the first turn
            {"id": sid, "policy": "letters", "answers": [left, left.rstrip(".")]},  # no period: mismatch
            {"id": sid, "policy": "letters", "answers": [right] * 6 + [f"{cat_letter}. {answer}"]},
            {"id": sid, "policy": "letters", "answers": [left, "Z"]},
            {"id": sid, "policy": "letters", "answers": [chr(65 + rec["categories"].index(answer))],
             "reference": True},
        ]
    return jobs


@pytest.fixture(scope="module")
def played(release: Path) -> list[tuple[dict, dict, dict, list[int | None]]]:
    recs, eps = records(release), episodes(release)
    jobs = _jobs(recs, eps)
    wire = [{k: v for k, v in job.items() if k != "tag"} for job in jobs]
    report = run_official_report(NAME, release / "test", wire)
    assert report["records"] == len(recs)
    out = []
    for job, off in zip(jobs, report["jobs"], strict=True):
        rec = recs[job["id"]]
        paths = {rec["image_template"].format(image=k): k for k in range(rec["num_images"])}
        out.append((job, off, replay_job(eps[job["id"]], job), [paths.get(p) for p in off["images"]]))
    return out


@requires_official
def test_official_environment_agrees_with_replay(played) -> None:
    problems = []
    for job, off, ours, frames in played:
        if off["error"] or off["image_errors"] or not off["stopped"] or None in frames:
            problems.append(f"{job}: {off['error']} {off['image_errors']} {off['images']}")
            continue
        got = {"num_turns": off["num_turns"], "correct_prediction": off["correct_prediction"],
               "max_steps": off["max_steps"], "frames": frames, "answers": off["answers"], "options": off["options"],
               "action_evaluations": off["action_evaluations"], "category_evaluations": off["category_evaluations"]}
        diff = {k: (got[k], ours[k]) for k in got if got[k] != ours[k]}
        if diff:
            problems.append(f"{job}: (official, replay) {diff}")
    assert not problems, f"{len(problems)}/{len(played)} jobs disagree:\n" + "\n".join(problems[:10])


@requires_official
def test_official_oracle_scores_100_percent_in_8_turns(played) -> None:
    oracle = [(job, off) for job, off, _, _ in played if job.get("tag") == "oracle"]
    assert len(oracle) == 4
    for job, off in oracle:
        assert off["correct_prediction"] is True and off["num_turns"] == 8, job
        assert off["action_evaluations"] == ["correct"] * 7 + ["mismatch"]
        assert off["category_evaluations"] == ["mismatch"] * 7 + ["correct"]


@requires_official
def test_official_moves_are_circular_and_banana_s6_is_rewritten(release: Path, played) -> None:
    recs = {r["id"]: r for r in records(release)}
    seen = {}
    for job, off, _, frames in played:
        if job.get("tag") in ("left", "right"):
            rec = recs[job["id"]]
            seen[(rec["image_template"].split("/")[-1].rsplit("-s", 1)[0], job["tag"])] = (off, frames)
    off, frames = seen[(BANANA, "left")]
    assert frames == [7, 5, 5, 4, 3, 2, 1, 0, 13, 12, 11, 10, 9, 8], "after a LEFT from 7, s5 is shown twice"
    assert off["images"][1] == off["images"][2] == f"{NAME}/banana/{BANANA}-s5.jpg"
    assert seen[(BANANA, "right")][1] == [7, 8, 9, 10, 11, 12, 13, 0, 1, 2, 3, 4, 5, 7]
    assert seen[(CUP, "right")][1] == [7, 8, 9, 10, 11, 12, 13, 0, 1, 2, 3, 4, 5, 6]
    assert seen[(HAT, "left")][1] == [7, 6, 5, 4, 3, 2, 1, 0, 13, 12, 11, 10, 9, 8]
    for off, _ in seen.values():
        assert off["num_turns"] == 14 and off["max_steps"] is True and off["correct_prediction"] is False
        assert off["action_evaluations"] == ["correct"] * 14


@requires_official
def test_official_first_turn_rejects_the_category(played) -> None:
    firsts = [off for job, off, _, _ in played if job.get("tag") == "first"]
    assert len(firsts) == 4
    for off in firsts:
        assert off["num_turns"] == 1 and off["correct_prediction"] is False
        assert off["category_evaluations"] == ["wrong"] and off["action_evaluations"] == ["mismatch"]
