"""``pb-build verify``: check a whole release folder without trusting the code that wrote it.

Every file must be listed in ``SHA256SUMS`` with its hash (no unlisted file, no listed file missing, every line
parsed); every official record, native parquet row and exported frame must tie together (a row's official record
and fields agree with the JSONL line of its id, and each exported file equals the frame the row embeds); the
manifest and the dataset card must agree with the content (counts, sources, keys, configs). An unreadable file
(truncated parquet, bad JSON, an image that does not decode) is a problem line, never a traceback.
:meth:`VerifyResult.to_json` is the machine-readable form (``pb-build verify --json``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pb_build.episode import EpisodeSpec
from pb_build.errors import InvalidEpisode, PbBuildError
from pb_build.frames import decode
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance
from pb_build.official import RecordContract, check_record
from pb_build.replay import oracle, play
from pb_build.writers.card import PREVIEW_MARKDOWN, read_preview, release_card
from pb_build.writers.native import from_row

MAX_PROBLEMS = 1000
CARD = "README.md"
CHANGELOG = "CHANGELOG.md"  # only in copies published to (or pulled from) the Hub
# What a malformed row or record can raise while it is rebuilt into an episode or replayed.
ROW_ERRORS = (InvalidEpisode, KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError)


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
    truncated: int = 0  # problems beyond MAX_PROBLEMS, counted but not kept

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.truncated += 1

    def to_json(self, release: Path | str | None = None) -> dict[str, Any]:
        """The result as plain JSON data: ok, the release path, checked files, per-source counts, problems."""
        return {"release": str(release) if release is not None else None, "ok": self.ok,
                "checked_files": self.checked_files,
                "sources": [{**asdict(s), "oracle_accuracy": s.oracle_correct / s.rows if s.rows else None}
                            for s in self.sources],
                "problems": list(self.problems), "problems_not_listed": self.truncated}

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
    """Verify checksums, official records and frames, native rows, their ties, the manifest and the card, and
    an oracle replay of each episode. A folder that is not a release, or whose manifest cannot be read, is a
    :class:`PbBuildError` (one line)."""
    if not root.is_dir():
        raise PbBuildError(f"{root}: not a folder")
    if not (root / manifests.MANIFEST).is_file():
        raise PbBuildError(f"{root}: not a pb-build release (no {manifests.MANIFEST})")
    manifest = manifests.read(root)  # one clear error when unreadable: nothing else can be checked against it
    result = VerifyResult()
    digests = _check_sums(root, result)
    exported: set[str] = set()
    for entry in manifest.sources:
        exported |= _check_source(root, entry, digests, result, progress)
    _check_release_files(root, manifest, exported, result)
    _check_card(root, manifest, result)
    return result


# ------------------------------------------------------------------------------------------------ checksums


def _check_sums(root: Path, result: VerifyResult) -> dict[str, str]:
    """Check SHA256SUMS against the folder; returns the digests of the files that matched."""
    if not (root / provenance.SUMS).is_file():
        result.add(f"{provenance.SUMS} is missing")
        return {}
    try:
        text = (root / provenance.SUMS).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.add(f"{provenance.SUMS}: cannot read ({exc})")
        return {}
    sums, bad_lines = provenance.parse_sums(text)
    for problem in bad_lines:
        result.add(f"{provenance.SUMS}:{problem}")
    present = set(provenance.release_files(root))
    for rel in sorted(present - set(sums)):
        result.add(f"{rel}: not listed in {provenance.SUMS}")
    matched = {}
    for rel, digest in sums.items():
        path = PurePosixPath(rel)
        if path.is_absolute() or ".." in path.parts:
            result.add(f"{provenance.SUMS}: listed path {rel!r} leaves the release folder")
        elif rel not in present:
            result.add(f"{rel}: listed in {provenance.SUMS} but missing")
        elif provenance.sha256_file(root / rel) != digest:
            result.add(f"{rel}: checksum does not match {provenance.SUMS}")
        else:
            matched[rel] = digest
            result.checked_files += 1
    return matched


# ------------------------------------------------------------------------------------------------- sources


def _check_source(root: Path, entry: manifests.SourceEntry, digests: dict[str, str], result: VerifyResult,
                  progress: bool) -> set[str]:
    """Check one source; returns the paths (relative to the release) of its official files.

    Each row carries its record's contract and reachable images (``Episode.spec``), so no source code is needed.
    """
    name, source = entry.official_name, entry.source
    check = SourceCheck(source, name)
    result.sources.append(check)
    test_dir = root / "test"
    records = _read_official(root / entry.files.official, result)
    check.records = len(records)
    row_files: set[str] = set()
    reachable: set[str] = set()
    decoded: set[str] = set()
    ids: set[int] = set()
    for where, row in _rows(root, entry.files.native, source, result, progress):
        check.rows += 1
        try:
            ids.add(row["id"])
            row_files.update(row["official_files"])
            ep = from_row(row).validate()
            _tie_row(row, where, records.get(row["id"]), ep.spec, entry, root, digests, result)
        except ROW_ERRORS as exc:
            result.add(f"{where}: malformed row ({type(exc).__name__}: {exc})")
            continue
        if ep.spec is None:
            result.add(f"{where}: no source spec in meta (contract and reachable images)")
        elif row["id"] in records:
            reachable.update(ep.spec.reachable)
            _check_record(test_dir, records[row["id"]], ep.spec, where, check, decoded, result)
        check.frames += len(ep.frames)
        for k, frame in enumerate(ep.frames):
            if decode(frame) is None:
                result.add(f"{where}: frame {k} does not decode")
        try:
            correct = play(ep, oracle).correct
        except ROW_ERRORS as exc:
            result.add(f"{where}: the replay fails ({exc})")
            correct = False
        if correct:
            check.oracle_correct += 1
        else:
            result.add(f"{where}: the oracle does not reach the answer")
    for missing_id in sorted(set(records) - ids):
        result.add(f"{source}: official record {missing_id} has no native row")
    _check_counts(entry, check, ids, row_files, result)
    return {f"test/{rel}" for rel in reachable | row_files}


def _check_record(test_dir: Path, record: dict, spec: EpisodeSpec, where: str, check: SourceCheck,
                  decoded: set[str], result: VerifyResult) -> None:
    """The record keeps its source's official contract, and every image it can reach exists and decodes."""
    problems = check_record(record, RecordContract.from_json(spec.contract))
    for p in problems:
        result.add(f"{where}: official record: {p}")
    if problems:
        return
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


