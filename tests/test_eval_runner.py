"""The batched step loop with scripted policies: outcomes, batching independence, failures, metrics, prompts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pb_build.errors import PbBuildError
from pb_build.eval import data, metrics, oeg, prompts
from pb_build.eval.data import Item
from pb_build.eval.policies import NAMES, get_policy
from pb_build.eval.run import evaluate, prepare_out, read_jsonl
from pb_build.eval.runner import Query, parse_choice, policy_decider, run_mcqa, run_oeg
from pb_build.replay import Replay, play

try:
    from test_eval_support import build_sample_release
except ImportError:  # tests/ imported as a package
    from tests.test_eval_support import build_sample_release


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[Item]:
    release = build_sample_release(tmp_path_factory.mktemp("qd") / "release")
    return data.load(release, "quickdraw").items


def _by_id(records):
    return {r["id"]: r for r in records}


@pytest.mark.parametrize("policy", NAMES)
def test_runner_equals_sequential_replay(items, policy: str):
    """Any batch size gives the same trajectories as playing each episode alone with the same policy."""
    pol = get_policy(policy, seed=3)
    alone = {i.sample_id: play(i.episode, pol) for i in items}
    for batch_size in (1, 5, 64):
        recs = _by_id(run_mcqa(items, policy_decider(pol), batch_size=batch_size))
        assert sorted(recs) == sorted(alone)
        for sid, rep in alone.items():
            rec = recs[sid]
            assert rec["correct"] == rep.correct and rec["num_turns"] == rep.num_turns
            assert [t["state"] for t in rec["turns"]] == [t.state for t in rep.turns]
            assert [t["answer"] for t in rec["turns"]] == [t.answer for t in rep.turns]


def test_policy_scores(items):
    expected = {"oracle": (100.0, None), "first": (100.0, 0.0), "abstain": (0.0, 0.0), "proactive": (0.0, None)}
    for policy, (acc, psr) in expected.items():
        summary = metrics.mcqa_summary(run_mcqa(items, policy_decider(get_policy(policy)), batch_size=8))
        assert summary["sources"]["QD"]["acc"] == acc, policy
        if psr is not None:
            assert summary["sources"]["QD"]["psr"] == psr
    n_frames = sum(len(i.episode.frames) for i in items)
    summary = metrics.mcqa_summary(run_mcqa(items, policy_decider(get_policy("oracle")), batch_size=8))
    assert summary["sources"]["QD"]["psr"] == pytest.approx((n_frames - len(items)) / len(items))
    assert summary["avg"] == {"acc": 100.0, "psr": summary["sources"]["QD"]["psr"]}


def test_random_policy_is_seeded(items):
    runs = [run_mcqa(items, policy_decider(get_policy("random", seed)), batch_size=b)
            for seed, b in ((1, 4), (1, 16), (2, 4))]
    answers = [{r["id"]: [t["answer"] for t in r["turns"]] for r in run} for run in runs]
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]
    with pytest.raises(PbBuildError, match="unknown policy"):
        get_policy("greedy")


def test_failures_are_recorded_and_the_run_goes_on(items):
    """A decider error for one episode marks it failed with its reason; the others finish normally."""
    bad = items[3].sample_id
    oracle = get_policy("oracle")

    def decide(queries: list[Query]):
        return [ValueError("absolute aspect ratio must be smaller than 200")
                if q.uid == 3 and q.replay.num_turns == 1 else oracle(q.replay) for q in queries]

    recs = _by_id(run_mcqa(items, decide, batch_size=4))
    assert len(recs) == len(items)
    assert recs[bad]["status"] == "failed" and not recs[bad]["correct"]
    assert recs[bad]["error"] == "turn 2: ValueError: absolute aspect ratio must be smaller than 200"
    assert recs[bad]["num_turns"] == 1
    assert all(r["correct"] for sid, r in recs.items() if sid != bad)
    summary = metrics.mcqa_summary(recs.values())
    assert summary["sources"]["QD"]["failed"] == 1
    assert summary["sources"]["QD"]["acc"] == pytest.approx(100.0 * (len(items) - 1) / len(items))


def test_trajectory_records_states_prompts_and_choices(items):
    ep = items[0].episode
    rec = run_mcqa(items[:1], policy_decider(get_policy("oracle")))[0]
    first = rec["turns"][0]
    rep = Replay(ep)
    assert first["prompt"] == prompts.mcqa_prompt(rep)
    assert first["choice"] == f"{chr(65 + ep.states[0].valid[0])}. {ep.options[ep.states[0].valid[0]]}"
    last = rec["turns"][-1]
    assert last["choice"].endswith(ep.answer) and last["category_verdict"] == "correct"
    assert [t["frame"] for t in rec["turns"]] == list(range(len(ep.frames)))
    shown = [ep.options[i] for i in ep.states[0].shown]
    assert parse_choice("nonsense", shown, list(ep.categories)) is None
    assert parse_choice("b", shown, list(ep.categories)) == f"B. {shown[1]}"


def test_prompt_assembly():
    """The official template, byte for byte, and the question with pre-prompt, hint and reference prompt."""
    assert prompts.multi_choice("Q?", ["Yes.", "No."]) == (
        "Q? Choose from the following options. Options:\nA. Yes.\nB. No.\n"
        "Please only return one of the options without any other words.")
    assert prompts.multi_choice("Q?", ["Yes."], short_answer=False).endswith("A. Yes.\n")


def test_question_variants(items):
    ep = dataclasses.replace(items[0].episode, pre_prompt="This is a frame extracted from a video. Answer the "
                             "following question.")
    assert prompts.question(ep) == f"{ep.pre_prompt} {ep.prompt}"
    assert prompts.question(ep, hint=True) == f"{ep.pre_prompt} {ep.prompt} {ep.hint}"
    assert prompts.question(items[0].episode, reference=True) == items[0].episode.prompt
    # the reference question is data the source put on the episode (ROD's differs from its prompt)
    first = items[0].episode
    asked = first.with_spec(dataclasses.replace(first.spec, reference_prompt="What type of object is in the image?"))
    assert prompts.question(asked, reference=True) == "What type of object is in the image?"
    assert prompts.question(asked, reference=False) == first.prompt
    assert prompts.oeg_prompt(ep, hint=True).endswith(f"{ep.prompt} {prompts.OEG_HINT}")


def test_oeg_valid_answers(items):
    ep = items[0].episode
    assert oeg.valid_answers(ep) == f"Add more details to the drawing, {ep.answer}"
    assert oeg.threshold(ep) == 1
    nameless = dataclasses.replace(ep, meta={})  # no source spec: nothing says what the valid answers are
    with pytest.raises(PbBuildError, match="no open-ended answers"):
        oeg.valid_answers(nameless)
    recs = run_oeg([items[0], Item(99, nameless)], lambda qs: ["Add details." for _ in qs], batch_size=4)
    assert [r["status"] for r in recs] == ["failed", "ok"] or [r["status"] for r in recs] == ["ok", "failed"]


def test_run_folder(items, tmp_path: Path):
    release_data = data.Dataset(Path("."), "release", "quickdraw", "QuickDraw", items=items[:6],
                                failures=[data.LoadFailure(77, "k", "frame x.png: No such file")],
                                order=[i.sample_id for i in items[:6]] + [77])
    out = tmp_path / "run"
    prepare_out(out, overwrite=False)
    summary = evaluate(release_data, policy_decider(get_policy("oracle")), out, batch_size=4,
                       settings={"policy": "oracle"})
    recs = read_jsonl(out / "trajectories.jsonl")
    assert len(recs) == 7 and sum(r["status"] == "failed" for r in recs) == 1
    assert summary["sources"]["QD"]["n"] == 7 and summary["sources"]["QD"]["failed"] == 1
    run = json.loads((out / "run.json").read_text())
    assert run["policy"] == "oracle" and run["episodes"] == 7 and run["episodes_per_second"] > 0
    assert "acc" in (out / "summary.txt").read_text()
    with pytest.raises(PbBuildError, match="not empty"):
        prepare_out(out, overwrite=False)
    prepare_out(out, overwrite=True)
    assert not (out / "trajectories.jsonl").exists()
