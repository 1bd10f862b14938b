"""Official source names, the aliases of the paper's tables, and resolving a user's ``--source``."""

from __future__ import annotations

from collections.abc import Iterable

from pb_build.errors import PbBuildError

ALIASES: dict[str, str] = {
    "Realistic-Occlusion-Dataset": "ROD",
    "OcclusionDataSet-MM20": "VSOD",
    "MVP-N": "MVP-N",
    "ImageNet-C": "IN-C",
    "QuickDraw": "QD",
    "ChangeIt": "CIT",
    "coco2014": "COCO",
}
OFFICIAL_NAMES: dict[str, str] = {alias: name for name, alias in ALIASES.items()}
TABLE_ORDER = tuple(ALIASES.values())


def alias(official_name: str) -> str:
    """The paper's alias of an official name (the name itself when unknown)."""
    return ALIASES.get(official_name, official_name)


def _forms(source: str, official_name: str) -> set[str]:
    return {source.lower(), official_name.lower(), alias(official_name).lower()}


def resolve(query: str, available: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """The (source, official name) pair that ``query`` names: a builder name, an official name or an alias."""
    pairs = list(available)
    want = query.strip().lower()
    for source, official_name in pairs:
        if want in _forms(source, official_name):
            return source, official_name
    have = ", ".join(f"{s} ({alias(o)})" for s, o in pairs) or "none"
    raise PbBuildError(f"source {query!r} is not in this folder; it has: {have}")
