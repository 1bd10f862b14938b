"""``pb-build filter``: drop samples that too many probe models answer correctly at the first turn.

The paper's rule (benchmark.md §11): a sample is dropped when at least 25 % of the probe models answer it
correctly at the first turn in zero-shot MCQA without hints. "Correctly at the first turn" is the first turn's
category verdict, so on ROD (categories are not accepted at turn 1) nothing is dropped, as officially.

The kept ids are recorded in the release three ways: ``test/<Name>_filter.json`` (a plain JSON list, usable as
``FILTER[<Name>]`` by the official loader pattern), a native config ``<source>_filtered`` holding only the kept
rows, and the manifest (models, runs, threshold and per-sample first-turn correct counts). ``SHA256SUMS`` and the
card are rewritten.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pb_build.errors import PbBuildError
from pb_build.eval import sources
from pb_build.eval.data import FILTER_SUFFIX
from pb_build.eval.run import RUN_FILE, TRAJECTORIES, read_jsonl
from pb_build.manifests import provenance
from pb_build.writers.native import ROW_GROUP, SCHEMA, read_rows

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


def _entry(manifest: dict[str, Any], source: str) -> dict[str, Any]:
    entries = manifest.get("sources", [])
    name, _ = sources.resolve(source, [(e["source"], e["official_name"]) for e in entries])
    return next(e for e in entries if e["source"] == name)


def compute(release: Path, source: str, run_folders: list[Path], threshold: float = THRESHOLD) -> FilterResult:
    """The kept ids of ``source`` given the probe runs."""
    if not 0 < threshold <= 1:
        raise PbBuildError("--threshold must be in (0, 1]")
    if not run_folders:
        raise PbBuildError("pass at least one --run folder")
    entry = _entry(provenance.read_manifest(release), source)
    fingerprint = provenance.sha256_file(release / entry["files"]["official"])
    runs = [load_probe_run(f, fingerprint) for f in run_folders]
    ids = [int(row["id"]) for row in read_rows([release / p for p in entry["files"]["native"]])]
    for run in runs:
        missing = [i for i in ids if i not in run.first_turn]
        if missing:
            raise PbBuildError(f"{run.folder}: no trajectory for {len(missing)} sample(s) (e.g. id {missing[0]}); "
                               "probe runs must cover the whole source (no --limit, no kept-id list)")
    counts = {i: sum(run.first_turn[i] for run in runs) for i in ids}
    kept = [i for i in ids if counts[i] / len(runs) < threshold]
    return FilterResult(entry["source"], entry["official_name"], kept, counts, runs, threshold)


def _card(release: Path, manifest: dict[str, Any]) -> None:
    from pb_build.builders import get_builder
    from pb_build.writers.card import ConfigSummary, write_card

    summaries = []
    for e in manifest["sources"]:
        info = get_builder(e["source"]).info
        sample = bool(e.get("raw", {}).get("sample"))
        configs = [(e["source"], e["files"]["native"], e["counts"]["samples"])]
        if "filter" in e:
            configs.append((f"{e['source']}_filtered", e["filter"]["files"]["native"], len(e["filter"]["kept_ids"])))
        for config, shards, rows in configs:
            size = sum((release / p).stat().st_size for p in shards)
            summaries.append(ConfigSummary(config, info, "test", rows, shards, size, sample))
    write_card(release, summaries)


def write(release: Path, result: FilterResult, overwrite: bool = False) -> dict[str, Any]:
    """Record the kept ids in the release (official list, native config, manifest) and refresh the checksums."""
    manifest = provenance.read_manifest(release)
    entry = _entry(manifest, result.source)
    if "filter" in entry and not overwrite:
        raise PbBuildError(f"{release}: {result.source} is already filtered; pass --overwrite to replace it")
    official_rel = f"test/{result.official_name}{FILTER_SUFFIX}"
    config = f"{result.source}_filtered"
    native_rel = f"{config}/test-00000-of-00001.parquet"
    kept = set(result.kept_ids)
    rows = [r for r in read_rows([release / p for p in entry["files"]["native"]]) if int(r["id"]) in kept]
    tmp = release / f".{config}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp / "shard.parquet", row_group_size=ROW_GROUP,
                   compression="snappy")
    (tmp / "ids.json").write_text(json.dumps(result.kept_ids) + "\n", encoding="utf-8")
    shutil.rmtree(release / config, ignore_errors=True)
    (release / config).mkdir()
    os.replace(tmp / "shard.parquet", release / native_rel)
    os.replace(tmp / "ids.json", release / official_rel)
    tmp.rmdir()
    entry["filter"] = {
        "rule": "drop a sample when at least `threshold` of the probe models answer it correctly at the first turn "
                "(zero-shot MCQA, no hints)",
        "threshold": result.threshold,
        "models": [r.model for r in result.runs],
        "runs": [str(r.folder) for r in result.runs],
        "first_turn_correct": {str(k): v for k, v in result.correct_counts.items()},
        "kept_ids": result.kept_ids,
        "counts": {"before": len(result.correct_counts), "kept": len(result.kept_ids)},
        "files": {"official": official_rel, "native": [native_rel]},
    }
    provenance.write_manifest(release, manifest)
    _card(release, manifest)
    provenance.write_sums(release)
    return entry["filter"]
