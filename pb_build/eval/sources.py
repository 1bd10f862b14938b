"""Official source names, the aliases of the paper's tables, and resolving a user's ``--source``.

An episode carries its alias (``Episode.spec``); the tables here are derived from the registered sources for
the places that only have a name (a saved run, a user's ``--source``), so a new source needs no line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from pb_build.errors import PbBuildError

V = TypeVar("V")


class Derived(Mapping[str, V]):
    """A table computed from the registry on use (sources may be registered by installed packages)."""

    def __init__(self, table: Callable[[], dict[str, V]]):
        self._table = table

    def __getitem__(self, key: str) -> V:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


def _aliases() -> dict[str, str]:
    from pb_build.builders import REGISTRY

    return {s.info.official_name: s.official.alias for s in REGISTRY.values()}


#: Official name -> the paper's alias, e.g. QuickDraw's is QD.
ALIASES: Mapping[str, str] = Derived(_aliases)
OFFICIAL_NAMES: Mapping[str, str] = Derived(lambda: {a: n for n, a in _aliases().items()})


class _Order(Sequence[str]):
    """The aliases in the paper's table order (the registry's order)."""

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(_aliases().values())[index]

    def __len__(self) -> int:
        return len(_aliases())


TABLE_ORDER: Sequence[str] = _Order()


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
