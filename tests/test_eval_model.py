"""Tiny randomly initialised vision-language models (real architectures, built from configs) end to end on CPU.

Needs the eval extra (torch, transformers); skipped with the reason otherwise. Nothing is downloaded: the models
are built from configs, saved like Hub checkpoints and loaded back with ``from_pretrained``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import EVAL_HINT

pytest.importorskip("torch", reason=f"the evaluator's model tests need torch: {EVAL_HINT}")
pytest.importorskip("transformers", reason=f"the evaluator's model tests need transformers: {EVAL_HINT}")

from click.testing import CliRunner  # noqa: E402

from pb_build.cli import main  # noqa: E402
from pb_build.errors import PbBuildError  # noqa: E402
from pb_build.eval import data, tiny  # noqa: E402
from pb_build.eval.backends import TransformersBackend, load_vlm  # noqa: E402
from pb_build.eval.judge import CausalJudge, after_last, judge_generations  # noqa: E402
from pb_build.eval.runner import run_mcqa  # noqa: E402

try:
    from test_eval_support import build_sample_release
except ImportError:  # tests/ imported as a package
    from tests.test_eval_support import build_sample_release



@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return build_sample_release(tmp_path_factory.mktemp("qd") / "release")


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory) -> Path:
    return tiny.save_tiny_vlm(tmp_path_factory.mktemp("tiny-qwen2_5_vl"), "qwen2_5_vl")


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory) -> Path:
    return tiny.save_tiny_judge(tmp_path_factory.mktemp("tiny-qwen3"))


def _cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


@pytest.mark.parametrize("architecture", tiny.ARCHITECTURES)
def test_batched_answers_equal_one_by_one(release: Path, architecture: str):
    """Left-padded batches give each episode the same greedy answers as running it alone."""
    model, proc = tiny.tiny_vlm(architecture)
    backend = TransformersBackend(model, proc, max_new_tokens=12)
    items = data.load(release, "quickdraw", limit=5).items
    together = {r["id"]: r for r in run_mcqa(items, backend, batch_size=5)}
    alone = {r["id"]: r for r in run_mcqa(items, backend, batch_size=1)}
    assert together == alone
    assert all(r["status"] == "ok" and r["turns"][0]["answer"] for r in together.values())


def test_mcqa_end_to_end_from_a_saved_checkpoint(release: Path, vlm_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = _cli("eval", str(release), "--source", "QD", "--model", str(vlm_dir), "--limit", "4", "--batch-size",
                  "3", "--hint", "--out", str(out), "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "acc" in result.output and "psr" in result.output
    recs = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(r["status"] == "ok" and r["hint"] for r in recs)
    assert all("Hint: Adding more details" in r["turns"][0]["prompt"] for r in recs)
    run = json.loads((out / "run.json").read_text())
    assert run["model_class"] == "Qwen2_5_VLForConditionalGeneration"
    assert run["processor_class"].startswith("ImageOnly") or run["processor_class"] == "Qwen2_5_VLProcessor"
    assert run["max_new_tokens"] == 50 and run["do_sample"] is False and run["dtype"] == "torch.float32"
    ref = tmp_path / "ref"
    result = _cli("eval", str(release), "--source", "quickdraw", "--model", str(vlm_dir), "--limit", "3",
                  "--reference", "--out", str(ref), "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "reference accuracy" in result.output
    assert all(r["num_turns"] == 1 for r in map(json.loads, (ref / "trajectories.jsonl").read_text().splitlines()))


def test_oeg_end_to_end_and_judge_second_pass(release: Path, vlm_dir: Path, judge_dir: Path, tmp_path: Path):
    out = tmp_path / "oeg"
    result = _cli("eval", str(release), "--source", "QD", "--model", str(vlm_dir), "--mode", "oeg", "--oeg-samples",
                  "5", "--max-new-tokens", "8", "--out", str(out), "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    gens = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 5 and all(g["status"] == "ok" and g["threshold"] == 1 for g in gens)
    assert all(g["valid_answers"].startswith("Add more details to the drawing, ") for g in gens)
    result = _cli("judge", str(out), "--judge", str(judge_dir), "--max-new-tokens", "8", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "cc" in result.output and "did not parse" in result.output  # a random judge emits no 0/1 list
    judged = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
    assert len(judged) == 5 and all(j["parse_error"] for j in judged)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"]["QD"]["unparsed"] == 5 and summary["avg"]["agg"] == 0.0


def test_judge_protocol_with_a_scripted_judge(release: Path):
    gens = [{"id": i, "key": f"k{i}", "source": "quickdraw", "official_name": "QuickDraw", "prompt": "Q?",
             "valid_answers": "Add more details to the drawing, House.", "status": "ok", "generation": "Draw more."}
            for i in range(3)]
    gens.append({**gens[0], "id": 9, "status": "failed", "generation": None, "error": "boom"})
    outputs = iter(["Reasoning: the output asks for details.\n1, 0", "0,1", "I cannot decide."])
    judged = judge_generations(gens, lambda batch: [next(outputs) for _ in batch], batch_size=2)
    by_id = {j["id"]: j for j in judged}
    assert (by_id[0]["proactive_suggestion"], by_id[0]["category_prediction"], by_id[0]["aggregate"]) == (1, 0, 1)
    assert (by_id[1]["proactive_suggestion"], by_id[1]["category_prediction"]) == (0, 1)
    assert by_id[2]["parsed"] is False and "no comma-separated list" in by_id[2]["parse_error"]
    assert by_id[9]["status"] == "failed" and by_id[9]["aggregate"] == 0


def test_causal_judge_runs_and_strips_thinking(judge_dir: Path):
    judge = CausalJudge.from_pretrained(str(judge_dir), device="cpu", max_new_tokens=6)
    assert judge.think_end == judge.tokenizer.convert_tokens_to_ids("</think>")
    outs = judge([[{"role": "user", "content": "a"}], [{"role": "user", "content": "a longer one"}]])
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
    assert after_last([1, 2, 9, 3, 9, 4, 5], 9) == [4, 5]
    assert after_last([1, 2], 9) == [1, 2] and after_last([1, 2], None) == [1, 2]


def test_bad_inputs(release: Path, judge_dir: Path, tmp_path: Path):
    """A text-only model, an image that does not decode: clear messages; the failed episode is recorded."""
    with pytest.raises(PbBuildError, match="not a vision-language model"):
        load_vlm(str(judge_dir), device="cpu")
    result = _cli("eval", str(release), "--source", "QD", "--model", str(judge_dir), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "not a vision-language model" in result.output
    model, proc = tiny.tiny_vlm()
    backend = TransformersBackend(model, proc, max_new_tokens=4)
    items = data.load(release, "quickdraw", limit=3).items
    broken = dataclasses.replace(items[1].episode, frames=(b"not an image",) * len(items[1].episode.frames))
    recs = {r["id"]: r for r in run_mcqa([items[0], data.Item(items[1].sample_id, broken), items[2]], backend)}
    assert recs[items[1].sample_id]["status"] == "failed"
    assert "does not decode" in recs[items[1].sample_id]["error"]
    assert recs[items[0].sample_id]["status"] == recs[items[2].sample_id]["status"] == "ok"


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("PB_RUN_SLOW"), reason="slow: set PB_RUN_SLOW=1")
def test_benchmark_runs_on_cpu(tmp_path: Path):
    """bench/eval_batched.py: the batched loop is ahead of the sequential one; the GPU path dry-runs on CPU."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_batched", Path(__file__).parent.parent / "bench" /
                                                  "eval_batched.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "cpu.json"
    assert bench.main(["--episodes", "12", "--batch-size", "12", "--max-new-tokens", "10", "--json", str(out)]) == 0
    cpu = json.loads(out.read_text())
    assert cpu["same_outcomes"] and cpu["ratio"] > 1
    out = tmp_path / "gpu.json"
    assert bench.main(["--gpu", "--tiny-config", "--device", "cpu", "--episodes", "4", "--batch-sizes", "1,2",
                       "--max-new-tokens", "5", "--json", str(out)]) == 0
    assert [r["batch_size"] for r in json.loads(out.read_text())["results"]] == [1, 2]
