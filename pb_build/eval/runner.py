"""The batched step loop: every unfinished episode's current state goes to the model together.

Up to ``batch_size`` episodes are in flight; at each step their states (frame + prompt) are answered in one call
of the decider (a model backend or a scripted policy), every replay advances by one turn, finished episodes are
written out and replaced by waiting ones, so batches stay full. Each episode is driven by the generic
``pb_build.replay.Replay``, which reproduces the official turn semantics. A failure of one episode (an image
that does not decode, a processor error) is recorded with its reason and the run goes on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from pb_build.episode import Episode
from pb_build.errors import PbBuildError
from pb_build.eval import oeg
from pb_build.eval.data import Item, LoadFailure
from pb_build.eval.prompts import mcqa_prompt, oeg_prompt, official_name
from pb_build.matching import judge
from pb_build.replay import Policy, Replay


@dataclass(frozen=True)
class Query:
    """One state to answer: the frame (index into ``episode.frames``) and the prompt text; ``context`` holds
    earlier (frame bytes, prompt, answer) turns for the conversation-history and in-context variants."""

    uid: int
    episode: Episode
    frame: int
    prompt: str
    replay: Replay | None = None
    context: tuple[tuple[bytes, str, str], ...] = ()


def icl_context(examples: Iterable[Episode], hint: bool = False, cot: bool = False) -> tuple[tuple[bytes, str, str],
                                                                                               ...]:
    """The in-context turns of example episodes (``prompts.icl_example``), as (frame bytes, prompt, answer)."""
    from pb_build.eval.prompts import icl_example

    return tuple((ep.frames[int(s["frame"])], str(s["prompt"]), str(s["answer"]))
                 for ep in examples for s in icl_example(ep, hint, cot))


Answer = str | BaseException
Decide = Callable[[list[Query]], list[Answer]]
OnRecord = Callable[[dict[str, Any]], None]


def policy_decider(policy: Policy) -> Decide:
    """Answer every query with a scripted policy (no model, no image decoding)."""

    def decide(queries: list[Query]) -> list[Answer]:
        out: list[Answer] = []
        for q in queries:
            assert q.replay is not None, "scripted policies need the replay"
            out.append(policy(q.replay))
        return out

    return decide


def parse_choice(answer: str, shown: list[str], categories: list[str]) -> str | None:
    """The lettered choice an answer selects ('C. Banana.'), as the official matcher reads it; None if none."""
    cat, c_idx = judge(answer, [], categories, len(shown))
    if cat != "mismatch":
        return f"{chr(65 + len(shown) + c_idx)}. {categories[c_idx]}"
    act, a_idx = judge(answer, [], shown, 0) if shown else ("mismatch", -1)
    if act != "mismatch":
        return f"{chr(65 + a_idx)}. {shown[a_idx]}"
    return None


def _header(item: Item) -> dict[str, Any]:
    ep = item.episode
    return {"id": item.sample_id, "key": ep.key, "source": ep.source, "official_name": official_name(ep)}


def failure_record(failure: LoadFailure, source: str, name: str, mode: str) -> dict[str, Any]:
    """The record of a sample that could not even be loaded."""
    body: dict[str, Any] = {"id": failure.sample_id, "key": failure.key, "source": source, "official_name": name,
                            "status": "failed", "error": failure.reason}
    if mode == "mcqa":
        body.update(correct=False, num_turns=0, max_steps=False, turns=[])
    return body


@dataclass
class _Active:
    uid: int
    item: Item
    replay: Replay
    turns: list[dict[str, Any]] = field(default_factory=list)


def _mcqa_record(a: _Active, error: str | None, hint: bool) -> dict[str, Any]:
    rep = a.replay
    return {
        **_header(a.item), "status": "failed" if error else "ok", "error": error, "reference": rep.reference,
        "hint": hint, "correct": rep.correct and not error, "num_turns": rep.num_turns,
        "max_steps": rep.num_turns == rep.episode.max_steps, "turns": a.turns,
    }


def run_mcqa(items: Iterable[Item], decide: Decide, *, batch_size: int = 16, hint: bool = False,
             reference: bool = False, on_record: OnRecord | None = None, progress: bool = False,
             total: int | None = None, history: bool = False,
             examples: tuple[tuple[bytes, str, str], ...] = ()) -> list[dict[str, Any]]:
    """Play every item to the end; one trajectory record per item, in the order episodes finish.

    ``history`` keeps the episode's earlier turns in the conversation (paper §4.3); ``examples`` are in-context
    turns put before every conversation (``icl_context``)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    queue = deque(enumerate(items))
    active: list[_Active] = []
    records: list[dict[str, Any]] = []
    bar = tqdm(total=total if total is not None else len(queue), desc="mcqa", unit="ep", disable=not progress)

    def finish(a: _Active, error: str | None = None) -> None:
        rec = _mcqa_record(a, error, hint)
        records.append(rec)
        if on_record:
            on_record(rec)
        bar.update(1)

    try:
        while queue or active:
            while queue and len(active) < batch_size:
                uid, item = queue.popleft()
                active.append(_Active(uid, item, Replay(item.episode, reference=reference)))
            queries = [Query(a.uid, a.item.episode, a.replay.frame, mcqa_prompt(a.replay, hint), a.replay,
                             examples + (_history(a) if history else ())) for a in active]
            answers = decide(queries)
            if len(answers) != len(queries):
                raise RuntimeError(f"decider returned {len(answers)} answers for {len(queries)} states")
            still: list[_Active] = []
            for a, q, answer in zip(active, queries, answers, strict=True):
                if isinstance(answer, BaseException):
                    finish(a, f"turn {a.replay.num_turns + 1}: {type(answer).__name__}: {answer}")
                    continue
                shown = a.replay.shown_texts()
                n_opts = len(shown) - len(q.episode.categories)
                a.replay.answer(answer)
                turn = a.replay.turns[-1]
                a.turns.append({"state": turn.state, "frame": turn.frame, "prompt": q.prompt, "answer": answer,
                                "choice": parse_choice(answer, shown[:n_opts], shown[n_opts:]),
                                "action_verdict": turn.action_verdict, "category_verdict": turn.category_verdict})
                if a.replay.done:
                    finish(a)
                else:
                    still.append(a)
            active = still
    finally:
        bar.close()
    return records


