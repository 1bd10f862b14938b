"""Official-layout records -> episodes: one importer per source, each the inverse of that source's export.

Records are checked against the official contract (``pb_build.official.check_record``) first. An importer is a
function ``(record, test_dir) -> Episode`` that reads the frames the record's template names
(relative to ``test_dir``) and rebuilds the state machine the official environment plays. For records pb-build
exported, ``import(export(episode))`` equals the episode except ``meta`` (provenance the record does not carry).
Adding a source: write ``importers/<source>.py`` with ``import_record`` and add one line to ``IMPORTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pb_build.episode import Episode
from pb_build.errors import PbBuildError
from pb_build.eval.importers import changeit, coco, imagenet_c, mvp_n, quickdraw, rod, vsod
from pb_build.official import check_record

Importer = Callable[[dict[str, Any], Path], Episode]

IMPORTERS: dict[str, Importer] = {
    "QuickDraw": quickdraw.import_record,
    "MVP-N": mvp_n.import_record,
    "ImageNet-C": imagenet_c.import_record,
    "coco2014": coco.import_record,
    "Realistic-Occlusion-Dataset": rod.import_record,
    "OcclusionDataSet-MM20": vsod.import_record,
    "ChangeIt": changeit.import_record,
}


class ImportFailure(PbBuildError):
    """One record that cannot be turned into an episode (missing or unreadable frame, bad fields)."""


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
    importer = get_importer(official_name)
    where = f"{official_name} record {record.get('id')}"
    problems = check_record(official_name, record)
    if problems:
        raise ImportFailure(f"{where}: {'; '.join(problems)}")
    try:
        return importer(record, test_dir).validate()
    except ImportFailure as exc:
        raise ImportFailure(f"{where}: {exc}") from exc
    except (PbBuildError, KeyError, TypeError, ValueError, IndexError, OSError) as exc:
        raise ImportFailure(f"{where}: {type(exc).__name__}: {exc}") from exc


def read_frame(test_dir: Path, rel: str) -> bytes:
    """The bytes of one frame file named by a template, relative to ``test_dir``."""
    path = test_dir / rel
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailure(f"frame {rel}: {exc.strerror or exc}") from exc
    if not data:
        raise ImportFailure(f"frame {rel}: empty file")
    return data
