"""Exported QuickDraw releases run unchanged in the official ``proactivebench`` package, and the official
environment and our generic replay (``pb_build.replay.Replay``) give the same outcome turn by turn.

Two releases are built: from the bundled synthetic sample and from the real QuickDraw fixture files at
``tests/data/quickdraw/simplified``. For every exported record a batch of policies
is played in the official environment (one subprocess per release, see ``tests/official_driver.py``) and in our
replay of the episode read back from the native parquet shards; turns, correctness, visited frames, shown
options and the per-turn action/category verdicts must agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pb_build.build import SourceJob, build_release
from pb_build.builders import quickdraw
from pb_build.episode import Episode
from pb_build.writers.native import from_row, read_rows

try:
    from official import Outcome, describe, of_policy, play_both, requires_official, standard_jobs
except ImportError:  # tests/ imported as a package
    from tests.official import Outcome, describe, of_policy, play_both, requires_official, standard_jobs

FIXTURES = Path(__file__).resolve().parent / "data" / "quickdraw" / "simplified"
NAME = "QuickDraw"
GENERIC_LETTERS = ["A", "b.", "C. Some text.", "Banana", "nonsense"]


@dataclass
class Release:
    """A built release: the official records and the episodes read back from the native shards, by id."""

    root: Path
    test_dir: Path
    records: dict[int, dict[str, Any]]
    episodes: dict[int, Episode]

    def frame_paths(self, sample_id: int) -> dict[str, int]:
        """Official relative path of each frame of a record (QuickDraw: 4-digit zero padding) -> frame index."""
        rec = self.records[sample_id]
        return {rec["image_template"].format(image=f"{k:04d}"): k for k in range(rec["num_images"])}





def _build(out: Path, raw: Path, config: quickdraw.Config, sample: bool) -> Release:
    build_release(out, [SourceJob(quickdraw, config, raw, sample)], workers=1, progress=False)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    files = manifest["sources"][0]["files"]
    test_dir = out / "test"
    records: dict[int, dict[str, Any]] = {}
    with open(out / files["official"], encoding="utf-8") as handle:
        for line in handle:
            rec = json.loads(line)
            assert rec["id"] not in records, f"duplicate id {rec['id']}"
            records[rec["id"]] = rec
    episodes = {row["id"]: from_row(row) for row in read_rows([out / p for p in files["native"]])}
    return Release(out, test_dir, records, episodes)


@pytest.fixture(scope="module", params=["sample", "fixtures"])
def release(request, tmp_path_factory) -> Release:
    out = tmp_path_factory.mktemp(f"qd-{request.param}") / "release"
    if request.param == "sample":
        return _build(out, quickdraw.sample_dir(), quickdraw.Config(), sample=True)
    return _build(out, FIXTURES, quickdraw.Config(per_class=10, pool=25), sample=False)


# ----------------------------------------------------------------------------------------------------------------
# Jobs: the same answers in both worlds.


def _letter_sequences(rec: dict[str, Any]) -> list[tuple[list[str], bool]]:
    """Raw answer sequences mixing letters, lettered texts, unpunctuated texts and garbage; (answers, reference)."""
    opts, cats, answer = rec["options"], rec["categories"], rec["answer"]
    n_opt = len(opts)
    pro_idx = next(i for i, o in enumerate(opts) if "cannot" not in o.lower() and "do not" not in o.lower())
    abs_idx = next(i for i in range(n_opt) if i != pro_idx)
    pro = opts[pro_idx]
    pl, al = chr(65 + pro_idx), chr(65 + abs_idx)
    ans_idx = cats.index(answer)
    cl = chr(65 + n_opt + ans_idx)  # letter of the answer when options are shown
    wl = chr(65 + n_opt + (ans_idx + 1) % 4)  # letter of a wrong category
    return [
        (GENERIC_LETTERS, False),
        # move by lettered text, bare lowercase letter, wrong-prefixed lowercase text, spaced text; then answer
        ([f"{pl}. {pro}", f"{pl.lower()}.", f"Z. {pro.lower()}", f"  {pro.replace(' ', '  ')}  ", f"{cl}. {answer}"],
         False),
        ([pl, f"{pl.lower()}.", "C. Some text."], False),  # moves, then the first category by letter
        ([pro.upper()], False),  # 'H.' in the shouted text is cut as a letter prefix: nothing is left
        # the text wins over a contradicting letter; then a text without its trailing period is a mismatch
        ([f"{al}. {pro}", pro.rstrip(".")], False),
        ([cl], False),  # the answer by its letter alone
        ([f"{wl}."], False),  # a wrong category by letter
        ([answer.rstrip(".")], False),  # the answer without its trailing period
        ([f"{al}. {answer}"], False),  # the answer's text behind the abstain option's letter
        ([f"{cl}. Something else entirely."], False),  # wrong text, right letter: the letter fallback
        ([f"I think {pl}. no, {cl}. {answer}"], False),  # the prefix is cut up to the last 'X.'
        (["", "nonsense"], False),
        ([pl, "G", "f"], False),  # a move, then a letter out of range
        ([f"{pro} {answer}"], False),  # two texts glued together
        ([chr(65 + ans_idx)], True),  # reference: categories are lettered from A
        ([cl], True),
        ([pro], True),  # reference: an option is not among the choices
    ]


@pytest.fixture(scope="module")
def played(release: Release) -> tuple[dict[str, Any], list[Outcome]]:
    """Every job of the release, played in the official environment (one subprocess) and in our replay."""
    jobs = standard_jobs(release.records, _letter_sequences)
    return play_both(NAME, release.test_dir, jobs, release.episodes, release.frame_paths)


# ----------------------------------------------------------------------------------------------------------------
# The release itself (no official package needed).


def test_release_native_and_official_agree(release: Release):
    """The JSONL records are the native rows' official records and the frame files are the native frames."""
    assert release.records, "empty release"
    assert sorted(release.records) == list(range(len(release.records)))
    assert sorted(release.episodes) == sorted(release.records)
    for sid, rec in release.records.items():
        ep = release.episodes[sid]
        assert ep.official is not None and ep.official.name == NAME
        assert {"id": sid, **ep.official.record} == rec
        assert rec["num_images"] == len(ep.frames) == len(ep.states) == ep.max_steps
        assert rec["reference_image"] == ep.reference_frame == rec["num_images"] - 1
        assert rec["first_image"] == ep.states[ep.initial_state].frame == 0
        for rel_path, k in release.frame_paths(sid).items():
            path = release.test_dir / rel_path
            assert path.is_file(), f"id {sid}: {rel_path} missing"
            assert path.read_bytes() == ep.frames[k], f"id {sid}: {rel_path} is not native frame {k}"


