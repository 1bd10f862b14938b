"""COCO 2014 records -> episodes (the inverse of ``pb_build.builders.coco``'s export).

The official record holds one full image (``image_template``, used unformatted) plus the crop parameters
(``direction``, ``granularity``, ``horizontal_step``, ``vertical_step``, ``crop``); ``COCO2014Environment`` shows
crops of it made at run time. The native episode holds every reachable view as a frame, so the importer rebuilds
them with the builder's own code: ``state_machine`` (the official option removal, running steps and crop boxes,
rounded as ``PIL.Image.crop`` rounds them) and ``encode_view`` on the image decoded like the builder decodes it
(PIL, no EXIF rotation; L and RGB kept, other modes made RGB). Views are encoded with the builder's default frame
format (PNG, lossless: pixel-identical to the official transform's crop), so a release built with
``--frame-format jpeg`` does not round-trip byte for byte. The reference frame (last) is the image file itself.

Records pb-build did not make may have views that leave the image (PIL fills the outside with black, and so does
the importer) and fractional steps or crops (the official float arithmetic is reproduced). ``direction`` must be
one of the nine official directions and every proactive option one of the five literal strings of its direction.
The key is recovered from ``coco2014/<split>2014/COCO_<split>2014_<image id>.jpg`` (the COCO file naming) as
``coco/<split>2014/<image id>``; any other layout gets ``coco/id-<id>``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pb_build.builders import coco as builder
from pb_build.builders import coco_geometry
from pb_build.builders.base import ImportFailure, OfficialSpec, read_frame
from pb_build.episode import Episode, OfficialExport, OfficialFile
from pb_build.raw import coco as raw
from pb_build.strings import is_abstain

OFFICIAL_NAME = builder.info.official_name
FILE_NAME = re.compile(r"COCO_(?P<split>[a-z]+)2014_(?P<id>\d+)\.jpg")
MOVE_OPTIONS = {**coco_geometry.OPTION_OF, "zoom": coco_geometry.ZOOM}


@functools.cache
def view_config() -> builder.Config:
    """The builder's default configuration: its default view encoding."""
    return builder.Config()


def _key(sample_id: int, template: str) -> str:
    parts = PurePosixPath(template).parts
    if len(parts) == 3 and parts[0] == OFFICIAL_NAME:
        match = FILE_NAME.fullmatch(parts[2])
        if match and parts[1] == f"{match['split']}2014":
            return f"{builder.name}/{parts[1]}/{int(match['id'])}"
    return f"{builder.name}/id-{sample_id}"


def _check(record: dict[str, Any]) -> list[str]:
    """COCO's own rules beyond the generic contract (checked before import)."""
    direction = record["direction"]
    if direction not in coco_geometry.DIRECTIONS:
        return [f"direction {direction!r} is not one of {', '.join(coco_geometry.DIRECTIONS)}"]
    allowed = {MOVE_OPTIONS[part] for part in direction.split("_")}
    return [f"option {o!r} is not one of the literal move options of direction {direction!r}"
            for o in record["options"] if not is_abstain(o) and o not in allowed]


def import_record(record: dict[str, Any], test_dir: Path) -> Episode:
    """The episode of one COCO record: every reachable view cropped from its image under ``test_dir``."""
    problems = _check(record)
    if problems:
        raise ImportFailure("; ".join(problems))
    body = {k: v for k, v in record.items() if k != "id"}
    template, direction = record["image_template"], record["direction"]
    data = read_frame(test_dir, template)
    src = raw.Source(test_dir / template)
    width, height = raw.image_header(src)
    pixels = builder.decode_image(data, src, width, height)
    options = tuple(record["options"])
    geo = coco_geometry.Geometry(direction, record["granularity"], record["horizontal_step"], record["vertical_step"],
                           dict(record["crop"]))
    machine = coco_geometry.state_machine(geo, options)
    empty = [box for box in machine.boxes if box[2] <= box[0] or box[3] <= box[1]]
    if empty:
        raise ImportFailure(f"crop box {empty[0]} (x1, y1, x2, y2) has no pixels")
    frames = tuple(builder.encode_view(pixels, box, view_config()) for box in machine.boxes) + (data,)
    return Episode(
        source=builder.name,
        key=_key(record["id"], template),
        prompt=record["prompt"],
        options=options,
        categories=tuple(record["categories"]),
        answer=record["answer"],
        frames=frames,
        states=coco_geometry.machine_states(machine, options),
        reference_frame=len(frames) - 1,
        max_steps=machine.max_steps,
        hint=builder.HINT_ZOOM if direction == "zoom" else builder.HINT_MOVE,
        abstain=tuple(i for i, o in enumerate(options) if is_abstain(o)),
        official=OfficialExport(OFFICIAL_NAME, body, (OfficialFile(template, data),)),
    )


OFFICIAL = OfficialSpec(alias="COCO", actions=frozenset({"LEFT", "RIGHT", "UP", "DOWN", "ZOOM"}),
                        extra_fields={"direction": "str", "granularity": "int", "horizontal_step": "number",
                                      "vertical_step": "number", "crop": "dict"}, oeg_threshold=2)


def action_space(record: dict[str, Any]) -> frozenset[str]:
    """A record's actions follow its direction: zoom, or the moves its direction names."""
    direction = str(record.get("direction", ""))
    if direction == "zoom":
        return frozenset({"ZOOM"})
    return frozenset(a for a in ("LEFT", "RIGHT", "UP", "DOWN") if a.lower() in direction)


def reachable_paths(record: dict[str, Any]) -> list[str]:
    """The one full image; views are crops of it made at run time."""
    return [record["image_template"]]


def oeg_answers(ep: Episode) -> str:
    """The official open-ended valid answers: two suggestions, then the category."""
    return f"Move the camera, Move farther from the object, {ep.answer.replace('.', '')}."
