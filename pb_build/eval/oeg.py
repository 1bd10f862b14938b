"""The official open-ended valid answers and judge thresholds (paper §4, open-ended generation).

``valid_answers`` returns what the official ``env.get_open_ended_gen_answers()`` returns at the first frame: a
comma-separated string whose first ``threshold`` items are proactive suggestions and the rest the category. Both
are data the source put on the episode (``Episode.spec``), so any release evaluates without its source's code.
"""

from __future__ import annotations

from collections.abc import Mapping

from pb_build.episode import Episode, EpisodeSpec
from pb_build.errors import PbBuildError
from pb_build.eval.sources import Derived


def _spec(ep: Episode) -> EpisodeSpec:
    spec = ep.spec
    if spec is None:
        raise PbBuildError(f"episode {ep.key}: no open-ended answers (the episode carries no source spec)")
    return spec


def valid_answers(ep: Episode) -> str:
    """The valid-answer string of the episode's first state, exactly as the official environment builds it."""
    return _spec(ep).oeg_answers


def threshold(ep: Episode) -> int:
    """How many leading valid answers are proactive suggestions."""
    return _spec(ep).oeg_threshold


def _thresholds() -> dict[str, int]:
    from pb_build.builders import REGISTRY

    return {s.official.alias: s.official.oeg_threshold for s in REGISTRY.values()}


#: ``PREDICTION_THR`` of ``proactivebench.open_ended_gen``, keyed by alias, from the registered sources (for
#: judging saved generations, which name only the alias).
THRESHOLDS: Mapping[str, int] = Derived(_thresholds)
