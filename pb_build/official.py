"""The official record contract of the seven ProactiveBench sources (benchmark.md §3-§4).

This is knowledge of the *official format* (what the official environments read), used by ``verify`` to check
an exported JSONL file; it is not builder code.
"""

from __future__ import annotations

from typing import Any

from pb_build.strings import is_abstain

ACTION_KEYS: dict[str, str] = {
    "to the left": "LEFT", "to the right": "RIGHT", "rewind the video.": "REWIND", "wait for the": "FORWARD",
    "rotate": "ROTATE", "view": "ROTATE", "angle": "ROTATE", "orientation": "ROTATE", "different": "ROTATE",
    "brightness": "BRIGHTNESS", "contrast": "CONTRAST", "saturation": "SATURATE", "deblur": "BLUR",
    "denoise": "NOISE", "compression": "JPEG_COMPRESSION", "resolution": "PIXELATE", "artifacts": "ARTIFACTS",
    "details": "DETAILS", "quickdraw": "DETAILS", "drawing": "DETAILS", "sketch": "DETAILS",
    "up": "UP", "down": "DOWN", "farther": "ZOOM",
}

ACTION_SPACE: dict[str, set[str]] = {
    "Realistic-Occlusion-Dataset": {"LEFT", "RIGHT"},
    "OcclusionDataSet-MM20": {"REWIND", "FORWARD"},
    "MVP-N": {"ROTATE"},
    "ImageNet-C": {"BRIGHTNESS", "CONTRAST", "SATURATE", "BLUR", "NOISE", "JPEG_COMPRESSION", "PIXELATE",
                   "ARTIFACTS"},
    "QuickDraw": {"DETAILS"},
    "ChangeIt": {"REWIND", "FORWARD"},
    "coco2014": {"LEFT", "RIGHT", "UP", "DOWN", "ZOOM"},
}

EXTRA_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "OcclusionDataSet-MM20": {"strong_occlusions": bool},
    "MVP-N": {"valid_images": list},
    "ImageNet-C": {"quality_answer": str},
    "ChangeIt": {"step_size": int, "max_steps": int},
    "coco2014": {"direction": str, "granularity": int, "horizontal_step": (int, float),
                 "vertical_step": (int, float), "crop": dict},
}

COMMON_FIELDS: dict[str, type] = {
    "id": int, "image_template": str, "first_image": int, "num_images": int, "reference_image": int,
    "prompt": str, "options": list, "categories": list, "answer": str,
}


def _coco_space(record: dict[str, Any]) -> set[str]:
    direction = str(record.get("direction", ""))
    if direction == "zoom":
        return {"ZOOM"}
    return {a for a in ("LEFT", "RIGHT", "UP", "DOWN") if a.lower() in direction}


def check_record(name: str, record: dict[str, Any]) -> list[str]:
    """Problems that would make the official environment of ``name`` crash on or misjudge ``record``."""
    if name not in ACTION_SPACE:
        return [f"unknown official source name {name!r}"]
    out: list[str] = []
    for fname, ftype in {**COMMON_FIELDS, **EXTRA_FIELDS.get(name, {})}.items():
        value = record.get(fname)
        if value is None or not isinstance(value, ftype) or (ftype is int and isinstance(value, bool)):
            out.append(f"field {fname!r} missing or not {getattr(ftype, '__name__', ftype)}")
    if out:
        return out
    cats, options = record["categories"], record["options"]
    if len(cats) != 4 or record["answer"] not in cats:
        out.append("needs 4 categories including the answer")
    if sum(is_abstain(o) for o in options) != 1:
        out.append("needs exactly one abstain option ('cannot'/'do not')")
    space = _coco_space(record) if name == "coco2014" else ACTION_SPACE[name]
    if name == "ImageNet-C":
        if record["quality_answer"] not in options:
            out.append("quality_answer is not one of the options")
    else:
        for opt in options:
            if is_abstain(opt):
                continue
            hits = [k for k, a in ACTION_KEYS.items() if a in space and k in opt.lower()]
            if not hits or (len(hits) > 1 and name != "MVP-N"):
                out.append(f"option {opt!r} must contain exactly one action key of {sorted(space)}, has {hits}")
    if record["num_images"] < 1:
        out.append("num_images must be at least 1")
    try:
        reachable_paths(name, record)
    except (KeyError, IndexError, ValueError) as exc:
        out.append(f"image_template does not format: {exc!r}")
    return out


def reachable_paths(name: str, record: dict[str, Any]) -> list[str]:
    """Every image path (relative to ``test/``) the official environment can open for ``record``."""
    template, n = record["image_template"], record["num_images"]
    match name:
        case "QuickDraw" | "OcclusionDataSet-MM20":
            paths = [template.format(image=str(i).zfill(4)) for i in range(n)]
        case "Realistic-Occlusion-Dataset":
            paths = [template.format(image=i) for i in range(n)]
        case "ChangeIt":
            first, step = record["first_image"], record["step_size"]
            paths = [template.format(image=i) for i in range(first % step, n, step)]
        case "MVP-N":
            # Turn 0 shows first_image, turn k shows valid_images[k]; {informative} is 1 only at the last turn.
            ids = [record["first_image"], *record["valid_images"][1:n]]
            paths = [template.format(image=str(v).zfill(4), informative=int(k == n - 1)) for k, v in enumerate(ids)]
            paths.append(template.format(image=str(record["reference_image"]).zfill(4), informative=1))
        case "ImageNet-C":
            # Each valid fix lowers the severity by one, from first_image.
            first = record["first_image"]
            paths = [template.format(level=first - k) for k in range(n)]
            paths.append(template.format(level=record["reference_image"]))
        case "coco2014":
            paths = [template]
        case _:
            raise ValueError(f"unknown official source name {name!r}")
    return sorted(set(paths))