# ----------------------------------------------------------------------------------------------------------------
# Official environment vs our replay.


@requires_official
def test_official_runs_every_record_cleanly(release: Release, played):
    report, outcomes = played
    assert report["records"] == len(release.records)
    assert sorted(report["ids"]) == sorted(release.records)
    problems = []
    for o in outcomes:
        off = o.official
        if off["error"]:
            problems.append(f"{describe(o)}: official raised\n{off['error']}")
        if off["image_errors"]:
            problems.append(f"{describe(o)}: {off['image_errors']}")
        if not off["stopped"]:
            problems.append(f"{describe(o)}: the official environment did not stop")
        if None in o.official_frames:
            problems.append(f"{describe(o)}: visited a path that is not a frame of the record: {off['images']}")
    assert not problems, "\n".join(problems[:20])


@requires_official
def test_official_and_replay_agree(release: Release, played):
    """Same turns, correctness, frames, shown options, answers, verdicts and max_steps flag for every job."""
    _, outcomes = played
    disagreements = []
    for o in outcomes:
        off, ours = o.official, o.ours
        got = {
            "num_turns": off["num_turns"], "correct_prediction": off["correct_prediction"],
            "max_steps": off["max_steps"], "frames": o.official_frames, "answers": off["answers"],
            "options": off["options"], "action_evaluations": off["action_evaluations"],
            "category_evaluations": off["category_evaluations"],
        }
        diff = {k: (got[k], ours[k]) for k in got if got[k] != ours[k]}
        if diff:
            disagreements.append(f"{describe(o)}: (official, replay) {diff}")
    n_jobs = len(outcomes)
    assert not disagreements, f"{len(disagreements)}/{n_jobs} jobs disagree:\n" + "\n".join(disagreements[:15])


