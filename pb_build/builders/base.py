"""What a source builder provides. A builder is a module-level object; a new source is one new module."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pb_build.episode import Episode
from pb_build.errors import BadRecord, Ineligible

OnBad = Callable[[BadRecord], None] | None


@dataclass(frozen=True)
class SourceInfo:
    """Metadata for the dataset card and manifest."""

    official_name: str
    title: str
    licence: str
    attribution: str
    homepage: str
    citation: str
    description: str


@dataclass(frozen=True)
class WorkUnit:
    """A picklable description of one sample, planned in the main process and built in a worker."""

    key: str
    payload: Any


@dataclass
class Plan:
    """The planned work of one build, in release order, plus what the manifest must record."""

    units: Iterable[WorkUnit]  # a list, or an iterator when the builder streams its raw records
    raw_files: list[Path]
    raw_root: Path
    notes: dict[str, Any] = field(default_factory=dict)
    total: int | None = None  # how many units a streamed plan yields (at most), when cheap to count
    ineligible: list[Ineligible] = field(default_factory=list)  # valid raw items the source's rules exclude

    def size(self) -> int | None:
        """The number of planned units when known (progress bars show a total and an ETA then)."""
        return len(self.units) if isinstance(self.units, Sized) else self.total


class Builder(Protocol):
    """The contract every source builder module satisfies."""

    name: str
    VERSION: str
    RELEASE_NOTES: dict[str, str]
    Config: type
    info: SourceInfo

    def sample_dir(self) -> Path | None:
        """The bundled sample raw folder, if the source ships one."""

    def fetch(self, config: Any, cache_dir: Path | None, progress: bool) -> Path:
        """Fill the cache with the raw files ``config`` needs and return the raw folder."""

    def plan(self, raw: Path, config: Any, on_bad: OnBad) -> Plan:
        """Read the raw folder and return the work units in their final order."""

    def build(self, unit: WorkUnit, config: Any) -> Episode:
        """Turn one work unit into an episode (pure; runs in worker processes)."""


def iter_units(units: Iterable[WorkUnit]) -> Iterator[WorkUnit]:
    """Check keys are unique while iterating (duplicate keys would make ids ambiguous)."""
    seen: set[str] = set()
    for unit in units:
        if unit.key in seen:
            raise BadRecord(unit.key, "duplicate sample key")
        seen.add(unit.key)
        yield unit
