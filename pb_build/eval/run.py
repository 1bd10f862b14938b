"""One evaluation run end to end: load episodes, play or generate, write the run folder, summarise.

A run folder holds ``run.json`` (what ran, on what, with which settings), ``trajectories.jsonl`` (MCQA, one line
per episode: states visited, prompts, raw answers, parsed choices, verdicts) or ``generations.jsonl`` (OEG),
``judgements.jsonl`` after judging, and ``summary.json`` / ``summary.txt`` (the paper's table for this run).

Records stream to disk one line per finished episode, so an interrupted run resumes where it stopped: the run
folder's ``identity`` (what was evaluated, how, by which model) must match, finished episodes are kept and never
recomputed, a half-written last line is dropped, and at the end the records are rewritten in the data's order
so a resumed run's files equal an uninterrupted one's.
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


#: Run settings that may change between an interrupted run and its resumption.
NOT_IDENTITY = ("pb_build_version", "batch_size", "device", "seconds", "episodes", "episodes_per_second", "judge",
                "usage", "identity", "evaluation_set")


def prepare_out(out: Path, overwrite: bool, resume: bool = False) -> None:
    """Create the run folder; refuse a non-empty one unless ``overwrite`` (or ``resume`` and it holds a run)."""
    if out.exists() and not out.is_dir():
        raise PbBuildError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if resume and not overwrite and (out / RUN_FILE).is_file():
            return
        if not overwrite:
            raise PbBuildError(f"{out}: run folder is not empty; pass --overwrite or choose another --out")
        for name in (RUN_FILE, TRAJECTORIES, GENERATIONS, JUDGEMENTS, SUMMARY, SUMMARY_TEXT):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def write_json(path: Path, body: Any) -> None:
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def identity(run: dict[str, Any]) -> dict[str, Any]:
    """What must match for a run folder to be resumed: everything but timings, batch size and device."""
    ident = {k: v for k, v in run.items() if k not in NOT_IDENTITY}
    ident["data"] = {k: v for k, v in run.get("data", {}).items() if k != "folder"}
    return json.loads(json.dumps(ident))


def check_resumable(out: Path, run: dict[str, Any]) -> None:
    """Refuse, in one line, to resume a run folder that holds another run."""
    path = out / RUN_FILE
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text(encoding="utf-8")).get("identity")
    except json.JSONDecodeError as exc:
        raise PbBuildError(f"{path}: not JSON ({exc}); pass --overwrite to start again") from exc
    mine = identity(run)
    if stored != mine:
        stored = stored or {}
        key = next((k for k in sorted(set(stored) | set(mine)) if stored.get(k) != mine.get(k)), "?")
        raise PbBuildError(f"{out}: holds a run with another {key} ({_short(stored.get(key))} there, "
                           f"{_short(mine.get(key))} now); pass --overwrite or choose another --out")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def read_done(path: Path) -> list[dict[str, Any]]:
    """The complete records of a partly written JSONL file; a half-written last line is cut off the file."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    records, good = [], 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
        good += len(line)
    if good != len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return records


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
             settings: dict[str, Any] | None = None, progress: bool = False, history: bool = False,
             icl_examples: int = 0, cot: bool = False) -> dict[str, Any]:
    """Run ``mode`` on ``data`` into the run folder ``out`` (already prepared); returns the summary.

    A run folder holding the same run is resumed: its finished episodes are kept, the others are run. The
    paper's §4.3 variants (MCQA): ``history`` keeps each episode's earlier turns in the conversation;
    ``icl_examples`` puts the first N episodes, played as in-context examples (with the CoT lead-in when
    ``cot``), before every conversation and leaves them out of the evaluation."""
    if mode not in ("mcqa", "oeg"):
        raise PbBuildError(f"unknown mode {mode!r}; use mcqa or oeg")
    if mode == "oeg" and (reference or history or icl_examples):
        raise PbBuildError("--reference, --history and --icl-examples apply to MCQA only")
    if cot and not icl_examples:
        raise PbBuildError("--cot applies to the in-context examples; pass --icl-examples N")
    run = {"pb_build_version": __version__, "mode": mode, "data": data.describe(), "batch_size": batch_size,
           "hint": hint, "reference": reference, **(settings or {})}
    items: list[Item] = data.items
    failures: list[LoadFailure] = data.failures
    examples: tuple = ()
    if history or icl_examples:
        from pb_build.eval.runner import icl_context

        run.update(history=history, icl_examples=icl_examples, cot=cot)
        shots = items[:icl_examples]
        if len(shots) < icl_examples:
            raise PbBuildError(f"--icl-examples {icl_examples}: only {len(items)} episodes loaded")
        try:
            examples = icl_context([i.episode for i in shots], hint, cot)
        except ValueError as exc:
            raise PbBuildError(f"--cot: {exc}") from None
        run["icl_example_ids"] = [i.sample_id for i in shots]
        items = items[icl_examples:]
    if mode == "oeg":
        keep = oeg_selection(data, oeg_samples)
        run["oeg_samples"], run["oeg_ids"] = oeg_samples, keep
        chosen = set(keep)
        by_id = {i.sample_id: i for i in items}
        items = [by_id[k] for k in keep if k in by_id]
        failures = [f for f in failures if f.sample_id in chosen]
    run["evaluation_set"] = data.kept_ids
    check_resumable(out, run)
    run["identity"] = identity(run)
    path = out / (TRAJECTORIES if mode == "mcqa" else GENERATIONS)
    done = read_done(path) if (out / RUN_FILE).is_file() else []
    if not done:
        path.unlink(missing_ok=True)
    write_json(out / RUN_FILE, run)
    finished = {rec["id"] for rec in done}
    started = time.perf_counter()
    with open(path, "a", encoding="utf-8", newline="\n") as handle:
        def write(rec: dict[str, Any]) -> None:
            handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
            handle.flush()

        records = [failure_record(f, data.source, data.official_name, mode) for f in failures
                   if f.sample_id not in finished]
        for rec in records:
            write(rec)
        runner = run_mcqa if mode == "mcqa" else run_oeg
        kwargs: dict[str, Any] = {"reference": reference, "history": history,
                                  "examples": examples} if mode == "mcqa" else {}
        records += runner([i for i in items if i.sample_id not in finished], decide, batch_size=batch_size,
                          hint=hint, on_record=write, progress=progress, **kwargs)
    seconds = time.perf_counter() - started
    records = in_order(done + records, run.get("oeg_ids") or data.order)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
    new = len(records) - len(done)
    run.update(seconds=round(seconds, 3), episodes=len(records), resumed=len(done),
               episodes_per_second=round(new / seconds, 3) if seconds > 0 and new else None)
    usage = getattr(decide, "usage", None)
    if callable(usage):
        run["usage"] = usage()
    write_json(out / RUN_FILE, run)
    if mode == "oeg":
        return {"generations": len(records), "failed": sum(r["status"] != "ok" for r in records)}
    return write_mcqa_summary(out, records, reference)


def in_order(records: list[dict[str, Any]], order: list[int]) -> list[dict[str, Any]]:
    """Records sorted by the position of their id in ``order`` (unknown ids last, by id)."""
    rank = {sample_id: n for n, sample_id in enumerate(order)}
    return sorted(records, key=lambda r: (rank.get(r["id"], len(rank)), str(r["id"])))


def check_judgeable(out: Path) -> dict[str, Any]:
    """The run.json of an OEG run folder holding generations; one line otherwise (before any judge loads)."""
    if not out.is_dir():
        raise PbBuildError(f"{out}: run folder does not exist")
    run_path = out / RUN_FILE
    if not run_path.is_file():
        raise PbBuildError(f"{out}: not a run folder (no {RUN_FILE})")
    try:
        run = json.loads(run_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PbBuildError(f"{run_path}: not JSON ({exc})") from exc
    if run.get("mode") != "oeg":
        raise PbBuildError(f"{out}: a {run.get('mode')} run; only OEG runs are judged")
    if not (out / GENERATIONS).is_file():
        raise PbBuildError(f"{out}: no {GENERATIONS}; the open-ended generations were never written")
    return run


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
    run = check_judgeable(out)
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
