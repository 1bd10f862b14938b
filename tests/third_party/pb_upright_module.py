"""The Upright source again, shaped as a module (the built-in builders' shape) under another name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pb_upright

from pb_build.builders.base import OnBad, Plan, WorkUnit
from pb_build.episode import Episode

_SOURCE = pb_upright.UprightSource()
name = "upright-module"
VERSION = _SOURCE.VERSION
RELEASE_NOTES = _SOURCE.RELEASE_NOTES
Config = pb_upright.Config
info = _SOURCE.info
OFFICIAL = _SOURCE.official


def plan(raw: Path, config: Config, on_bad: OnBad) -> Plan:
    return _SOURCE.plan(raw, config, on_bad)


def build(unit: WorkUnit, config: Config) -> Episode:
    return dataclasses.replace(_SOURCE.make_episode(unit, config), source=name)


def import_record(record: dict[str, Any], test_dir: Path) -> Episode:
    return _SOURCE.import_episode(record, test_dir)


def reachable_paths(record: dict[str, Any]) -> list[str]:
    return _SOURCE.reachable_paths(record)


def oeg_answers(ep: Episode) -> str:
    return _SOURCE.oeg_answers(ep)
