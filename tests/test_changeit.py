"""ChangeIt: raw readers, the episode construction, releases, the official environment, determinism and bad input.

Raw folders use the real annotation samples of ``tests/data/changeit`` plus a few
synthetic annotations, with short flat-colour videos written by OpenCV whose length matches each annotation and
whose frames encode their index (``tests/changeit_raw.py``), so the exported frames can be checked against the
video frame they must show.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from changeit_raw import (
    FIXTURES,
    REAL,
    SYNTHETIC,
    VIDEO_FORMAT,
    decoded_index,
    make_raw,
    read_labels,
    video_path,
    write_annotation,
    write_video,
)
from datasets import load_dataset

from pb_build.build import SourceJob, build_release
from pb_build.builders import changeit as cit
from pb_build.episode import Episode
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.matching import normalise_text
from pb_build.raw import changeit as raw
from pb_build.replay import POLICIES, Replay, oracle_path, play
from pb_build.strings import category_string
from pb_build.verify import verify_release
from pb_build.writers.native import from_row, read_rows

try:
    from official import replay_job, requires_official, run_official_report
except ImportError:  # tests/ imported as a package
    from tests.official import replay_job, requires_official, run_official_report

NAME = "ChangeIt"
REWIND = "Rewind the video."
ABSTAINS = set(cit.ABSTAIN)


def build(raw_dir: Path, out: Path, workers: int = 1, skip_bad: bool = False, **config: Any) -> list:
    job = SourceJob(cit, cit.Config(**config), raw_dir)
    return build_release(out, [job], workers=workers, skip_bad=skip_bad, progress=False)


def records(release: Path) -> list[dict]:
    lines = (release / "test" / f"{NAME}_preprocessed.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def episodes(release: Path) -> dict[int, Episode]:
    files = read_manifest(release)["sources"][0]["files"]
    return {row["id"]: from_row(row) for row in read_rows([release / p for p in files["native"]])}


# ----------------------------------------------------------------------------------------------------------------
# Names, strings and the frame layout (no video needed).


def test_object_names_and_category_strings() -> None:
    assert category_string(cit.object_name("whisk_eggs")) == "Eggs."
    assert category_string(cit.object_name("boil_milk")) == "Milk."
    assert category_string(cit.object_name("t-shirt")) == "T-shirt."
    assert category_string(cit.object_name("dragon_fruit")) == "Dragon fruit."
    assert category_string(cit.object_name("drill")) == "Wood."
    assert category_string(cit.object_name("apple")) == "Apple."
    assert category_string("Gift/Box Wrapping") == "Gift/box wrapping."
    assert category_string("Rubik's Cube Solving") == "Rubik's cube solving."


def test_all_real_categories_give_valid_distinct_strings() -> None:
    cats = raw.read_categories(FIXTURES)
    assert len(cats) == 44 and cats[6].dir_name == "box" and cats[6].action_name == "Gift/Box Wrapping"
    pools = cit._pools(cats)
    assert len(pools["object"]) == 42  # eggs/whisk_eggs and milk/boil_milk share their object
    assert len(pools["action"]) == 44
    for pool in pools.values():
        assert len({normalise_text(s) for s in pool}) == len(pool)
        for s in pool:
            assert s == category_string(s[:-1]) and "," not in s and not any(
                s[i].isupper() and s[i + 1] == "." for i in range(len(s) - 1))
    for s in (*cit.WAIT.values(), REWIND, *cit.ABSTAIN):
        assert s.endswith(".") and "," not in s
    assert all(w.startswith("Wait for the") for w in cit.WAIT.values())
    assert len(cit.OBJECT_QUESTIONS) == 15 == len(set(cit.OBJECT_QUESTIONS))
    assert len(cit.ACTION_QUESTIONS) == 11 == len(set(cit.ACTION_QUESTIONS))


@pytest.mark.parametrize("frames", [2, 3, 7, 20, 31])
def test_layout_is_bounded_and_never_hides_both_moves(frames: int) -> None:
    config = cit.Config(frames=frames)
    for n in range(2, 1000):
        lay = cit.layout(n, config)
        assert lay is not None and lay.num_images == n
        assert lay.step_size < n
        assert lay.reachable == len(range(0, n, lay.step_size)) and 2 <= lay.reachable <= frames
        states = cit.states_for(lay.reachable, lay.step_size, n, rewind=0, wait=1, abstain=2)
        for k, st in enumerate(states):
            image = k * lay.step_size
            # The official if/elif: rewind hidden at the first frame, else wait hidden at the end.
            expected_hidden = 0 if image - lay.step_size < 0 else 1 if image + lay.step_size >= n else None
            assert st.shown == tuple(i for i in range(3) if i != expected_hidden)
            assert all(0 <= t < lay.reachable for t in st.targets)
    assert cit.layout(1, config) is None
    assert cit.layout(2, cit.Config(fps=0.25)) is None  # ceil(2 * 0.25) = 1 frame


def test_layout_at_other_sampling_rates() -> None:
    lay = cit.layout(33, cit.Config(fps=2.0, frames=20))
    assert (lay.num_images, lay.step_size, lay.reachable) == (66, 4, 17)
    assert lay.time(3) == 6 and lay.label(tuple(range(33)), 3) == 6
    lay = cit.layout(33, cit.Config(fps=0.5, frames=20))
    assert (lay.num_images, lay.step_size, lay.reachable) == (17, 1, 17)
    assert lay.time(16) == 32 and lay.label(tuple(range(33)), 16) == 32
    assert cit.Config(fps=0.1).sample_fps == Fraction(1, 10)


def test_the_generic_oracle_waits_forward_to_the_reference() -> None:
    """A move is valid in every ChangeIt state; the oracle must still walk forward and answer at the reference."""
    for options in (("Wait for the object to appear.", REWIND, "I cannot tell."),
                    (REWIND, "I cannot tell.", "Wait for the object to appear.")):
        wait = next(i for i, o in enumerate(options) if o.startswith("Wait for the"))
        rewind, abstain = options.index(REWIND), options.index("I cannot tell.")
        states = cit.states_for(5, 2, 10, rewind=rewind, wait=wait, abstain=abstain)
        for ref in range(5):
            ep = Episode(source="t", key="t", prompt="q", options=options, categories=("Apple.", "Bacon.", "Box.",
                         "Cake."), answer="Box.", frames=(b"x",) * 5, states=states, reference_frame=ref,
                         max_steps=5, abstain=(abstain,))
            assert oracle_path(ep) == list(range(ref + 1))


def test_frame_index_rounds_half_up_and_clamps() -> None:
    assert raw.frame_index(1.0, 2.5, 100) == 3  # 2.5 -> 3
    assert raw.frame_index(3.0, 2.5, 100) == 8  # 7.5 -> 8
    assert raw.frame_index(2.0, 29.97, 1000) == 60
    assert raw.frame_index(40.0, 2.0, 80) == 79
    assert raw.frame_index(0.0, 30.0, 5) == 0


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_read_frames_reaches_each_index_by_seeking_or_decoding_forward(suffix: str, tmp_path: Path) -> None:
    video = tmp_path / f"v{suffix}"
    write_video(video, 6.0, 40.0)  # 240 frames
    # gaps of 40 frames are seeked to, gaps up to GRAB_AHEAD_MAX are decoded forward; a repeat reuses the frame
    times = [0.0, 1.0, 2.0, 2.025, 2.4, 2.4, 4.0, 5.5, 5.99]
    read = raw.read_frames(video, times, 6)
    expected = [raw.frame_index(t, 40.0, 240) for t in times]
    assert list(read.indices) == expected == [0, 40, 80, 81, 96, 96, 160, 220, 240 - 1]
    assert [decoded_index(f) for f in read.frames] == expected
    assert (read.num_frames, read.avg_fps, read.width, read.height) == (240, 40.0, 32, 24)
    assert all(f.flags.c_contiguous and f.shape == (24, 32, 3) for f in read.frames)


def test_a_header_counting_more_frames_than_the_file_holds(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    write_video(video, 30.0, 2.0)
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.93)])  # the AVI header still says 60 frames
    read = raw.read_frames(video, [float(t) for t in range(30)], 30)
    assert 55 <= read.num_frames < 60  # counted by decoding: within the 1 s tolerance after rounding
    assert [decoded_index(f) for f in read.frames] == list(read.indices)
    assert read.indices[-1] == read.num_frames - 1


def test_real_annotations_parse_with_non_monotonic_labels() -> None:
    for (category, youtube_id), seconds in REAL.items():
        path = FIXTURES / "annotations" / category / f"{youtube_id}.fps1.csv"
        ann = raw.read_annotation(path, category, youtube_id)
        assert ann.seconds == seconds and list(ann.labels) == read_labels(path)
    ann = raw.read_annotation(FIXTURES / "annotations" / "apple" / "OFR57T1G1yM.fps1.csv", "apple", "OFR57T1G1yM")
    assert ann.labels[24:26] == (3, 3) and ann.labels[26:31] == (2,) * 5 and ann.labels[31] == 3


def test_config_errors_name_the_flag() -> None:
    for kwargs, flag in (({"questions": "object,colour"}, "--questions"), ({"questions": ""}, "--questions"),
                         ({"frames": 1}, "--frames"), ({"fps": 0.0}, "--fps"), ({"fps": float("nan")}, "--fps"),
                         ({"max_side": 8}, "--max-side"), ({"jpeg_quality": 0}, "--jpeg-quality")):
        with pytest.raises(PbBuildError, match=flag):
            cit.Config(**kwargs)


def test_fetch_says_where_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(PbBuildError, match=r"github.com/soCzech/ChangeIt.*--raw"):
        cit.fetch(cit.Config(), tmp_path, progress=False)
    assert cit.sample_dir() is None


# ----------------------------------------------------------------------------------------------------------------
# A release built from the fixture-based raw folder.


@pytest.fixture(scope="module")
def raw_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_raw(tmp_path_factory.mktemp("cit-raw"))


@pytest.fixture(scope="module")
def release(raw_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cit-rel") / "release"
    build(raw_tree, out)
    return out


def _expected_answer(category: str, question: str) -> str:
    if question == "object":
        return {"apple": "Apple.", "bacon": "Bacon.", "box": "Box.", "t-shirt": "T-shirt.",
                "whisk_eggs": "Eggs."}[category]
    return {"apple": "Apple peeling/cutting.", "bacon": "Bacon frying.", "box": "Gift/box wrapping.",
            "whisk_eggs": "Eggs whisking."}[category]


def test_release_verifies_and_loads(release: Path) -> None:
    result = verify_release(release)
    assert result.problems == []
    recs = records(release)
    # 6 videos x 2 questions, minus the t-shirt action question (never labelled 'action') and the apple video
    # whose object is on screen from its first second (answerable without help).
    assert len(recs) == 10 == result.sources[0].rows == result.sources[0].oracle_correct
    ds = load_dataset(str(release), cit.name, split="test")
    assert len(ds) == 10
    assert [json.loads(r)["id"] for r in ds["official_record"]] == list(range(10))
    assert ds[0]["frames"][0].size == (32, 24)
    entry = read_manifest(release)["sources"][0]
    assert entry["notes"]["dropped"] == [{"key": "changeit/t-shirt/TsHiRt0001a/action",
                                          "reason": "no reachable frame labelled action (step_size 2)"}]
    assert entry["ineligible"] == {"no reachable reference frame": 1, "answerable in its first state": 1}
    assert {"key": "changeit/t-shirt/TsHiRt0001a/action", "reason": "no reachable reference frame",
            "detail": "no reachable frame labelled action (step_size 2)"} in entry["ineligible_items"]
    assert {"key": "changeit/apple/OFR57T1G1yM/object", "reason": "answerable in its first state",
            "detail": "its first state shows the reference frame 0"} in entry["ineligible_items"]
    assert entry["keys"][:2] == ["changeit/apple/2gQYivaDXW0/object", "changeit/apple/2gQYivaDXW0/action"]
    inventory = {f["path"] for f in entry["raw"]["files"]}
    assert {"categories.csv", "downloads/box/-Abc_def123.avi", "annotations/box/-Abc_def123.fps1.csv"} <= inventory


def test_records_follow_the_construction(release: Path, raw_tree: Path) -> None:
    eps = episodes(release)
    for rec in records(release):
        ep = eps[rec["id"]]
        category, youtube_id, question = ep.key.split("/")[1:]
        labels = read_labels(raw_tree / "annotations" / category / f"{youtube_id}.fps1.csv")
        n, step = rec["num_images"], rec["step_size"]
        assert rec["image_template"] == f"ChangeIt/{category}/{youtube_id}/{{image}}.jpg"
        assert rec["first_image"] == 0 and n == len(labels)
        assert step == math.ceil(n / 20) and step < n
        assert rec["max_steps"] == ep.max_steps == len(range(0, n, step)) == len(ep.frames) == len(ep.states)
        assert rec["answer"] == ep.answer == _expected_answer(category, question)
        # Reference: the first reachable frame where the answer is visible per the labels.
        visible = (1, 2, 3) if question == "object" else (2,)
        reachable = list(range(0, n, step))
        assert rec["reference_image"] == next(i for i in reachable if labels[i] in visible)
        assert rec["reference_image"] == ep.reference_frame * step
        wait = "Wait for the object to appear." if question == "object" else "Wait for the action to happen."
        assert sorted(rec["options"]) == sorted([wait, REWIND, next(o for o in rec["options"] if o in ABSTAINS)])
        pool = "OBJECT_QUESTIONS" if question == "object" else "ACTION_QUESTIONS"
        assert rec["prompt"] in getattr(cit, pool)
        assert len(set(rec["categories"])) == 4 and rec["answer"] in rec["categories"]
        assert ep.pre_prompt == cit.PRE_PROMPT and ep.hint == cit.HINT
        # States: rewind hidden at frame 0, wait hidden at the last reachable frame, nothing circular.
        r_i, w_i = rec["options"].index(REWIND), rec["options"].index(wait)
        assert r_i not in ep.states[0].shown and w_i in ep.states[0].shown
        assert w_i not in ep.states[-1].shown and r_i in ep.states[-1].shown
        assert all(len(st.shown) == 3 for st in ep.states[1:-1])
        assert ep.states[0].target_of(w_i) == 1 and ep.states[-1].target_of(r_i) == len(ep.states) - 2
        # Exactly the reachable frames are exported, and they are the native frames.
        folder = release / "test" / "ChangeIt" / category / youtube_id
        assert sorted(int(p.stem) for p in folder.iterdir()) == reachable
        for k, image in enumerate(reachable):
            assert (folder / f"{image}.jpg").read_bytes() == ep.frames[k]


def test_exported_frames_show_the_annotated_second(release: Path, raw_tree: Path) -> None:
    """Frame t of the record is video frame floor(t * fps + 0.5) (clamped), read back from its colour code."""
    for rec in records(release):
        category, youtube_id = rec["image_template"].split("/")[1:3]
        vfps = VIDEO_FORMAT[(category, youtube_id)][2]
        seconds = rec["num_images"]
        n_video = math.ceil(seconds * vfps)
        for image in range(0, seconds, rec["step_size"]):
            data = (release / "test" / rec["image_template"].format(image=image)).read_bytes()
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert decoded_index(img) == min(math.floor(image * vfps + 0.5), n_video - 1), (rec["id"], image)


def test_same_seed_same_bytes_other_seed_differs(raw_tree: Path, release: Path, tmp_path: Path) -> None:
    build(raw_tree, tmp_path / "again")
    build(raw_tree, tmp_path / "other", seed=1)
    same = (release / "SHA256SUMS").read_bytes()
    assert (tmp_path / "again" / "SHA256SUMS").read_bytes() == same
    assert (tmp_path / "other" / "SHA256SUMS").read_bytes() != same
    assert [r["prompt"] for r in records(release)] != [r["prompt"] for r in records(tmp_path / "other")]


def test_other_rate_external_video_dir_and_one_question(tmp_path: Path) -> None:
    raw_dir = make_raw(tmp_path)
    videos = tmp_path / "elsewhere"
    videos.mkdir()
    shutil.move(raw_dir / "videos" / "apple", videos / "apple")
    out = tmp_path / "rel"
    build(raw_dir, out, fps=2.0, frames=10, questions="action", categories="apple", video_dir=str(videos),
          max_side=16, jpeg_quality=75)
    assert verify_release(out).problems == []
    recs = records(out)
    assert [r["num_images"] for r in recs] == [202, 66]
    assert [(r["step_size"], r["max_steps"]) for r in recs] == [(21, 10), (7, 10)]
    notes = read_manifest(out)["sources"][0]["notes"]
    assert [v["path"] for v in notes["external_videos"]] == ["apple/2gQYivaDXW0.mp4", "apple/OFR57T1G1yM.avi"]
    for rec in recs:
        vfps = VIDEO_FORMAT[tuple(rec["image_template"].split("/")[1:3])][2]
        for image in range(0, rec["num_images"], rec["step_size"]):
            data = (out / "test" / rec["image_template"].format(image=image)).read_bytes()
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert img.shape[:2] == (12, 16)
            # frame j shows second j / 2
            assert decoded_index(img) == math.floor(image / 2 * vfps + 0.5)


# ----------------------------------------------------------------------------------------------------------------
# The official environment against our replay.


def _shown_at(rec: dict, image: int) -> list[str]:
    """Options the official environment shows at ``image`` (its if/elif), in stored order."""
    opts = list(rec["options"])
    if image - rec["step_size"] < 0:
        opts.remove(REWIND)
    elif image + rec["step_size"] >= rec["num_images"]:
        opts.remove(next(o for o in opts if "Wait for the" in o))
    return opts


def _jobs(rec: dict, ep: Episode) -> list[dict[str, Any]]:
    sid, opts, cats, answer = rec["id"], rec["options"], rec["categories"], rec["answer"]
    wait = next(o for o in opts if o.startswith("Wait for the"))
    abstain = next(o for o in opts if o in ABSTAINS)
    first_shown = _shown_at(rec, 0)
    mid_shown = _shown_at(rec, rec["step_size"])
    oracle_texts = [t.answer for t in play(ep, POLICIES["oracle"]).turns]
    wl = chr(65 + first_shown.index(wait))
    cl0 = chr(65 + len(first_shown) + cats.index(answer))
    cl1 = chr(65 + len(mid_shown) + cats.index(answer))
    rl1 = chr(65 + mid_shown.index(REWIND)) if REWIND in mid_shown else "Z"
    letters = [
        oracle_texts,  # the knowing oracle: wait to the reference frame, then answer
        [wait],  # always wait: walks to the last reachable frame, then the hidden option is a mismatch
        [REWIND],  # always rewind: hidden at frame 0, a mismatch at once
        [wl, f"{rl1.lower()}.", wl, f"{wl}. {wait}", cl1],  # letters shift when rewind appears
        [wl, f"{cl1}. {answer}"],
        [cl0],  # the answer by letter at frame 0 (rewind hidden: categories start one letter earlier)
        [chr(65 + len(first_shown) + (cats.index(answer) + 1) % 4)],  # a wrong category
        [abstain],
        [answer.rstrip(".")],  # no period: mismatch
        ["A", "b.", "C. Some text.", "Banana", "nonsense"],
        [wait.upper()],
    ]
    jobs = [{"id": sid, "policy": "letters", "answers": a, "tag": f"letters{i}"} for i, a in enumerate(letters)]
    for policy in ("proactive", "abstain", "first", "oracle"):
        jobs.append({"id": sid, "policy": policy, "tag": policy})
    jobs.append({"id": sid, "policy": "reference", "reference": True, "tag": "reference"})
    jobs.append({"id": sid, "policy": "letters", "answers": [chr(65 + cats.index(answer))], "reference": True,
                 "tag": "reference-letter"})
    return jobs


def _first_valid(rep: Replay) -> str:
    """What the official driver's 'oracle' does: the first correct option in stored order while there is one."""
    st = rep.current
    return rep.episode.options[min(st.valid)] if st.valid else rep.episode.answer


