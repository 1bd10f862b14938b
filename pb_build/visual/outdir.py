"""Output folders that appear whole or not at all: built beside the target, renamed into place at the end."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from pb_build.errors import PbBuildError
from pb_build.release_folder import new_folder


def _may_replace(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise PbBuildError(f"{out}: exists and is not empty; pass --overwrite or choose another --out")


def fresh_folder(out: Path, overwrite: bool) -> AbstractContextManager[Path]:
    """A temporary folder that replaces ``out`` when the block succeeds (and is removed when it fails). A non-empty
    ``out`` (a gallery or report, not a release) is refused unless ``overwrite``."""
    return new_folder(out, overwrite, check=_may_replace)


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
