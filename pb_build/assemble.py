"""Assemble finished shards into a release folder: the parent's whole share of the writing.

Per source, in shard order: the JSONL parts are concatenated into ``test/<Name>_preprocessed.jsonl``, the frame
files and the native parquet files are moved (a build) or copied (``merge``) into place, and the keys are
streamed into the manifest. ``SHA256SUMS`` is a merge of the shards' sorted ``sums.txt`` files, so the parent
never holds a per-sample list: its memory does not grow with the number of samples.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pb_build.errors import InvalidEpisode, PbBuildError
from pb_build.manifests import manifest as manifests
from pb_build.manifests.provenance import SUMS, sha256_file
from pb_build.release_folder import CARD
from pb_build.shards import KEYS, NATIVE, SPLIT, ShardSummary, iter_sums, jsonl_name
from pb_build.visual.card_assets import PREVIEW_DIR, write_card_assets
from pb_build.visual.stats import Tally
from pb_build.writers.card import release_card
from pb_build.writers.native import SCHEMA, ParquetShards

MAX_OPEN_SUMS = 200  # sums files merged at once; more are merged in rounds

Take = Callable[[Path | str, Path | str], None]


def move(src: Path | str, dest: Path | str) -> None:
    os.replace(src, dest)


class Moves:
    """Moves files and folders (a ``Take``) and remembers them, so that an assembly that fails or is interrupted
    can put every shard's files back: a rerun then reuses the shards instead of rebuilding them.

    The moves are journaled in an anonymous temporary file, not kept in memory: a source of many samples moves
    one folder per sample.
    """

    def __init__(self) -> None:
        self.journal: IO[str] | None = None

    def __call__(self, src: Path | str, dest: Path | str) -> None:
        os.replace(src, dest)
        if self.journal is None:
            self.journal = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.journal.write(json.dumps([str(src), str(dest)]) + "\n")

    def undo(self) -> None:
        """Move everything back, the last move first."""
        if self.journal is None:
            return
        self.journal.seek(0)
        for line in reversed(self.journal.readlines()):
            src, dest = json.loads(line)
            try:
                os.replace(dest, src)
            except OSError:
                pass  # that shard fails its digest check on the rerun and is rebuilt
        self.close()

    def close(self) -> None:
        """Forget the moves (the release is complete)."""
        if self.journal is not None:
            self.journal.close()
            self.journal = None


def copy(src: Path | str, dest: Path | str) -> None:
    shutil.copyfile(src, dest)


@dataclass
class SourceShards:
    """One source of a release: its manifest entry (counts, files and keys not filled yet), the records skipped
    while planning, and its finished shards in order."""

    entry: manifests.SourceEntry
    plan_skipped: list[dict[str, Any]]
    folders: list[Path] = field(default_factory=list)
    summaries: list[ShardSummary] = field(default_factory=list)
    plan_ineligible: list[dict[str, Any]] = field(default_factory=list)  # items the plan excluded
    raw: str = ""  # where the raw input was read (for messages)

    def tally(self) -> Tally:
        """The statistics of the source's episodes, merged from its shards' (numbered as in the release)."""
        merged, first_id = Tally(), 0
        for summary in self.summaries:
            merged.merge(Tally.from_dict(summary.stats), first_id)
            first_id += summary.samples
        return merged

    def ineligible_items(self) -> list[dict[str, Any]]:
        """The items the source's eligibility rules excluded: those its workers met, in plan order, then the
        plan's own."""
        return [item for s in self.summaries for item in s.ineligible] + self.plan_ineligible


def check_min_samples(src: SourceShards, min_samples: int, out: Path) -> None:
    """Fail (before anything is written at ``out``) when a source yields fewer than ``min_samples`` samples."""
    samples = sum(s.samples for s in src.summaries)
    if samples < min_samples:
        excluded = len(src.plan_skipped) + sum(len(s.skipped) for s in src.summaries) + len(src.ineligible_items())
        raise PbBuildError(f"{src.entry.source}: {samples} sample(s) built from {src.raw}, fewer than "
                           f"--min-samples {min_samples} ({excluded} excluded); nothing was written at {out}")


