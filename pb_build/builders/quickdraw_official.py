"""QuickDraw records -> episodes (the inverse of ``pb_build.builders.quickdraw``'s export).

Semantics of the official ``QuickDrawEnvironment``: frames ``0 .. num_images-1`` (4-digit padded), the first
frame shown first, every non-abstain option valid and moving one frame on, except at the last turn where only
the category is; ``max_steps = num_images``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pb_build.builders import quickdraw as builder
from pb_build.builders.base import ImportFailure, OfficialSpec, read_frame
from pb_build.episode import Episode, OfficialExport, OfficialFile, linear_states
from pb_build.strings import is_abstain

OFFICIAL_NAME = "QuickDraw"


def _key(sample_id: int, template: str) -> str:
    parts = PurePosixPath(template).parent.parts
    if len(parts) == 3 and parts[0] == OFFICIAL_NAME:
        return f"{builder.name}/{parts[1]}/{parts[2]}"
    return f"{builder.name}/id-{sample_id}"


def import_record(record: dict[str, Any], test_dir: Path) -> Episode:
    """The episode of one QuickDraw record, reading its frames under ``test_dir``."""
    body = {k: v for k, v in record.items() if k != "id"}
    n, template = int(record["num_images"]), record["image_template"]
    if record["first_image"] != 0:
        raise ImportFailure(f"first_image must be 0, is {record['first_image']}")
    paths = [template.format(image=str(k).zfill(4)) for k in range(n)]
    frames = tuple(read_frame(test_dir, p) for p in paths)
    options = tuple(record["options"])
    abstain = tuple(i for i, o in enumerate(options) if is_abstain(o))
    proactive = tuple(i for i in range(len(options)) if i not in abstain)
    states = linear_states(n, len(options), proactive)
    files = tuple(OfficialFile(p, f) for p, f in zip(paths, frames, strict=True))
    return Episode(
        source=builder.name,
        key=_key(record["id"], template),
        prompt=record["prompt"],
        options=options,
        categories=tuple(record["categories"]),
        answer=record["answer"],
        frames=frames,
        states=states,
        reference_frame=int(record["reference_image"]),
        max_steps=n,
        hint=builder.HINT,
        abstain=abstain,
        official=OfficialExport(OFFICIAL_NAME, body, files),
    )


OFFICIAL = OfficialSpec(alias="QD", actions=frozenset({"DETAILS"}), oeg_threshold=1)


def reachable_paths(record: dict[str, Any]) -> list[str]:
    """Frames ``0 .. num_images-1``, 4-digit padded."""
    return sorted({record["image_template"].format(image=str(i).zfill(4)) for i in range(record["num_images"])})


def oeg_answers(ep: Episode) -> str:
    """The official open-ended valid answers: one suggestion, then the category."""
    return f"Add more details to the drawing, {ep.answer.replace('.', '')}."