def _rows(root: Path, shards: list[str], source: str, result: VerifyResult, progress: bool):
    """Yield ``(where, row)`` for every readable row of the shards; unreadable shards are problems."""
    bar = tqdm(desc=f"verify {source}", unit="row", disable=not progress)
    try:
        for rel in shards:
            path = root / rel
            if not path.is_file():
                result.add(f"{rel}: native shard missing")
                continue
            try:
                pf = pq.ParquetFile(path)
                for rg in range(pf.num_row_groups):
                    for row in pf.read_row_group(rg).to_pylist():
                        bar.update(1)
                        yield f"{source} row {row.get('id')}", row
            except (OSError, pa.ArrowException, ValueError) as exc:
                result.add(f"{rel}: unreadable parquet ({exc})")
    finally:
        bar.close()


def _tie_row(row: dict[str, Any], where: str, line: dict | None, spec: EpisodeSpec | None,
             entry: manifests.SourceEntry, root: Path, digests: dict[str, str], result: VerifyResult) -> None:
    """The row agrees with its official record, its manifest entry and its exported files."""
    if row["source"] != entry.source or row["official_name"] != entry.official_name:
        result.add(f"{where}: source {row['source']!r}/{row['official_name']!r} but the manifest says "
                   f"{entry.source!r}/{entry.official_name!r}")
    sample_id = row["id"]
    if not (0 <= sample_id < len(entry.keys)) or entry.keys[sample_id] != row["key"]:
        result.add(f"{where}: key {row['key']!r} is not the manifest's key for this id")
    if line is None:
        result.add(f"{where}: no official record with this id")
        return
    if json.loads(row["official_record"]) != line:
        result.add(f"{where}: native row and official record disagree")
    for fname in ("prompt", "answer", "categories"):
        if line.get(fname) != row[fname]:
            result.add(f"{where}: {fname} differs between the native row and the official record")
    if not set(line.get("options", [])) <= set(row["options"]):
        result.add(f"{where}: an official option is not among the native row's options")
    missing = set(spec.reachable if spec else ()) - set(row["official_files"])
    if missing:
        result.add(f"{where}: official file {sorted(missing)[0]} is not among the row's official_files")
    frames = [f["bytes"] for f in row["frames"]]
    files = row["official_files"]
    for k, rel in enumerate(files):
        digest = _digest(root, f"test/{rel}", digests)
        if digest is None:
            continue  # missing or unreadable: reported by the checksum and record checks
        # An exported file is the frame at its position; a source exporting one file exports its reference frame.
        index = row["reference_frame"] if len(files) == 1 else k
        if not 0 <= index < len(frames) or hashlib.sha256(frames[index]).hexdigest() != digest:
            result.add(f"{where}: exported file test/{rel} differs from the frame the native row embeds")


