"""The evaluator agrees with the official ``proactivebench`` environments on exported records.

For each of the seven sources a small release is built (``test_eval_support.build_source_release``); the
official environments (Python 3.12, see ``tests/official.py``) and the evaluator's batched runner
(``pb_build.eval.runner.run_mcqa``, which drives the generic replay) play the same scripted answers: the
driver's oracle, always-proactive, always-abstain, answer-at-first-step, reference, and fixed answer sequences
mixing letters and free text with letter prefixes. Per job, correctness, turn count, max-steps flag, per-turn
verdicts and raw answers must agree, and the prompt the evaluator sends at every turn must equal the official
``apply_multi_choice_template(question, options, short_answer=True)`` for that state and the official shown
options. The official question (with pre-prompt, hint and the reference prompt), the OEG valid answers, the
judge messages and the judge parsing are compared through a probe script run in the official interpreter.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pb_build.episode import Episode
from pb_build.eval import judge, oeg, prompts
from pb_build.eval.data import Item
from pb_build.eval.policies import get_policy
from pb_build.eval.runner import Query, policy_decider, run_mcqa
from pb_build.eval.sources import alias
from pb_build.replay import POLICIES

try:
    from official import official_python, requires_official, run_official_report
    from test_eval_support import ALL_SOURCES, build_source_release, release_episodes, release_records
except ImportError:  # tests/ imported as a package
    from tests.official import official_python, requires_official, run_official_report
    from tests.test_eval_support import ALL_SOURCES, build_source_release, release_episodes, release_records

pytestmark = requires_official

RAW_OUTPUTS = ["0, 1", "1,0", "I think... 1, 1", "0\n1", "answer: 1, 0, 1", "nothing", "1, 0\nconfidence 1",
               "0 , 0", "", "1"]

PROBE = r'''
import ast, json, os, sys
import proactivebench
from proactivebench.environment import get_environment
from proactivebench.open_ended_gen import get_oeg_judge_messages, parse_judge_prediction
spec = json.load(sys.stdin)
name, data_dir, alias, raws = spec["name"], spec["data_dir"], spec["alias"], spec["raws"]
out = {"package": os.path.dirname(proactivebench.__file__), "records": {}}
with open(os.path.join(data_dir, name + "_preprocessed.jsonl"), encoding="utf-8") as handle:
    for line in handle:
        entry = json.loads(line)
        env = get_environment(name)(entry, data_dir)
        state, hinted = env.get_state(), env.get_state(hint=True)
        ref = get_environment(name)(entry, data_dir, reference=True)
        ref_state, ref_hinted = ref.get_state(), ref.get_state(hint=True)
        answers = env.get_open_ended_gen_answers()
        out["records"][entry["id"]] = {
            "question": state["prompt"], "hint_question": hinted["prompt"], "options": state["options"],
            "reference_question": ref_state["prompt"], "reference_hint_question": ref_hinted["prompt"],
            "reference_options": ref_state["options"], "oeg_answers": answers,
            "judge_messages": get_oeg_judge_messages(state["prompt"], answers, "Add details."),
            "parsed": [parse_judge_prediction(answers, raw, alias) for raw in raws],
        }
json.dump(out, sys.stdout)
'''


def _official_function(package: str, module: str, function: str):
    """A pure function of the official package, compiled from its source (its module imports torch)."""
    source = Path(package, f"{module}.py").read_text(encoding="utf-8")
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == function)
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module([node], type_ignores=[]), f"{module}.py", "exec"), namespace)
    return namespace[function]


@dataclass
class Played:
    name: str
    test_dir: Path
    records: dict[int, dict[str, Any]]
    episodes: dict[int, Episode]
    jobs: list[dict[str, Any]]
    official: list[dict[str, Any]]
    ours: list[dict[str, Any]]
    probe: dict[str, Any]


def _letter_sequences(rec: dict[str, Any]) -> list[tuple[list[str], bool]]:
    """Fixed answers: letters, lettered and free texts, texts with wrong prefixes, garbage."""
    opts, cats, answer = rec["options"], rec["categories"], rec["answer"]
    n_opt = len(opts)
    pro_idx = next(i for i, o in enumerate(opts) if "cannot" not in o.lower() and "do not" not in o.lower())
    abs_idx = next(i for i, o in enumerate(opts) if "cannot" in o.lower() or "do not" in o.lower())
    pro, pl, al = opts[pro_idx], chr(65 + pro_idx), chr(65 + abs_idx)
    ans_idx = cats.index(answer)
    cl, wl = chr(65 + n_opt + ans_idx), chr(65 + n_opt + (ans_idx + 1) % 4)
    return [
        (["A", "b.", "C. Some text.", "Banana", "nonsense"], False),
        ([f"{pl}. {pro}", f"{pl.lower()}.", f"Z. {pro.lower()}", f"  {pro.replace(' ', '  ')}  ", f"{cl}. {answer}"],
         False),
        ([pl, pl, pl, pl, pl, pl, cl], False),
        ([pro.upper()], False),
        ([f"{al}. {pro}", pro.rstrip(".")], False),
        ([cl], False), ([f"{wl}."], False), ([answer.rstrip(".")], False), ([f"{al}. {answer}"], False),
        ([f"{cl}. Something else entirely."], False), ([f"I think {pl}. no, {cl}. {answer}"], False),
        (["", "nonsense"], False), ([pl, "G", "f"], False), ([f"{pro} {answer}"], False),
        ([f"The answer is {answer}"], False), ([f"Answer: {cl}"], False),
        ([chr(65 + ans_idx)], True), ([cl], True), ([pro], True), ([f"{chr(65 + ans_idx)}. {answer}"], True),
    ]


def _jobs(records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    for sid in sorted(records):
        for policy in ("oracle", "proactive", "abstain"):
            jobs.append({"id": sid, "policy": policy})
        # answer at the first step (the driver's 'first' cannot answer where turn 1 accepts no category: ROD)
        jobs.append({"id": sid, "policy": "letters", "answers": [records[sid]["answer"]]})
        jobs.append({"id": sid, "policy": "reference", "reference": True})
        for answers, reference in _letter_sequences(records[sid]):
            jobs.append({"id": sid, "policy": "letters", "answers": answers, "reference": reference})
    return jobs


def _driver_oracle(rep) -> str:
    """The official driver's 'oracle': the first correct option in stored order while there is one, else the answer.

    (Not pb-build's oracle, which heads for the reference frame; on ChangeIt the driver's never answers.)
    """
    st = rep.current
    valid = [i for i in st.shown if i in st.valid]
    return rep.episode.options[valid[0]] if valid and not rep.reference else rep.episode.answer


def _scripted(jobs: list[dict[str, Any]]):
    """A decider answering each query as its job says (``Item.sample_id`` is the job index)."""

    def decide(queries: list[Query]) -> list[str]:
        out = []
        for q in queries:
            assert q.replay is not None
            job = jobs[q.replay.episode.meta["_job"]]
            if job["policy"] == "letters":
                out.append(job["answers"][min(q.replay.num_turns, len(job["answers"]) - 1)])
            elif job["policy"] == "reference":
                out.append(q.episode.answer)
            elif job["policy"] == "oracle":
                out.append(_driver_oracle(q.replay))
            else:
                out.append(POLICIES[job["policy"]](q.replay))
        return out

    return decide


def _run_ours(episodes: dict[int, Episode], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from dataclasses import replace

    ours: list[dict[str, Any] | None] = [None] * len(jobs)
    for reference in (False, True):
        idx = [i for i, j in enumerate(jobs) if bool(j.get("reference")) == reference]
        items = [Item(i, replace(ep, meta={**ep.meta, "_job": i}))
                 for i in idx for ep in (episodes[jobs[i]["id"]],)]
        for rec in run_mcqa(items, _scripted(jobs), batch_size=7, reference=reference):
            ours[rec["id"]] = rec
    assert all(o is not None for o in ours)
    return ours  # type: ignore[return-value]


@pytest.fixture(scope="module", params=ALL_SOURCES)
def played(request, tmp_path_factory) -> Played:
    source = request.param
    release = build_source_release(tmp_path_factory.mktemp(f"eval-{source}"), source)
    records, episodes = release_records(release, source), release_episodes(release, source)
    name = next(iter(episodes.values())).official.name
    test_dir = release / "test"
    jobs = _jobs(records)
    official = run_official_report(name, test_dir, jobs)["jobs"]
    spec = json.dumps({"name": name, "data_dir": str(test_dir), "alias": alias(name), "raws": RAW_OUTPUTS})
    proc = subprocess.run([str(official_python()), "-c", PROBE], input=spec, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout)
    probe["records"] = {int(k): v for k, v in probe["records"].items()}
    return Played(name, test_dir, records, episodes, jobs, official, _run_ours(episodes, jobs), probe)


def test_outcomes_agree_per_job(played: Played):
    """Correctness, turn counts, max-steps, verdicts and shown options agree for every scripted job."""
    bad = []
    for job, off, ours in zip(played.jobs, played.official, played.ours, strict=True):
        assert off["error"] is None, f"official error on {job}: {off['error']}"
        assert ours["status"] == "ok", ours["error"]
        got = {"correct": off["correct_prediction"], "num_turns": off["num_turns"], "max_steps": off["max_steps"],
               "actions": off["action_evaluations"], "categories": off["category_evaluations"],
               "answers": off["answers"]}
        mine = {"correct": ours["correct"], "num_turns": ours["num_turns"], "max_steps": ours["max_steps"],
                "actions": [t["action_verdict"] for t in ours["turns"]],
                "categories": [t["category_verdict"] for t in ours["turns"]],
                "answers": [t["answer"] for t in ours["turns"]]}
        diff = {k: (got[k], mine[k]) for k in got if got[k] != mine[k]}
        if diff:
            bad.append(f"{job}: (official, ours) {diff}")
    assert not bad, f"{len(bad)}/{len(played.jobs)} jobs disagree:\n" + "\n".join(bad[:10])


def test_prompts_equal_official_template(played: Played):
    """Every prompt sent equals the official template applied to the official question and shown options."""
    template = _official_function(played.probe["package"], "data_utils", "apply_multi_choice_template")
    for job, off, ours in zip(played.jobs, played.official, played.ours, strict=True):
        probe = played.probe["records"][job["id"]]
        question = probe["reference_question"] if job.get("reference") else probe["question"]
        assert len(off["options"]) == len(ours["turns"])
        for options, turn in zip(off["options"], ours["turns"], strict=True):
            assert turn["prompt"] == template(question=question, options=options, short_answer=True), job
    for sid, probe in played.probe["records"].items():
        ep = played.episodes[sid]
        assert prompts.question(ep, hint=True) == probe["hint_question"]
        assert prompts.question(ep, reference=True) == probe["reference_question"]
        assert prompts.question(ep, hint=True, reference=True) == probe["reference_hint_question"]
        assert prompts.multi_choice(probe["question"], probe["options"]) == template(probe["question"],
                                                                                   probe["options"], True)


def test_visited_frames_agree(played: Played):
    """The frame our replay shows has the bytes of the file the official environment opens.

    COCO views are crops the official environment makes at run time from the whole image, so only its reference
    jobs (the whole image) are compared.
    """
    checked = 0
    for job, off, ours in zip(played.jobs, played.official, played.ours, strict=True):
        if played.name == "coco2014" and not job.get("reference"):
            continue
        ep = played.episodes[job["id"]]
        digests = {hashlib.sha256(f).hexdigest(): k for k, f in enumerate(ep.frames)}
        for rel, turn in zip(off["images"], ours["turns"], strict=True):
            official_digest = hashlib.sha256((played.test_dir / rel).read_bytes()).hexdigest()
            if official_digest in digests:
                assert ep.frames[turn["frame"]] == (played.test_dir / rel).read_bytes(), (job, rel)
                checked += 1
    assert checked


def test_oeg_answers_and_judge_agree(played: Played):
    """OEG valid answers, judge messages and judge parsing equal the official functions."""
    for sid, probe in played.probe["records"].items():
        ep = played.episodes[sid]
        answers = oeg.valid_answers(ep)
        assert answers == probe["oeg_answers"]
        assert prompts.oeg_prompt(ep) == probe["question"]
        assert judge.judge_messages(probe["question"], answers, "Add details.") == probe["judge_messages"]
        parsed = [judge.parse_judge_prediction(answers, raw, alias(played.name)) for raw in RAW_OUTPUTS]
        assert parsed == probe["parsed"]


def test_judge_prompts_are_the_official_ones(played: Played):
    package = Path(played.probe["package"])
    source = (package / "open_ended_gen.py").read_text(encoding="utf-8")
    consts = {t.id: ast.literal_eval(n.value) for n in ast.parse(source).body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name)}
    assert consts["SYSTEM_PROMPT"] == judge.SYSTEM_PROMPT
    assert consts["USER_PROMPT"] == judge.USER_PROMPT
    assert consts["PREDICTION_THR"] == oeg.THRESHOLDS


def test_oracle_policy_scores_100_percent(played: Played):
    """The evaluator's ``--policy oracle`` is correct on every episode of the release."""
    items = [Item(sid, ep) for sid, ep in played.episodes.items()]
    recs = run_mcqa(items, policy_decider(get_policy("oracle")), batch_size=16)
    assert len(recs) == len(items) and all(r["correct"] for r in recs)
