"""The paper's GRPO reward (§5) on train-split rows, and a two-step TRL GRPOTrainer smoke test on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from pb_build.eval import train_split
from pb_build.eval.reward import PAPER_R_P, completion_text, proactive_reward

try:
    from test_eval_support import build_sample_release
except ImportError:  # tests/ imported as a package
    from tests.test_eval_support import build_sample_release


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    release = build_sample_release(tmp_path_factory.mktemp("qd") / "release")
    found, _ = train_split.collect([release], ["quickdraw"])
    return [r.row for r in found]


def _columns(rows: list[dict]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in ("ground_truth", "proactive_actions", "options")}


@pytest.mark.parametrize("r_p", PAPER_R_P)
def test_reward_matches_the_papers_table(rows: list[dict], r_p: float):
    ambiguous = next(r for r in rows if r["proactive_actions"])
    informative = next(r for r in rows if not r["proactive_actions"])
    opts = ambiguous["options"]
    letter = {text: f"{chr(65 + i)}." for i, text in enumerate(opts)}
    wrong_category = next(c for c in opts if c not in ambiguous["proactive_actions"] and c != ambiguous["ground_truth"]
                          and "cannot" not in c.lower() and "do not" not in c.lower())
    abstain = next(c for c in opts if "cannot" in c.lower() or "do not" in c.lower())
    proactive = ambiguous["proactive_actions"][0]
    cases = [  # (row, completion, expected reward)
        (ambiguous, ambiguous["ground_truth"], 1.0),
        (ambiguous, letter[ambiguous["ground_truth"]], 1.0),
        (ambiguous, f"{letter[proactive]} {proactive}", r_p),
        (ambiguous, proactive, r_p),
        (ambiguous, abstain, 0.0),
        (ambiguous, wrong_category, 0.0),
        (ambiguous, "I think it is a banana", 0.0),
        (informative, informative["ground_truth"], 1.0),
        (informative, next(o for o in informative["options"] if o == proactive or "more" in o.lower()), 0.0),
    ]
    reward = proactive_reward(r_p)
    chosen = [row for row, _, _ in cases]
    got = reward(prompts=[r["prompt"] for r in chosen], completions=[c for _, c, _ in cases], **_columns(chosen))
    assert got == [expected for _, _, expected in cases]
    chat = [[{"role": "assistant", "content": c}] for _, c, _ in cases]
    assert reward(prompts=[None] * len(cases), completions=chat, **_columns(chosen)) == got
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "B."}]}]) == "B."


def test_reward_rejects_r_p_outside_0_1():
    with pytest.raises(ValueError, match="r_p"):
        proactive_reward(1.5)


def test_grpo_trainer_runs_two_steps_with_the_reward(rows: list[dict], tmp_path: Path):
    """TRL's GRPOTrainer, a tiny random causal LM, the row prompts as text (the images are left out)."""
    trl = pytest.importorskip("trl", reason="TRL is not installed: pip install -e '.[train]'")
    pytest.importorskip("torch")
    from datasets import Dataset

    from pb_build.eval import tiny

    model, tok = tiny.tiny_judge()
    text_rows = [{"prompt": [{"role": "user", "content": r["prompt"][0]["content"][1]["text"]}],
                  **{k: r[k] for k in ("ground_truth", "proactive_actions", "options")}} for r in rows[:4]]
    seen: list[float] = []
    base = proactive_reward(0.5)

    def reward(prompts, completions, **columns):
        assert len(columns["ground_truth"]) == len(completions)
        out = base(prompts, completions, **columns)
        seen.extend(out)
        return out

    config = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                            max_completion_length=4, max_steps=2, report_to="none", use_cpu=True,
                            save_strategy="no", bf16=False, seed=0, logging_steps=1)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=Dataset.from_list(text_rows),
                              processing_class=tok)
    result = trainer.train()
    assert result.global_step == 2
    assert len(seen) == 8 and all(v in (0.0, 0.5, 1.0) for v in seen)