@pytest.fixture(scope="module")
def played(release: Path) -> list[tuple[dict, dict, dict, list]]:
    """(job, official result, replay result, official frames as native indices) for every job."""
    recs = {r["id"]: r for r in records(release)}
    eps = episodes(release)
    jobs = [job for sid in sorted(recs) for job in _jobs(recs[sid], eps[sid])]
    report = run_official_report(NAME, release / "test", jobs)
    assert report["records"] == len(recs) and sorted(report["ids"]) == sorted(recs)
    out = []
    for job, off in zip(jobs, report["jobs"], strict=True):
        rec = recs[job["id"]]
        paths = {rec["image_template"].format(image=k * rec["step_size"]): k for k in range(rec["max_steps"])}
        ours = replay_job(eps[job["id"]], job, {"oracle": _first_valid})
        out.append((job, off, ours, [paths.get(p) for p in off["images"]]))
    return out


@requires_official
def test_official_and_replay_agree_on_every_job(played) -> None:
    problems = []
    for job, off, ours, frames in played:
        where = f"id {job['id']} {job['tag']}"
        if off["error"] or off["image_errors"] or not off["stopped"] or None in frames:
            problems.append(f"{where}: official {off['error']} {off['image_errors']} {off['images']}")
            continue
        got = {"num_turns": off["num_turns"], "correct_prediction": off["correct_prediction"],
               "max_steps": off["max_steps"], "frames": frames, "answers": off["answers"], "options": off["options"],
               "action_evaluations": off["action_evaluations"],
               "category_evaluations": off["category_evaluations"]}
        diff = {k: (got[k], ours[k]) for k in got if got[k] != ours[k]}
        if diff:
            problems.append(f"{where}: (official, replay) {diff}")
    assert not problems, f"{len(problems)}/{len(played)} jobs disagree:\n" + "\n".join(problems[:10])


