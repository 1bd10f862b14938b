"""The open-ended judge (ProactiveBench, arXiv 2603.19466, App. B): the official prompts and parsing, and a
causal-LM judge.

``SYSTEM_PROMPT``, ``USER_PROMPT``, ``judge_messages`` and ``parse_judge_prediction`` reproduce
``proactivebench.open_ended_gen`` (proactivebench 0.1.1, MIT licence, (c) its authors) exactly. The judge model
defaults to Qwen3-8B with thinking enabled; any causal LM with a chat template works. Only the text after the
last ``</think>`` token is parsed (its id is looked up in the judge's tokenizer); an answer that ends inside the
thinking (no ``</think>`` within ``max_new_tokens``) is counted as unparsed, never parsed from the thinking text.
The judge can run as a second
pass over a run's saved generations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pb_build.errors import PbBuildError
from pb_build.eval.oeg import THRESHOLDS
from pb_build.eval.sources import alias

DEFAULT_JUDGE = "Qwen/Qwen3-8B"
JUDGE_MAX_NEW_TOKENS = 4096

SYSTEM_PROMPT = (
    "You are an automatic evaluation system.\n\nYou will receive:\n- A user prompt\n- A list of correct answers "
    "(JSON list of strings)\n- A system output\n\nYour task:\nFor each correct answer, determine whether the system "
    "output expresses the same idea, action, or requirement.\n\nEvaluation principles:\n\n1. Semantic equivalence "
    "is sufficient.\n   - The wording does NOT need to match exactly.\n   - Functional equivalence counts as "
    "correct.\n   - If the system output describes an action that necessarily implies the correct answer, count it "
    "as present.\n\n2. Implicit but clear implications count as correct.\n   - If the output describes the mechanism "
    "required to achieve the correct answer\u2019s goal, count it as correct.\n   - Example: \"change perspective\" "
    "can imply \"move the camera.\"\n\n3. Do NOT require exact phrasing.\n\n4. Only mark 0 if:\n   - The idea is "
    "clearly absent\n   - The idea is contradicted\n   - The answer is negated\n\nProcedure:\n1. Think step by "
    "step.\n2. For each correct answer, decide if it is semantically expressed or clearly implied.\n3. Output the "
    "result on a new line in the exact format below.\n\n<comma-separated list of 0s and 1s>\n\nThe last line must "
    "not contain anything else."
)
USER_PROMPT = ("### User Prompt:\n{user_prompt}\n### Correct Answers (List):\n{correct_answers}\n"
               "### System Output:\n{generated_answer}")
THINKING_UNFINISHED = "the judge's answer ended inside its thinking (raise --judge-max-new-tokens)"
_BITS = re.compile(r"[01](?:\s*,\s*[01])*")


def judge_messages(prompt: str, valid_answers: str, generated_answer: str) -> list[dict[str, str]]:
    """``get_oeg_judge_messages``: the system message and the user message for one generation."""
    correct_answers = [answer.strip().replace(".", "") for answer in valid_answers.split(",")]
    user = USER_PROMPT.format(user_prompt=prompt, correct_answers=correct_answers, generated_answer=generated_answer)
    return [{"content": SYSTEM_PROMPT, "role": "system"}, {"content": user, "role": "user"}]


@dataclass(frozen=True)
class Verdict:
    """The parsed judge output: the official three bits, and whether (and why not) it parsed."""

    proactive_suggestion: int = 0
    category_prediction: int = 0
    aggregate: int = 0
    parsed: bool = False
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"proactive_suggestion": self.proactive_suggestion, "category_prediction": self.category_prediction,
                "aggregate": self.aggregate, "parsed": self.parsed, "parse_error": self.reason or None}


def parse(valid_answers: str, raw_judge_output: str, source_alias: str) -> Verdict:
    """``parse_judge_prediction`` with the reason when the output does not parse (then all bits are 0)."""
    if source_alias not in THRESHOLDS:
        raise PbBuildError(f"no OEG threshold for {source_alias!r}; known: {', '.join(THRESHOLDS)}")
    matches = _BITS.findall(raw_judge_output)
    if not matches:
        return Verdict(reason="no comma-separated list of 0s and 1s in the judge output")
    expected = len([a for a in valid_answers.split(",") if a.strip() != ""])
    preds = [t.strip() for t in matches[-1].split(",") if t.strip() != ""]
    if len(preds) != expected:
        return Verdict(reason=f"the last 0/1 list has {len(preds)} items, {expected} valid answers expected")
    bits = [int(p) for p in preds]
    thr = THRESHOLDS[source_alias]
    ps, cp = int(1 in bits[:thr]), int(1 in bits[thr:])
    return Verdict(ps, cp, int(ps or cp), True)


def parse_judge_prediction(valid_answers: str, raw_judge_output: str, dataset: str) -> dict[str, int]:
    """The official function's result dict (``dataset`` is the alias, e.g. ``"QD"``)."""
    v = parse(valid_answers, raw_judge_output, dataset)
    return {"proactive_suggestion": v.proactive_suggestion, "category_prediction": v.category_prediction,
            "aggregate": v.aggregate}


