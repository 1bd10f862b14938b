"""VSOD (OcclusionDataSet-MM20): raw reading, construction rules, releases, official equivalence and bad input.

No real MM20 sample is public in the project, so every test writes an MM20-style tree itself:
``Data/test/<segment>/<frame>.jpg`` written with OpenCV and one PASCAL-VOC XML per frame in
``Annotations/test/<segment>/``, plus a labels CSV. The official environment is driven through
``tests/official_driver.py`` (Python 3.12) and compared with our replay of the episodes read back from the
native parquet shards.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from datasets import load_dataset

from pb_build.build import SourceJob, build_release
from pb_build.builders import vsod
from pb_build.episode import Episode, State
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.raw import vsod as raw
from pb_build.replay import oracle, play
from pb_build.verify import verify_release
from pb_build.writers.native import from_row, read_rows

try:
    from official import replay_job, requires_official, run_official_report
except ImportError:  # tests/ imported as a package
    from tests.official import replay_job, requires_official, run_official_report

NAME = "OcclusionDataSet-MM20"
W, H = 64, 48

# Per segment: frame names and, per frame, the occluder boxes (x0, y0, x1, y1) of its XML.
FULL = [(0, 0, W, H)]
SEGMENTS: dict[str, tuple[list[str], list[list[tuple[int, int, int, int]]]]] = {
    # Unpadded 1-based names: natural order, not string order. First = index 6 (fully hidden, strong);
    # nearest unoccluded frame: index 8 (2 waits) rather than index 3 (3 rewinds).
    "seg_a": ([f"{i}.jpg" for i in range(1, 13)],
              [[], [], [], [], [(0, 0, 16, 48)], [(0, 0, 32, 48)], FULL, [(0, 0, 40, 48), (30, 0, 50, 10)],
               [], [], [], []]),
    # First = index 0 with 30 % hidden (not strong); the nearest unoccluded frame is index 8, one rewind away
    # (circular), rather than index 2 (two waits).
    "seg_b": ([f"{i:06d}.jpg" for i in range(9)],
              [[(0, 0, 32, 29)], [(0, 0, 16, 48)], [], [], [], [], [], [(0, 0, 8, 8)], []]),
    # No occluded frame: labelled but ineligible.
    "seg_c": ([f"{i:04d}.jpg" for i in range(5)], [[] for _ in range(5)]),
    # Not labelled.
    "seg_d": ([f"{i:04d}.jpg" for i in range(4)], [[], [(0, 0, 10, 10)], [], []]),
    # Ties: indices 2 and 3 are equally hidden (60 %) -> the earlier, 2; unoccluded 0 and 4 are both 2 moves
    # away -> the one reached by waiting, 4.
    "seg_e": ([f"frame_{i:03d}.jpg" for i in range(5)],
              [[], [(0, 0, 8, 8)], [(0, 0, 48, 38.4)], [(16, 9.6, 64, 48)], []]),
}
LABELS = [
    ("seg_a", "speaker_name", "Ursula von der Leyen", "Monika Schnitzer|Ge You|José Mourinho|Angela Merkel"),
    ("seg_a", "number_of_people", "Two", "One|Four"),
    ("seg_a", "event_type", "Press conference", "Concert"),
    ("seg_b", "speaker_name", "Ge You", "Monika Schnitzer|Zhang Yimou"),
    ("seg_b", "number_of_people", "Three", "Four"),
    ("seg_c", "event_type", "Football match", ""),
    ("seg_e", "event_type", "Wedding", "Concert"),
    ("seg_e", "number_of_people", "Five people", "Six people"),
]
EXPECTED = {  # segment -> (first, reference, strong, num_images)
    "seg_a": (6, 8, True, 12),
    "seg_b": (0, 8, False, 9),
    "seg_e": (2, 4, True, 5),
}
N_SAMPLES = 7  # seg_c is ineligible, seg_d unlabelled


# ----------------------------------------------------------------------------------------------------------------
# Raw tree makers.


def frame_image(seg_index: int, k: int, boxes: list) -> np.ndarray:
    """A small BGR frame: a gradient, a 'speaker' disc that moves with k, grey occluders where the boxes are."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([(xx * 4 + k * 9) % 256, (yy * 5 + seg_index * 40) % 256, (xx + yy + k * 17) % 256], -1)
    img = img.astype(np.uint8)
    cv2.circle(img, (20 + 2 * k % 30, 24), 9, (30, 200, 240), -1)
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (128, 128, 128), -1)
    return img


def voc_xml(segment: str, filename: str, boxes: list, size: tuple[int, int] = (W, H)) -> str:
    """A VOC XML; ``boxes`` are half-open 0-based pixel ranges, written as VOC's 1-based inclusive ones."""
    objects = "".join(
        "\t<object>\n\t\t<name>occlusion</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        "\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
        f"\t\t\t<xmin>{x0 + 1:g}</xmin>\n\t\t\t<ymin>{y0 + 1:g}</ymin>\n"
        f"\t\t\t<xmax>{x1:g}</xmax>\n\t\t\t<ymax>{y1:g}</ymax>\n"
        "\t\t</bndbox>\n\t</object>\n"
        for x0, y0, x1, y1 in boxes
    )
    return (f"<annotation>\n\t<folder>{segment}</folder>\n\t<filename>{filename}</filename>\n"
            f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n\t\t<depth>3</depth>\n"
            f"\t</size>\n\t<segmented>0</segmented>\n{objects}</annotation>\n")