@requires_official
def test_hint_prompt_matches(release: Release, played):
    _, outcomes = played
    for o in of_policy(outcomes, "first"):
        ep = release.episodes[o.job["id"]]
        assert o.official["hint_prompt"] == f"{ep.prompt} {ep.hint}"


@requires_official
def test_oracle_scores_100_percent(release: Release, played):
    """The oracle is correct on every record, after moving through every frame (n turns, last one answers)."""
    _, outcomes = played
    oracle = of_policy(outcomes, "oracle")
    assert len(oracle) == len(release.records)
    accuracy = sum(o.official["correct_prediction"] for o in oracle) / len(oracle)
    assert accuracy == 1.0, [describe(o) for o in oracle if not o.official["correct_prediction"]]
    for o in oracle:
        n = release.records[o.job["id"]]["num_images"]
        assert o.official["num_turns"] == n
        assert o.official_frames == list(range(n))
        assert o.official["action_evaluations"] == ["correct"] * (n - 1) + ["mismatch"]
        assert o.official["category_evaluations"][-1] == "correct"
        assert o.ours["correct_prediction"] and o.ours["num_turns"] == n


@requires_official
def test_always_proactive_reaches_last_frame_and_fails(release: Release, played):
    """Always asking for more strokes walks to the last frame in exactly ``num_images`` turns, then ends.

    Official behaviour: at the last frame the proactive option is still shown but no longer correct, so choosing
    it is a *wrong* action with a *mismatched* category, which stops the episode (it also hits max_steps there).
    """
    _, outcomes = played
    for o in of_policy(outcomes, "proactive"):
        rec = release.records[o.job["id"]]
        n = rec["num_images"]
        for side, frames in (("official", o.official_frames), ("replay", o.ours["frames"])):
            res = o.official if side == "official" else o.ours
            assert res["num_turns"] == n, f"{side} {describe(o)}"
            assert frames == list(range(n)) and frames[-1] == rec["reference_image"] == n - 1, f"{side}"
            assert res["correct_prediction"] is False, f"{side} {describe(o)}"
            assert res["max_steps"] is True, f"{side} {describe(o)}"
            assert res["action_evaluations"] == ["correct"] * (n - 1) + ["wrong"], f"{side} {describe(o)}"
            assert res["category_evaluations"] == ["mismatch"] * n, f"{side} {describe(o)}"


@requires_official
def test_reference_mode_is_correct_in_one_turn(release: Release, played):
    _, outcomes = played
    for o in of_policy(outcomes, "reference"):
        rec = release.records[o.job["id"]]
        for res in (o.official, o.ours):
            assert res["num_turns"] == 1 and res["correct_prediction"] is True, describe(o)
            assert res["action_evaluations"] == ["mismatch"] and res["category_evaluations"] == ["correct"]
            assert res["options"] == [rec["categories"]]
        assert o.official_frames == [rec["reference_image"]] == o.ours["frames"]


@requires_official
def test_first_and_abstain_end_after_one_turn(release: Release, played):
    _, outcomes = played
    for o in of_policy(outcomes, "first"):
        for res in (o.official, o.ours):
            assert res["num_turns"] == 1 and res["correct_prediction"] is True, describe(o)
        assert o.official_frames == [0]
    for o in of_policy(outcomes, "abstain"):
        for res in (o.official, o.ours):
            assert res["num_turns"] == 1 and res["correct_prediction"] is False, describe(o)
            assert res["action_evaluations"] == ["wrong"] and res["category_evaluations"] == ["mismatch"]
        assert o.official_frames == [0]


@requires_official
def test_letter_sequences_cover_every_verdict(release: Release, played):
    """The raw-answer sequences exercise correct, wrong and mismatch verdicts on both the action and category."""
    _, outcomes = played
    letters = of_policy(outcomes, "letters")
    seen_action = {v for o in letters for v in o.official["action_evaluations"]}
    seen_category = {v for o in letters for v in o.official["category_evaluations"]}
    assert seen_action == {"correct", "wrong", "mismatch"}
    assert seen_category == {"correct", "wrong", "mismatch"}
    assert any(o.official["correct_prediction"] for o in letters)
    assert any(o.official["num_turns"] > 1 for o in letters)
