"""The build driver: plan each source, run its units, write them, and record the manifest.

A source ("builder") is a module or an object with ``name``, ``VERSION``, ``Config``, ``info``, ``sample_dir()``,
``fetch()``, ``plan()`` and ``build()``. For each source the driver resolves its user tables, asks it for a plan,
runs the plan's units (in worker processes when asked) and hands every result, in plan order, to the parent's
sink, which writes the official and native layouts. What a unit produces (:func:`produce`) is kept apart from
where it is written (:class:`SourceSink`), so workers could later write shards of their own.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pb_build.builders.base import Plan, iter_units
from pb_build.episode import Episode
from pb_build.errors import BadRecord, Ineligible, PbBuildError
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance
from pb_build.pipeline import run_units
from pb_build.release_folder import finish, new_folder
from pb_build.visual.card_assets import write_card_assets
from pb_build.writers.card import release_card
from pb_build.writers.native import DEFAULT_SHARD_BYTES, NativeWriter
from pb_build.writers.official import OfficialWriter

SPLIT = manifests.DEFAULT_SPLIT
TABLE = "table"  # Config field metadata key: the field names a user table (e.g. VSOD's --labels CSV)


@dataclass
class SourceJob:
    """One source to build into the release."""

    builder: Any
    config: Any
    raw: Path
    sample: bool = False
    fetched: bool = False
    expected_tables: dict[str, manifests.Table] = field(default_factory=dict)  # rebuilds: the recorded tables

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
    ineligible: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def excluded_by_reason(self) -> dict[str, int]:
        """How many raw records or samples were skipped, per cause."""
        return dict(Counter(s["cause"] for s in self.skipped).most_common())

    def ineligible_by_reason(self) -> dict[str, int]:
        """How many valid items the source's eligibility rules excluded, per reason (sorted by reason)."""
        return dict(sorted(Counter(i["reason"] for i in self.ineligible).items()))


# ------------------------------------------------------------------------------------------------ user tables


def table_fields(config_type: type) -> dict[str, str]:
    """Config fields holding a user table's path, as {field name: table name} (from the field metadata)."""
    return {f.name: f.metadata[TABLE] for f in dataclasses.fields(config_type) if TABLE in f.metadata}


def locate_table(given: str, raw: Path) -> Path:
    """A table path as the builders resolve it: absolute, else in the raw folder when there, else here."""
    path = Path(given).expanduser()
    if not path.is_absolute() and (raw / path).is_file():
        path = raw / path
    return path.resolve()


def resolve_tables(job: SourceJob) -> tuple[Any, dict[str, manifests.Table], dict[str, str]]:
    """The job's config with absolute table paths, the tables by name (file name and sha256), and the
    {absolute path: file name} spellings the manifest must use instead of a machine path."""
    config, tables, names = job.config, {}, {}
    for fname, table in table_fields(type(job.config)).items():
        given = getattr(job.config, fname)
        if not given:
            continue
        path = locate_table(given, job.raw)
        expected = job.expected_tables.get(table)
        if not path.is_file():
            if expected is not None:
                raise PbBuildError(f"{job.builder.name}: {table} table {expected.file} not found (looked in the raw "
                                   f"folder and here); pass --table {table}=PATH with the file the manifest records")
            raise PbBuildError(f"{path}: {table} file not found (--{fname.replace('_', '-')}; a relative path is "
                               "looked up in the raw folder, then in the current folder)")
        # A rebuild records the original file name even when the table now lives under another name.
        tables[table] = manifests.Table(expected.file if expected else path.name, provenance.sha256_file(path))
        if expected is not None and tables[table].sha256 != expected.sha256:
            raise PbBuildError(f"{path}: differs from the {table} table the manifest records ({expected.file}, "
                               f"sha256 {expected.sha256[:12]}...); pass --table {table}=PATH with the original file")
        names.update({str(path): tables[table].file, given: tables[table].file, path.name: tables[table].file})
        config = dataclasses.replace(config, **{fname: str(path)})
    return config, tables, names


def _without_paths(value: Any, names: dict[str, str]) -> Any:
    """``value`` (plan notes) with every spelling of a table path replaced by the table's file name."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, dict):
        return {k: _without_paths(v, names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_paths(v, names) for v in value]
    return value


# --------------------------------------------------------------------------------------------------- building


def produce(builder: Any, plan: Plan, config: Any, workers: int) -> Iterator[Episode | BadRecord]:
    """What the plan's units produce, in plan order: an episode, or the BadRecord of a unit that failed."""
    return run_units(builder, iter_units(plan.units), config, workers)


