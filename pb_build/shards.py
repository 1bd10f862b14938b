"""Shards: fixed runs of a plan's units that a worker builds into a folder of its own.

A shard is ``shard_size`` consecutive units of a source's plan; its boundaries depend only on the plan, never on
the number of workers or on timing. A worker writes everything a shard holds: the frame files (official layout),
its part of the official JSONL, one native parquet file, the sample keys and the sha256 of every file
(``sums.txt``, sorted by path), then ``done.json``, the small summary the parent collects. A shard folder is
written as ``<folder>.partial`` and renamed when complete, so a folder that exists is finished; it is reused
(by a resumed build, or by ``merge``) only when its fingerprint matches and its files match their digests (a
resumed build also checks that its source's raw files are unchanged: :mod:`pb_build.inventory`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pb_build import plain
from pb_build.builders.base import WorkUnit
from pb_build.errors import BadRecord, Ineligible, PbBuildError
from pb_build.manifests.provenance import sha256_file
from pb_build.visual.episodes import facts
from pb_build.visual.stats import Tally
from pb_build.writers.native import NativeWriter
from pb_build.writers.official import OfficialWriter

MAX_SHARD_SIZE = 256  # units per shard at most: few files for big sources
MIN_SHARD_SIZE = 64  # and at least: a small release stays a few files (one for up to 64 samples)
MIN_SHARDS = 16  # mid-size plans are cut into about this many shards, so every core gets work
AUTO = "auto"
SPLIT = "test"
DONE = "done.json"
SUMS = "sums.txt"  # "<sha256>  test/<path>" per frame file, sorted by path
KEYS = "keys.txt"  # one sample key per line, in id order
ATTEMPTS = "attempt"  # "<pid>\t<key>\n" of the unit being built: names the sample a crashed worker held
ATTEMPT_BYTES = 4096
NATIVE = "native.parquet"
SHARD_FORMAT = 3  # what a shard folder holds and how it is checked; part of every shard's fingerprint, so older
# shards are not reused (3: the raw inventory is checked by pb_build.inventory, not in the fingerprint)


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to build (or check) one shard; picklable."""

    source: str
    official_name: str
    index: int
    first_id: int  # sample ids are plan positions: the shard's first unit has this id
    units: tuple[WorkUnit, ...]
    config: Any
    folder: str
    fingerprint: str
    skip_bad: bool
    raw: str  # the raw folder: skipped records name their file relative to it
    strict: bool = False  # an ineligible item fails the build instead of being counted


@dataclass
class ShardSummary:
    """What the parent keeps of a finished shard (written as ``done.json``)."""

    source: str
    index: int
    fingerprint: str
    units: int
    samples: int
    frames: int
    files: int
    official_fields: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    ineligible: list[dict[str, Any]] = field(default_factory=list)  # items the source's rules excluded
    digests: dict[str, str] = field(default_factory=dict)  # of jsonl, native, keys and sums files
    stats: dict[str, Any] = field(default_factory=dict)  # a Tally of its episodes (ids from 0 in the shard)
    reused: bool = False

    def to_json(self) -> str:
        body = dataclasses.asdict(self)
        body.pop("reused")
        return json.dumps(body, sort_keys=True, indent=1) + "\n"


