"""ChangeIt records -> episodes (the inverse of ``pb_build.builders.changeit``'s export).

Semantics of the official ``ChangeItEnvironment``: image ``i`` is ``image_template.format(image=str(i))`` (no
padding), the episode starts at ``first_image`` and every move goes ``step_size`` images back (``Rewind the
video.``) or forward (the ``Wait for the ...`` option); not circular. The reachable images are therefore
``first_image + k * step_size`` inside ``0 .. num_images-1``, and the native frames are exactly those, in order
(for pb-build's records ``first_image = 0``: images ``0, step, 2*step, ...``). Option hiding follows the official
``if/elif`` (the builder's own ``states_for``): where ``image - step_size < 0`` the rewind option is hidden, else
where ``image + step_size >= num_images`` the wait option is hidden; the shown moves and the correct category are
valid at every turn; ``max_steps`` is the record's.

Assumptions for records pb-build did not make:

* Exactly three options: ``Rewind the video.`` (verbatim: the official code removes it by that literal string),
  one option containing ``Wait for the`` (case-sensitive, as the official code searches it) and one abstain
  option; anything else is an ``ImportFailure``. A record where a reachable image is both first and last
  (``step_size`` too large) is an ``ImportFailure``: the official environment would move out of range there.
* Only the reachable images (and the reference image) are read; other files of the video may be absent.
* ``reference_image`` need not be reachable: when it is not, its file is read as one extra native frame after the
  reachable ones, used by reference mode only (no state shows it, so the oracle has no frame to head for).
* The key is ``changeit/<category>/<youtube_id>/<question>`` when the template is
  ``ChangeIt/<category>/<youtube_id>/{image}<ext>``; the question (``object`` or ``action``) comes from the wait
  option's text, else from the builder's question pools, else it is ``id-<record id>``. Any other template gives
  ``changeit/id-<record id>``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pb_build.builders import changeit as builder
from pb_build.builders.base import ImportFailure, OfficialSpec, option_roles, read_frame
from pb_build.episode import Episode, OfficialExport, OfficialFile

OFFICIAL_NAME = builder.info.official_name
POOLS = {"object": builder.OBJECT_QUESTIONS, "action": builder.ACTION_QUESTIONS}


def _question(sample_id: int, wait: str, prompt: str) -> str:
    by_wait = [q for q, text in builder.WAIT.items() if text == wait]
    if by_wait:
        return by_wait[0]
    return next((q for q, pool in POOLS.items() if prompt in pool), f"id-{sample_id}")


def _key(sample_id: int, template: str, wait: str, prompt: str) -> str:
    parts = PurePosixPath(template).parts
    if len(parts) == 4 and parts[0] == OFFICIAL_NAME and parts[3].startswith("{image}"):
        return f"{builder.name}/{parts[1]}/{parts[2]}/{_question(sample_id, wait, prompt)}"
    return f"{builder.name}/id-{sample_id}"


def _moves(options: tuple[str, ...]) -> tuple[int, int, int]:
    """The indices of the rewind, wait and abstain options."""
    return option_roles(options, (lambda o: o == builder.REWIND, lambda o: "Wait for the" in o),
                        "'Rewind the video.', one 'Wait for the ...' option and one abstain option")


def import_record(record: dict[str, Any], test_dir: Path) -> Episode:
    """The episode of one ChangeIt record, reading its reachable frames under ``test_dir``."""
    body = {k: v for k, v in record.items() if k != "id"}
    template = record["image_template"]
    n, step, first = int(record["num_images"]), int(record["step_size"]), int(record["first_image"])
    ref, max_steps = int(record["reference_image"]), int(record["max_steps"])
    if step < 1:
        raise ImportFailure(f"step_size must be at least 1, is {step}")
    if not 0 <= first < n or not 0 <= ref < n:
        raise ImportFailure(f"first_image {first} and reference_image {ref} must lie in 0..num_images-1 "
                            f"(num_images {n})")
    options = tuple(record["options"])
    rewind, wait, abstain = _moves(options)
    images = list(range(first % step, n, step))
    states = builder.states_for(len(images), step, n, rewind, wait, abstain, offset=first % step)
    shown = images if ref in images else [*images, ref]
    paths = [template.format(image=str(i)) for i in shown]
    frames = tuple(read_frame(test_dir, p) for p in paths)
    files = tuple(OfficialFile(p, f) for p, f in zip(paths, frames, strict=True))
    return Episode(
        source=builder.name,
        key=_key(record["id"], template, options[wait], record["prompt"]),
        prompt=record["prompt"],
        options=options,
        categories=tuple(record["categories"]),
        answer=record["answer"],
        frames=frames,
        states=states,
        reference_frame=shown.index(ref),
        max_steps=max_steps,
        initial_state=images.index(first),
        hint=builder.HINT,
        pre_prompt=builder.PRE_PROMPT,
        abstain=(abstain,),
        official=OfficialExport(OFFICIAL_NAME, body, files),
    )


OFFICIAL = OfficialSpec(alias="CIT", actions=frozenset({"REWIND", "FORWARD"}),
                        extra_fields={"step_size": "int", "max_steps": "int"}, oeg_threshold=2)


def reachable_paths(record: dict[str, Any]) -> list[str]:
    """Every ``step_size``-th image from ``first_image % step_size``, unpadded."""
    first, step = record["first_image"], record["step_size"]
    return sorted({record["image_template"].format(image=i) for i in range(first % step, record["num_images"], step)})


def oeg_answers(ep: Episode) -> str:
    """The official open-ended valid answers: rewind is hidden at the first frame, then appended again."""
    waits = [o for i, o in enumerate(ep.options) if i not in ep.abstain and o != builder.REWIND]
    return ",".join(a.replace(".", "") for a in [*waits, builder.REWIND, ep.answer]) + "."
