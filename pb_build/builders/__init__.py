"""The registry of sources: the built-in ones plus those installed packages register under the
``pb_build.sources`` entry-point group.

An entry point may name a module shaped like a built-in builder (with the official-layout attributes too), a
:class:`~pb_build.builders.base.Source` subclass or a Source instance. A source that breaks the contract is not
registered; its error (naming the source and the cause) is kept in :data:`ERRORS`, shown by ``pb-build list``
and raised when the source is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from pb_build.builders.base import ModuleSource, Source, contract_problems
from pb_build.errors import PbBuildError

GROUP = "pb_build.sources"
#: Built-in sources: (builder module, official-layout module), one line each.
BUILT_IN: tuple[tuple[str, str], ...] = (  # in the order of the paper's tables
    ("pb_build.builders.rod", "pb_build.builders.rod_official"),
    ("pb_build.builders.vsod", "pb_build.builders.vsod_official"),
    ("pb_build.builders.mvp_n", "pb_build.builders.mvp_n_official"),
    ("pb_build.builders.imagenet_c", "pb_build.builders.imagenet_c_official"),
    ("pb_build.builders.quickdraw", "pb_build.builders.quickdraw_official"),
    ("pb_build.builders.changeit", "pb_build.builders.changeit_official"),
    ("pb_build.builders.coco", "pb_build.builders.coco_official"),
)


class SourceError(PbBuildError):
    """A source that cannot be registered."""


def as_source(obj: object, origin: str) -> Source:
    """A registered object (module, Source subclass or instance) as a checked Source."""
    if isinstance(obj, ModuleType):
        source: Source = ModuleSource(obj, origin=origin)
    elif isinstance(obj, type) and issubclass(obj, Source):
        source = obj()
    elif isinstance(obj, Source):
        source = obj
    else:
        raise PbBuildError(f"is a {type(obj).__name__}, not a module, Source subclass or Source instance")
    source.origin = origin
    problems = contract_problems(source)
    if problems:
        raise PbBuildError("; ".join(problems))
    return source


def _entry_point_source(ep: EntryPoint) -> Source:
    dist = ep.dist.name if ep.dist is not None else "unknown distribution"
    where = f"source {ep.name!r} (entry point {ep.value!r} of {dist})"
    try:
        obj = ep.load()
    except Exception as exc:  # any import-time failure of third-party code is reported, not raised
        raise SourceError(f"{where} failed to import: {type(exc).__name__}: {exc}") from exc
    try:
        source = as_source(obj, dist)
    except PbBuildError as exc:
        raise SourceError(f"{where} breaks the source contract: {exc}") from exc
    if source.name != ep.name:
        raise SourceError(f"{where} is named {source.name!r}; the entry point must use the source's name")
    return source


class Registry(Mapping[str, Source]):
    """Source name -> Source, loaded on first use."""

    def __init__(self) -> None:
        self._sources: dict[str, Source] | None = None
        self._errors: dict[str, str] = {}

    @property
    def errors(self) -> dict[str, str]:
        """Source name -> why it could not be registered (one line naming the source and the cause)."""
        self._load()
        return self._errors

    def _load(self) -> dict[str, Source]:
        if self._sources is None:
            sources: dict[str, Source] = {}
            for builder, official in BUILT_IN:
                source = ModuleSource(importlib.import_module(builder), importlib.import_module(official))
                sources[source.name] = source
            for ep in entry_points(group=GROUP):
                if ep.name in sources:
                    clash = sources[ep.name].origin
                    dist = ep.dist.name if ep.dist is not None else "unknown distribution"
                    self._errors[ep.name] = (f"source {ep.name!r} of {dist} clashes with the {clash} source of that "
                                            "name; it is not registered")
                    continue
                try:
                    sources[ep.name] = _entry_point_source(ep)
                except SourceError as exc:
                    self._errors[ep.name] = str(exc)
            self._sources = sources
        return self._sources

    def __getitem__(self, name: str) -> Source:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def by_official_name(self, official_name: str) -> Source | None:
        """The source whose official layout is named ``official_name``."""
        return next((s for s in self.values() if s.info.official_name == official_name), None)


REGISTRY = Registry()


def get_builder(source: str) -> Source:
    """The source registered as ``source``."""
    try:
        return REGISTRY[source]
    except KeyError:
        if source in REGISTRY.errors:
            raise PbBuildError(REGISTRY.errors[source]) from None
        raise PbBuildError(f"unknown source {source!r}; known sources: {', '.join(sorted(REGISTRY))}") from None


get_source = get_builder