def auto_shard_size(planned_units: int | None) -> int:
    """The default shard size, from the plan alone: about :data:`MIN_SHARDS` shards, of :data:`MIN_SHARD_SIZE`
    to :data:`MAX_SHARD_SIZE` units each (a plan of unknown size gets the maximum)."""
    if planned_units is None:
        return MAX_SHARD_SIZE
    return max(MIN_SHARD_SIZE, min(MAX_SHARD_SIZE, -(-planned_units // MIN_SHARDS)))


def job_fingerprint(body: dict[str, Any]) -> str:
    """sha256 of a canonical JSON body (tool version, builder code, parameters, seed...); a
    dataclass in it counts as the dict of its fields."""
    return hashlib.sha256(plain.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def shard_fingerprint(job: str, index: int, first_id: int, units: tuple[WorkUnit, ...]) -> str:
    """The inputs' fingerprint of one shard: its source job, position and the keys it holds."""
    h = hashlib.sha256(f"{job} {index} {first_id}\n".encode())
    for unit in units:
        h.update(unit.key.encode() + b"\n")
    return h.hexdigest()


def jsonl_name(official_name: str) -> str:
    return f"{official_name}_preprocessed.jsonl"


def read_summary(folder: Path) -> ShardSummary | None:
    """The summary of a finished shard folder, or None when there is none readable."""
    try:
        body = json.loads((folder / DONE).read_text(encoding="utf-8"))
        return ShardSummary(**body)
    except (OSError, ValueError, TypeError):
        return None


def check_shard(folder: Path, fingerprint: str | None = None) -> tuple[ShardSummary | None, str]:
    """A finished shard's summary when its files match their digests (and ``fingerprint``, when given);
    else (None, why)."""
    summary = read_summary(folder)
    if summary is None:
        return None, f"{folder}: no readable {DONE}"
    if fingerprint is not None and summary.fingerprint != fingerprint:
        return None, f"{folder}: built from other inputs"
    for rel, digest in summary.digests.items():
        path = folder / rel
        if not path.is_file() or sha256_file(path) != digest:
            return None, f"{folder}: {rel} is missing or corrupted"
    for digest, rel in iter_sums(folder / SUMS):
        path = folder / rel
        if not path.is_file() or sha256_file(path) != digest:
            return None, f"{folder}: {rel} is missing or corrupted"
    return summary, ""


def iter_sums(path: Path):
    """(digest, path) of each line of a sums file."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line[:64], line[66:].rstrip("\n")


def run_shard(task: ShardTask) -> ShardSummary:
    """Build one shard into its folder, or reuse it when it is already there with the same fingerprint."""
    with one_opencv_thread():
        return _run_shard(task)


@contextmanager
def one_opencv_thread() -> Iterator[None]:
    """Run OpenCV single-threaded, as a shard's work is one sample after another: parallelism comes from the
    workers, and OpenCV's thread pool only adds overhead (a third more time for a one-worker QuickDraw build,
    mostly system time)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _run_shard(task: ShardTask) -> ShardSummary:
    folder = Path(task.folder)
    if folder.is_dir():
        summary, _ = check_shard(folder, task.fingerprint)
        if summary is not None:
            summary.reused = True
            return summary
        shutil.rmtree(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        summary = _build(task, partial)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        where = exc.filename or partial
        raise PbBuildError(f"{where}: cannot write the {task.source} shard {task.index} "
                           f"({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, folder)
    return summary


def _build(task: ShardTask, folder: Path) -> ShardSummary:
    from pb_build.builders import get_builder

    builder = get_builder(task.source)
    official = OfficialWriter(folder / SPLIT, task.official_name)
    native = NativeWriter(folder / "native", SPLIT, shard_bytes=1 << 62)
    summary = ShardSummary(task.source, task.index, task.fingerprint, len(task.units), 0, 0, 0)
    tally = Tally()
    fields: set[str] = set()
    try:
        with open(folder / KEYS, "w", encoding="utf-8", newline="\n") as keys, _Attempts(folder / ATTEMPTS) as attempt:
            for offset, unit in enumerate(task.units):
                attempt.record(unit.key)
                try:
                    ep = builder.build(unit, task.config)
                except Ineligible as item:
                    if task.strict:
                        raise strict_error(task.source, item) from None
                    summary.ineligible.append(item.as_dict())
                    continue
                except PbBuildError as err:
                    bad = err if isinstance(err, BadRecord) else BadRecord(unit.key, str(err))
                    if not task.skip_bad:
                        raise bad from None
                    summary.skipped.append({**bad.as_dict(), "path": relative_to(str(bad.path), Path(task.raw))})
                    continue
                sample_id = task.first_id + offset
                official.write(ep, sample_id)
                native.write(ep, sample_id)
                keys.write(ep.key + "\n")
                tally.add(summary.samples, ep, facts(summary.samples, ep))
                summary.samples += 1
                summary.frames += len(ep.frames)
                if ep.official is not None:
                    fields.update(ep.official.record)
    finally:
        official.close()
    (parquet,) = native.close()
    os.replace(parquet, folder / NATIVE)
    parquet.parent.rmdir()
    frame_digests = official.digests(f"{SPLIT}/")
    jsonl = f"{SPLIT}/{jsonl_name(task.official_name)}"
    with open(folder / SUMS, "w", encoding="utf-8", newline="\n") as sums:
        sums.writelines(f"{d}  {rel}\n" for rel, d in sorted(frame_digests.items()))
    summary.files = len(frame_digests)
    summary.official_fields = sorted(fields)
    summary.stats = tally.to_dict()
    summary.digests = {jsonl: sha256_file(folder / jsonl), NATIVE: sha256_file(folder / NATIVE),
                       KEYS: sha256_file(folder / KEYS), SUMS: sha256_file(folder / SUMS)}
    (folder / ATTEMPTS).unlink()
    (folder / DONE).write_text(summary.to_json(), encoding="utf-8", newline="\n")
    return summary


def strict_error(source: str, item: Ineligible) -> PbBuildError:
    """The error ``--strict`` makes of an ineligible item."""
    return PbBuildError(f"{source}: {item} (an ineligible item; without --strict it is excluded and counted)")


def relative_to(path: str, root: Path) -> str:
    """``path`` relative to ``root`` when it lies inside (POSIX), else as given."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


class _Attempts:
    """The unit a worker is building, in a small memory-mapped file: the page cache keeps it when the process is
    killed, and recording it costs no system call (a flushed log line per sample did, measurably)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> _Attempts:
        with open(self.path, "wb") as handle:
            handle.truncate(ATTEMPT_BYTES)
        self.handle = open(self.path, "r+b")
        self.map = mmap.mmap(self.handle.fileno(), ATTEMPT_BYTES)
        self.pid = os.getpid()
        return self

    def record(self, key: str) -> None:
        line = f"{self.pid}\t{key}\n".encode()[: ATTEMPT_BYTES - 1]
        self.map[: len(line) + 1] = line + b"\0"

    def __exit__(self, *exc: object) -> None:
        self.map.close()
        self.handle.close()


def last_attempt(folder: str) -> tuple[int, str] | None:
    """(worker pid, key) of the unit a shard was building when its worker died (None when unknown)."""
    try:
        data = Path(folder + ".partial", ATTEMPTS).read_bytes()
    except OSError:
        return None
    line = data.split(b"\0", 1)[0].decode("utf-8", "replace").rstrip("\n")
    pid, sep, key = line.partition("\t")
    return (int(pid), key) if sep and pid.isdigit() else None
