"""Scale: data-parallel workers merged (2 CPU processes), InternVL3 OEG batched = batch 1, bf16 batch effects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the evaluator's model tests need the eval extra: pip install -e '.[eval]'")
pytest.importorskip("transformers", reason="the evaluator's model tests need the eval extra: pip install -e '.[eval]'")

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from pb_build.cli import main  # noqa: E402
from pb_build.eval import data, tiny  # noqa: E402
from pb_build.eval.backends import TransformersBackend  # noqa: E402
from pb_build.eval.runner import run_mcqa, run_oeg  # noqa: E402

try:
    from test_eval_support import build_sample_release
except ImportError:  # tests/ imported as a package
    from tests.test_eval_support import build_sample_release


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return build_sample_release(tmp_path_factory.mktemp("qd") / "release")


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


SLOW = pytest.mark.skipif(not __import__("os").environ.get("PB_RUN_SLOW"), reason="slow: set PB_RUN_SLOW=1")


@pytest.mark.parametrize("mode", ["mcqa", pytest.param("oeg", marks=[pytest.mark.slow, SLOW])])
def test_two_data_parallel_workers_merge_to_the_single_process_run(release: Path, tmp_path: Path, mode: str):
    model_dir = tiny.save_tiny_vlm(tmp_path / "model", "qwen2_5_vl")
    common = ["eval", release, "--source", "QD", "--model", model_dir, "--device", "cpu", "--limit", "6",
              "--batch-size", "3", "--max-new-tokens", "4", "--mode", mode, "--oeg-samples", "5", "--quiet"]
    one = _cli(*common, "--out", tmp_path / "one")
    two = _cli(*common, "--data-parallel", "2", "--out", tmp_path / "two")
    assert one.exit_code == 0, one.output
    assert two.exit_code == 0, two.output
    name = "trajectories.jsonl" if mode == "mcqa" else "generations.jsonl"
    assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    shards = [json.loads(line) for k in (0, 1) for line in (tmp_path / "two" / "workers" / str(k) / name)
              .read_text().splitlines()]
    assert len(shards) == (6 if mode == "mcqa" else 5) and len({r["id"] for r in shards}) == len(shards)
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["workers"] == 2 and run["devices"] == ["cpu", "cpu"]
    if mode == "mcqa":
        assert (tmp_path / "two" / "summary.json").read_text() == (tmp_path / "one" / "summary.json").read_text()
    else:
        assert run["oeg_ids"] == json.loads((tmp_path / "one" / "run.json").read_text())["oeg_ids"]


@pytest.mark.parametrize("architecture", tiny.ARCHITECTURES)
def test_oeg_batched_equals_batch_one_in_fp32(release: Path, architecture: str):
    model, proc = tiny.tiny_vlm(architecture)
    backend = TransformersBackend(model, proc, max_new_tokens=8)
    items = data.load(release, "quickdraw", limit=5).items
    together = {r["id"]: r for r in run_oeg(items, backend, batch_size=5)}
    alone = {r["id"]: r for r in run_oeg(items, backend, batch_size=1)}
    assert together == alone and all(r["status"] == "ok" for r in together.values())


def test_bf16_batch_composition_is_measured_and_reported(release: Path, capsys):
    """bf16 answers may change with the batch (padding changes the rounding); measure the share per family."""
    items = data.load(release, "quickdraw", limit=8).items
    report = {}
    for architecture in tiny.ARCHITECTURES:
        model, proc = tiny.tiny_vlm(architecture)
        backend = TransformersBackend(model.to(torch.bfloat16), proc, max_new_tokens=8, generation="greedy")
        together = {r["id"]: r for r in run_mcqa(items, backend, batch_size=8)}
        alone = {r["id"]: r for r in run_mcqa(items, backend, batch_size=1)}
        answers = [(t["answer"], a["answer"]) for i in together
                   for t, a in zip(together[i]["turns"], alone[i]["turns"], strict=False)]
        assert answers and all(r["status"] == "ok" for r in together.values())
        report[architecture] = (sum(x != y for x, y in answers), len(answers))
    with capsys.disabled():
        print("\nbf16, batch 8 vs batch 1, first-divergence answers differing: " +
              ", ".join(f"{k} {d}/{n}" for k, (d, n) in report.items()))
    assert all(0 <= d <= n for d, n in report.values())


@pytest.mark.parametrize("architecture", tiny.ARCHITECTURES)
def test_history_and_in_context_conversations_run_batched_equal_to_batch_one(release: Path, architecture: str):
    """Multi-image conversations (earlier turns, in-context examples) through each family's processor."""
    from pb_build.eval.runner import icl_context

    model, proc = tiny.tiny_vlm(architecture)
    backend = TransformersBackend(model, proc, max_new_tokens=4)
    items = data.load(release, "quickdraw", limit=3).items
    shots = icl_context([items[0].episode])[:2]
    together = {r["id"]: r for r in run_mcqa(items[1:], backend, batch_size=2, history=True, examples=shots)}
    alone = {r["id"]: r for r in run_mcqa(items[1:], backend, batch_size=1, history=True, examples=shots)}
    assert together == alone and all(r["status"] == "ok" for r in together.values()), together


def test_device_map_auto_loads_and_answers_like_the_plain_load(release: Path, tmp_path: Path):
    pytest.importorskip("accelerate", reason="--device-map needs accelerate: pip install -e '.[train]'")
    model_dir = tiny.save_tiny_vlm(tmp_path / "model")
    items = data.load(release, "quickdraw", limit=3).items
    split = TransformersBackend.from_pretrained(str(model_dir), device="cpu", max_new_tokens=4, device_map="auto")
    plain = TransformersBackend.from_pretrained(str(model_dir), device="cpu", max_new_tokens=4)
    assert str(split.model.device) == "cpu"  # one CPU: "auto" places everything there
    assert run_mcqa(items, split, batch_size=3) == run_mcqa(items, plain, batch_size=3)
