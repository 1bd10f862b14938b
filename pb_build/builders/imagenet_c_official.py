"""ImageNet-C records -> episodes (the inverse of ``pb_build.builders.imagenet_c``'s export).

Semantics of the official ``ImageNetCEnvironment``: turn k shows severity ``first_image - k`` (``{level}``, a plain
integer; the valid severities are 1..5), reference mode shows ``reference_image``. Every option is shown at every
turn, including the last; before the last turn only ``quality_answer`` is a valid option (one severity less) and
the category is accepted, at the last turn only the category is; ``max_steps = num_images``.

Frames: one per turn, in turn order, then the reference severity when it is not one of the turns' (pb-build:
severities 5..1, reference 1 = the last turn). The key is recovered from the ImageNet-C layout template
``ImageNet-C/<corruption>/{level}/<wnid>/<file>`` as ``imagenet-c/<wnid>/<file>``; any other layout gets
``imagenet-c/id-<id>``. (A pb-build release regenerated from clean images whose files are not ``.JPEG`` exports
``<stem>.JPEG``, so its key, which names the original file, cannot be recovered: the imported key then names the
exported file.) Assumption for the authors' files: the template's only placeholder is ``{level}``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pb_build.builders import imagenet_c as builder
from pb_build.builders.base import ImportFailure, OfficialSpec, read_frame
from pb_build.episode import Episode, OfficialExport, OfficialFile, linear_states
from pb_build.strings import is_abstain

OFFICIAL_NAME = builder.info.official_name
LEVELS = range(1, builder.NUM_LEVELS + 1)  # the official valid_images


def _key(sample_id: int, template: str) -> str:
    parts = PurePosixPath(template).parts
    if len(parts) == 5 and parts[0] == OFFICIAL_NAME and parts[2] == "{level}" and "{" not in parts[3] + parts[4]:
        return f"{builder.name}/{parts[3]}/{parts[4]}"
    return f"{builder.name}/id-{sample_id}"


def import_record(record: dict[str, Any], test_dir: Path) -> Episode:
    """The episode of one ImageNet-C record, reading its severities under ``test_dir``."""
    body = {k: v for k, v in record.items() if k != "id"}
    n, template, first = record["num_images"], record["image_template"], record["first_image"]
    levels = [first - k for k in range(n)]
    if any(level not in LEVELS for level in levels[1:]):
        raise ImportFailure(f"first_image {first} with num_images {n} steps below severity {LEVELS[0]}")
    paths = [template.format(level=level) for level in levels]
    reference = template.format(level=record["reference_image"])
    if reference in paths:
        reference_frame = paths.index(reference)
    else:
        reference_frame = len(paths)
        paths.append(reference)
    frames = tuple(read_frame(test_dir, p) for p in paths)
    options = tuple(record["options"])
    abstain = tuple(i for i, o in enumerate(options) if is_abstain(o))
    quality = options.index(record["quality_answer"])
    unique = dict.fromkeys(zip(paths, frames, strict=True))
    return Episode(
        source=builder.name,
        key=_key(record["id"], template),
        prompt=record["prompt"],
        options=options,
        categories=tuple(record["categories"]),
        answer=record["answer"],
        frames=frames,
        states=linear_states(n, len(options), (quality,)),
        reference_frame=reference_frame,
        max_steps=n,
        hint=builder.HINT,
        abstain=abstain,
        official=OfficialExport(OFFICIAL_NAME, body, tuple(OfficialFile(p, f) for p, f in unique)),
    )


OFFICIAL = OfficialSpec(alias="IN-C", actions=frozenset({"BRIGHTNESS", "CONTRAST", "SATURATE", "BLUR", "NOISE",
                                                       "JPEG_COMPRESSION", "PIXELATE", "ARTIFACTS"}),
                        extra_fields={"quality_answer": "str"}, oeg_threshold=1, option_field="quality_answer")


def reachable_paths(record: dict[str, Any]) -> list[str]:
    """Each valid fix lowers the severity by one, from first_image; plus the reference severity."""
    template, first = record["image_template"], record["first_image"]
    paths = [template.format(level=first - k) for k in range(record["num_images"])]
    paths.append(template.format(level=record["reference_image"]))
    return sorted(set(paths))


def oeg_answers(ep: Episode) -> str:
    """The official open-ended valid answers: the valid fixes of the first state, then the category."""
    first = ep.states[ep.initial_state]
    return ", ".join([*(ep.options[i].replace(".", "") for i in first.valid), ep.answer.replace(".", "")]) + "."
