"""MVP-N records -> episodes (the inverse of ``pb_build.builders.mvp_n``'s export).

Semantics of the official ``MVPNEnvironment``: turn 0 shows ``first_image``, turn k >= 1 shows ``valid_images[k]``
(the image after k rotations), formatted with ``{image}`` zero-padded to 4 digits and ``{informative}`` = 1 only at
the last turn (``k + 1 == num_images``); reference mode shows ``reference_image`` with ``informative`` = 1. Every
option is shown at every turn; before the last turn every non-abstain option is valid and moves one view on (and
the category is accepted), at the last turn only the category is; ``max_steps = num_images``.

Frames: one per turn, in turn order, then the reference view when its path is not one of the turns' paths
(pb-build's reference is the last turn's informative view). The key is recovered from a pb-build layout template
``MVP-N/<split>/<class>/<set>/...`` (``mvp-n/<split>/<class>/<set>``); any other layout gets ``mvp-n/id-<id>``.
Assumption for the authors' files: the template's placeholders are exactly ``{image}`` and ``{informative}`` (the
official environment's ``_get_relative_image_path`` formats exactly these two); the folder layout is free.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pb_build.builders import mvp_n as builder
from pb_build.builders.base import ImportFailure, OfficialSpec, read_frame
from pb_build.episode import Episode, OfficialExport, OfficialFile, linear_states
from pb_build.strings import is_abstain

OFFICIAL_NAME = builder.info.official_name


def _key(sample_id: int, template: str) -> str:
    folder = PurePosixPath(template).parent.as_posix().replace("{{", "{").replace("}}", "}")
    parts = PurePosixPath(folder).parts
    if len(parts) == 4 and parts[0] == OFFICIAL_NAME:
        return f"{builder.name}/{parts[1]}/{parts[2]}/{parts[3]}"
    return f"{builder.name}/id-{sample_id}"


def _path(template: str, image: int, informative: bool) -> str:
    return template.format(image=str(image).zfill(4), informative=int(informative))


def import_record(record: dict[str, Any], test_dir: Path) -> Episode:
    """The episode of one MVP-N record, reading its views under ``test_dir``."""
    body = {k: v for k, v in record.items() if k != "id"}
    n, template, ids = record["num_images"], record["image_template"], record["valid_images"]
    if len(ids) < n:
        raise ImportFailure(f"valid_images has {len(ids)} entries, num_images is {n}")
    shown_ids = [record["first_image"], *ids[1:n]]
    paths = [_path(template, image, k == n - 1) for k, image in enumerate(shown_ids)]
    reference = _path(template, record["reference_image"], True)
    if reference in paths:
        reference_frame = paths.index(reference)
    else:
        reference_frame = len(paths)
        paths.append(reference)
    frames = tuple(read_frame(test_dir, p) for p in paths)
    options = tuple(record["options"])
    abstain = tuple(i for i, o in enumerate(options) if is_abstain(o))
    rotate = tuple(i for i in range(len(options)) if i not in abstain)
    unique = dict.fromkeys(zip(paths, frames, strict=True))
    return Episode(
        source=builder.name,
        key=_key(record["id"], template),
        prompt=record["prompt"],
        options=options,
        categories=tuple(record["categories"]),
        answer=record["answer"],
        frames=frames,
        states=linear_states(n, len(options), rotate),
        reference_frame=reference_frame,
        max_steps=n,
        hint=builder.HINT,
        abstain=abstain,
        official=OfficialExport(OFFICIAL_NAME, body, tuple(OfficialFile(p, f) for p, f in unique)),
    )


OFFICIAL = OfficialSpec(alias="MVP-N", actions=frozenset({"ROTATE"}), extra_fields={"valid_images": "list"},
                        oeg_threshold=2, one_key=False,
                        cot_prompt="I cannot tell which object is this. Rotating the object or changing the viewpoint "
                                   "might provide a more informative view. So, first, I need to rotate the object or "
                                   "change the viewpoint and then answer the question. Therefore, the answer is:")


def reachable_paths(record: dict[str, Any]) -> list[str]:
    """Turn 0 shows first_image, turn k shows valid_images[k]; ``{informative}`` is 1 only at the last turn."""
    template, n = record["image_template"], record["num_images"]
    ids = [record["first_image"], *record["valid_images"][1:n]]
    paths = [template.format(image=str(v).zfill(4), informative=int(k == n - 1)) for k, v in enumerate(ids)]
    paths.append(template.format(image=str(record["reference_image"]).zfill(4), informative=1))
    return sorted(set(paths))


def oeg_answers(ep: Episode) -> str:
    """The official open-ended valid answers (suggestions only)."""
    return "Rotate the object, Move the camera."