class SourceSink:
    """Where the parent writes one source's results: the official layout and the native config of a release."""

    def __init__(self, root: Path, builder: Any, shard_bytes: int):
        self.root = root
        self.official = OfficialWriter(root / SPLIT, builder.info.official_name)
        self.native = NativeWriter(root / builder.name, SPLIT, shard_bytes)
        self.keys: list[str] = []
        self.frames = 0
        self.official_fields: set[str] = set()

    def write(self, ep: Episode) -> None:
        sample_id = len(self.keys)
        for writer in (self.official, self.native):
            writer.write(ep, sample_id)
        self.keys.append(ep.key)
        self.frames += len(ep.frames)
        if ep.official is not None:
            self.official_fields.update(ep.official.record)

    def close_official(self) -> None:
        """Finish the official files (also on failure, so its writer thread stops)."""
        self.official.close()

    def close(self) -> tuple[list[str], dict[str, str]]:
        """Finish the native shards; their paths relative to the release root, and the official files' digests."""
        shards = [p.relative_to(self.root).as_posix() for p in self.native.close()]
        return shards, self.official.digests(f"{SPLIT}/")


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
    min_samples: int = 1,
    strict: bool = False,
) -> list[SourceReport]:
    """Build every job into the release folder ``out``; nothing is left at ``out`` on failure.

    ``release`` (name, version and the recipe) is recorded in the manifest and the card when given. A source
    that yields fewer than ``min_samples`` samples fails the build and leaves ``out`` untouched. Ineligible items
    are counted per reason, or (``strict``) fail the build.
    """
    out = out.resolve()
    resolved = [resolve_tables(job) for job in jobs]  # a missing table fails before any work
    # The recipe copy names tables by file name too: the same build from another folder gives the same bytes.
    release = _without_paths(release, {k: v for _, _, names in resolved for k, v in names.items()})
    with new_folder(out, overwrite) as tmp:
        reports, entries, digests = [], [], {}
        for job, (config, tables, names) in zip(jobs, resolved, strict=True):
            report, entry, known = _build_source(tmp, dataclasses.replace(job, config=config), tables, names,
                                                 workers, skip_bad, progress, shard_bytes, strict)
            if report.samples < min_samples:
                excluded = len(report.skipped) + len(report.ineligible)
                raise PbBuildError(f"{job.builder.name}: {report.samples} sample(s) built from {job.raw}, fewer "
                                   f"than --min-samples {min_samples} ({excluded} excluded); nothing was written "
                                   f"at {out}")
            reports.append(report)
            entries.append(entry)
            digests.update(known)
        manifest = manifests.Manifest(sources=entries, release=release, split=SPLIT,
                                      writer={"shard_bytes": shard_bytes})
        preview = write_card_assets(tmp, entries)
        finish(tmp, manifest, release_card(manifest, lambda rel: (tmp / rel).stat().st_size, preview=preview),
               digests)
    return reports


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _build_source(tmp: Path, job: SourceJob, tables: dict[str, manifests.Table], names: dict[str, str],
                  workers: int, skip_bad: bool, progress: bool, shard_bytes: int,
                  strict: bool = False) -> tuple[SourceReport, manifests.SourceEntry, dict[str, str]]:
    builder, started = job.builder, time.perf_counter()
    report = SourceReport(builder.name, builder.info.official_name)

    def record_bad(bad: BadRecord) -> None:
        report.skipped.append({**bad.as_dict(), "path": _relative(str(bad.path), job.raw)})

    def record_ineligible(item: Ineligible) -> None:
        if strict:
            raise PbBuildError(f"{builder.name}: {item} (an ineligible item; without --strict it is excluded "
                               "and counted)")
        report.ineligible.append(item.as_dict())

    plan = builder.plan(job.raw, job.config, record_bad if skip_bad else None)
    if strict and plan.ineligible:  # fail before building anything
        record_ineligible(plan.ineligible[0])
    sink = SourceSink(tmp, builder, shard_bytes)
    bar = tqdm(total=plan.size(), desc=builder.name, unit="sample", disable=not progress)
    try:
        for result in produce(builder, plan, job.config, workers):
            bar.update(1)
            if isinstance(result, BadRecord):
                if not skip_bad:
                    raise result
                record_bad(result)
                continue
            if isinstance(result, Ineligible):
                record_ineligible(result)
                continue
            sink.write(result)
        for item in plan.ineligible:  # filled while a streamed plan's units were read
            record_ineligible(item)
        if bar.total is not None and bar.n != bar.total:  # a streamed plan's total is an upper bound
            bar.total = bar.n
            bar.refresh()
    finally:
        bar.close()
        sink.close_official()
    shards, digests = sink.close()
    report.samples, report.frames, report.files = len(sink.keys), sink.frames, sink.official.files
    report.seconds = time.perf_counter() - started
    parameters = dataclasses.asdict(job.config)
    for fname in table_fields(type(job.config)):
        parameters[fname] = _without_paths(parameters[fname], names)
    entry = manifests.SourceEntry(
        source=builder.name,
        official_name=builder.info.official_name,
        builder_version=builder.VERSION,
        builder_sha256=provenance.builder_fingerprint(builder),
        parameters=parameters,
        seed=job.config.seed,
        raw=manifests.RawInputs(job.raw_kind, provenance.raw_inventory(plan.raw_root, plan.raw_files)),
        counts=manifests.Counts(report.samples, report.frames, report.files, len(report.skipped)),
        files=manifests.Files(f"{SPLIT}/{sink.official.jsonl_path.name}", shards),
        licence=builder.info.licence,
        info={k: v for k, v in dataclasses.asdict(builder.info).items() if k != "official_name"},
        notes=_without_paths(plan.notes, names),
        skipped=report.skipped,
        keys=sink.keys,
        tables=tables,
        official_fields=sorted(sink.official_fields),
        ineligible=report.ineligible_by_reason(),
        ineligible_items=report.ineligible,
    )
    return report, entry, digests
