"""Build a release folder atomically: write everything in a temporary folder beside the target, then rename."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sized
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from pb_build.builders.base import iter_units
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests import provenance
from pb_build.pipeline import run_units
from pb_build.writers.card import ConfigSummary, write_card
from pb_build.writers.native import DEFAULT_SHARD_BYTES, NativeWriter
from pb_build.writers.official import OfficialWriter

SPLIT = "test"


@dataclass
class SourceJob:
    """One source to build into the release."""

    builder: ModuleType
    config: Any
    raw: Path
    sample: bool = False
    fetched: bool = False

    @property
    def raw_kind(self) -> str:
        """How the raw folder was obtained: 'sample', 'fetch' or 'folder' (recorded for rebuilds)."""
        return "sample" if self.sample else "fetch" if self.fetched else "folder"


@dataclass
class SourceReport:
    """What was built for one source."""

    source: str
    official_name: str
    samples: int = 0
    frames: int = 0
    files: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def build_release(
    out: Path,
    jobs: list[SourceJob],
    *,
    workers: int = 1,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    release: dict[str, Any] | None = None,
) -> list[SourceReport]:
    """Build every job into the release folder ``out``; nothing is left at ``out`` on failure.

    ``release`` (name, version and the recipe) is recorded in the manifest and the card when given.
    """
    out = out.resolve()
    check_target(out, overwrite)
    tmp = out.parent / f".{out.name}.pb-build-tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        reports, summaries, entries = [], [], []
        known_digests: dict[str, str] = {}
        for job in jobs:
            report, summary, entry = _build_source(tmp, job, workers, skip_bad, progress, shard_bytes,
                                                   known_digests)
            reports.append(report)
            summaries.append(summary)
            entries.append(entry)
        write_card(tmp, summaries, release)
        provenance.write_manifest(tmp, {"release": release, "split": SPLIT, "sources": entries,
                                        "writer": {"shard_bytes": shard_bytes}})
        provenance.write_sums(tmp, known_digests)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return reports


def check_target(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise PbBuildError(f"{out}: output path exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not (out / provenance.MANIFEST).is_file():
        raise PbBuildError(f"{out}: output folder exists and is not a pb-build release; choose another --out")
    if not overwrite:
        raise PbBuildError(f"{out}: a release already exists there; pass --overwrite to replace it")


def replace_folder(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.pb-build-old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _build_source(
    tmp: Path, job: SourceJob, workers: int, skip_bad: bool, progress: bool, shard_bytes: int,
    known_digests: dict[str, str],
) -> tuple[SourceReport, ConfigSummary, dict[str, Any]]:
    builder, started = job.builder, time.perf_counter()
    report = SourceReport(builder.name, builder.info.official_name)

    def record_bad(bad: BadRecord) -> None:
        report.skipped.append({**bad.as_dict(), "path": _relative(str(bad.path), job.raw)})

    plan = builder.plan(job.raw, job.config, record_bad if skip_bad else None)
    official = OfficialWriter(tmp / SPLIT, builder.info.official_name)
    native = NativeWriter(tmp / builder.name, SPLIT, shard_bytes)
    keys: list[str] = []
    total = len(plan.units) if isinstance(plan.units, Sized) else None
    bar = tqdm(total=total, desc=f"{builder.name}", unit="sample", disable=not progress)
    try:
        for result in run_units(builder, iter_units(plan.units), job.config, workers):
            bar.update(1)
            if isinstance(result, BadRecord):
                if not skip_bad:
                    raise result
                record_bad(result)
                continue
            official.write(result, report.samples)
            native.write(result, report.samples)
            keys.append(result.key)
            report.samples += 1
            report.frames += len(result.frames)
    finally:
        bar.close()
        official.close()
    shards = native.close()
    report.files = official.files
    known_digests.update(official.digests(f"{SPLIT}/"))
    report.seconds = time.perf_counter() - started
    shard_rel = [p.relative_to(tmp).as_posix() for p in shards]
    summary = ConfigSummary(
        config=builder.name, info=builder.info, split=SPLIT, rows=report.samples, shard_paths=shard_rel,
        num_bytes=sum(p.stat().st_size for p in shards), synthetic_sample=job.sample,
    )
    entry = {
        "source": builder.name,
        "official_name": builder.info.official_name,
        "builder_version": builder.VERSION,
        "builder_sha256": provenance.builder_fingerprint(builder),
        "parameters": dataclasses.asdict(job.config),
        "seed": job.config.seed,
        "raw": {"kind": job.raw_kind, "files": provenance.raw_inventory(plan.raw_root, plan.raw_files)},
        "notes": plan.notes,
        "counts": {"samples": report.samples, "frames": report.frames, "official_files": report.files,
                   "skipped": len(report.skipped)},
        "skipped": report.skipped,
        "keys": keys,
        "files": {"official": f"{SPLIT}/{official.jsonl_path.name}", "native": shard_rel},
        "licence": builder.info.licence,
    }
    return report, summary, entry
