"""Scripted policies for checking a release without a model (``--policy``).

``oracle``, ``proactive``, ``abstain`` and ``first`` are the replay's policies; ``random`` picks one of the
texts shown at the turn (options and categories) uniformly, seeded by (seed, episode key, turn) so its answers
do not depend on batching or episode order.
"""

from __future__ import annotations

from pb_build.errors import PbBuildError
from pb_build.replay import POLICIES, Policy, Replay
from pb_build.seeding import sample_rng

NAMES = ("oracle", "random", "proactive", "abstain", "first")


def random_policy(seed: int) -> Policy:
    """A uniform choice among the shown texts, reproducible from ``seed``."""

    def choose(rep: Replay) -> str:
        texts = rep.shown_texts()
        rng = sample_rng(seed, "random-policy", f"{rep.episode.key}/{rep.num_turns}")
        return texts[int(rng.integers(len(texts)))]

    return choose


def get_policy(name: str, seed: int = 0) -> Policy:
    """The scripted policy called ``name``."""
    if name == "random":
        return random_policy(seed)
    if name in POLICIES and name in NAMES:
        return POLICIES[name]
    raise PbBuildError(f"unknown policy {name!r}; choose one of {', '.join(NAMES)}")
