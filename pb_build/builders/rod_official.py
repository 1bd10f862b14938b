"""ROD records -> episodes (the inverse of ``pb_build.builders.rod``'s export).

Semantics of the official ``RealisticOcclusionDatasetEnvironment``: frame ``k`` is
``image_template.format(image=k)`` (no padding), the first turn shows ``first_image`` with only the two move
options valid (a category is wrong there), every later turn accepts both moves and the correct category; LEFT
goes to ``k - 1`` and RIGHT to ``k + 1``, both modulo ``num_images``; ``max_steps = num_images``. The official
``_fix_corruptions`` rewrite (a path containing ``natural_bluebl_greenr-banana-s6`` is opened with ``s6`` replaced
by ``s5`` after a LEFT, by ``s7`` otherwise) is modelled by the builder's own ``build_states``, which gives such a
position one state per arrival move; the first turn is a state of its own.

Assumptions for records pb-build did not make:

* Exactly three options: one containing ``to the left``, one containing ``to the right`` (case-insensitive, the
  official action keys) and one abstain option (containing ``cannot`` or ``do not``; every official record has
  exactly one); anything else is an ``ImportFailure``.
* Every file the official environment can open must exist: the frame of every state and, for reference mode
  (which opens ``reference_image`` without the rewrite), the reference frame. A position that no state shows
  (the rewritten banana ``s6``, which the published archive lacks) may be absent: its native frame is then the
  frame the official environment shows there after a RIGHT move (``s7``, the same bytes pb-build exports under
  the ``s6`` name) and it is not listed among the official files.
* The rewrite is applied to the path relative to ``test/``; the official code applies it to the absolute path,
  so a ``data_dir`` containing ``s6`` would differ (a limitation of the official code).
* The key is ``rod/<sweep name>`` when the template's file name is ``<sweep name>-s{image}<ext>`` (pb-build's and
  the documented official layout), else ``rod/id-<record id>``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from pb_build.builders import rod as builder
from pb_build.builders.base import ImportFailure, OfficialSpec, option_roles, read_frame
from pb_build.episode import Episode, OfficialExport, OfficialFile

OFFICIAL_NAME = builder.info.official_name
_SWEEP_FILE = re.compile(r"(?P<sweep>.+)-s\{image\}\.[A-Za-z0-9]+")


def _key(sample_id: int, template: str) -> str:
    match = _SWEEP_FILE.fullmatch(PurePosixPath(template).name)
    if match and "{" not in match["sweep"] and "}" not in match["sweep"]:
        return f"{builder.name}/{match['sweep']}"
    return f"{builder.name}/id-{sample_id}"


def _moves(options: tuple[str, ...]) -> tuple[int, int, int]:
    """The indices of the LEFT, RIGHT and abstain options."""
    return option_roles(options, (lambda o: "to the left" in o.lower(), lambda o: "to the right" in o.lower()),
                        "one 'to the left' move, one 'to the right' move and one abstain option")


def import_record(record: dict[str, Any], test_dir: Path) -> Episode:
    """The episode of one ROD record, reading its frames under ``test_dir``."""
    body = {k: v for k, v in record.items() if k != "id"}
    template = record["image_template"]
    n, first, ref = int(record["num_images"]), int(record["first_image"]), int(record["reference_image"])
    if n < 1 or not 0 <= first < n or not 0 <= ref < n:
        raise ImportFailure(f"first_image {first} and reference_image {ref} must lie in 0..num_images-1 "
                            f"(num_images {n})")
    key = _key(record["id"], template)
    options = tuple(record["options"])
    left, right, abstain = _moves(options)
    states, _ = builder.build_states(template, (left, right), key, positions=n, first=first)

    opened = {st.frame for st in states} | {ref}
    paths = [template.format(image=k) for k in range(n)]
    read = {k: read_frame(test_dir, p) for k, p in enumerate(paths) if k in opened or (test_dir / p).is_file()}
    frames = tuple(read[k] if k in read else read[builder.shown_frame(template, k, builder.RIGHT, key, n)]
                   for k in range(n))
    files = tuple(OfficialFile(paths[k], read[k]) for k in sorted(read))
    return Episode(
        source=builder.name,
        key=key,
        prompt=record["prompt"],
        options=options,
        categories=tuple(record["categories"]),
        answer=record["answer"],
        frames=frames,
        states=states,
        reference_frame=ref,
        max_steps=n,
        initial_state=0,
        hint=builder.HINT,
        abstain=(abstain,),
        official=OfficialExport(OFFICIAL_NAME, body, files),
    )


OFFICIAL = OfficialSpec(alias="ROD", actions=frozenset({"LEFT", "RIGHT"}), oeg_threshold=2,
                        reference_prompt="What type of object is in the image?",
                        cot_prompt="I cannot see what is behind the occluding object. Moving the occluding object "
                                   "might reveal its position. So, first, I need to move the occluding object and then "
                                   "answer the question. Therefore, the answer is:")


def reachable_paths(record: dict[str, Any]) -> list[str]:
    """Positions ``0 .. num_images-1``, unpadded."""
    return sorted({record["image_template"].format(image=i) for i in range(record["num_images"])})


def oeg_answers(ep: Episode) -> str:
    """The official open-ended valid answers (no category: ROD's first frame is always occluded)."""
    return "Move the blocks, Move the camera."
