"""``pb-build filter``: drop samples that too many probe models answer correctly at the first turn.

The paper's rule (ProactiveBench, arXiv 2603.19466, §3.3 and App. A.8): a sample is dropped when at least 25 % of
the probe models answer it correctly at the first turn in zero-shot MCQA without hints. "Correctly at the first
turn" is the first turn's category verdict, so on ROD (categories are not accepted at turn 1) nothing is dropped, as
officially.

The kept ids are recorded in the release three ways: ``test/<Name>_filter.json`` (a plain JSON list, usable as
``FILTER[<Name>]`` by the official loader pattern), a native config ``<source>_filtered`` holding only the kept
rows, and the manifest (models, runs, threshold and per-sample first-turn correct counts). ``SHA256SUMS`` and the
card are rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pb_build.errors import PbBuildError
from pb_build.eval import sources
from pb_build.eval.data import FILTER_SUFFIX
from pb_build.eval.run import RUN_FILE, TRAJECTORIES, read_jsonl
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance
from pb_build.release_folder import finish, update_folder
from pb_build.writers.card import read_preview, release_card
from pb_build.writers.native import ParquetShards, read_rows

THRESHOLD = 0.25


@dataclass
class ProbeRun:
    """One model's MCQA run on the release: its name and first-turn correctness per sample id."""

    folder: Path
    model: str
    first_turn: dict[int, bool]


@dataclass
class FilterResult:
    source: str
    official_name: str
    kept_ids: list[int]
    correct_counts: dict[int, int]
    runs: list[ProbeRun]
    threshold: float


def load_probe_run(folder: Path, fingerprint: str) -> ProbeRun:
    """Read a run folder and check it is a zero-shot, hint-free, non-reference MCQA run on this release."""
    path = folder / RUN_FILE
    if not path.is_file():
        raise PbBuildError(f"{folder}: not a run folder (no {RUN_FILE})")
    run = json.loads(path.read_text(encoding="utf-8"))
    problems = [p for p, bad in (("not an MCQA run", run.get("mode") != "mcqa"), ("a hinted run", run.get("hint")),
                                 ("a reference run", run.get("reference"))) if bad]
    if run.get("data", {}).get("official_jsonl_sha256") != fingerprint:
        problems.append("made on another release or source (official JSONL checksum differs)")
    if problems:
        raise PbBuildError(f"{folder}: cannot be used for filtering: {'; '.join(problems)}")
    model = run.get("model") or f"policy:{run.get('policy', '?')}"
    first_turn = {}
    for rec in read_jsonl(folder / TRAJECTORIES):
        turns = rec.get("turns") or []
        first_turn[int(rec["id"])] = bool(turns) and turns[0]["category_verdict"] == "correct"
    return ProbeRun(folder, model, first_turn)


def _entry(manifest: manifests.Manifest, source: str) -> manifests.SourceEntry:
    name, _ = sources.resolve(source, [(e.source, e.official_name) for e in manifest.sources])
    return manifest.entry(name)


def compute(release: Path, source: str, run_folders: list[Path], threshold: float = THRESHOLD) -> FilterResult:
    """The kept ids of ``source`` given the probe runs."""
    if not 0 < threshold <= 1:
        raise PbBuildError("--threshold must be in (0, 1]")
    if not run_folders:
        raise PbBuildError("pass at least one --run folder")
    entry = _entry(manifests.read(release), source)
    fingerprint = provenance.sha256_file(release / entry.files.official)
    runs = [load_probe_run(f, fingerprint) for f in run_folders]
    ids = [int(row["id"]) for row in read_rows([release / p for p in entry.files.native])]
    for run in runs:
        missing = [i for i in ids if i not in run.first_turn]
        if missing:
            raise PbBuildError(f"{run.folder}: no trajectory for {len(missing)} sample(s) (e.g. id {missing[0]}); "
                               "probe runs must cover the whole source (no --limit, no kept-id list)")
    counts = {i: sum(run.first_turn[i] for run in runs) for i in ids}
    kept = [i for i in ids if counts[i] / len(runs) < threshold]
    return FilterResult(entry.source, entry.official_name, kept, counts, runs, threshold)


def write(release: Path, result: FilterResult, overwrite: bool = False) -> dict[str, Any]:
    """Record the kept ids in the release (official list, native config, manifest) and refresh the card and the
    checksums; the files change together or not at all."""
    manifest = manifests.read(release)
    entry = _entry(manifest, result.source)
    if entry.filter is not None and not overwrite:
        raise PbBuildError(f"{release}: {result.source} is already filtered; pass --overwrite to replace it")
    official_rel = f"test/{result.official_name}{FILTER_SUFFIX}"
    config = f"{result.source}_filtered"
    kept = set(result.kept_ids)
    with update_folder(release) as staging:
        shards = ParquetShards(staging / config, "test")
        for row in read_rows([release / p for p in entry.files.native]):
            if int(row["id"]) in kept:
                shards.write_row(row, sum(len(f["bytes"]) for f in row["frames"]))
        native = [p.relative_to(staging).as_posix() for p in shards.close()]
        (staging / official_rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / official_rel).write_text(json.dumps(result.kept_ids) + "\n", encoding="utf-8")
        entry.filter = {
            "rule": "drop a sample when at least `threshold` of the probe models answer it correctly at the first "
                    "turn (zero-shot MCQA, no hints)",
            "threshold": result.threshold,
            "models": [r.model for r in result.runs],
            "runs": [str(r.folder) for r in result.runs],
            "first_turn_correct": {str(k): v for k, v in result.correct_counts.items()},
            "kept_ids": result.kept_ids,
            "counts": {"before": len(result.correct_counts), "kept": len(result.kept_ids)},
            "files": {"official": official_rel, "native": native},
        }
        card = release_card(manifest, lambda rel: _newest(staging, release, rel).stat().st_size,
                            preview=read_preview(release))
        finish(staging, manifest, card, sums=False)
    return entry.filter


def _newest(staging: Path, release: Path, rel: str) -> Path:
    return staging / rel if (staging / rel).is_file() else release / rel
