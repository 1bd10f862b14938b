"""``pb-build verify``: check a release folder without trusting the code that wrote it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pb_build.episode import EpisodeSpec
from pb_build.errors import InvalidEpisode, PbBuildError
from pb_build.frames import decode
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance
from pb_build.official import RecordContract, check_record
from pb_build.replay import oracle, play
from pb_build.writers.native import from_row, read_rows

MAX_PROBLEMS = 1000


@dataclass
class SourceCheck:
    """Counts for one source of the release."""

    source: str
    official_name: str
    records: int = 0
    rows: int = 0
    frames: int = 0
    official_files: int = 0
    oracle_correct: int = 0


@dataclass
class VerifyResult:
    """All checks of one release: per-source counts and every problem found."""

    sources: list[SourceCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checked_files: int = 0

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def table(self) -> str:
        """A plain-text summary table."""
        head = f"{'source':12s} {'official name':28s} {'records':>8s} {'rows':>6s} {'frames':>7s} " \
               f"{'files':>7s} {'oracle':>8s}"
        lines = [head, "-" * len(head)]
        for s in self.sources:
            acc = f"{100 * s.oracle_correct / s.rows:.1f}%" if s.rows else "-"
            lines.append(f"{s.source:12s} {s.official_name:28s} {s.records:8d} {s.rows:6d} {s.frames:7d} "
                         f"{s.official_files:7d} {acc:>8s}")
        lines.append(f"checksums: {self.checked_files} files")
        return "\n".join(lines)


def verify_release(root: Path, progress: bool = False) -> VerifyResult:
    """Verify checksums, official records and frames, native rows, and an oracle replay of each episode."""
    if not (root / manifests.MANIFEST).is_file():
        raise PbBuildError(f"{root}: not a pb-build release (no {manifests.MANIFEST})")
    manifest = manifests.read(root)
    result = VerifyResult()
    _check_sums(root, result)
    for entry in manifest.sources:
        _check_source(root, entry, result, progress)
    return result


def _check_sums(root: Path, result: VerifyResult) -> None:
    if not (root / provenance.SUMS).is_file():
        result.add(f"{provenance.SUMS} is missing")
        return
    try:
        sums = provenance.read_sums(root)
    except ValueError as exc:
        result.add(str(exc))
        return
    present = set(provenance.release_files(root))
    for rel in sorted(present - set(sums)):
        result.add(f"{rel}: not listed in {provenance.SUMS}")
    for rel, digest in sums.items():
        if rel not in present:
            result.add(f"{rel}: listed in {provenance.SUMS} but missing")
        elif provenance.sha256_file(root / rel) != digest:
            result.add(f"{rel}: checksum does not match {provenance.SUMS}")
        else:
            result.checked_files += 1


def _check_source(root: Path, entry: manifests.SourceEntry, result: VerifyResult, progress: bool) -> None:
    name, source = entry.official_name, entry.source
    check = SourceCheck(source, name)
    result.sources.append(check)
    shards = [root / p for p in entry.files.native]
    missing = [p for p in shards if not p.is_file()]
    if missing:
        result.add(f"{missing[0]}: native shard missing")
        return
    # The rows carry each record's contract and reachable images (Episode.spec): no source code is needed.
    native: dict[int, tuple[str, EpisodeSpec | None]] = {}
    for row in tqdm(read_rows(shards), desc=f"verify {source}", unit="row", disable=not progress):
        check.rows += 1
        where = f"{source} row {row.get('id')}"
        try:
            ep = from_row(row).validate()
        except (InvalidEpisode, KeyError, TypeError, json.JSONDecodeError) as exc:
            result.add(f"{where}: {exc}")
            continue
        if ep.spec is None:
            result.add(f"{where}: no source spec in meta (contract and reachable images)")
        native[row["id"]] = (row["official_record"], ep.spec)
        check.frames += len(ep.frames)
        for k, frame in enumerate(ep.frames):
            if decode(frame) is None:
                result.add(f"{where}: frame {k} does not decode")
        if play(ep, oracle).correct:
            check.oracle_correct += 1
        else:
            result.add(f"{where}: the oracle does not reach the answer")
    _check_official(root / "test", root / entry.files.official, source, native, check, result)
    if check.rows != entry.counts.samples or check.records != entry.counts.samples:
        result.add(f"{source}: manifest says {entry.counts.samples} samples, found {check.records} "
                   f"records and {check.rows} rows")


def _check_official(test_dir: Path, jsonl: Path, source: str, native: dict[int, tuple[str, EpisodeSpec | None]],
                    check: SourceCheck, result: VerifyResult) -> None:
    if not jsonl.is_file():
        result.add(f"{jsonl}: official JSONL missing")
        return
    seen: set[int] = set()
    decoded: set[str] = set()
    with open(jsonl, encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            where = f"{jsonl.name}:{n}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                result.add(f"{where}: not JSON ({exc})")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("id"), int):
                result.add(f"{where}: not an object with an integer id")
                continue
            if record["id"] in seen:
                result.add(f"{where}: duplicate id {record['id']}")
                continue
            seen.add(record["id"])
            row_record, spec = native.pop(record["id"], (None, None))
            if row_record is None:
                result.add(f"{where}: no native row with id {record['id']}")
                continue
            if json.loads(row_record) != record:
                result.add(f"{source} row {record['id']}: native row and official record disagree")
            if spec is None:
                continue
            problems = check_record(record, RecordContract.from_json(spec.contract))
            for p in problems:
                result.add(f"{where}: {p}")
            if problems:
                continue
            check.records += 1
            for rel in spec.reachable:
                if rel in decoded:
                    continue
                path = test_dir / rel
                if not path.is_file():
                    result.add(f"{where}: frame {rel} does not exist")
                elif decode(path.read_bytes()) is None:
                    result.add(f"{where}: frame {rel} does not decode")
                else:
                    decoded.add(rel)
                    check.official_files += 1
    for sample_id in sorted(native):
        result.add(f"{source} row {sample_id}: no official record with this id")
