"""Generic replay of an episode's state machine with the official turn semantics.

As in the official package's ``BaseEnvironment``: a correct category stops with success, otherwise a valid shown
option moves to the next view, otherwise the episode stops with failure; every turn counts, and the episode stops
when ``num_turns`` reaches ``max_steps``.

The replay knows nothing about sources: it reads the shown options, the valid choices and the transitions
from the episode's states. ``Replay`` is stepwise so that a batched evaluator can advance many episodes at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pb_build.episode import Episode, State
from pb_build.matching import judge


@dataclass
class Turn:
    """What happened at one turn."""

    state: int
    frame: int
    answer: str
    action_verdict: str
    category_verdict: str


@dataclass
class Replay:
    """One episode being played: feed answers with :meth:`answer` until :attr:`done`."""

    episode: Episode
    reference: bool = False
    state: int = field(init=False)
    turns: list[Turn] = field(default_factory=list, init=False)
    done: bool = field(default=False, init=False)
    correct: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.state = self.episode.initial_state

    @property
    def current(self) -> State:
        return self.episode.states[self.state]

    @property
    def frame(self) -> int:
        return self.episode.reference_frame if self.reference else self.current.frame

    def shown_texts(self) -> list[str]:
        """Texts offered at this turn, lettered from A: shown options then categories."""
        if self.reference:
            return list(self.episode.categories)
        ep = self.episode
        return [ep.options[i] for i in self.current.shown] + list(ep.categories)

    def answer(self, text: str) -> None:
        """Apply one model answer and advance the state machine."""
        if self.done:
            raise RuntimeError("episode already finished")
        ep, st = self.episode, self.current
        shown = [] if self.reference else [ep.options[i] for i in st.shown]
        valid_texts = [] if self.reference else [ep.options[i] for i in st.valid]
        answer_ok = self.reference or st.answer_valid
        act, act_idx = judge(text, valid_texts, shown, 0) if shown else ("mismatch", -1)
        cat, _ = judge(text, [ep.answer] if answer_ok else [], list(ep.categories), len(shown))
        self.turns.append(Turn(self.state, self.frame, text, act, cat))
        next_state = None
        if cat == "correct":
            self.correct = True
        elif act == "correct":
            next_state = st.target_of(st.shown[act_idx])
        if next_state is None or self.reference or len(self.turns) == ep.max_steps:
            self.done = True
        else:
            self.state = next_state

    @property
    def num_turns(self) -> int:
        return len(self.turns)


Policy = Callable[[Replay], str]


def _is_goal(ep: Episode, state: int) -> bool:
    st = ep.states[state]
    return st.answer_valid and st.frame == ep.reference_frame


def _first_move_to_goal(ep: Episode, start: int) -> int | None:
    """The first option of a shortest move sequence from ``start`` to a state showing the reference frame."""
    first: dict[int, int] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        state = queue.popleft()
        st = ep.states[state]
        for option, target in zip(st.valid, st.targets, strict=True):
            if target in seen:
                continue
            seen.add(target)
            first[target] = first.get(state, option)
            if _is_goal(ep, target):
                return first[target]
            queue.append(target)
    return None


def oracle(rep: Replay) -> str:
    """Answer once the reference frame is shown; before that take a shortest path of valid moves towards it.

    When no state shows the reference frame (e.g. a crop sequence), take the first valid move until none is
    left, then answer.
    """
    ep, st = rep.episode, rep.current
    if rep.reference or not st.valid or _is_goal(ep, rep.state):
        return ep.answer
    move = _first_move_to_goal(ep, rep.state)
    return ep.options[st.valid[0] if move is None else move]


def always_proactive(rep: Replay) -> str:
    """Choose the first shown option that is not the abstain option; answer when none is shown."""
    for i in rep.current.shown:
        if i not in rep.episode.abstain:
            return rep.episode.options[i]
    return rep.episode.answer


def abstain(rep: Replay) -> str:
    """Always choose the abstain option."""
    return rep.episode.options[rep.episode.abstain[0]]


def first_answer(rep: Replay) -> str:
    """Answer the correct category at once."""
    return rep.episode.answer


POLICIES: dict[str, Policy] = {
    "oracle": oracle,
    "proactive": always_proactive,
    "abstain": abstain,
    "first": first_answer,
}


def play(ep: Episode, policy: Policy, reference: bool = False) -> Replay:
    """Run ``policy`` on ``ep`` to the end."""
    rep = Replay(ep, reference=reference)
    while not rep.done:
        rep.answer(policy(rep))
    return rep


def oracle_path(ep: Episode) -> list[int] | None:
    """The states the oracle visits, or None when it does not end with the correct answer."""
    rep = play(ep, oracle)
    return [t.state for t in rep.turns] if rep.correct else None