def _digest(root: Path, rel: str, digests: dict[str, str]) -> str | None:
    if rel in digests:
        return digests[rel]
    try:
        return provenance.sha256_file(root / rel)
    except OSError:
        return None


def _check_counts(entry: manifests.SourceEntry, check: SourceCheck, ids: set[int], row_files: set[str],
                  result: VerifyResult) -> None:
    """The manifest entry's counts and keys agree with what the release holds."""
    source, counts = entry.source, entry.counts
    if check.rows != counts.samples or check.records != counts.samples:
        result.add(f"{source}: manifest says {counts.samples} samples, found {check.records} records and "
                   f"{check.rows} rows")
    if len(entry.keys) != counts.samples:
        result.add(f"{source}: manifest lists {len(entry.keys)} keys for {counts.samples} samples")
    if ids != set(range(check.rows)):
        result.add(f"{source}: native row ids are not 0..{check.rows - 1}")
    if check.frames != counts.frames:
        result.add(f"{source}: manifest says {counts.frames} frames, the native rows hold {check.frames}")
    if counts.official_files != len(row_files):
        result.add(f"{source}: manifest says {counts.official_files} official files, the native rows name "
                   f"{len(row_files)}")
    if counts.skipped != len(entry.skipped):
        result.add(f"{source}: manifest says {counts.skipped} skipped, lists {len(entry.skipped)}")
    by_reason = Counter(str(i.get("reason")) for i in entry.ineligible_items if isinstance(i, dict))
    if dict(by_reason) != entry.ineligible:
        result.add(f"{source}: manifest's ineligible counts {entry.ineligible} do not match its items")
    if entry.filter is not None:
        kept = entry.filter.get("kept_ids", [])
        if not isinstance(kept, list) or not set(kept) <= ids:
            result.add(f"{source}: the filter keeps ids that are not in the release")


def _read_official(jsonl: Path, result: VerifyResult) -> dict[int, dict]:
    """The official records by id; lines that are not JSON objects with a unique integer id are problems."""
    records: dict[int, dict] = {}
    if not jsonl.is_file():
        result.add(f"{jsonl}: official JSONL missing")
        return records
    with open(jsonl, "rb") as handle:
        for n, raw_line in enumerate(handle, start=1):
            where = f"{jsonl.name}:{n}"
            try:
                record = json.loads(raw_line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                result.add(f"{where}: not JSON ({exc})")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("id"), int) or isinstance(record["id"], bool):
                result.add(f"{where}: not an object with an integer id")
            elif record["id"] in records:
                result.add(f"{where}: duplicate id {record['id']}")
            else:
                records[record["id"]] = record
    return records


# -------------------------------------------------------------------------------------- release-level files


def _check_release_files(root: Path, manifest: manifests.Manifest, exported: set[str],
                         result: VerifyResult) -> None:
    """Every file of the release belongs to it: the card, manifest, sums, changelog, each source's JSONL,
    filter list and shards, and the official files some record or row names."""
    names = [e.source for e in manifest.sources]
    for source, n in Counter(names).items():
        if n > 1:
            result.add(f"{manifests.MANIFEST}: source {source} is listed {n} times")
    known = {CARD, manifests.MANIFEST, CHANGELOG}
    for e in manifest.sources:
        known |= {e.files.official, *e.files.native}
        if e.filter is not None:
            files = e.filter.get("files", {})
            known |= {files.get("official", ""), *files.get("native", [])}
    previews = f"{PurePosixPath(PREVIEW_MARKDOWN).parent}/"
    for rel in provenance.release_files(root):
        if rel not in known and rel not in exported and not rel.startswith(previews):
            result.add(f"{rel}: not part of any source of the manifest")


def _check_card(root: Path, manifest: manifests.Manifest, result: VerifyResult) -> None:
    """The card is the one the manifest describes (a Hub copy, with a changelog, may name its repo and versions:
    then only its metadata header must agree)."""

    try:
        card = (root / CARD).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.add(f"{CARD}: cannot read the dataset card ({exc})")
        return
    try:
        expected = release_card(manifest, lambda rel: (root / rel).stat().st_size, preview=read_preview(root))
    except (PbBuildError, OSError, KeyError, TypeError) as exc:
        result.add(f"{CARD}: cannot derive the card from the manifest ({exc})")
        return
    if (root / CHANGELOG).is_file():
        card, expected = _front_matter(card), _front_matter(expected)
    if card != expected:
        result.add(f"{CARD}: the dataset card does not match the manifest and the files (configs, counts, sizes "
                   "or text were changed)")


def _front_matter(card: str) -> str:
    head, sep, _ = card.partition("\n---\n")
    return head if sep else card
