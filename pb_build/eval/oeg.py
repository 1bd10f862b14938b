"""The official open-ended valid answers and judge thresholds (benchmark.md §9-§10).

``valid_answers`` returns what the official ``env.get_open_ended_gen_answers()`` returns at the first frame: a
comma-separated string whose first ``THRESHOLDS[alias]`` items are proactive suggestions and the rest the
category. It is keyed by official name (knowledge of the official format, not per-source evaluation code).
"""

from __future__ import annotations

from pb_build.episode import Episode
from pb_build.errors import PbBuildError
from pb_build.eval.prompts import official_name
from pb_build.eval.sources import alias

#: ``PREDICTION_THR`` of ``proactivebench.open_ended_gen``, keyed by alias.
THRESHOLDS: dict[str, int] = {"ROD": 2, "VSOD": 3, "MVP-N": 2, "IN-C": 1, "QD": 1, "CIT": 2, "COCO": 2}
REWIND = "Rewind the video."


def _bare(text: str) -> str:
    return text.replace(".", "")


def valid_answers(ep: Episode) -> str:
    """The valid-answer string of the episode's first state, exactly as the official environment builds it."""
    name = official_name(ep)
    category = _bare(ep.answer)
    first = ep.states[ep.initial_state]
    match name:
        case "Realistic-Occlusion-Dataset":
            return "Move the blocks, Move the camera."
        case "OcclusionDataSet-MM20":
            return f"Wait for the occlusion to disappear, Rewind the video, Move the camera, {category}."
        case "MVP-N":
            return "Rotate the object, Move the camera."
        case "ImageNet-C":
            return ", ".join([*(_bare(ep.options[i]) for i in first.valid), category]) + "."
        case "QuickDraw":
            return f"Add more details to the drawing, {category}."
        case "ChangeIt":
            # Rewind is hidden at the first frame, then appended again (environment.py, ChangeIt).
            waits = [o for i, o in enumerate(ep.options) if i not in ep.abstain and o != REWIND]
            return ",".join(_bare(a) for a in [*waits, REWIND, ep.answer]) + "."
        case "coco2014":
            return f"Move the camera, Move farther from the object, {category}."
    raise PbBuildError(f"episode {ep.key}: no open-ended answers for source {name or ep.source!r}")


def threshold(ep: Episode) -> int:
    """How many leading valid answers are proactive suggestions."""
    key = alias(official_name(ep))
    if key not in THRESHOLDS:
        raise PbBuildError(f"episode {ep.key}: no OEG threshold for source {key or ep.source!r}")
    return THRESHOLDS[key]
