"""Rebuild a release from its manifest alone (plus the raw files and user tables), and check it reproduces the
same bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pb_build import __version__
from pb_build.build import build_release, table_fields
from pb_build.builders import get_builder
from pb_build.errors import PbBuildError
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance
from pb_build.manifests.recipe import RecipeSource, source_jobs
from pb_build.shards import AUTO


@dataclass
class RebuildResult:
    """How the rebuilt release compares with the original SHA256SUMS (when it was beside the manifest)."""

    out: Path
    compared: bool
    differing: list[str]
    notes: list[str]


def sources_from_manifest(manifest: manifests.Manifest, overrides: dict[str, Path],
                          tables: dict[str, Path] | None = None) -> tuple[RecipeSource, ...]:
    """The recipe sources recorded in a manifest; local folders must be given again with --raw, and a user
    table moved elsewhere with --table NAME=PATH."""
    tables = tables or {}
    known = {t for e in manifest.sources for t in e.tables}
    unknown = sorted(set(tables) - known)
    if unknown:
        raise PbBuildError(f"--table {unknown[0]}: the manifest records no such table "
                           f"(it records: {', '.join(sorted(known)) or 'none'})")
    sources = []
    for entry in manifest.sources:
        name, kind = entry.source, entry.raw.kind
        if kind == "folder" and name not in overrides:
            raise PbBuildError(f"{name} was built from a local folder; pass --raw {name}=DIR with the same files")
        params = dict(entry.parameters)
        seed = params.pop("seed", entry.seed)
        for fname, table in table_fields(get_builder(name).Config).items():
            if table in tables:
                params[fname] = str(tables[table])
        sources.append(RecipeSource(name, kind if kind != "folder" else "", seed, params))
    return tuple(sources)


def check_raw(entry: manifests.SourceEntry, raw: Path) -> None:
    """The raw files must be the ones the manifest recorded (same paths and sha256)."""
    for f in entry.raw.files:
        path = raw / f["path"]
        if not path.is_file():
            raise PbBuildError(f"{path}: raw file recorded in the manifest is missing")
        if provenance.sha256_file(path) != f["sha256"]:
            raise PbBuildError(f"{path}: differs from the raw file the manifest recorded (sha256 mismatch)")


def rebuild(manifest_path: Path, out: Path, overrides: dict[str, Path], *, tables: dict[str, Path] | None = None,
            cache_dir: Path | None = None, workers: int = 1, overwrite: bool = False,
            progress: bool = True) -> RebuildResult:
    """Build ``out`` from ``manifest_path`` and compare its SHA256SUMS with the original's."""
    manifest = manifests.load(manifest_path)
    # Read the original checksums first: rebuilding into the manifest's own folder replaces them.
    original_sums = manifest_path.parent / provenance.SUMS
    original = provenance.read_sums(manifest_path.parent) if original_sums.is_file() else None
    jobs = source_jobs(sources_from_manifest(manifest, overrides, tables), overrides, cache_dir, progress,
                       out=out, overwrite=overwrite, recorded_tables={e.source: e.tables for e in manifest.sources})
    notes = []
    for job, entry in zip(jobs, manifest.sources, strict=True):
        check_raw(entry, job.raw)
        if entry.builder_version != job.builder.VERSION:
            notes.append(f"{job.builder.name}: builder version {job.builder.VERSION} differs from the recorded "
                         f"{entry.builder_version}")
    if manifest.pb_build_version != __version__:
        notes.append(f"pb-build {__version__} differs from the recorded {manifest.pb_build_version}")
    if "shard_size" not in manifest.writer:
        notes.append("the manifest predates fixed-size shards: the native parquet files will differ")
    build_release(out, jobs, workers=workers, overwrite=overwrite, progress=progress,
                  shard_size=_shard_size(manifest.writer.get("shard_size", AUTO)), release=manifest.release)
    if original is None:
        return RebuildResult(out, False, [], notes)
    new = provenance.read_sums(out)
    differing = sorted(p for p in set(original) | set(new) if original.get(p) != new.get(p))
    return RebuildResult(out, True, differing, notes)


def _shard_size(recorded: object) -> int | None:
    """The recorded shard size as build_release takes it (None: derived from the plan, as recorded)."""
    return recorded if isinstance(recorded, int) else None
