"""The paper's settings: prompt variants (§4.3), qwen_vl_utils resizing, generation config, judge cut-off, and the
evaluator's one-line errors (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from pb_build.cli import main
from pb_build.eval import data
from pb_build.eval.images import prepare, smart_resize
from pb_build.eval.judge import THINKING_UNFINISHED, ThinkingUnfinished, judge_generations
from pb_build.eval.prompts import cot_prompt, history_conversation, icl_example, mcqa_prompt
from pb_build.eval.runner import icl_context, run_mcqa
from pb_build.replay import Replay, oracle

try:
    from test_eval_support import build_sample_release, build_source_release
except ImportError:  # tests/ imported as a package
    from tests.test_eval_support import build_sample_release, build_source_release


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return build_sample_release(tmp_path_factory.mktemp("qd") / "release")


@pytest.fixture(scope="module")
def rod_release(tmp_path_factory) -> Path:
    return build_source_release(tmp_path_factory.mktemp("rod"), "rod")


# --- images -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("hw", "expected"), [
    ((1080, 1920), (1092, 1932)), ((480, 640), (476, 644)), ((224, 224), (224, 224)),
    ((10, 10), (56, 56)),            # below min_pixels (4·28²): scaled up
    ((4000, 6000), (2912, 4368)),    # above max_pixels (16384·28²): scaled down
    ((27, 13), (84, 56)),
    ((5, 300), (28, 308)),           # qwen_vl_utils keeps a side of at least 28 before the pixel bounds
])
def test_smart_resize_known_values(hw, expected):
    assert smart_resize(*hw) == expected
    h, w = smart_resize(*hw)
    assert h % 28 == 0 and w % 28 == 0 and 4 * 28 * 28 <= h * w <= 16384 * 28 * 28


def test_smart_resize_refuses_extreme_aspect_ratios_and_prepare_is_per_family():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 300)
    img = Image.new("RGB", (640, 480))
    assert prepare(img, "qwen2_5_vl").size == (644, 476)
    assert prepare(img, "llava_onevision") is img and prepare(img, "internvl") is img


# --- prompt variants ------------------------------------------------------------------------------------------------

def test_icl_example_plays_the_episode_to_the_correct_answer(release: Path):
    ep = data.load(release, "quickdraw", limit=1).items[0].episode
    steps = icl_example(ep, hint=True)
    assert len(steps) == len(ep.states) and steps[-1]["answer"] == ep.answer
    assert all(s["answer"] == ep.options[ep.states[0].valid[0]] for s in steps[:-1])
    assert all(ep.hint in s["prompt"] for s in steps)
    rep = Replay(ep)
    for s in steps:
        assert s["prompt"] == mcqa_prompt(rep, hint=True) and s["frame"] == rep.frame
        rep.answer(s["answer"])
    assert rep.done and rep.correct
    assert cot_prompt(ep) is None
    with pytest.raises(ValueError, match="no chain-of-thought"):
        icl_example(ep, cot=True)


def test_rod_icl_example_with_cot_moves_once_then_answers(rod_release: Path):
    ep = data.load(rod_release, "rod", limit=1).items[0].episode
    steps = icl_example(ep, cot=True)
    assert len(steps) == 2 and steps[1]["answer"] == ep.answer
    first = str(steps[0]["answer"])
    assert first.startswith("I cannot see what is behind the occluding object.")
    assert first.startswith(cot_prompt(ep) + " ")
    rep = Replay(ep)
    for s in steps:
        rep.answer(str(s["answer"]))
    assert rep.correct  # the official matcher reads the option after the CoT text


def test_history_and_in_context_queries_carry_earlier_turns(release: Path):
    items = data.load(release, "quickdraw", limit=3).items
    seen = []

    def decide(queries):
        seen.extend((q, q.replay.num_turns) for q in queries)
        return [oracle(q.replay) for q in queries]

    shots = icl_context([items[0].episode])
    records = run_mcqa(items[1:], decide, batch_size=2, history=True, examples=shots)
    assert all(r["correct"] for r in records)
    for q, turns_before in seen:
        own = q.context[len(shots):]
        assert q.context[:len(shots)] == shots and len(own) == turns_before
        assert [p for _, p, _ in own] == [t["prompt"] for r in records if r["key"] == q.episode.key
                                          for t in r["turns"]][:len(own)]
    conv = history_conversation([("img0", "p0", "a0")], "img1", "p1")
    assert [m["role"] for m in conv] == ["user", "assistant", "user"]
    assert conv[2]["content"] == [{"type": "image", "image": "img1"}, {"type": "text", "text": "p1"}]


def test_variants_through_the_cli(release: Path, tmp_path: Path):
    out = tmp_path / "icl"
    result = _cli("eval", release, "--source", "QD", "--policy", "oracle", "--limit", "5", "--icl-examples", "2",
                  "--history", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["history"] is True and run["icl_examples"] == 2 and len(run["icl_example_ids"]) == 2
    assert len((out / "trajectories.jsonl").read_text().splitlines()) == 3
    bad = _cli("eval", release, "--source", "QD", "--policy", "oracle", "--icl-examples", "1", "--cot", "--out",
               tmp_path / "cot")
    # a bad option value is a usage error (2)
    assert bad.exit_code == 2 and "no chain-of-thought prompt" in bad.output and not (tmp_path / "cot").exists()


# --- judge ----------------------------------------------------------------------------------------------------------

def test_a_judge_answer_ending_inside_its_thinking_is_unparsed():
    gens = [{"id": i, "key": f"k{i}", "source": "quickdraw", "official_name": "QuickDraw", "prompt": "Q?",
             "valid_answers": "Add more details to the drawing, House.", "status": "ok", "generation": "Draw."}
            for i in range(2)]
    outputs = iter([ThinkingUnfinished("so the answer is 1, 1"), "1, 1"])
    judged = {j["id"]: j for j in judge_generations(gens, lambda batch: [next(outputs) for _ in batch])}
    assert judged[0]["parsed"] is False and judged[0]["parse_error"] == THINKING_UNFINISHED
    assert judged[0]["aggregate"] == 0 and judged[0]["judge_output"] == "so the answer is 1, 1"
    assert judged[1]["parsed"] is True and judged[1]["aggregate"] == 1


def test_judge_checks_the_run_folder_before_loading_a_judge(release: Path, tmp_path: Path):
    missing = _cli("judge", tmp_path / "nope", "--judge", "./no-such-judge")
    assert missing.exit_code == 1 and "run folder does not exist" in missing.output
    mcqa = tmp_path / "mcqa"
    assert _cli("eval", release, "--source", "QD", "--policy", "oracle", "--limit", "2", "--out", mcqa,
                "--quiet").exit_code == 0
    wrong = _cli("judge", mcqa, "--judge", "./no-such-judge")
    assert wrong.exit_code == 1 and "only OEG runs are judged" in wrong.output
    oeg = tmp_path / "oeg"
    oeg.mkdir()
    (oeg / "run.json").write_text(json.dumps({"mode": "oeg"}))
    empty = _cli("judge", oeg, "--judge", "./no-such-judge")
    assert empty.exit_code == 1 and "no generations.jsonl" in empty.output
    (oeg / "generations.jsonl").write_text("")
    no_judge = _cli("judge", oeg, "--judge", "./no-such-judge")
    assert no_judge.exit_code == 1 and "model folder does not exist" in no_judge.output
    assert "Traceback" not in no_judge.output and "alphanumeric" not in no_judge.output


# --- models: one-line errors ----------------------------------------------------------------------------------------

def test_missing_model_folder_and_cuda_without_cuda_give_one_line_and_no_run_folder(release: Path, tmp_path: Path):
    torch = pytest.importorskip("torch")
    out = tmp_path / "run"
    result = _cli("eval", release, "--source", "QD", "--model", "./no-such-folder", "--out", out)
    assert result.exit_code == 1 and "./no-such-folder: model folder does not exist" in result.output
    assert "alphanumeric" not in result.output and not out.exists()
    result = _cli("eval", release, "--source", "QD", "--model", "./no-such-folder", "--model", "./other", "--out",
                  tmp_path / "many")
    assert result.exit_code == 1 and not (tmp_path / "many").exists()  # no empty <model>/<source> folders left
    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    from pb_build.eval import tiny

    model_dir = tiny.save_tiny_vlm(tmp_path / "model")
    result = _cli("eval", release, "--source", "QD", "--model", model_dir, "--device", "cuda", "--out", out)
    assert result.exit_code == 2 and "has no CUDA device" in result.output and not out.exists()  # --device's value
    assert len(result.output.strip().splitlines()) == 2  # the evaluation-set line and the error


def test_generation_official_keeps_the_checkpoint_config_greedy_overrides_it():
    pytest.importorskip("torch")
    from pb_build.eval import tiny
    from pb_build.eval.backends import TransformersBackend

    model, proc = tiny.tiny_vlm()
    model.generation_config.repetition_penalty = 1.3
    official = TransformersBackend(model, proc, max_new_tokens=7)
    greedy = TransformersBackend(model, proc, max_new_tokens=7, generation="greedy")
    assert official._generation_config().repetition_penalty == 1.3
    assert greedy._generation_config().repetition_penalty == 1.0 and not greedy._generation_config().do_sample
    assert official.settings()["generation"] == "official" and official.settings()["repetition_penalty"] == 1.3
    assert official.settings()["image_preparation"] == "qwen_vl_utils.smart_resize"


def test_the_default_evaluation_set_is_the_filtered_one_when_the_release_carries_it(release: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(release, copy)
    n = len(data.load(copy, "quickdraw").items)
    plain = _cli("eval", copy, "--source", "QD", "--policy", "oracle", "--out", tmp_path / "all", "--quiet")
    assert plain.exit_code == 0 and "evaluation set all samples" in plain.output
    (copy / "test" / "QuickDraw_filter.json").write_text(json.dumps([0, 2, 4]))
    default = _cli("eval", copy, "--source", "QD", "--policy", "oracle", "--out", tmp_path / "paper", "--quiet")
    assert default.exit_code == 0 and "evaluation set filtered" in default.output
    ids = [json.loads(x)["id"] for x in (tmp_path / "paper" / "trajectories.jsonl").read_text().splitlines()]
    assert ids == [0, 2, 4]
    assert json.loads((tmp_path / "paper" / "run.json").read_text())["evaluation_set"].endswith("QuickDraw_filter.json")
    every = _cli("eval", copy, "--source", "QD", "--policy", "oracle", "--all-samples", "--out", tmp_path / "every",
                 "--quiet")
    assert every.exit_code == 0
    assert len((tmp_path / "every" / "trajectories.jsonl").read_text().splitlines()) == n
