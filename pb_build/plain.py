"""Dataclass trees as JSON data, without ``dataclasses.asdict``'s deep copies (a manifest holds one dict per raw
file: tens of thousands)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


def fields_of(value: Any) -> dict[str, Any]:
    """A ``json.dumps`` default: a dataclass instance as the dict of its fields (as ``asdict`` gives)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of ``value`` with its dataclasses as dicts of their fields."""
    return json.dumps(value, default=fields_of, **options)


def to_plain(value: Any) -> Any:
    """``value`` as plain JSON data (dicts, lists, strings, numbers, booleans and None)."""
    return json.loads(dumps(value))
