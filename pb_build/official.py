"""The official record format: fields every record has, the action-key map, and checking a record against the
contract its source declares.

This is knowledge of the *official format* (what the official environments read), used by ``verify`` and the
official import. Nothing here names a source: a source's contract (extra fields, action space, the images a
record can open) arrives as data, a :class:`RecordContract` that the release carries with every episode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pb_build.strings import is_abstain

#: The official package's substring -> action map (global in ``proactivebench``).
ACTION_KEYS: dict[str, str] = {
    "to the left": "LEFT", "to the right": "RIGHT", "rewind the video.": "REWIND", "wait for the": "FORWARD",
    "rotate": "ROTATE", "view": "ROTATE", "angle": "ROTATE", "orientation": "ROTATE", "different": "ROTATE",
    "brightness": "BRIGHTNESS", "contrast": "CONTRAST", "saturation": "SATURATE", "deblur": "BLUR",
    "denoise": "NOISE", "compression": "JPEG_COMPRESSION", "resolution": "PIXELATE", "artifacts": "ARTIFACTS",
    "details": "DETAILS", "quickdraw": "DETAILS", "drawing": "DETAILS", "sketch": "DETAILS",
    "up": "UP", "down": "DOWN", "farther": "ZOOM",
}

COMMON_FIELDS: dict[str, type] = {
    "id": int, "image_template": str, "first_image": int, "num_images": int, "reference_image": int,
    "prompt": str, "options": list, "categories": list, "answer": str,
}

#: The JSON types an extra record field may declare, by name (names keep the contract serialisable).
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "bool": bool, "int": int, "number": (int, float), "str": str, "list": list, "dict": dict,
}


@dataclass(frozen=True)
class RecordContract:
    """What one record must hold for its official environment: extra fields, and how options are checked.

    ``actions`` is the record's action space (values of :data:`ACTION_KEYS`): every proactive option must contain
    exactly one of its keys (at least one when ``one_key`` is false). When ``option_field`` is set, that record
    field must instead name one of the options and option strings are not checked against the keys.
    """

    extra_fields: Mapping[str, str]
    actions: tuple[str, ...]
    one_key: bool = True
    option_field: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"extra_fields": dict(self.extra_fields), "actions": list(self.actions), "one_key": self.one_key,
                "option_field": self.option_field}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordContract:
        return cls(dict(data["extra_fields"]), tuple(data["actions"]), bool(data["one_key"]),
                   str(data["option_field"]))


def _type_problem(name: str, value: Any, ftype: type | tuple[type, ...]) -> str | None:
    if value is None or not isinstance(value, ftype) or (ftype is int and isinstance(value, bool)):
        return f"field {name!r} missing or not {getattr(ftype, '__name__', ftype)}"
    return None


def check_record(record: dict[str, Any], contract: RecordContract) -> list[str]:
    """Problems that would make the official environment crash on or misjudge ``record``."""
    fields: dict[str, type | tuple[type, ...]] = dict(COMMON_FIELDS)
    for fname, tname in contract.extra_fields.items():
        if tname not in FIELD_TYPES:
            return [f"contract declares field {fname!r} with unknown type {tname!r}"]
        fields[fname] = FIELD_TYPES[tname]
    out = [p for fname, ftype in fields.items() if (p := _type_problem(fname, record.get(fname), ftype))]
    if out:
        return out
    cats, options = record["categories"], record["options"]
    if len(cats) != 4 or record["answer"] not in cats:
        out.append("needs 4 categories including the answer")
    if sum(is_abstain(o) for o in options) != 1:
        out.append("needs exactly one abstain option ('cannot'/'do not')")
    if contract.option_field:
        if record[contract.option_field] not in options:
            out.append(f"{contract.option_field} is not one of the options")
    else:
        out += option_problems(options, contract.actions, contract.one_key)
    if record["num_images"] < 1:
        out.append("num_images must be at least 1")
    return out


def option_problems(options: Iterable[str], actions: Iterable[str], one_key: bool = True) -> list[str]:
    """Proactive options that do not hold exactly one (or, when not ``one_key``, any) key of ``actions``."""
    space = set(actions)
    out = []
    for opt in options:
        if is_abstain(opt):
            continue
        hits = [k for k, a in ACTION_KEYS.items() if a in space and k in opt.lower()]
        if not hits or (len(hits) > 1 and one_key):
            out.append(f"option {opt!r} must contain exactly one action key of {sorted(space)}, has {hits}")
    return out
