"""Writing a release folder safely: build it in a temporary folder beside the target, then rename.

``pb-build`` build, rebuild, pull and train-split create a whole folder with :func:`new_folder`; ``filter`` adds
files to an existing release with :func:`update_folder`. Either way nothing half-written is left at the target
when something fails, and :func:`finish` writes the card, the manifest and ``SHA256SUMS`` the same way.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pb_build.errors import PbBuildError
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance

CARD = "README.md"


def check_target(out: Path, overwrite: bool) -> None:
    """``out`` may be written: absent, empty, or a folder pb-build wrote (with ``overwrite``)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise PbBuildError(f"{out}: output path exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not (out / manifests.MANIFEST).is_file() and not (out / "part.json").is_file():  # a release or a part
        raise PbBuildError(f"{out}: output folder exists and is not a pb-build release; choose another --out")
    if not overwrite:
        raise PbBuildError(f"{out}: a release already exists there; pass --overwrite to replace it")


@contextmanager
def new_folder(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the block succeeds it replaces ``out``."""
    out = out.resolve()
    check_target(out, overwrite)
    tmp = out.parent / f".{out.name}.pb-build-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def update_folder(root: Path) -> Iterator[Path]:
    """Yield a staging folder inside ``root``; when the block succeeds, every file staged there is moved to the
    same place in ``root`` (replacing it) and ``SHA256SUMS`` is rewritten, so a failure leaves ``root``
    unchanged."""
    staging = root / ".pb-build-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            dest = root / path.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    provenance.write_sums(root)


def finish(root: Path, manifest: manifests.Manifest | manifests.TrainSplitManifest, card: str,
           known_digests: dict[str, str] | None = None, *, sums: bool = True) -> None:
    """Write the card, the manifest and then (unless ``sums`` is false) ``SHA256SUMS`` over every file of
    ``root``; ``known_digests`` are digests the writers already computed."""
    (root / CARD).write_text(card, encoding="utf-8", newline="\n")
    manifests.write(root, manifest)
    if sums:
        provenance.write_sums(root, known_digests)


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.pb-build-old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