@requires_official
def test_official_outcomes_of_the_main_policies(played, release: Path) -> None:
    recs = {r["id"]: r for r in records(release)}
    by_tag: dict[str, list] = {}
    for item in played:
        by_tag.setdefault(item[0]["tag"], []).append(item)
    assert len(by_tag["letters0"]) == len(recs)
    for job, off, _, frames in by_tag["letters0"]:  # the oracle: 100%, straight to the reference frame
        ref = recs[job["id"]]["reference_image"] // recs[job["id"]]["step_size"]
        assert off["correct_prediction"] and off["num_turns"] == ref + 1 and frames == list(range(ref + 1))
    for job, off, _, frames in by_tag["letters1"]:  # always wait: every reachable frame, then a mismatch
        last = recs[job["id"]]["max_steps"]
        assert not off["correct_prediction"] and off["num_turns"] == last and off["max_steps"]
        assert frames == list(range(last)) and off["action_evaluations"] == ["correct"] * (last - 1) + ["mismatch"]
    for _, off, _, frames in by_tag["letters2"]:  # always rewind: hidden at the first frame
        assert off["num_turns"] == 1 and not off["correct_prediction"] and frames == [0]
        assert off["action_evaluations"] == ["mismatch"] and REWIND not in off["options"][0]
    for job, off, _, _ in by_tag["proactive"]:  # the first shown proactive option, until max_steps
        assert not off["correct_prediction"] and off["max_steps"]
        assert off["num_turns"] == recs[job["id"]]["max_steps"]
    for job, off, _, _ in by_tag["reference"]:
        rec = recs[job["id"]]
        assert off["correct_prediction"] and off["images"] == [rec["image_template"].format(
            image=rec["reference_image"])]
    for _, off, _, _ in by_tag["first"]:
        assert off["correct_prediction"] and off["num_turns"] == 1
    assert {v for _, off, _, _ in played for v in off["action_evaluations"]} == {"correct", "wrong", "mismatch"}
    assert {v for _, off, _, _ in played for v in off["category_evaluations"]} == {"correct", "wrong", "mismatch"}


