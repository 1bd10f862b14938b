"""Official-layout records -> episodes, through the source registry.

Each source imports its own records (:meth:`pb_build.builders.base.Source.import_record`, the inverse of its
export): the record is checked against the source's official contract, its frames are read relative to
``test_dir`` and the state machine the official environment plays is rebuilt. For records pb-build exported,
``import(export(episode))`` equals the episode except provenance in ``meta``. This is the one place the evaluator
uses the registry: the authors' layout carries no spec of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pb_build.builders import REGISTRY
from pb_build.builders.base import ImportFailure, read_frame
from pb_build.episode import Episode
from pb_build.errors import PbBuildError
from pb_build.eval.sources import Derived

__all__ = ["IMPORTERS", "ImportFailure", "Importer", "get_importer", "import_record", "read_frame"]

Importer = Callable[[dict[str, Any], Path], Episode]


#: Official name -> importer of every registered source.
IMPORTERS: Mapping[str, Importer] = Derived(lambda: {s.info.official_name: s.import_record for s in REGISTRY.values()})


def get_importer(official_name: str) -> Importer:
    """The importer of an official source name."""
    try:
        return IMPORTERS[official_name]
    except KeyError:
        known = ", ".join(sorted(IMPORTERS)) or "none"
        raise PbBuildError(f"no importer for official source {official_name!r} yet; importers exist for: "
                           f"{known}") from None


def import_record(official_name: str, record: dict[str, Any], test_dir: Path) -> Episode:
    """Import one record; any problem becomes an ImportFailure naming the record."""
    return get_importer(official_name)(record, test_dir)