def write_segment(root: Path, segment: str, names: list[str], boxes: list[list], split: str = "test") -> None:
    data, ann = root / "Data" / split / segment, root / "Annotations" / split / segment
    data.mkdir(parents=True, exist_ok=True)
    ann.mkdir(parents=True, exist_ok=True)
    seg_index = sorted(SEGMENTS).index(segment) if segment in SEGMENTS else 9
    for k, (fname, fboxes) in enumerate(zip(names, boxes, strict=True)):
        assert cv2.imwrite(str(data / fname), frame_image(seg_index, k, fboxes))
        (ann / (Path(fname).stem + ".xml")).write_text(voc_xml(segment, fname, fboxes), encoding="utf-8")


def write_labels(path: Path, rows: list[tuple[str, ...]], header: str = "segment,question_type,answer,distractors"):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(header + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            writer.writerow(row)
    return path


def make_tree(base: Path) -> tuple[Path, Path]:
    """(raw folder holding OcclusionDataSet-MM20/, labels CSV) under ``base``."""
    raw_dir = base / "raw"
    root = raw_dir / "OcclusionDataSet-MM20"
    for segment, (names, boxes) in SEGMENTS.items():
        write_segment(root, segment, names, boxes)
    labels = write_labels(base / "labels.csv", LABELS)
    return raw_dir, labels


@pytest.fixture
def mm20(tmp_path: Path) -> tuple[Path, Path]:
    return make_tree(tmp_path)


def seg_dir(raw_dir: Path, kind: str, segment: str) -> Path:
    return raw_dir / "OcclusionDataSet-MM20" / kind / "test" / segment


def build(raw_dir: Path, labels: Path | str, out: Path, workers: int = 1, skip_bad: bool = False, **config) -> Path:
    job = SourceJob(vsod, vsod.Config(labels=str(labels), **config), raw_dir)
    build_release(out, [job], workers=workers, progress=False, skip_bad=skip_bad)
    return out


def records(release: Path) -> list[dict]:
    lines = (release / "test" / f"{NAME}_preprocessed.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def episodes(release: Path) -> dict[int, Episode]:
    entry = read_manifest(release)["sources"][0]
    return {row["id"]: from_row(row) for row in read_rows([release / p for p in entry["files"]["native"]])}


# ----------------------------------------------------------------------------------------------------------------
# Raw reading.


def test_natural_order_pairing_and_fractions(mm20):
    raw_dir, _ = mm20
    root = raw.find_root(raw_dir)
    assert root == raw_dir / "OcclusionDataSet-MM20"
    assert raw.find_root(root) == root
    (seg_dir(raw_dir, "Data", "seg_a") / ".DS_Store").write_bytes(b"\0\0")
    (seg_dir(raw_dir, "Annotations", "seg_a") / "._1.xml").write_bytes(b"\0\5\x16\7")  # macOS resource fork
    seg = raw.read_segment(root, "test", "seg_a")
    assert [Path(f.image).name for f in seg.frames] == [f"{i}.jpg" for i in range(1, 13)]
    assert [Path(f.xml).name for f in seg.frames] == [f"{i}.xml" for i in range(1, 13)]
    assert [f.boxes for f in seg.frames] == [0, 0, 0, 0, 1, 1, 1, 2, 0, 0, 0, 0]
    assert seg.frames[4].fraction == pytest.approx(0.25)
    assert seg.frames[6].fraction == pytest.approx(1.0)
    # union of (0,0,40,48) and (30,0,50,10): 40*48 + 10*10, not the sum of both boxes
    assert seg.frames[7].fraction == pytest.approx((40 * 48 + 10 * 10) / (W * H))
    assert raw.union_area([(0, 0, 2, 2), (1, 1, 3, 3), (0, 0, 2, 2)]) == pytest.approx(7.0)
    assert raw.union_area([]) == 0.0


def test_boxes_are_clipped_to_the_image(tmp_path):
    xml = tmp_path / "f.xml"
    xml.write_text(voc_xml("s", "f.jpg", [(-10, -10, 32, 24), (60, 40, 200, 200)]))
    boxes, fraction = raw.parse_annotation(xml)
    assert boxes == 2 and fraction == pytest.approx((32 * 24 + 4 * 8) / (W * H))


def test_choose_frames_rules(mm20):
    raw_dir, _ = mm20
    root = raw.find_root(raw_dir)
    for segment, (first, reference, strong, _) in EXPECTED.items():
        assert vsod.choose_frames(raw.read_segment(root, "test", segment), 0.5) == (first, reference, strong)
    assert vsod.choose_frames(raw.read_segment(root, "test", "seg_b"), 0.3) == (0, 8, True)
    assert "no occluded frame" in vsod.choose_frames(raw.read_segment(root, "test", "seg_c"), 0.5)
    all_hidden = raw.Segment("test", "x", tuple(raw.FrameAnnotation("a", "b", 1, 0.5) for _ in range(3)))
    assert "every frame is occluded" in vsod.choose_frames(all_hidden, 0.5)


def test_labels_reader(tmp_path):
    path = write_labels(tmp_path / "l.csv", [("s1", "speaker_name", " Ge You ", "A b| |Cd "), ("", "", "", ""),
                                             ("s2", "event_type", "Wedding, outdoor", "")])
    rows = list(raw.read_labels(path))
    assert rows[0] == raw.LabelRow("s1", "speaker_name", "Ge You", ("A b", "Cd"), str(path), 2)
    assert rows[1].line == 4 and rows[1].answer == "Wedding, outdoor"  # quoted comma: rejected by the builder
    short = write_labels(tmp_path / "s.csv", [("s1", "speaker_name", "Ge You")], header="segment,question_type,answer")
    assert list(raw.read_labels(short))[0].distractors == ()


# ----------------------------------------------------------------------------------------------------------------
# Releases.


@pytest.fixture
def release(mm20, tmp_path) -> Path:
    raw_dir, labels = mm20
    return build(raw_dir, labels, tmp_path / "rel")


def test_release_verifies_loads_and_follows_the_rules(mm20, release):
    raw_dir, _ = mm20
    result = verify_release(release)
    assert result.problems == []
    assert result.sources[0].rows == result.sources[0].oracle_correct == N_SAMPLES
    ds = load_dataset(str(release), "vsod", split="test")
    assert len(ds) == N_SAMPLES
    assert [row["id"] for row in ds] == list(range(N_SAMPLES))
    recs = records(release)
    eps = episodes(release)
    keys = [eps[r["id"]].key for r in recs]
    assert keys == ["vsod/test/seg_a/speaker_name", "vsod/test/seg_a/number_of_people", "vsod/test/seg_a/event_type",
                    "vsod/test/seg_b/speaker_name", "vsod/test/seg_b/number_of_people",
                    "vsod/test/seg_e/number_of_people", "vsod/test/seg_e/event_type"]
    for rec in recs:
        ep = eps[rec["id"]]
        segment = ep.meta["segment"]
        first, reference, strong, n = EXPECTED[segment]
        assert rec["image_template"] == f"{NAME}/Data/test/{segment}/{{image}}.jpg"
        assert (rec["first_image"], rec["reference_image"], rec["strong_occlusions"], rec["num_images"]) == (
            first, reference, strong, n)
        assert ep.max_steps == n == len(ep.frames) == len(ep.states)
        assert ep.states[ep.initial_state].frame == first and ep.reference_frame == reference
        assert ep.pre_prompt == vsod.PRE_PROMPT and ep.hint == vsod.HINT
        assert sorted(rec["options"]) == sorted([vsod.REWIND, vsod.WAIT, rec["options"][ep.abstain[0]]])
        assert rec["options"][ep.abstain[0]] in vsod.ABSTAIN
        assert rec["prompt"] in vsod.QUESTIONS[ep.meta["question_type"]]
        r_idx, w_idx = rec["options"].index(vsod.REWIND), rec["options"].index(vsod.WAIT)
        for k, st in enumerate(ep.states):
            assert st.frame == k and st.shown == (0, 1, 2) and st.answer_valid
            assert st.target_of(r_idx) == (k - 1) % n and st.target_of(w_idx) == (k + 1) % n
        # frames: the raw files byte for byte, in natural order, at 4-digit 0-based paths
        names = SEGMENTS[segment][0]
        for k in range(n):
            path = release / "test" / rec["image_template"].format(image=str(k).zfill(4))
            assert path.read_bytes() == ep.frames[k] == (seg_dir(raw_dir, "Data", segment) / names[k]).read_bytes()
    by_key = {eps[r["id"]].key: r for r in recs}
    speaker = by_key["vsod/test/seg_a/speaker_name"]
    assert speaker["answer"] == "Ursula von der leyen."
    assert set(speaker["categories"]) - {speaker["answer"]} <= {
        "Monika schnitzer.", "Ge you.", "José mourinho.", "Angela merkel."}
    assert set(by_key["vsod/test/seg_b/speaker_name"]["categories"]) == {
        "Ge you.", "Monika schnitzer.", "Zhang yimou.", "Ursula von der leyen."}
    # own distractors first, then answers of the same question type from the whole labels file (seg_c included)
    assert set(by_key["vsod/test/seg_e/event_type"]["categories"]) == {
        "Wedding.", "Concert.", "Press conference.", "Football match."}
    assert set(by_key["vsod/test/seg_b/number_of_people"]["categories"]) == {"Three.", "Four.", "Two.", "Five people."}
    assert set(by_key["vsod/test/seg_e/number_of_people"]["categories"]) == {
        "Five people.", "Six people.", "Two.", "Three."}
    cats = set(by_key["vsod/test/seg_a/number_of_people"]["categories"])
    assert {"Two.", "One.", "Four."} < cats and len(cats & {"Three.", "Five people."}) == 1


def test_frames_are_written_once_and_shared(release):
    recs = records(release)
    seg_a = [r for r in recs if "/seg_a/" in r["image_template"]]
    assert len(seg_a) == 3 and len({r["image_template"] for r in seg_a}) == 1
    files = sorted(p.name for p in (release / "test" / NAME / "Data" / "test" / "seg_a").iterdir())
    assert files == [f"{k:04d}.jpg" for k in range(12)]
    assert not (release / "test" / NAME / "Data" / "test" / "seg_c").exists()
    assert not (release / "test" / NAME / "Data" / "test" / "seg_d").exists()


def test_manifest_records_labels_and_ineligible_segments(mm20, release):
    _, labels = mm20
    entry = read_manifest(release)["sources"][0]
    notes = entry["notes"]
    import hashlib

    assert notes["labels"] == {"file": "labels.csv", "size": labels.stat().st_size,
                               "sha256": hashlib.sha256(labels.read_bytes()).hexdigest(), "rows": len(LABELS)}
    assert "ineligible_segments" not in notes
    assert notes["unlabelled_segments"] == 1
    assert entry["ineligible"] == {"no occluded frame (no annotation has an <object>)": 1}
    assert entry["ineligible_items"] == [{"key": "vsod/test/seg_c", "reason": "no occluded frame (no annotation "
                                          "has an <object>)", "detail": "1 labelled question(s)"}]
    assert entry["counts"]["samples"] == N_SAMPLES and entry["counts"]["skipped"] == 0
    paths = {f["path"] for f in entry["raw"]["files"]}
    assert {"OcclusionDataSet-MM20/Data/test/seg_a/1.jpg", "OcclusionDataSet-MM20/Annotations/test/seg_e/frame_004.xml"
            } <= paths
    assert "labels.csv" not in paths  # outside the raw folder: recorded in notes only
    # seg_c's annotations are read to find it ineligible; seg_d is not labelled, so not read
    assert "OcclusionDataSet-MM20/Annotations/test/seg_c/0000.xml" in paths
    assert not any("seg_d" in p for p in paths)
    assert entry["parameters"]["labels"].endswith("labels.csv")


def test_labels_inside_the_raw_folder(mm20, tmp_path, monkeypatch):
    raw_dir, labels = mm20
    (raw_dir / "labels.csv").write_bytes(labels.read_bytes())
    monkeypatch.chdir(tmp_path / "raw" / "OcclusionDataSet-MM20")  # a relative path is found in --raw first
    out = build(raw_dir, "labels.csv", tmp_path / "inside")
    entry = read_manifest(out)["sources"][0]
    assert entry["parameters"]["labels"] == "labels.csv"
    assert entry["raw"]["files"][0]["path"] == "labels.csv"
    assert entry["counts"]["samples"] == N_SAMPLES


def test_generic_oracle_walks_to_the_reference_frame():
    """VSOD accepts both moves and the answer in every state, so an oracle that moves while a move is valid never
    answers: ``pb_build.replay.oracle`` must take the shortest path to the reference frame and answer there."""
    n, first, ref = 6, 1, 5
    states = tuple(State(frame=k, shown=(0, 1, 2), valid=(0, 1), targets=((k - 1) % n, (k + 1) % n))
                   for k in range(n))
    ep = Episode(source="vsod", key="vsod/x", prompt="Who?", options=(vsod.REWIND, vsod.WAIT, vsod.ABSTAIN[0]),
                 categories=("Aa.", "Bb.", "Cc.", "Dd."), answer="Bb.", frames=(b"x",) * n, states=states,
                 reference_frame=ref, max_steps=n, initial_state=first, abstain=(2,))
    rep = play(ep, oracle)
    assert rep.correct, "pb_build.replay.oracle must walk to the reference frame and answer there"
    assert [t.frame for t in rep.turns][0] == first and rep.turns[-1].frame == ref


def test_same_seed_same_bytes_other_seed_differs(mm20, tmp_path):
    raw_dir, labels = mm20
    a = build(raw_dir, labels, tmp_path / "a")
    b = build(raw_dir, labels, tmp_path / "b", seed=0)
    c = build(raw_dir, labels, tmp_path / "c", seed=1)
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    assert (a / "SHA256SUMS").read_bytes() != (c / "SHA256SUMS").read_bytes()
    strip = lambda rs: [(r["first_image"], r["reference_image"], r["answer"]) for r in rs]  # noqa: E731
    assert strip(records(a)) == strip(records(c)), "the seed changes draws, not the construction rules"
    draws = lambda rs: [(r["prompt"], r["options"], r["categories"]) for r in rs]  # noqa: E731
    assert draws(records(a)) != draws(records(c))


def test_max_side_reencodes_frames(mm20, tmp_path):
    raw_dir, labels = mm20
    out = build(raw_dir, labels, tmp_path / "small", max_side=32)
    assert verify_release(out).problems == []
    for rec in records(out):
        img = cv2.imread(str(out / "test" / rec["image_template"].format(image="0000")))
        assert max(img.shape[:2]) == 32 and img.shape[:2] == (24, 32)


def test_png_frames_keep_their_format(tmp_path):
    raw_dir = tmp_path / "raw"
    write_segment(raw_dir, "clip", [f"{i}.png" for i in range(4)], [[], FULL, [], []])
    labels = write_labels(tmp_path / "l.csv", [("clip", "event_type", "Wedding", "Concert|Lecture|Football match")])
    out = build(raw_dir, labels, tmp_path / "rel")
    (rec,) = records(out)
    assert rec["image_template"] == f"{NAME}/Data/test/clip/{{image}}.png"
    assert (rec["first_image"], rec["reference_image"]) == (1, 2)
    assert verify_release(out).problems == []


# ----------------------------------------------------------------------------------------------------------------
# Official environment vs our replay.


@dataclass
class Outcome:
    job: dict[str, Any]
    official: dict[str, Any]
    ours: dict[str, Any]
    official_frames: list[int | None] = field(default_factory=list)


def shortest_path_answers(rec: dict) -> list[str]:
    """The moves of a shortest circular path from the first to the reference frame, then the answer."""
    n, first, ref = rec["num_images"], rec["first_image"], rec["reference_image"]
    forward, backward = (ref - first) % n, (first - ref) % n
    moves = [vsod.WAIT] * forward if forward <= backward else [vsod.REWIND] * backward
    return moves + [rec["answer"]]


def letter_sequences(rec: dict) -> list[tuple[str, list[str], bool]]:
    opts, cats, answer = rec["options"], rec["categories"], rec["answer"]
    r, w = opts.index(vsod.REWIND), opts.index(vsod.WAIT)
    a = next(i for i in range(3) if i not in (r, w))
    rl, wl, al = chr(65 + r), chr(65 + w), chr(65 + a)
    cl = chr(65 + 3 + cats.index(answer))
    wrong = chr(65 + 3 + (cats.index(answer) + 1) % 4)
    n = rec["num_images"]
    return [
        ("oracle_path", shortest_path_answers(rec), False),
        ("always_wait", [vsod.WAIT], False),
        ("always_rewind", [vsod.REWIND], False),
        ("wait_letters", [wl], False),
        ("rewind_letters", [f"{rl.lower()}."], False),
        ("overshoot", [vsod.WAIT] * (n // 2 + 2) + [vsod.REWIND, vsod.REWIND, cl], False),
        ("wrap_then_answer", [vsod.REWIND] * (rec["first_image"] + 2) + [f"{cl}. {answer}"], False),
        ("mixed", [f"{wl}. {vsod.WAIT}", rl, f"Z. {vsod.REWIND.lower()}", vsod.WAIT.rstrip("."), cl], False),
        ("abstain_letter", [al], False),
        ("wrong_category", [wl, f"{wrong}."], False),
        ("answer_text_at_once", [answer], False),
        ("answer_without_period", [answer.rstrip(".")], False),
        ("garbage", ["", "nonsense"], False),
        ("out_of_range", [wl, "H"], False),
        ("shouted", [vsod.WAIT.upper()], False),
        ("reference_letter", [chr(65 + cats.index(answer))], True),
        ("reference_option", [vsod.WAIT], True),
    ]


@pytest.fixture(scope="module")
def played(tmp_path_factory) -> tuple[dict, list[Outcome], dict[int, dict], dict[int, Episode]]:
    """Every job over every record of one release, in the official environment (one subprocess) and our replay."""
    base = tmp_path_factory.mktemp("vsod-official")
    raw_dir, labels = make_tree(base)
    release = build(raw_dir, labels, base / "rel")
    recs = {r["id"]: r for r in records(release)}
    eps = episodes(release)
    jobs = []
    for sid, rec in sorted(recs.items()):
        for policy in ("proactive", "abstain", "first", "reference"):
            jobs.append({"id": sid, "policy": policy, "label": policy})
        # our generic oracle's own answers, fed verbatim to the official environment
        jobs.append({"id": sid, "policy": "letters", "label": "replay_oracle",
                     "answers": [t.answer for t in play(eps[sid], oracle).turns]})
        for label, answers, reference in letter_sequences(rec):
            jobs.append({"id": sid, "policy": "letters", "label": label, "answers": answers, "reference": reference})
    report = run_official_report(NAME, release / "test", jobs)
    outcomes = []
    for job, off in zip(jobs, report["jobs"], strict=True):
        rec = recs[job["id"]]
        paths = {rec["image_template"].format(image=str(k).zfill(4)): k for k in range(rec["num_images"])}
        outcomes.append(Outcome(job, off, replay_job(eps[job["id"]], job), [paths.get(p) for p in off["images"]]))
    return report, outcomes, recs, eps


def of(outcomes: list[Outcome], label: str) -> list[Outcome]:
    out = [o for o in outcomes if o.job["label"] == label]
    assert out, f"no {label} jobs"
    return out


def describe(o: Outcome) -> str:
    return f"id {o.job['id']} {o.job['label']} {o.job.get('answers', '')}"


@requires_official
def test_official_runs_every_record_and_agrees_with_the_replay(played):
    report, outcomes, recs, _ = played
    assert report["records"] == len(recs) == N_SAMPLES
    problems = []
    for o in outcomes:
        off, ours = o.official, o.ours
        if off["error"] or off["image_errors"] or not off["stopped"] or None in o.official_frames:
            problems.append(f"{describe(o)}: {off['error']} {off['image_errors']} {off['images']}")
            continue
        got = {"num_turns": off["num_turns"], "correct_prediction": off["correct_prediction"],
               "max_steps": off["max_steps"], "frames": o.official_frames, "answers": off["answers"],
               "options": off["options"], "action_evaluations": off["action_evaluations"],
               "category_evaluations": off["category_evaluations"]}
        diff = {k: (got[k], ours[k]) for k in got if got[k] != ours[k]}
        if diff:
            problems.append(f"{describe(o)}: (official, replay) {diff}")
    assert not problems, f"{len(problems)}/{len(outcomes)} jobs:\n" + "\n".join(problems[:15])


@requires_official
def test_official_oracle_scores_100_percent(played):
    """Both oracles are correct on every record: the shortest circular path (fewest turns), and our generic
    replay's oracle (first valid move until the reference frame is shown), fed verbatim to the official one."""
    _, outcomes, recs, eps = played
    for label in ("oracle_path", "replay_oracle"):
        runs = of(outcomes, label)
        assert len(runs) == len(recs)
        for o in runs:
            rec = recs[o.job["id"]]
            n, first, ref = rec["num_images"], rec["first_image"], rec["reference_image"]
            moves = o.official["num_turns"] - 1
            assert o.official["correct_prediction"] is True, describe(o)
            assert o.official_frames[0] == first and o.official_frames[-1] == ref, describe(o)
            assert o.official["action_evaluations"] == ["correct"] * moves + ["mismatch"], describe(o)
            assert o.official["category_evaluations"] == ["mismatch"] * moves + ["correct"], describe(o)
            if label == "oracle_path":
                assert moves == min((ref - first) % n, (first - ref) % n), describe(o)
            else:
                assert moves < n and o.ours["frames"] == o.official_frames, describe(o)


@requires_official
def test_official_circular_moves_and_step_limit(played):
    _, outcomes, recs, _ = played
    for label in ("always_wait", "always_rewind", "proactive"):
        for o in of(outcomes, label):
            rec = recs[o.job["id"]]
            n, first = rec["num_images"], rec["first_image"]
            if label == "proactive":  # the first non-abstain option in stored order
                step = 1 if rec["options"].index(vsod.WAIT) < rec["options"].index(vsod.REWIND) else -1
            else:
                step = 1 if label == "always_wait" else -1
            expected = [(first + step * t) % n for t in range(n)]
            sides = (("official", o.official, o.official_frames), ("replay", o.ours, o.ours["frames"]))
            for side, res, frames in sides:
                assert res["num_turns"] == n and res["max_steps"] is True, f"{side} {describe(o)}"
                assert res["correct_prediction"] is False, f"{side} {describe(o)}"
                assert frames == expected, f"{side} {describe(o)}"
                assert res["action_evaluations"] == ["correct"] * n, f"{side} {describe(o)}"


@requires_official
def test_official_prompts_first_abstain_and_reference(played):
    _, outcomes, recs, eps = played
    for o in of(outcomes, "first"):
        ep = eps[o.job["id"]]
        assert o.official["hint_prompt"] == f"{vsod.PRE_PROMPT} {ep.prompt} {vsod.HINT}"
        assert o.official["num_turns"] == 1 and o.official["correct_prediction"] is True
        assert o.official_frames == [recs[o.job["id"]]["first_image"]]
        assert len(o.official["options"][0]) == 7
    for o in of(outcomes, "abstain"):
        assert o.official["num_turns"] == 1 and o.official["correct_prediction"] is False
        assert o.official["action_evaluations"] == ["wrong"]
    for o in of(outcomes, "reference"):
        rec = recs[o.job["id"]]
        assert o.official_frames == [rec["reference_image"]] and o.official["correct_prediction"] is True
    verdicts = {v for o in outcomes for v in o.official["action_evaluations"] + o.official["category_evaluations"]}
    assert verdicts == {"correct", "wrong", "mismatch"}


# ----------------------------------------------------------------------------------------------------------------
# Bad input.


def expect_bad(raw_dir: Path, labels: Path, tmp_path: Path, match: str, **config) -> BadRecord:
    out = tmp_path / "bad-rel"
    with pytest.raises(BadRecord, match=match) as info:
        build(raw_dir, labels, out, **config)
    assert not out.exists(), "a failed build must leave nothing at the target"
    assert not list(tmp_path.glob(".bad-rel*")), "temporary build folder left behind"
    return info.value


def skipped(raw_dir: Path, labels: Path, tmp_path: Path, **config) -> tuple[dict, list[dict]]:
    out = build(raw_dir, labels, tmp_path / "skip-rel", skip_bad=True, **config)
    assert verify_release(out).problems == []
    entry = read_manifest(out)["sources"][0]
    assert entry["counts"]["skipped"] == len(entry["skipped"])
    return entry, entry["skipped"]


def test_missing_labels_stops_with_a_clear_message(mm20, tmp_path):
    raw_dir, _ = mm20
    with pytest.raises(PbBuildError, match=r"--labels is required.*segment,question_type,answer"):
        build(raw_dir, "", tmp_path / "rel")
    with pytest.raises(PbBuildError, match=r"nope\.csv: labels file not found"):
        build(raw_dir, tmp_path / "nope.csv", tmp_path / "rel")
    assert not (tmp_path / "rel").exists()
    with pytest.raises(PbBuildError, match="cannot be downloaded automatically"):
        vsod.fetch(vsod.Config(), None, False)


def test_config_validation():
    with pytest.raises(PbBuildError, match="--strong-threshold"):
        vsod.Config(strong_threshold=0)
    with pytest.raises(PbBuildError, match="--max-side"):
        vsod.Config(max_side=8)
    with pytest.raises(PbBuildError, match="--split"):
        vsod.Config(split="../x")


def test_labels_for_an_unknown_segment(mm20, tmp_path):
    raw_dir, labels = mm20
    write_labels(labels, [*LABELS, ("seg_zz", "event_type", "Concert", "")])
    bad = expect_bad(raw_dir, labels, tmp_path, r"labels\.csv:10: unknown segment 'seg_zz'")
    assert bad.line == 10 and Path(bad.path) == labels
    entry, skips = skipped(raw_dir, labels, tmp_path)
    assert entry["counts"]["samples"] == N_SAMPLES
    assert [(s["line"], s["cause"].split(":")[0]) for s in skips] == [(10, "unknown segment 'seg_zz'")]


@pytest.mark.parametrize(("row", "cause"), [
    (("seg_a", "speaker", "Ge You", ""), "unknown question_type 'speaker'"),
    (("seg_b", "event_type", "Wedding, outdoor", ""), "contains a comma"),
    (("seg_b", "event_type", "J. Smith party", ""), "upper-case letter before '.'"),
    (("seg_b", "event_type", "X", ""), "too short"),
    (("seg_b", "event_type", "", ""), "empty answer"),
    (("seg_a", "speaker_name", "Ge You", ""), "duplicate row for segment 'seg_a'"),
    (("seg_b", "event_type", "Concert", "concert"), "a distractor equals the answer"),
])
def test_bad_label_rows(mm20, tmp_path, row, cause):
    raw_dir, labels = mm20
    write_labels(labels, [*LABELS, row])
    expect_bad(raw_dir, labels, tmp_path, rf"labels\.csv:10: .*{cause}")


def test_bad_labels_header_and_too_few_wrong_categories(mm20, tmp_path):
    raw_dir, labels = mm20
    write_labels(labels, LABELS, header="segment,type,answer")
    expect_bad(raw_dir, labels, tmp_path, r"labels\.csv:1: header must be")
    write_labels(labels, [("seg_a", "event_type", "Wedding", "Concert")])
    expect_bad(raw_dir, labels, tmp_path, r"labels\.csv:2: only 1 wrong categories for event_type")


def test_xml_without_the_expected_tags(mm20, tmp_path):
    raw_dir, labels = mm20
    xml = seg_dir(raw_dir, "Annotations", "seg_b") / "000003.xml"
    xml.write_text(voc_xml("seg_b", "000003.jpg", []).replace("<object>", "").replace(
        "</annotation>", "<object><name>o</name></object></annotation>"))
    expect_bad(raw_dir, labels, tmp_path, r"seg_b/000003\.xml: <object> 0 has no <bndbox>")
    xml.write_text(voc_xml("seg_b", "000003.jpg", [(1, 2, 3, 4)]).replace("<ymax>4</ymax>", ""))
    expect_bad(raw_dir, labels, tmp_path, r"seg_b/000003\.xml: missing <ymax> in <bndbox> of <object> 0")
    xml.write_text(voc_xml("seg_b", "000003.jpg", [(5, 2, 3, 4)]))
    expect_bad(raw_dir, labels, tmp_path, r"seg_b/000003\.xml: <bndbox> of <object> 0 is inverted")
    xml.write_text("<annotation>\n<size><width>64</width>\n<height>48</height></size>\n<object>\n</annotation>\n")
    bad = expect_bad(raw_dir, labels, tmp_path, r"seg_b/000003\.xml:5: malformed XML")
    assert bad.line == 5
    xml.write_text(voc_xml("seg_b", "000003.jpg", []).replace("annotation>", "doc>"))
    expect_bad(raw_dir, labels, tmp_path, r"root element is <doc>")
    entry, skips = skipped(raw_dir, labels, tmp_path)
    assert entry["counts"]["samples"] == N_SAMPLES - 2  # both seg_b questions
    assert [s["path"] for s in skips] == ["OcclusionDataSet-MM20/Annotations/test/seg_b/000003.xml"]


def test_a_bad_annotation_found_while_shards_build_fails_cleanly(mm20, tmp_path):
    """Annotations are parsed while earlier segments' shards build: a malformed XML in the last segment fails the
    build naming it, after shards went out, and leaves nothing at the target; fixed, the build is as a clean one."""
    raw_dir, labels = mm20
    clean = build(raw_dir, labels, tmp_path / "clean")
    xml = seg_dir(raw_dir, "Annotations", "seg_e") / "frame_004.xml"
    good = xml.read_text()
    xml.write_text("<annotation>\n<object>\n</annotation>\n")
    job = SourceJob(vsod, vsod.Config(labels=str(labels)), raw_dir)
    out = tmp_path / "rel"
    with pytest.raises(BadRecord, match=r"seg_e/frame_004\.xml:3: malformed XML"):
        build_release(out, [job], workers=2, progress=False, shard_size=1)
    assert not out.exists()
    xml.write_text(good)
    build_release(out, [job], workers=2, progress=False, shard_size=1)
    assert verify_release(out).problems == []
    assert read_manifest(out)["sources"][0]["keys"] == read_manifest(clean)["sources"][0]["keys"]
    assert records(out) == records(clean)


def test_missing_or_zero_size_uses_the_frame_size(tmp_path):
    frame = tmp_path / "f.jpg"
    assert cv2.imwrite(str(frame), np.zeros((H, W, 3), np.uint8))
    xml = tmp_path / "f.xml"
    box = [(0, 0, W // 2, H)]
    xml.write_text("<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin>"
                   f"<xmax>{W // 2}</xmax><ymax>{H}</ymax></bndbox></object></annotation>")
    assert raw.parse_annotation(xml, frame) == (1, pytest.approx(0.5))
    xml.write_text(voc_xml("s", "f.jpg", box, size=(0, 0)))
    assert raw.parse_annotation(xml, frame) == (1, pytest.approx(0.5))
    with pytest.raises(BadRecord, match="<size> must be positive"):
        raw.parse_annotation(xml)


def test_one_pixel_wide_boxes_are_valid(tmp_path):
    xml = tmp_path / "f.xml"
    xml.write_text(voc_xml("s", "f.jpg", [(9, 4, 10, 14)]).replace("<xmin>10</xmin>", "<xmin>10</xmin>"))
    boxes, fraction = raw.parse_annotation(xml)
    assert "<xmin>10</xmin>" in xml.read_text() and "<xmax>10</xmax>" in xml.read_text()
    assert boxes == 1 and fraction == pytest.approx(10 / (W * H))


def test_frames_and_annotations_pair_by_sorted_position(mm20, tmp_path):
    raw_dir, labels = mm20
    ann = seg_dir(raw_dir, "Annotations", "seg_e")
    xmls = sorted(ann.iterdir(), key=lambda p: raw.natural_key(p.name))
    for k, xml in enumerate(xmls):  # real MM20 XML names need not match the frame names
        xml.rename(ann / f"ann_{k:04d}.xml")
    seg = raw.read_segment(raw.find_root(raw_dir), "test", "seg_e")
    assert [Path(f.xml).name for f in seg.frames] == [f"ann_{k:04d}.xml" for k in range(len(xmls))]
    build(raw_dir, labels, tmp_path / "renamed")
    (ann / "ann_9999.xml").write_text(voc_xml("seg_e", "x.jpg", []))
    expect_bad(raw_dir, labels, tmp_path, r"seg_e: \d+ frame\(s\) but \d+ annotation\(s\) .*sorted position")
    (ann / "ann_9999.xml").unlink()
    (ann / "ann_0000.xml").unlink()
    expect_bad(raw_dir, labels, tmp_path, r"seg_e: .*Data/Annotations mismatch")
    entry, skips = skipped(raw_dir, labels, tmp_path)
    assert entry["counts"]["samples"] == N_SAMPLES - 2
    assert [s["path"] for s in skips] == ["OcclusionDataSet-MM20/Data/test/seg_e"]
    for f in ann.iterdir():
        f.unlink()
    ann.rmdir()
    expect_bad(raw_dir, labels, tmp_path, r"Annotations/test/seg_e: segment folder missing under Annotations/")


def test_control_characters_in_names_and_answers(mm20, tmp_path):
    raw_dir, labels = mm20
    rows = [r for r in LABELS if r[0] != "seg_a"] + [("seg_a", LABELS[0][1], "Do\ng", "")]
    write_labels(labels, rows)
    expect_bad(raw_dir, labels, tmp_path, r"labels\.csv:\d+: answer 'Do\\ng' contains the control character")
    write_labels(labels, LABELS)
    for kind in ("Data", "Annotations"):
        seg_dir(raw_dir, kind, "seg_e").rename(seg_dir(raw_dir, kind, "seg\ne"))
    write_labels(labels, [r if r[0] != "seg_e" else ("seg\ne", *r[1:]) for r in LABELS])
    expect_bad(raw_dir, labels, tmp_path, r"segment 'seg\\ne' contains the control character")
    _, skips = skipped(raw_dir, labels, tmp_path)
    assert sum("segment 'seg\\ne' contains the control character" in s["cause"] for s in skips) == 2


def _forge_jpeg_size(path: Path, side: int = 30000) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b"\xff\xc0")  # baseline SOF0: length, precision, height, width
    data[at + 5:at + 9] = side.to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))


def test_forged_frame_header_is_refused_or_counted(mm20, tmp_path):
    raw_dir, labels = mm20
    _forge_jpeg_size(seg_dir(raw_dir, "Data", "seg_e") / "frame_002.jpg")
    expect_bad(raw_dir, labels, tmp_path, r"seg_e/frame_002\.jpg: image declares 30000x30000 pixels")
    entry, skips = skipped(raw_dir, labels, tmp_path)
    assert entry["counts"]["samples"] == N_SAMPLES - 2 and len(skips) == 2
    assert all("30000x30000" in s["cause"] for s in skips)


_CLI_PEAK = """
import resource, sys
from pb_build.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PB_RUN_SLOW"), reason="slow: set PB_RUN_SLOW=1")
def test_forged_frame_header_costs_little_memory_in_a_cli_build(mm20, tmp_path):
    """The issue's case (5.3 GB before): the peak RSS of a CLI build with --skip-bad, forged vs clean."""
    import subprocess
    import sys

    raw_dir, labels = mm20

    def peak_mib(out: str) -> float:
        args = ["vsod", "--raw", str(raw_dir), "--labels", str(labels), "--out", str(tmp_path / out), "--skip-bad",
                "--workers", "1", "--quiet"]
        proc = subprocess.run([sys.executable, "-c", _CLI_PEAK, *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "libpng" not in proc.stderr and "Traceback" not in proc.stderr
        return int(proc.stdout.rsplit("PEAK_KIB", 1)[1]) / 1024

    clean = peak_mib("clean")
    _forge_jpeg_size(seg_dir(raw_dir, "Data", "seg_e") / "frame_002.jpg")
    forged = peak_mib("forged")
    print(f"vsod CLI build peak RSS: clean {clean:.0f} MiB, with a forged 30000x30000 frame {forged:.0f} MiB")
    assert forged - clean < 300


def test_frames_that_do_not_decode(mm20, tmp_path):
    raw_dir, labels = mm20
    frame = seg_dir(raw_dir, "Data", "seg_e") / "frame_003.jpg"
    good = frame.read_bytes()
    frame.write_bytes(b"not an image at all")
    expect_bad(raw_dir, labels, tmp_path, r"seg_e/frame_003\.jpg: image does not decode")
    frame.write_bytes(good[: len(good) * 2 // 3])
    expect_bad(raw_dir, labels, tmp_path, r"seg_e/frame_003\.jpg: .*(truncated JPEG|does not decode)")
    for workers in (1, 2):
        out = build(raw_dir, labels, tmp_path / f"skip{workers}", skip_bad=True, workers=workers)
        entry = read_manifest(out)["sources"][0]
        assert entry["counts"]["samples"] == N_SAMPLES - 2 and entry["counts"]["skipped"] == 2
        assert {s["path"] for s in entry["skipped"]} == {"OcclusionDataSet-MM20/Data/test/seg_e/frame_003.jpg"}
        assert verify_release(out).problems == []


def test_a_segment_without_occlusion_is_skipped_with_a_reason(mm20, tmp_path):
    raw_dir, labels = mm20
    write_labels(labels, [("seg_c", "event_type", "Football match", "Concert|Wedding|Lecture"),
                          ("seg_a", "event_type", "Press conference", "Concert|Wedding|Lecture")])
    out = build(raw_dir, labels, tmp_path / "rel")
    entry = read_manifest(out)["sources"][0]
    assert entry["counts"]["samples"] == 1 and entry["counts"]["skipped"] == 0
    assert [item["key"] for item in entry["ineligible_items"]] == ["vsod/test/seg_c"]


def test_missing_tree_and_split(tmp_path, mm20):
    raw_dir, labels = mm20
    with pytest.raises(PbBuildError, match="no Data/ and Annotations/"):
        build(tmp_path, labels, tmp_path / "rel")
    with pytest.raises(PbBuildError, match=r"Data/train: split folder does not exist"):
        build(raw_dir, labels, tmp_path / "rel", split="train")
