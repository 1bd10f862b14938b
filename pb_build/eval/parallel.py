"""Data-parallel evaluation: one worker process per GPU, each on a shard of the episodes, results merged.

Worker ``k`` of ``n`` takes every n-th episode starting at k (of the data's order; for OEG, of the official
selection), loads its own copy of the model on ``cuda:k`` (with ``--device cpu``, on the CPU) and writes an
ordinary, resumable run folder ``<run>/workers/<k>``. The parent waits for all, then merges their records in the
data's order into the run folder, so the merged files equal a single-process run's (exactly so in fp32).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from pb_build.errors import PbBuildError
from pb_build.eval import data as eval_data
from pb_build.eval.deciders import DeciderSpec, build
from pb_build.eval.run import (
    GENERATIONS,
    OEG_SAMPLES,
    RUN_FILE,
    TRAJECTORIES,
    evaluate,
    identity,
    in_order,
    oeg_selection,
    read_jsonl,
    write_json,
    write_mcqa_summary,
)

WORKERS = "workers"


def shard(data: eval_data.Dataset, ids: list[int], rank: int, workers: int) -> eval_data.Dataset:
    """The episodes of worker ``rank``: every ``workers``-th id of ``ids`` starting at ``rank``."""
    mine = set(ids[rank::workers])
    return replace(data, items=[i for i in data.items if i.sample_id in mine],
                   failures=[f for f in data.failures if f.sample_id in mine],
                   order=[i for i in ids if i in mine])


def _ids(data: eval_data.Dataset, mode: str, oeg_samples: int) -> list[int]:
    return oeg_selection(data, oeg_samples) if mode == "oeg" else list(data.order)


def evaluate_parallel(spec: DeciderSpec, workers: int, folder: Path, source: str, out: Path,
                      load: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """Run ``workers`` worker processes on shards of ``source`` and merge them into ``out``; the summary."""
    base = out / WORKERS
    base.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(workers):
        job = {"spec": spec.as_dict(), "folder": str(folder), "source": source, "rank": rank, "workers": workers,
               "load": {k: (str(v) if isinstance(v, Path) else v) for k, v in load.items()}, "run": run,
               "out": str(base / str(rank))}
        path = base / f"{rank}.json"
        write_json(path, job)
        procs.append(subprocess.Popen([sys.executable, "-m", "pb_build.eval.parallel", str(path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}))
    errors = []
    for rank, proc in enumerate(procs):
        _, err = proc.communicate()
        if proc.returncode != 0:
            lines = [line for line in err.strip().splitlines() if line.strip()]
            errors.append(f"worker {rank}: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    if errors:
        raise PbBuildError(f"{out}: {len(errors)} of {workers} workers failed ({'; '.join(errors)}); "
                           "rerun to resume")
    data = eval_data.load(folder, source, **load)
    return merge(out, data, [base / str(rank) for rank in range(workers)], run)


def merge(out: Path, data: eval_data.Dataset, shards: list[Path], run: dict[str, Any]) -> dict[str, Any]:
    """Merge worker run folders into ``out``: records in the data's order, one run.json, the summary."""
    mode = run.get("mode", "mcqa")
    name = TRAJECTORIES if mode == "mcqa" else GENERATIONS
    records = [rec for s in shards for rec in read_jsonl(s / name)]
    ids = _ids(data, mode, run.get("oeg_samples", OEG_SAMPLES))
    records = in_order(records, ids)
    with open(out / name, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
    runs = [json.loads((s / RUN_FILE).read_text(encoding="utf-8")) for s in shards]
    merged = {k: v for k, v in runs[0].items() if k not in ("identity", "seconds", "episodes_per_second")}
    merged.update(data=data.describe(), episodes=len(records), workers=len(shards),
                  devices=[r.get("device") for r in runs], seconds=max(r.get("seconds") or 0 for r in runs),
                  resumed=sum(r.get("resumed", 0) for r in runs))
    if mode == "oeg":
        merged.update(oeg_ids=ids, oeg_samples=run.get("oeg_samples", OEG_SAMPLES))
    merged["identity"] = identity(merged)
    write_json(out / RUN_FILE, merged)
    if mode == "oeg":
        return {"generations": len(records), "failed": sum(r["status"] != "ok" for r in records)}
    return write_mcqa_summary(out, records, bool(run.get("reference")))


def worker(job: dict[str, Any]) -> None:
    """One worker: load the data, take its shard, answer it into its own run folder."""
    spec = DeciderSpec(**job["spec"])
    rank, workers, run = job["rank"], job["workers"], job["run"]
    if spec.device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            spec = replace(spec, device=f"cuda:{rank % torch.cuda.device_count()}")
    load = {k: (Path(v) if k == "keep_ids" and v else v) for k, v in job["load"].items()}
    data = eval_data.load(Path(job["folder"]), job["source"], **load)
    mode = run.get("mode", "mcqa")
    part = shard(data, _ids(data, mode, run.get("oeg_samples", OEG_SAMPLES)), rank, workers)
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    decide, settings = build(spec)
    evaluate(part, decide, out, **{**run, "oeg_samples": 0 if mode == "oeg" else run.get("oeg_samples",
                                                                                          OEG_SAMPLES)},
             settings=settings)


def main(argv: list[str]) -> int:
    try:
        worker(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    except PbBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