def assemble(root: Path, sources: list[SourceShards], release: dict[str, Any] | None, writer: dict[str, Any],
             take: Take = move) -> manifests.Manifest:
    """Write the release of ``sources`` into the (empty) folder ``root``; returns its manifest."""
    known: dict[str, str] = {}
    sums_files: list[Path] = []
    for src in sources:
        known.update(_assemble_source(root, src, take))
        sums_files += [folder / "sums.txt" for folder in src.folders]
    manifest = manifests.Manifest(sources=[s.entry for s in sources], release=release, split=SPLIT, writer=writer)
    preview = write_card_assets(root, manifest.sources, {s.entry.source: s.tally() for s in sources})
    for path in sorted((root / PREVIEW_DIR).rglob("*")):
        if path.is_file():
            known[path.relative_to(root).as_posix()] = sha256_file(path)
    (root / CARD).write_text(release_card(manifest, lambda rel: (root / rel).stat().st_size, preview=preview),
                             encoding="utf-8", newline="\n")
    key_streams = {s.entry.source: _keys_of(s.folders) for s in sources if s.entry.counts.samples}
    manifests.write_streaming(root, manifest, key_streams)
    for rel in (CARD, manifests.MANIFEST):
        known[rel] = sha256_file(root / rel)
    _write_sums(root, known, sums_files)
    return manifest


def _keys_of(folders: list[Path]) -> Callable[[], Iterator[str]]:
    def stream() -> Iterator[str]:
        for folder in folders:
            with open(folder / KEYS, encoding="utf-8") as handle:
                yield from (line.rstrip("\n") for line in handle)
    return stream


def _assemble_source(root: Path, src: SourceShards, take: Take) -> dict[str, str]:
    entry = src.entry
    name = jsonl_name(entry.official_name)
    test = root / SPLIT
    test.mkdir(exist_ok=True)
    native = root / entry.source
    native.mkdir()
    known: dict[str, str] = {}
    digest = hashlib.sha256()
    files = 0
    # Workers number samples by plan position; a shard after (or with) a skipped or ineligible unit is
    # renumbered here, so the release's ids are 0..N-1 in order whatever was excluded.
    first_ids, planned, built = [], 0, 0
    for summary in src.summaries:
        first_ids.append(None if planned == built and summary.samples == summary.units else built)
        planned, built = planned + summary.units, built + summary.samples
    with open(test / name, "wb") as jsonl:
        for folder, first_id in zip(src.folders, first_ids, strict=True):
            with open(folder / SPLIT / name, "rb") as part:
                if first_id is None:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        jsonl.write(chunk)
                for n, line in enumerate(part if first_id is not None else ()):
                    line = _with_id(line.decode("utf-8"), first_id + n).encode("utf-8")
                    digest.update(line)
                    jsonl.write(line)
    for folder, summary in zip(src.folders, src.summaries, strict=True):
        shared = _copy_frames(folder, root) if take is copy else _move_tree(folder / SPLIT, test, take, {name})
        files += summary.files - shared
    known[f"{SPLIT}/{name}"] = digest.hexdigest()
    total = max(len(src.folders), 1)
    shards = []
    for i, (folder, summary, first_id) in enumerate(zip(src.folders, src.summaries, first_ids, strict=True)):
        rel = f"{entry.source}/{SPLIT}-{i:05d}-of-{total:05d}.parquet"
        if first_id is None:
            take(folder / NATIVE, root / rel)
            known[rel] = summary.digests[NATIVE]
        else:
            _renumber_parquet(folder / NATIVE, root / rel, first_id)
            known[rel] = sha256_file(root / rel)
        shards.append(rel)
    if not src.folders:  # an empty source still gets one (empty) shard so the config loads
        (path,) = ParquetShards(native, SPLIT).close()
        shards.append(path.relative_to(root).as_posix())
    summaries = src.summaries
    entry.counts = manifests.Counts(sum(s.samples for s in summaries), sum(s.frames for s in summaries), files,
                                    len(src.plan_skipped) + sum(len(s.skipped) for s in summaries))
    entry.files = manifests.Files(f"{SPLIT}/{name}", shards)
    entry.skipped = src.plan_skipped + [bad for s in summaries for bad in s.skipped]
    entry.official_fields = sorted({f for s in summaries for f in s.official_fields})
    entry.ineligible_items = src.ineligible_items()
    entry.ineligible = dict(sorted(Counter(i["reason"] for i in entry.ineligible_items).items()))
    return known


