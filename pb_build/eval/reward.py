"""The GRPO reward of the paper (§5) on the rows ``pb-build train-split`` writes, with TRL's signature.

An answer earns r_c = 1 when it selects the ground-truth category, r_p when it selects one of the state's valid
proactive actions (``proactive_actions``; r_p = 0.5, 0.75 or 1.0 in the paper), and 0 otherwise: a wrong category,
an abstain option, an invalid suggestion or unparseable text. Answers are matched exactly as the benchmark's MCQA
matcher reads them (full option text, or its letter in the row's ``options`` order), so a reward of 1 during
training means "counted correct by the benchmark".

``proactive_reward(r_p)`` returns a function ``reward(prompts, completions, ground_truth, proactive_actions,
options, **kwargs) -> list[float]``, the ``reward_funcs`` signature of TRL's ``GRPOTrainer`` (the dataset's
columns arrive as keyword lists, one entry per completion). Completions may be strings or chat messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pb_build.matching import judge

R_CORRECT = 1.0
R_WRONG = 0.0
PAPER_R_P = (0.5, 0.75, 1.0)


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the last message's content in a chat completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal content items
            return "".join(c.get("text") or "" for c in content if isinstance(c, dict))
        return str(content)
    return ""


def score(answer: str, ground_truth: str, proactive_actions: list[str], options: list[str], r_p: float) -> float:
    """The reward of one answer for one training row."""
    if judge(answer, [ground_truth], options, 0)[0] == "correct":
        return R_CORRECT
    if proactive_actions and judge(answer, list(proactive_actions), options, 0)[0] == "correct":
        return r_p
    return R_WRONG


def proactive_reward(r_p: float = 0.5) -> Callable[..., list[float]]:
    """The paper's reward as a TRL reward function (``__name__`` records r_p for TRL's logs)."""
    if not 0.0 <= r_p <= R_CORRECT:
        raise ValueError(f"r_p must lie in [0, 1], got {r_p}")

    def reward(prompts: list[Any], completions: list[Any], ground_truth: list[str],
               proactive_actions: list[list[str]], options: list[list[str]], **kwargs: Any) -> list[float]:
        return [score(completion_text(c), gt, list(pa or []), list(opts), r_p)
                for c, gt, pa, opts in zip(completions, ground_truth, proactive_actions, options, strict=True)]

    reward.__name__ = f"proactive_reward_rp{r_p:g}"
    return reward