def after_last(ids: list[int], marker: int | None) -> list[int]:
    """The token ids after the last ``marker`` (all of them when it is absent)."""
    if marker is None or marker not in ids:
        return ids
    return ids[len(ids) - ids[::-1].index(marker):]


class ThinkingUnfinished(str):
    """A judge output that ended inside its thinking: kept for the record, scored as unparsed."""


@dataclass
class CausalJudge:
    """A causal LM judge answering batches of message lists (left padding, thinking enabled)."""

    model: Any
    tokenizer: Any
    max_new_tokens: int = JUDGE_MAX_NEW_TOKENS
    sample: bool = False
    enable_thinking: bool = True
    name: str = ""
    think_end: int | None = field(default=None, init=False)
    think_start: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None) is None:
            raise PbBuildError(f"judge {self.name or type(self.model).__name__}: its tokenizer has no chat template")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        end = tok.convert_tokens_to_ids("</think>")
        self.think_end = end if isinstance(end, int) and end != tok.unk_token_id else None
        start = tok.convert_tokens_to_ids("<think>")
        self.think_start = start if isinstance(start, int) and start != tok.unk_token_id else None

    @classmethod
    def from_pretrained(cls, path: str, *, device: str = "auto", dtype: str = "auto",
                        max_new_tokens: int = JUDGE_MAX_NEW_TOKENS, sample: bool = False) -> CausalJudge:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pb_build.eval.backends import _resolve, check_device, check_model_path, require_eval_extra

        require_eval_extra()
        check_model_path(path)
        check_device(device)
        dev, dt = _resolve(device, dtype)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
            tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise PbBuildError(f"{path}: cannot load a causal LM judge ({exc})") from exc
        return cls(model.to(dev).eval(), tok, max_new_tokens, sample, name=str(path))

    def settings(self) -> dict[str, Any]:
        return {"judge": self.name, "judge_class": type(self.model).__name__, "max_new_tokens": self.max_new_tokens,
                "do_sample": self.sample, "enable_thinking": self.enable_thinking,
                "think_end_token_id": self.think_end}

    def __call__(self, batch: list[list[dict[str, str]]]) -> list[str]:
        """The user-visible judge outputs (after the last ``</think>``) for a batch of conversations; an output
        still inside its thinking comes back as :class:`ThinkingUnfinished`."""
        import torch

        enc = self.tokenizer.apply_chat_template(
            batch, add_generation_prompt=True, enable_thinking=self.enable_thinking, padding=True,
            tokenizer_kwargs={"padding_side": "left"}, return_tensors="pt", return_dict=True)
        enc = enc.to(self.model.device)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.sample,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if not self.sample:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        n_in = enc["input_ids"].shape[1]
        answers: list[str] = []
        for prompt, row in zip(enc["input_ids"].tolist(), out, strict=True):
            ids = row[n_in:].tolist()
            text = self.tokenizer.decode(after_last(ids, self.think_end), skip_special_tokens=True).strip("\n")
            opened = self.think_start is not None and (self.think_start in ids or self.think_start in prompt[-3:])
            thinking = opened and self.think_end not in ids
            answers.append(ThinkingUnfinished(text) if thinking else text)
        return answers


def judge_generations(generations: list[dict[str, Any]], judge: Any, batch_size: int = 8) -> list[dict[str, Any]]:
    """One judgement per generation record; failed generations and judge errors are recorded, never dropped."""
    out: list[dict[str, Any]] = []
    todo = [g for g in generations if g.get("status") == "ok"]
    for g in generations:
        if g.get("status") != "ok":
            out.append({**g, "judge_output": None, **Verdict(reason="generation failed").as_dict()})
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        try:
            raws: list[str | BaseException] = list(judge([judge_messages(g["prompt"], g["valid_answers"],
                                                                         g["generation"]) for g in chunk]))
        except (RuntimeError, ValueError) as exc:
            raws = [exc] * len(chunk)
        for g, raw in zip(chunk, raws, strict=True):
            if isinstance(raw, BaseException):
                out.append({**g, "status": "failed", "error": f"judge: {type(raw).__name__}: {raw}",
                            "judge_output": None, **Verdict(reason="judge failed").as_dict()})
                continue
            if isinstance(raw, ThinkingUnfinished):
                verdict = Verdict(reason=THINKING_UNFINISHED)
            else:
                verdict = parse(g["valid_answers"], raw, alias(g["official_name"]))
            out.append({**g, "judge_output": raw, **verdict.as_dict()})
    return out
