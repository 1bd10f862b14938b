"""The build driver: plan each source, have workers build its shards, and assemble the release.

A source ("builder") is a module or an object with ``name``, ``VERSION``, ``Config``, ``info``, ``sample_dir()``,
``fetch()``, ``plan()`` and ``build()``. For each source the driver resolves its user tables and asks it for a
plan; the plan's units are cut into shards of a fixed size (so shard boundaries depend only on the plan), each
built by a worker into a folder of its own (:mod:`pb_build.shards`), locally or on a Ray cluster
(:mod:`pb_build.distributors`). The parent then assembles the shards into the release (:mod:`pb_build.assemble`),
or, for one part of a build spread over machines, into a part folder that ``merge`` combines (:mod:`pb_build.parts`).
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pb_build import __version__
from pb_build.assemble import Moves, SourceShards, assemble, check_min_samples
from pb_build.builders.base import Plan, WorkUnit, iter_units
from pb_build.distributors import WorkerDied, get_distributor
from pb_build.errors import BadRecord, Ineligible, PbBuildError
from pb_build.inventory import InventoryHashing, hash_inventory
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance
from pb_build.parts import write_part
from pb_build.release_folder import check_target, claim, new_folder, unclaim
from pb_build.shards import (
    AUTO,
    DONE,
    SHARD_FORMAT,
    ShardSummary,
    ShardTask,
    auto_shard_size,
    job_fingerprint,
    relative_to,
    shard_fingerprint,
    strict_error,
)

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


@dataclass
class Sharding:
    """Which shards this run builds: part ``index`` of ``count`` (shard j belongs to part j % count)."""

    count: int = 1
    index: int = 0

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise PbBuildError(f"--shard-index must be in 0..{self.count - 1} (--num-shards {self.count}), "
                               f"got {self.index}")

    def owns(self, shard: int) -> bool:
        return shard % self.count == self.index


def work_folder(out: Path) -> Path:
    """Where finished shards wait (beside ``out``) until the release is assembled; kept when a build fails so
    a rerun resumes from them."""
    return out.parent / f".{out.name}.pb-build-shards"


def build_release(
    out: Path,
    jobs: list[SourceJob],
    *,
    workers: int = 1,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    shard_size: int | None = None,
    release: dict[str, Any] | None = None,
    distributor: str = "local",
    sharding: Sharding | None = None,
    resume: bool = True,
    min_samples: int = 1,
    strict: bool = False,
) -> list[SourceReport]:
    """Build every job into the release folder ``out``; nothing is left at ``out`` on failure.

    Workers build fixed runs of ``shard_size`` units (shards; by default a size derived from the plan's size)
    into a work folder beside ``out``; the parent plans,
    collects their summaries and assembles the release. Finished shards survive a failed or interrupted build
    and are reused by a rerun with the same inputs (unless ``resume`` is false). With ``sharding`` (part I of K)
    only that part's shards are built, into a part folder ``out`` that ``pb-build merge`` combines with the other parts.
    ``release`` (name, version and the recipe) is recorded in the manifest and the card when given. A source
    that yields fewer than ``min_samples`` samples fails the build and leaves ``out`` untouched (for a part, the
    check is made by ``merge``). Ineligible items are counted per reason, or (``strict``) fail the build.
    """
    out = out.resolve()
    part = sharding is not None
    sharding = sharding or Sharding()
    check_target(out, overwrite)
    resolved = [resolve_tables(job) for job in jobs]  # a missing table fails before any work
    # The recipe copy names tables by file name too: the same build from another folder gives the same bytes.
    release = _without_paths(release, {k: v for _, _, names in resolved for k, v in names.items()})
    work = work_folder(out)
    claim(work, str(out))  # refused while another running build uses the same shards
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
        claim(work, str(out))
    planned: list[_Planned] = []
    bar = _Progress(progress)
    tasks = _tasks(work, jobs, resolved, skip_bad, strict, shard_size, sharding, planned, bar)
    started = time.perf_counter()
    summaries: dict[tuple[str, int], ShardSummary] = {}
    try:
        for summary in get_distributor(distributor)(tasks, workers):
            summaries[summary.source, summary.index] = summary
            bar.update(summary.units)
            for p in planned:  # an unreadable raw file fails the build now, not after every shard
                p.inventory.check()
        bar.close(finished=True)
        for p in planned:
            p.shards.entry.raw.files = p.inventory.result()
            p.shards.summaries = [summaries[p.shards.entry.source, i] for i in p.owned]
            p.shards.folders = [shard_folder(work, p.shards.entry.source, i) for i in p.owned]
            _check_source(p.shards, strict, None if part else min_samples, out)
    except BaseException as exc:
        bar.close(finished=False)
        for p in planned:
            p.inventory.cancel()  # before the work folder may be removed: the hashing process writes there
        # Finished shards are kept for a rerun after an interruption or a dead worker; not after bad input,
        # whose fix changes the inputs' fingerprint anyway.
        bad_input = isinstance(exc, PbBuildError) and not isinstance(exc, WorkerDied)
        if bad_input or not any(work.glob(f"*/*/{DONE}")):
            unclaim(work)
        raise
    writer = {"shard_size": shard_size or AUTO}
    moves = Moves()
    with new_folder(out, overwrite) as tmp:
        try:
            if not part:
                assemble(tmp, [p.shards for p in planned], release, writer, take=moves)
            else:
                write_part(tmp, planned, release, writer, sharding, take=moves)
        except BaseException:
            moves.undo()  # before the temporary release is removed: the shards stay for a rerun
            raise
    moves.close()
    unclaim(work)
    elapsed = time.perf_counter() - started
    return [p.report(elapsed / max(len(planned), 1)) for p in planned]


def _check_source(src: SourceShards, strict: bool, min_samples: int | None, out: Path) -> None:
    """Fail before ``out`` is touched: on an ineligible item with ``strict`` (shards reused from a build without
    it included), or when the source has fewer than ``min_samples`` samples (a part leaves that to merge)."""
    items = src.ineligible_items()
    if strict and items:
        raise strict_error(src.entry.source, Ineligible(items[0]["key"], items[0]["reason"], items[0]["detail"]))
    if min_samples is not None:
        check_min_samples(src, min_samples, out)


class _Progress:
    """A progress bar over samples, shown from the first finished shard (so a failure while planning prints one
    line), with a total that grows as sources are planned."""

    def __init__(self, enabled: bool):
        self.enabled, self.total, self.bar = enabled, 0, None

    def add_total(self, size: int | None) -> None:
        self.total += size or 0
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def update(self, n: int) -> None:
        if self.bar is None:
            self.bar = tqdm(desc="building", unit="sample", total=self.total or None, disable=not self.enabled)
        self.bar.update(n)

    def close(self, finished: bool) -> None:
        if self.bar is None:
            return
        if finished and self.bar.n != self.bar.total:  # a streamed plan's total is an upper bound; parts
            self.bar.total = self.bar.n
            self.bar.refresh()
        self.bar.close()


@dataclass
class _Planned:
    """A source as planned: its shards (entry filled at assembly) and which shard indexes this run owns."""

    shards: SourceShards
    fingerprint: str
    inventory: InventoryHashing
    total: int = 0  # shards in the whole plan
    owned: list[int] = field(default_factory=list)
    shard_fingerprints: dict[int, str] = field(default_factory=dict)

    def report(self, seconds: float) -> SourceReport:
        entry, summaries = self.shards.entry, self.shards.summaries
        report = SourceReport(entry.source, entry.official_name, seconds=seconds)
        report.samples = sum(s.samples for s in summaries)
        report.frames = sum(s.frames for s in summaries)
        report.files = sum(s.files for s in summaries)
        report.skipped = self.shards.plan_skipped + [b for s in summaries for b in s.skipped]
        report.ineligible = self.shards.ineligible_items()
        return report


def shard_folder(work: Path, source: str, index: int) -> Path:
    return work / source / f"{index:05d}"


def _tasks(work: Path, jobs: list[SourceJob], resolved: list, skip_bad: bool, strict: bool, size: int | None,
           sharding: Sharding, planned: list[_Planned], bar: _Progress) -> Iterator[ShardTask]:
    """Plan each source in turn and yield the shard tasks this run owns (lazily: a streamed plan stays one)."""
    for job, (config, tables, names) in zip(jobs, resolved, strict=True):
        job = dataclasses.replace(job, config=config)
        builder = job.builder
        plan_skipped: list[dict[str, Any]] = []

        def record_bad(bad: BadRecord, raw: Path = job.raw, skipped: list = plan_skipped) -> None:
            skipped.append({**bad.as_dict(), "path": relative_to(str(bad.path), raw)})

        plan = builder.plan(job.raw, job.config, record_bad if skip_bad else None)
        if strict and plan.ineligible:  # fail before building anything
            raise strict_error(builder.name, plan.ineligible[0])
        bar.add_total(plan.size())
        shard_size = size or auto_shard_size(plan.size())
        entry = _entry(job, plan, tables, names)
        fingerprint = job_fingerprint({"pb_build": __version__, "shard_format": SHARD_FORMAT,
                                       "entry": entry,
                                       "skip_bad": skip_bad, "shard_size": shard_size})
        # Hashed while the shards build; finished shards of other raw files are removed first.
        source_dir = work / builder.name
        inventory = hash_inventory(source_dir, plan.raw_root, plan.raw_files, any(source_dir.glob(f"*/{DONE}")))
        p = _Planned(SourceShards(entry, plan_skipped, raw=str(job.raw)), fingerprint, inventory)
        planned.append(p)
        for index, chunk in enumerate(_chunks(iter_units(plan.units), shard_size)):
            p.total = index + 1
            if not sharding.owns(index):
                continue
            first_id = index * shard_size
            p.owned.append(index)
            p.shard_fingerprints[index] = shard_fingerprint(fingerprint, index, first_id, chunk)
            yield ShardTask(builder.name, builder.info.official_name, index, first_id, chunk, job.config,
                            str(shard_folder(work, builder.name, index)), p.shard_fingerprints[index], skip_bad,
                            str(job.raw), strict)
        if strict and plan.ineligible:  # filled while a streamed plan's units were read
            raise strict_error(builder.name, plan.ineligible[0])
        p.shards.plan_ineligible = [item.as_dict() for item in plan.ineligible]


def _chunks(units: Iterator[WorkUnit], size: int) -> Iterator[tuple[WorkUnit, ...]]:
    while chunk := tuple(itertools.islice(units, size)):
        yield chunk


def _entry(job: SourceJob, plan: Plan, tables: dict[str, manifests.Table],
           names: dict[str, str]) -> manifests.SourceEntry:
    """The manifest entry of a planned source; the raw inventory is filled once hashed, and counts, files, keys
    and skipped records at assembly."""
    builder = job.builder
    parameters = dataclasses.asdict(job.config)
    for fname in table_fields(type(job.config)):
        parameters[fname] = _without_paths(parameters[fname], names)
    return manifests.SourceEntry(
        source=builder.name,
        official_name=builder.info.official_name,
        builder_version=builder.VERSION,
        builder_sha256=provenance.builder_fingerprint(builder),
        parameters=parameters,
        seed=job.config.seed,
        raw=manifests.RawInputs(job.raw_kind, []),
        counts=manifests.Counts(0, 0, 0, 0),
        files=manifests.Files("", []),
        licence=builder.info.licence,
        info={k: v for k, v in dataclasses.asdict(builder.info).items() if k != "official_name"},
        notes=_without_paths(plan.notes, names),
        tables=tables,
    )
