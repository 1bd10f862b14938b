"""Rebuild a release from its manifest alone (plus the raw files), and check it reproduces the same bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pb_build import __version__
from pb_build.errors import PbBuildError
from pb_build.manifests import provenance
from pb_build.manifests.recipe import RecipeSource, source_jobs
from pb_build.writers.release import build_release


@dataclass
class RebuildResult:
    """How the rebuilt release compares with the original SHA256SUMS (when it was beside the manifest)."""

    out: Path
    compared: bool
    differing: list[str]
    notes: list[str]


def sources_from_manifest(manifest: dict, overrides: dict[str, Path]) -> tuple[RecipeSource, ...]:
    """The recipe sources recorded in a manifest; local folders must be given again with --raw."""
    sources = []
    for entry in manifest["sources"]:
        name, kind = entry["source"], entry["raw"]["kind"]
        if kind == "folder" and name not in overrides:
            raise PbBuildError(f"{name} was built from a local folder; pass --raw {name}=DIR with the same files")
        params = dict(entry["parameters"])
        seed = params.pop("seed", entry.get("seed", 0))
        sources.append(RecipeSource(name, kind if kind != "folder" else "", seed, params))
    return tuple(sources)


def check_raw(entry: dict, raw: Path) -> None:
    """The raw files must be the ones the manifest recorded (same paths and sha256)."""
    for f in entry["raw"]["files"]:
        path = raw / f["path"]
        if not path.is_file():
            raise PbBuildError(f"{path}: raw file recorded in the manifest is missing")
        if provenance.sha256_file(path) != f["sha256"]:
            raise PbBuildError(f"{path}: differs from the raw file the manifest recorded (sha256 mismatch)")


def rebuild(manifest_path: Path, out: Path, overrides: dict[str, Path], *, cache_dir: Path | None = None,
            workers: int = 1, overwrite: bool = False, progress: bool = True) -> RebuildResult:
    """Build ``out`` from ``manifest_path`` and compare its SHA256SUMS with the original's."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PbBuildError(f"{manifest_path}: cannot read the manifest ({exc})") from None
    if not isinstance(manifest, dict) or "sources" not in manifest:
        raise PbBuildError(f"{manifest_path}: not a pb-build manifest (no 'sources')")
    jobs = source_jobs(sources_from_manifest(manifest, overrides), overrides, cache_dir, progress)
    notes = []
    for job, entry in zip(jobs, manifest["sources"], strict=True):
        check_raw(entry, job.raw)
        if entry.get("builder_version") != job.builder.VERSION:
            notes.append(f"{job.builder.name}: builder version {job.builder.VERSION} differs from the recorded "
                         f"{entry.get('builder_version')}")
    if manifest.get("pb_build_version") != __version__:
        notes.append(f"pb-build {__version__} differs from the recorded {manifest.get('pb_build_version')}")
    build_release(out, jobs, workers=workers, overwrite=overwrite, progress=progress,
                  shard_bytes=manifest.get("writer", {}).get("shard_bytes", 500 * 1024 * 1024),
                  release=manifest.get("release"))
    original = manifest_path.parent / provenance.SUMS
    if not original.is_file():
        return RebuildResult(out, False, [], notes)
    old, new = provenance.read_sums(manifest_path.parent), provenance.read_sums(out)
    differing = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
    return RebuildResult(out, True, differing, notes)