@requires_official
def test_hint_and_pre_prompt_match(played, release: Path) -> None:
    eps = episodes(release)
    for job, off, _, _ in played:
        if job["tag"] == "first":
            ep = eps[job["id"]]
            assert off["hint_prompt"] == f"{ep.pre_prompt} {ep.prompt} {ep.hint}"


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one clear error naming the file (and line), or counted skips; nothing half-written.


def _only_bacon(tmp_path: Path) -> Path:
    """A raw folder whose only annotated video is the real bacon sample (29 s)."""
    raw_dir = make_raw(tmp_path, synthetic=False)
    shutil.rmtree(raw_dir / "annotations" / "apple")
    return raw_dir


BACON = ("bacon", "ZArf-W7di1Y")


def _bacon_annotation(raw_dir: Path) -> Path:
    return raw_dir / "annotations" / "bacon" / "ZArf-W7di1Y.fps1.csv"


def _break(kind: str, raw_dir: Path) -> tuple[str, str]:
    """Damage the raw folder; returns (path fragment, cause regex) the error must show."""
    ann = _bacon_annotation(raw_dir)
    lines = ann.read_text().splitlines()
    if kind == "rows out of order":
        lines[3], lines[4] = lines[4], lines[3]
        ann.write_text("\n".join(lines) + "\n")
        return f"{ann}:4", "rows out of order: second 4 where 3 was expected"
    if kind == "rows not from 0":
        ann.write_text("\n".join(lines[1:]) + "\n")
        return f"{ann}:1", "not starting at 0: second 1 where 0 was expected"
    if kind == "unknown label":
        lines[5] = "5,7"
        ann.write_text("\n".join(lines) + "\n")
        return f"{ann}:6", "unknown label 7"
    if kind == "not integers":
        lines[2] = "2;1"
        ann.write_text("\n".join(lines) + "\n")
        return f"{ann}:3", "expected 'second,label' integers"
    if kind == "empty annotation":
        ann.write_text("")
        return str(ann), "annotation has 0 row"
    if kind == "unparseable file name":
        bad = ann.with_name("bacon video 1.fps1.csv")
        ann.rename(bad)
        return str(bad), "file name does not parse"
    if kind == "stray file":
        (ann.parent / "notes.txt").write_text("x")
        return str(ann.parent / "notes.txt"), "unexpected entry"
    if kind == "unknown category folder":
        write_annotation(raw_dir / "annotations" / "spoon" / "SpOoN000001.fps1.csv", [0, 1, 2])
        return str(raw_dir / "annotations" / "spoon"), "not in categories.csv"
    if kind == "comma in action name":
        cats = raw_dir / "categories.csv"
        cats.write_text(cats.read_text() + 'spoon,"Spoon Bending, Slowly",0.3\n')
        return f"{cats}:46", "contains a comma"
    if kind == "video missing":
        video_path(raw_dir, *BACON).unlink()
        return str(ann), "video missing: no ZArf-W7di1Y"
    if kind == "video does not open":
        video_path(raw_dir, *BACON).write_bytes(b"not a video at all" * 50)
        return str(video_path(raw_dir, *BACON)), "video does not open"
    if kind == "video ends early":
        video = video_path(raw_dir, *BACON)
        write_video(video, 20, 2.0)  # 20 s for 29 annotated seconds
        return str(video), r"video ends early: 20.0 s \(40 frames at 2 fps\) but its annotation has 29 seconds"
    if kind == "truncated video":
        video = video_path(raw_dir, *BACON)
        video.unlink()
        video = video.with_suffix(".avi")
        write_video(video, 29, 2.0)
        data = video.read_bytes()
        video.write_bytes(data[: len(data) // 2])
        return str(video), "video ends early"
    raise AssertionError(kind)


BAD_KINDS = ["rows out of order", "rows not from 0", "unknown label", "not integers", "empty annotation",
             "unparseable file name", "stray file", "unknown category folder", "comma in action name",
             "video missing", "video does not open", "video ends early", "truncated video"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_is_one_clear_error_and_nothing_is_written(kind: str, tmp_path: Path) -> None:
    raw_dir = _only_bacon(tmp_path / "in")
    where, cause = _break(kind, raw_dir)
    out = tmp_path / "out" / "rel"
    out.parent.mkdir()
    with pytest.raises(BadRecord) as info:
        build(raw_dir, out)
    message = str(info.value)
    assert message.startswith(where + ":"), message
    assert re.search(cause, message), message
    assert "\n" not in message
    assert list(out.parent.iterdir()) == []


def test_a_video_a_few_seconds_short_is_ineligible_not_bad(tmp_path: Path) -> None:
    raw_dir = make_raw(tmp_path / "in")
    write_video(video_path(raw_dir, *BACON), 26, 2.0)  # 26 s for 29 annotated seconds
    [report] = build(raw_dir, tmp_path / "rel")
    assert report.skipped == [] and report.samples == 8
    short = {"video shorter than its annotation": 2}  # its object and action samples
    others = {"no reachable reference frame": 1, "answerable in its first state": 1}
    assert report.ineligible_by_reason() == {**short, **others}
    entry = read_manifest(tmp_path / "rel")["sources"][0]
    assert entry["ineligible"] == {**short, **others}
    assert {i["detail"] for i in entry["ineligible_items"] if i["reason"] in short} == {
        "ZArf-W7di1Y.mp4: 26.0 s for 29 annotated seconds"}
    assert verify_release(tmp_path / "rel").problems == []
    with pytest.raises(PbBuildError, match="video shorter than its annotation .*--strict"):
        build_release(tmp_path / "strict", [SourceJob(cit, cit.Config(categories="bacon"), raw_dir)],
                      progress=False, strict=True)
    assert not (tmp_path / "strict").exists()


def test_skip_bad_counts_every_bad_record(tmp_path: Path) -> None:
    raw_dir = make_raw(tmp_path / "in")
    apple = raw_dir / "annotations" / "apple"
    lines = (apple / "2gQYivaDXW0.fps1.csv").read_text().splitlines()
    (apple / "2gQYivaDXW0.fps1.csv").write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    video_path(raw_dir, "apple", "OFR57T1G1yM").write_bytes(b"garbage" * 100)
    video_path(raw_dir, "box", "-Abc_def123").unlink()
    write_annotation(raw_dir / "annotations" / "spoon" / "SpOoN000001.fps1.csv", [0, 1, 2])
    (apple / "short.fps1.csv").write_text("0,0\n1,1\n")
    out = tmp_path / "rel"
    [report] = build(raw_dir, out, skip_bad=True)
    skipped = sorted((s["path"], s["line"], s["cause"].split(":")[0]) for s in report.skipped)
    assert skipped == [
        ("annotations/apple/2gQYivaDXW0.fps1.csv", 2, "rows out of order"),
        ("annotations/apple/short.fps1.csv", None, "file name does not parse"),
        ("annotations/box/-Abc_def123.fps1.csv", None, "video missing"),
        ("annotations/spoon", None, "category folder 'spoon' is not in categories.csv"),
        # one per sample (object and action) of the video
        ("videos/apple/OFR57T1G1yM.avi", None, "video does not open"),
        ("videos/apple/OFR57T1G1yM.avi", None, "video does not open"),
    ]
    assert report.samples == 5  # bacon x2, t-shirt object, whisk_eggs x2
    entry = read_manifest(out)["sources"][0]
    assert entry["counts"]["skipped"] == 6 and len(entry["skipped"]) == 6
    assert verify_release(out).problems == []


def test_missing_categories_or_annotations_are_fatal(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PbBuildError, match=r"categories\.csv: not found"):
        build(empty, tmp_path / "a")
    (empty / "categories.csv").write_text("DIR_NAME,ACTION_NAME,CENTERING_PARAM\n" + "".join(
        f'{c},"{c.title()} Cutting",0.3\n' for c in ("apple", "bread", "cheese", "melon")))
    with pytest.raises(PbBuildError, match=r"annotations: not found"):
        build(empty, tmp_path / "b")
    (empty / "annotations" / "apple").mkdir(parents=True)
    with pytest.raises(PbBuildError, match=r"no <youtube_id>\.fps1\.csv files found"):
        build(empty, tmp_path / "c")
    with pytest.raises(PbBuildError, match=r"--categories: 'kiwi' not in categories\.csv"):
        build(empty, tmp_path / "d", categories="kiwi")
    (empty / "categories.csv").write_text("NAME,ACTION\napple,x\n")
    with pytest.raises(PbBuildError, match=r"categories\.csv:1: header"):
        build(empty, tmp_path / "e")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_synthetic_ids_are_youtube_ids() -> None:
    assert all(raw.YOUTUBE_ID.match(y) for _, y in (*REAL, *SYNTHETIC))