def _history(a: _Active) -> tuple[tuple[bytes, str, str], ...]:
    frames = a.item.episode.frames
    return tuple((frames[t["frame"]], t["prompt"], t["answer"]) for t in a.turns)


def run_oeg(items: Iterable[Item], decide: Decide, *, batch_size: int = 16, hint: bool = False,
            on_record: OnRecord | None = None, progress: bool = False,
            total: int | None = None) -> list[dict[str, Any]]:
    """One open-ended turn per item at its first state; one generation record per item (batch by batch)."""
    pending = list(items)
    records: list[dict[str, Any]] = []
    bar = tqdm(total=total if total is not None else len(pending), desc="oeg", unit="ep", disable=not progress)

    def emit(rec: dict[str, Any]) -> None:
        records.append(rec)
        if on_record:
            on_record(rec)
        bar.update(1)

    try:
        for start in range(0, len(pending), batch_size):
            chunk, queries, heads = pending[start:start + batch_size], [], []
            for uid, item in enumerate(chunk, start=start):
                ep = item.episode
                head = {**_header(item), "hint": hint, "prompt": oeg_prompt(ep, hint)}
                try:
                    head.update(valid_answers=oeg.valid_answers(ep), threshold=oeg.threshold(ep))
                except PbBuildError as exc:  # recorded, never dropped
                    emit({**head, "status": "failed", "error": f"{type(exc).__name__}: {exc}", "generation": None})
                    continue
                heads.append(head)
                queries.append(Query(uid, ep, ep.states[ep.initial_state].frame, head["prompt"]))
            answers = decide(queries) if queries else []
            for head, answer in zip(heads, answers, strict=True):
                if isinstance(answer, BaseException):
                    emit({**head, "status": "failed", "error": f"{type(answer).__name__}: {answer}",
                          "generation": None})
                else:
                    emit({**head, "status": "ok", "error": None, "generation": answer})
    finally:
        bar.close()
    return records
