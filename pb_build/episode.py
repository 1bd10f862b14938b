"""The episode model: every benchmark sample is an explicit finite state machine.

A state shows one frame and a subset of the episode's options (in their stored order) followed by the four
categories. In a state some shown options are *valid* proactive suggestions, each leading to a target state;
the correct category may or may not be accepted there. A turn limit (``max_steps``) bounds every episode.
Builders produce episodes; writers, ``verify`` and the evaluator only ever see this model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from pb_build.errors import InvalidEpisode
from pb_build.strings import check_strings


@dataclass(frozen=True)
class State:
    """One state: the frame shown, the options shown, which choices are correct and where moves lead."""

    frame: int
    shown: tuple[int, ...]
    valid: tuple[int, ...] = ()
    targets: tuple[int, ...] = ()
    answer_valid: bool = True

    def target_of(self, option: int) -> int:
        """The state reached by choosing the valid option ``option``."""
        return self.targets[self.valid.index(option)]


def linear_states(n: int, n_options: int, valid: tuple[int, ...]) -> tuple[State, ...]:
    """The chain of QuickDraw, ImageNet-C and MVP-N: state k shows frame k and every option; before the last
    state the ``valid`` options lead to state k + 1, in the last only the category is accepted."""
    return tuple(
        State(frame=k, shown=tuple(range(n_options)), valid=valid if k < n - 1 else (),
              targets=(k + 1,) * len(valid) if k < n - 1 else ())
        for k in range(n)
    )


@dataclass(frozen=True)
class OfficialFile:
    """A file of the official layout, at ``path`` relative to ``test/``."""

    path: str
    data: bytes


@dataclass(frozen=True)
class OfficialExport:
    """How an episode appears in the official ``test/<name>_preprocessed.jsonl`` layout."""

    name: str
    record: dict[str, Any]
    files: tuple[OfficialFile, ...]


SPEC_KEY = "spec"


@dataclass(frozen=True)
class EpisodeSpec:
    """What evaluating and verifying an episode needs from its source, carried as data with the episode.

    The source fills it at build and import time; the native row stores it in ``meta["spec"]``, so ``eval`` and
    ``verify`` work on any release without the source's code.
    """

    alias: str  # the paper's table name (e.g. "QD")
    reference_prompt: str  # the question asked in reference mode
    oeg_answers: str  # the official open-ended valid answers at the first state
    oeg_threshold: int  # how many leading valid answers are proactive suggestions
    contract: dict[str, Any]  # the official record contract (``pb_build.official.RecordContract`` as JSON)
    reachable: tuple[str, ...]  # every official image path (relative to ``test/``) the environment can open
    cot_prompt: str = ""  # the chain-of-thought lead-in of the CoT/ICL experiments ('' when the source has none)

    def to_json(self) -> dict[str, Any]:
        out = {"alias": self.alias, "reference_prompt": self.reference_prompt, "oeg_answers": self.oeg_answers,
               "oeg_threshold": self.oeg_threshold, "contract": self.contract, "reachable": list(self.reachable)}
        if self.cot_prompt:  # only then, so sources without one keep their bytes
            out["cot_prompt"] = self.cot_prompt
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpisodeSpec:
        return cls(data["alias"], data["reference_prompt"], data["oeg_answers"], int(data["oeg_threshold"]),
                   dict(data["contract"]), tuple(data["reachable"]), str(data.get("cot_prompt", "")))


@dataclass(frozen=True)
class Episode:
    """A complete sample: frames, option strings, the state machine, its limits and its official export."""

    source: str
    key: str
    prompt: str
    options: tuple[str, ...]
    categories: tuple[str, ...]
    answer: str
    frames: tuple[bytes, ...]
    states: tuple[State, ...]
    reference_frame: int
    max_steps: int
    initial_state: int = 0
    hint: str = ""
    pre_prompt: str = ""
    abstain: tuple[int, ...] = ()
    official: OfficialExport | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> EpisodeSpec | None:
        """The source's evaluation and verification data (None for an episode no source has annotated)."""
        data = self.meta.get(SPEC_KEY)
        return EpisodeSpec.from_json(data) if data else None

    def with_spec(self, spec: EpisodeSpec) -> Episode:
        """This episode carrying ``spec``."""
        return replace(self, meta={**self.meta, SPEC_KEY: spec.to_json()})

    def validate(self) -> Episode:
        """Check the state machine and the official string rules; return self or raise InvalidEpisode."""
        problems = list(_structure_problems(self))
        if not problems:
            problems += check_strings(self)
            problems += _reachability_problems(self)
        if problems:
            raise InvalidEpisode(f"episode {self.key}: " + "; ".join(problems))
        return self


def _structure_problems(ep: Episode) -> list[str]:
    out: list[str] = []
    n_opt, n_frames, n_states = len(ep.options), len(ep.frames), len(ep.states)
    if len(ep.categories) != 4:
        out.append(f"needs 4 categories, has {len(ep.categories)}")
    if ep.answer not in ep.categories:
        out.append(f"answer {ep.answer!r} is not one of the categories")
    if not n_states:
        out.append("has no states")
    if not 0 <= ep.initial_state < max(n_states, 1):
        out.append(f"initial state {ep.initial_state} out of range")
    if not 0 <= ep.reference_frame < n_frames:
        out.append(f"reference frame {ep.reference_frame} out of range")
    if ep.max_steps < 1:
        out.append("max_steps must be at least 1")
    if len(ep.abstain) != 1 or not all(0 <= i < n_opt for i in ep.abstain):
        out.append("needs exactly one abstain option")
    for s_idx, st in enumerate(ep.states):
        where = f"state {s_idx}"
        if not 0 <= st.frame < n_frames:
            out.append(f"{where}: frame {st.frame} out of range")
        if list(st.shown) != sorted(set(st.shown)) or any(not 0 <= i < n_opt for i in st.shown):
            out.append(f"{where}: shown options must be distinct option indices in stored order")
        if any(i not in st.shown for i in st.valid):
            out.append(f"{where}: a valid option is not shown")
        if any(i in ep.abstain for i in st.valid):
            out.append(f"{where}: the abstain option cannot be valid")
        if len(st.targets) != len(st.valid) or any(not 0 <= t < n_states for t in st.targets):
            out.append(f"{where}: every valid option needs a target state")
    return out


def _reachability_problems(ep: Episode) -> list[str]:
    """Valid moves must lead, within the turn limit, to a state that shows the reference frame and accepts the
    answer (or, when no state shows the reference frame, to any state that accepts the answer)."""
    goals = {i for i, st in enumerate(ep.states) if st.answer_valid and st.frame == ep.reference_frame}
    goals = goals or {i for i, st in enumerate(ep.states) if st.answer_valid}
    depth = {ep.initial_state: 1}  # turns used when answering in that state
    frontier = [ep.initial_state]
    while frontier:
        nxt = []
        for state in frontier:
            if state in goals:
                return []
            if depth[state] == ep.max_steps:
                continue
            for target in ep.states[state].targets:
                if target not in depth:
                    depth[target] = depth[state] + 1
                    nxt.append(target)
        frontier = nxt
    return [f"the correct answer is not reachable within {ep.max_steps} turns"]


def official_line(ep: Episode, sample_id: int) -> str:
    """The official JSONL line of an episode, with its id first."""
    if ep.official is None:
        raise InvalidEpisode(f"episode {ep.key} has no official export")
    return json.dumps({"id": sample_id, **ep.official.record}, ensure_ascii=False)
