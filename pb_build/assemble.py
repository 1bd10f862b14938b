"""Assemble finished shards into a release folder: the parent's whole share of the writing.

Per source, in shard order: the JSONL parts are concatenated into ``test/<Name>_preprocessed.jsonl``, the frame
files and the native parquet files are moved (a build) or copied (``merge``) into place, and the keys are
streamed into the manifest. ``SHA256SUMS`` is a merge of the shards' sorted ``sums.txt`` files, so the parent
never holds a per-sample list: its memory does not grow with the number of samples.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pb_build.errors import InvalidEpisode
from pb_build.manifests import manifest as manifests
from pb_build.manifests.provenance import SUMS, sha256_file
from pb_build.release_folder import CARD
from pb_build.shards import KEYS, NATIVE, SPLIT, ShardSummary, iter_sums, jsonl_name
from pb_build.writers.card import release_card
from pb_build.writers.native import ParquetShards

MAX_OPEN_SUMS = 200  # sums files merged at once; more are merged in rounds

Take = Callable[[Path, Path], None]


def move(src: Path, dest: Path) -> None:
    os.replace(src, dest)


def copy(src: Path, dest: Path) -> None:
    shutil.copyfile(src, dest)


@dataclass
class SourceShards:
    """One source of a release: its manifest entry (counts, files and keys not filled yet), the records skipped
    while planning, and its finished shards in order."""

    entry: manifests.SourceEntry
    plan_skipped: list[dict[str, Any]]
    folders: list[Path] = field(default_factory=list)
    summaries: list[ShardSummary] = field(default_factory=list)


def assemble(root: Path, sources: list[SourceShards], release: dict[str, Any] | None, writer: dict[str, Any],
             take: Take = move) -> manifests.Manifest:
    """Write the release of ``sources`` into the (empty) folder ``root``; returns its manifest."""
    known: dict[str, str] = {}
    sums_files: list[Path] = []
    for src in sources:
        known.update(_assemble_source(root, src, take))
        sums_files += [folder / "sums.txt" for folder in src.folders]
    manifest = manifests.Manifest(sources=[s.entry for s in sources], release=release, split=SPLIT, writer=writer)
    (root / CARD).write_text(release_card(manifest, lambda rel: (root / rel).stat().st_size), encoding="utf-8",
                             newline="\n")
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
    with open(test / name, "wb") as jsonl:
        for folder in src.folders:
            with open(folder / SPLIT / name, "rb") as part:
                while chunk := part.read(1 << 20):
                    digest.update(chunk)
                    jsonl.write(chunk)
            files += _copy_frames(folder, root) if take is copy else _move_tree(folder / SPLIT, test, {name})
    known[f"{SPLIT}/{name}"] = digest.hexdigest()
    total = max(len(src.folders), 1)
    shards = []
    for i, (folder, summary) in enumerate(zip(src.folders, src.summaries, strict=True)):
        rel = f"{entry.source}/{SPLIT}-{i:05d}-of-{total:05d}.parquet"
        take(folder / NATIVE, root / rel)
        known[rel] = summary.digests[NATIVE]
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
    return known


def _move_tree(src: Path, dest: Path, skip: set[str] = frozenset()) -> int:
    """Move what ``src`` holds into ``dest``, whole folders at once where ``dest`` has none yet; returns the files
    added. A file already there (a frame shared by samples of two shards) must be identical."""
    added = 0
    for entry in os.scandir(src):
        if entry.name in skip:
            continue
        target = dest / entry.name
        if not os.path.lexists(target):
            os.replace(entry.path, target)
            added += sum(len(f) for _, _, f in os.walk(target)) if entry.is_dir() else 1
        elif entry.is_dir():
            added += _move_tree(Path(entry.path), target)
        elif sha256_file(Path(entry.path)) != sha256_file(target):
            raise InvalidEpisode(f"{target}: written by two shards with different content")
    return added


def _copy_frames(folder: Path, root: Path) -> int:
    """Copy a shard's frame files into the release (``merge`` leaves its parts intact); returns the files added."""
    added, made = 0, None
    for sha, rel in iter_sums(folder / "sums.txt"):
        dest = root / rel
        if dest.parent != made:  # paths are sorted: a folder's files come together
            dest.parent.mkdir(parents=True, exist_ok=True)
            made = dest.parent
        if dest.exists():  # a frame shared by samples of different shards
            if sha256_file(dest) != sha:
                raise InvalidEpisode(f"{rel} is written by two shards with different content")
            continue
        shutil.copyfile(folder / rel, dest)
        added += 1
    return added


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
