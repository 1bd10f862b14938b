"""VSOD (OcclusionDataSet-MM20) records -> episodes (the inverse of ``pb_build.builders.vsod``'s export).

Semantics of the official ``OcclusionDataSetMM20Environment``: frame ``k`` is
``image_template.format(image=str(k).zfill(4))``, the episode starts at ``first_image``, all three options are
shown at every turn, both moves and the correct category are valid at every turn, REWIND goes to ``k - 1`` and
wait to ``k + 1``, both modulo ``num_images`` (circular); ``max_steps = num_images``. The states are the
builder's own (``states_for``).

``strong_occlusions`` must be present (the official environment reads it unconditionally) but any value imports:
dropping the ``false`` rows is the loader's rule (``pb_build.eval.data.load``), as in the official loader.

Assumptions for records pb-build did not make:

* Exactly three options: one containing ``rewind the video.``, one containing ``wait for the`` (case-insensitive,
  the official action keys) and one abstain option (containing ``cannot`` or ``do not``; every official record
  has exactly one); anything else is an ``ImportFailure``.
* Every frame ``0 .. num_images-1`` must exist (the moves are circular, so each is reachable).
* The key is ``vsod/<split>/<segment>/<question type>`` when the template is
  ``OcclusionDataSet-MM20/Data/<split>/<segment>/{image}<ext>`` (pb-build's layout, as documented for the official
  one); the question type is found by looking the prompt up in the builder's question pools, and is
  ``id-<record id>`` when the prompt is in none of them (the authors' pools are not published). Any other
  template gives ``vsod/id-<record id>``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pb_build.builders import vsod as builder
from pb_build.builders.base import ImportFailure, OfficialSpec, option_roles, read_frame
from pb_build.episode import Episode, OfficialExport, OfficialFile

OFFICIAL_NAME = builder.info.official_name


def _key(sample_id: int, template: str, prompt: str) -> str:
    parts = PurePosixPath(template).parts
    if len(parts) == 5 and parts[:2] == (OFFICIAL_NAME, "Data") and parts[4].startswith("{image}"):
        question = next((q for q, pool in builder.QUESTIONS.items() if prompt in pool), f"id-{sample_id}")
        return f"{builder.name}/{parts[2]}/{parts[3]}/{question}"
    return f"{builder.name}/id-{sample_id}"


def _moves(options: tuple[str, ...]) -> tuple[int, int, int]:
    """The indices of the REWIND, wait and abstain options."""
    return option_roles(options, (lambda o: "rewind the video." in o.lower(), lambda o: "wait for the" in o.lower()),
                        "one 'Rewind the video.' option, one 'Wait for the ...' option and one abstain option")


def import_record(record: dict[str, Any], test_dir: Path) -> Episode:
    """The episode of one VSOD record, reading its frames under ``test_dir``."""
    body = {k: v for k, v in record.items() if k != "id"}
    if not isinstance(record["strong_occlusions"], bool):
        raise ImportFailure(f"strong_occlusions must be true or false, is {record['strong_occlusions']!r}")
    template, n = record["image_template"], int(record["num_images"])
    if n < 1:
        raise ImportFailure(f"num_images must be at least 1, is {n}")
    options = tuple(record["options"])
    rewind, wait, abstain = _moves(options)
    paths = [template.format(image=str(k).zfill(4)) for k in range(n)]
    frames = tuple(read_frame(test_dir, p) for p in paths)
    files = tuple(OfficialFile(p, f) for p, f in zip(paths, frames, strict=True))
    return Episode(
        source=builder.name,
        key=_key(record["id"], template, record["prompt"]),
        prompt=record["prompt"],
        options=options,
        categories=tuple(record["categories"]),
        answer=record["answer"],
        frames=frames,
        states=builder.states_for(n, rewind, wait),
        reference_frame=int(record["reference_image"]),
        max_steps=n,
        initial_state=int(record["first_image"]),
        hint=builder.HINT,
        pre_prompt=builder.PRE_PROMPT,
        abstain=(abstain,),
        official=OfficialExport(OFFICIAL_NAME, body, files),
    )


OFFICIAL = OfficialSpec(alias="VSOD", actions=frozenset({"REWIND", "FORWARD"}),
                        extra_fields={"strong_occlusions": "bool"}, oeg_threshold=3)


def reachable_paths(record: dict[str, Any]) -> list[str]:
    """Frames ``0 .. num_images-1``, 4-digit padded."""
    return sorted({record["image_template"].format(image=str(i).zfill(4)) for i in range(record["num_images"])})


def oeg_answers(ep: Episode) -> str:
    """The official open-ended valid answers: three suggestions, then the category."""
    category = ep.answer.replace(".", "")
    return f"Wait for the occlusion to disappear, Rewind the video, Move the camera, {category}."