def _with_id(record: str, sample_id: int) -> str:
    """A JSON object written with its ``id`` first (the official line, the native row's record), renumbered."""
    if not record.startswith('{"id": '):
        raise InvalidEpisode(f"a shard's record does not start with its id: {record[:40]!r}")
    end = record.index(",", 7) if "," in record else record.index("}")
    return f'{{"id": {sample_id}' + record[end:]


def _renumber_parquet(src: Path, dest: Path, first_id: int) -> None:
    """Copy a shard's native parquet file with its rows numbered from ``first_id`` (row groups kept)."""
    pf = pq.ParquetFile(src)
    next_id = first_id
    with pq.ParquetWriter(dest, SCHEMA, compression="snappy") as writer:
        for rg in range(pf.num_row_groups):
            table = pf.read_row_group(rg)
            ids = list(range(next_id, next_id + table.num_rows))
            next_id += table.num_rows
            records = [_with_id(r, i) if r else r for r, i in zip(table["official_record"].to_pylist(), ids,
                                                                  strict=True)]
            for column, values in (("id", pa.array(ids, pa.int64())), ("official_record", pa.array(records))):
                table = table.set_column(table.schema.get_field_index(column), table.schema.field(column), values)
            writer.write_table(table, row_group_size=table.num_rows)


def _move_tree(src: Path | str, dest: Path | str, take: Take, skip: set[str] = frozenset()) -> int:
    """Move what ``src`` holds into ``dest``, whole folders at once where ``dest`` has none yet; returns how many
    files were already there (frames shared with samples of an earlier shard), which must be identical."""
    # Plain strings: pathlib interns every name part, and a source moves one folder per sample
    shared = 0
    for entry in os.scandir(src):
        if entry.name in skip:
            continue
        target = os.path.join(dest, entry.name)
        if not os.path.lexists(target):
            take(entry.path, target)
        elif entry.is_dir():
            shared += _move_tree(entry.path, target, take)
        elif sha256_file(Path(entry.path)) != sha256_file(Path(target)):
            raise InvalidEpisode(f"{target}: written by two shards with different content")
        else:
            shared += 1
    return shared


def _copy_frames(folder: Path, root: Path) -> int:
    """Copy a shard's frame files into the release (``merge`` leaves its parts intact); returns how many were
    already there (frames shared with samples of an earlier shard)."""
    shared, made = 0, None
    for sha, rel in iter_sums(folder / "sums.txt"):
        dest = root / rel
        if dest.parent != made:  # paths are sorted: a folder's files come together
            dest.parent.mkdir(parents=True, exist_ok=True)
            made = dest.parent
        if dest.exists():
            if sha256_file(dest) != sha:
                raise InvalidEpisode(f"{rel} is written by two shards with different content")
            shared += 1
            continue
        shutil.copyfile(folder / rel, dest)
    return shared


def _write_sums(root: Path, known: dict[str, str], shard_sums: list[Path]) -> None:
    """SHA256SUMS: the shards' frame digests merged with the release's other files, sorted by path."""
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}.sums-") as scratch:
        others = Path(scratch) / "others.txt"
        others.write_text("".join(f"{d}  {rel}\n" for rel, d in sorted(known.items())), encoding="utf-8")
        files = [others, *shard_sums]
        round_no = 0
        while len(files) > MAX_OPEN_SUMS:
            merged = []
            for start in range(0, len(files), MAX_OPEN_SUMS):
                dest = Path(scratch) / f"round{round_no}-{start}.txt"
                _merge(files[start:start + MAX_OPEN_SUMS], dest)
                merged.append(dest)
            files, round_no = merged, round_no + 1
        _merge(files, root / SUMS)


def _merge(files: list[Path], dest: Path) -> None:
    with ExitStack() as stack, open(dest, "w", encoding="utf-8", newline="\n") as out:
        streams = [stack.enter_context(open(p, encoding="utf-8")) for p in files]
        previous = None
        for line in heapq.merge(*streams, key=lambda line: line[66:]):
            if line != previous:  # a frame shared by two shards is listed once
                out.write(line)
            previous = line
