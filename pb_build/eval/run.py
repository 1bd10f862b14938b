"""One evaluation run end to end: load episodes, play or generate, write the run folder, summarise.

A run folder holds ``run.json`` (what ran, on what, with which settings), ``trajectories.jsonl`` (MCQA, one line
per episode: states visited, prompts, raw answers, parsed choices, verdicts) or ``generations.jsonl`` (OEG),
``judgements.jsonl`` after judging, and ``summary.json`` / ``summary.txt`` (the paper's table for this run).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from pb_build import __version__
from pb_build.errors import PbBuildError
from pb_build.eval import metrics
from pb_build.eval.data import Dataset, Item, LoadFailure
from pb_build.eval.runner import Decide, failure_record, run_mcqa, run_oeg

RUN_FILE = "run.json"
TRAJECTORIES = "trajectories.jsonl"
GENERATIONS = "generations.jsonl"
JUDGEMENTS = "judgements.jsonl"
SUMMARY = "summary.json"
SUMMARY_TEXT = "summary.txt"
OEG_SAMPLES = 100


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create the run folder; refuse a non-empty one unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise PbBuildError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PbBuildError(f"{out}: run folder is not empty; pass --overwrite or choose another --out")
        for name in (RUN_FILE, TRAJECTORIES, GENERATIONS, JUDGEMENTS, SUMMARY, SUMMARY_TEXT):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def write_json(path: Path, body: Any) -> None:
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise PbBuildError(f"{path}: missing")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def oeg_selection(data: Dataset, samples: int, seed: int = 0) -> list[int]:
    """The official OEG subset: ``random.seed(0)``, shuffle the loaded samples, keep the first ``samples``."""
    order = list(data.order)
    random.Random(seed).shuffle(order)
    return order[:samples] if samples > 0 else order


def evaluate(data: Dataset, decide: Decide, out: Path, *, mode: str = "mcqa", batch_size: int = 16,
             hint: bool = False, reference: bool = False, oeg_samples: int = OEG_SAMPLES,
             settings: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Run ``mode`` on ``data`` into the run folder ``out`` (already prepared); returns the summary."""
    if mode not in ("mcqa", "oeg"):
        raise PbBuildError(f"unknown mode {mode!r}; use mcqa or oeg")
    if mode == "oeg" and reference:
        raise PbBuildError("--reference applies to MCQA only")
    run = {"pb_build_version": __version__, "mode": mode, "data": data.describe(), "batch_size": batch_size,
           "hint": hint, "reference": reference, **(settings or {})}
    items: list[Item] = data.items
    failures: list[LoadFailure] = data.failures
    if mode == "oeg":
        keep = oeg_selection(data, oeg_samples)
        run["oeg_samples"], run["oeg_ids"] = oeg_samples, keep
        chosen = set(keep)
        by_id = {i.sample_id: i for i in items}
        items = [by_id[k] for k in keep if k in by_id]
        failures = [f for f in failures if f.sample_id in chosen]
    write_json(out / RUN_FILE, run)
    started = time.perf_counter()
    path = out / (TRAJECTORIES if mode == "mcqa" else GENERATIONS)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        def write(rec: dict[str, Any]) -> None:
            handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
            handle.flush()

        records = [failure_record(f, data.source, data.official_name, mode) for f in failures]
        for rec in records:
            write(rec)
        runner = run_mcqa if mode == "mcqa" else run_oeg
        kwargs: dict[str, Any] = {"reference": reference} if mode == "mcqa" else {}
        records += runner(items, decide, batch_size=batch_size, hint=hint, on_record=write, progress=progress,
                          **kwargs)
    seconds = time.perf_counter() - started
    run.update(seconds=round(seconds, 3), episodes=len(records),
               episodes_per_second=round(len(records) / seconds, 3) if seconds > 0 else None)
    write_json(out / RUN_FILE, run)
    if mode == "oeg":
        return {"generations": len(records), "failed": sum(r["status"] != "ok" for r in records)}
    return write_mcqa_summary(out, records, reference)


def write_mcqa_summary(out: Path, records: list[dict[str, Any]], reference: bool) -> dict[str, Any]:
    summary = metrics.mcqa_summary(records)
    summary["reference"] = reference
    title = "reference accuracy (%)" if reference else "MCQA: acc (%) and psr"
    text = metrics.format_table(summary, ("acc",) if reference else ("acc", "psr"), title)
    write_json(out / SUMMARY, summary)
    (out / SUMMARY_TEXT).write_text(text + "\n", encoding="utf-8")
    summary["text"] = text
    return summary


def judge_run(out: Path, judge: Any, batch_size: int = 8, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Second pass: judge the saved generations of an OEG run folder and write judgements and the summary."""
    from pb_build.eval.judge import judge_generations

    run_path = out / RUN_FILE
    if not run_path.is_file():
        raise PbBuildError(f"{out}: not a run folder (no {RUN_FILE})")
    run = json.loads(run_path.read_text(encoding="utf-8"))
    if run.get("mode") != "oeg":
        raise PbBuildError(f"{out}: a {run.get('mode')} run; only OEG runs are judged")
    judgements = judge_generations(read_jsonl(out / GENERATIONS), judge, batch_size)
    with open(out / JUDGEMENTS, "w", encoding="utf-8", newline="\n") as handle:
        for rec in judgements:
            handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
    summary = metrics.oeg_summary(judgements)
    text = metrics.format_table(summary, ("cc", "ps", "agg"), "OEG: cc, ps, agg (%)")
    unparsed = sum(v["unparsed"] for v in summary["sources"].values())
    if unparsed:
        text += f"\n{unparsed} judge output(s) did not parse (scored 0; see parse_error in {JUDGEMENTS})"
    run["judge"] = settings or {}
    write_json(run_path, run)
    write_json(out / SUMMARY, summary)
    (out / SUMMARY_TEXT).write_text(text + "\n", encoding="utf-8")
    summary["text"] = text
    return summary
