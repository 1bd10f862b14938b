"""Evaluator run folders read back for reports: which model, source, data and setting, and what it did.

A run is identified by its model (``model`` of a model run, ``policy:<name>`` of a scripted one), its source
column (the paper's alias), whether it is a reference run, and its setting: hints on or off and which kept-id
list it used (unfiltered, or a filter file). The data it ran on is the sha256 of the source's official JSONL.
Each turn of a trajectory is one action: ``predict`` (a category), ``proactive`` (a proactive option, valid or
not), ``abstain`` (the abstain option) or ``unparsed``. A judged OEG run carries cc, ps and agg instead.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pb_build.errors import PbBuildError
from pb_build.eval.run import RUN_FILE, SUMMARY, TRAJECTORIES, read_jsonl
from pb_build.eval.sources import alias
from pb_build.strings import is_abstain

ACTIONS = ("proactive", "abstain", "predict", "unparsed")


@dataclass(frozen=True)
class Run:
    """One MCQA run folder, reduced to what a report shows."""

    folder: Path
    model: str
    source: str  # the paper's alias (QD, COCO, ...)
    reference: bool
    hint: bool
    kept_ids: str
    data_sha256: str
    data_folder: str
    version: str
    n: int
    acc: float
    psr: float
    failed: int
    max_steps: int
    mode: str = "mcqa"
    oeg: dict[str, float] = field(default_factory=dict)  # cc, ps, agg of a judged OEG run
    actions: Counter = field(default_factory=Counter)
    valid_proactive: int = 0
    turns: tuple[int, ...] = ()

    @property
    def setting(self) -> str:
        """Hints and kept ids: runs of different settings are reported in separate tables."""
        kept = "unfiltered" if self.kept_ids == "all" else f"kept ids {Path(self.kept_ids).name}"
        mode = "OEG, " if self.mode == "oeg" else ""
        return f"{mode}{'with hints' if self.hint else 'zero-shot'}, {kept}"


def model_name(run: dict[str, Any]) -> str:
    """The model column of a run: the model id, or ``policy:<name>`` (with its seed when it is random)."""
    if run.get("model"):
        return str(run["model"])
    if run.get("policy"):
        seed = f" (seed {run.get('seed', 0)})" if run["policy"] == "random" else ""
        return f"policy:{run['policy']}{seed}"
    return "?"


def classify(turn: dict[str, Any]) -> str:
    """The action a turn took (see the module docstring)."""
    if turn.get("category_verdict") in ("correct", "wrong"):
        return "predict"
    if turn.get("action_verdict") in ("correct", "wrong") and turn.get("choice"):
        text = str(turn["choice"]).split(". ", 1)[-1]
        return "abstain" if is_abstain(text) else "proactive"
    return "unparsed"


def read_run(folder: Path) -> Run:
    """Read a run folder; one clear error when it is not a finished MCQA run or a judged OEG run."""
    path = folder / RUN_FILE
    if not path.is_file():
        raise PbBuildError(f"{folder}: not a run folder (no {RUN_FILE})")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PbBuildError(f"{path}: not JSON ({exc})") from exc
    mode = run.get("mode")
    if mode not in ("mcqa", "oeg"):
        raise PbBuildError(f"{folder}: unknown run mode {mode!r}")
    if not (folder / SUMMARY).is_file():
        raise PbBuildError(f"{folder}: no {SUMMARY}; " + ("judge it first (pb-build judge)" if mode == "oeg"
                                                          else "the run did not finish"))
    summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    data = run.get("data", {})
    column = alias(data.get("official_name", "")) or data.get("source", "?")
    if column not in summary.get("sources", {}):
        raise PbBuildError(f"{folder}: {SUMMARY} has no {column} row")
    row = summary["sources"][column]
    common = dict(folder=folder, model=model_name(run), source=column, reference=bool(run.get("reference")),
                  hint=bool(run.get("hint")), kept_ids=str(data.get("kept_ids", "all")),
                  data_sha256=str(data.get("official_jsonl_sha256", "")), data_folder=str(data.get("folder", "")),
                  version=str(run.get("pb_build_version", "?")), n=int(row["n"]), failed=int(row.get("failed", 0)))
    if mode == "oeg":
        return Run(**common, acc=0.0, psr=0.0, max_steps=0, mode="oeg",
                   oeg={k: float(row[k]) for k in ("cc", "ps", "agg")})
    actions: Counter = Counter()
    valid = 0
    turns = []
    for rec in read_jsonl(folder / TRAJECTORIES):
        turns.append(int(rec.get("num_turns", 0)))
        for turn in rec.get("turns", []):
            kind = classify(turn)
            actions[kind] += 1
            valid += kind == "proactive" and turn.get("action_verdict") == "correct"
    return Run(**common, acc=float(row["acc"]), psr=float(row["psr"]), max_steps=int(row.get("max_steps", 0)),
               actions=actions, valid_proactive=valid, turns=tuple(turns))


def check(runs: list[Run]) -> None:
    """Refuse runs that cannot share a report: one source on different data, or two runs of one cell."""
    by_source: dict[str, Run] = {}
    cells: dict[tuple, Run] = {}
    for r in runs:
        first = by_source.setdefault(r.source, r)
        if first.data_sha256 != r.data_sha256:
            raise PbBuildError(
                f"{r.folder}: ran {r.source} on different data than {first.folder} (official JSONL sha256 "
                f"{r.data_sha256[:12]} vs {first.data_sha256[:12]}, folders {r.data_folder} and "
                f"{first.data_folder}); report runs of different releases separately")
        key = (r.model, r.source, r.setting, r.reference)
        if key in cells:
            raise PbBuildError(f"{r.folder} and {cells[key].folder}: both are {'reference ' if r.reference else ''}"
                               f"runs of {r.model} on {r.source} ({r.setting}); pass one of them")
        cells[key] = r
