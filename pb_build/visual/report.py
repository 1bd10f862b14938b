"""Reports of evaluator runs: the paper's main table, accuracy next to the reference setting, actions and turns.

Runs are grouped by setting (hints on or off, kept-id list): each setting gets its own tables and plots, so
zero-shot and hinted results, or filtered and unfiltered ones, are never mixed. Runs of one source on different
data (another release) are refused (``runs.check``). Per setting:

* the main table (paper Table 1): one row per model, one ``acc / psr`` column per source and their average;
* accuracy on ProactiveBench next to the reference setting (Fig. 3, Table 6), from ``--reference`` runs;
* per model, the share of turns that were proactive suggestions, abstentions, predictions or unparsed, and the
  turns used per episode;
* for judged open-ended (OEG) runs, a setting of their own with ``cc / ps / agg`` per source (paper Table 2).

``report.md`` holds the tables, ``results.csv`` one row per (setting, model, source), and PNG plots.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pb_build.errors import PbBuildError
from pb_build.eval.sources import TABLE_ORDER
from pb_build.visual import plots
from pb_build.visual.outdir import fresh_folder
from pb_build.visual.runs import ACTIONS, Run, check, read_run

# Means over the paper's 21 models (benchmark tables 1, 4, 6, 7), to lay beside a report.
PAPER_MEAN_ACC = {
    "Table 1 (zero-shot, filtered)": dict(zip(TABLE_ORDER, (8.2, 13.5, 10.0, 33.7, 14.9, 22.0, 20.2), strict=True)),
    "Table 4 (zero-shot, unfiltered)": dict(zip(TABLE_ORDER, (8.2, 28.2, 26.2, 68.9, 33.6, 61.5, 65.1), strict=True)),
    "Table 7 (with hints, filtered)": dict(zip(TABLE_ORDER, (18.5, 20.7, 21.9, 34.9, 25.0, 27.5, 32.2), strict=True)),
    "Table 6 (reference)": dict(zip(TABLE_ORDER, (98.3, 70.4, 56.3, 88.0, 71.7, 80.8, 93.0), strict=True)),
}
CSV_FIELDS = ("setting", "model", "source", "n", "acc", "psr", "cc", "ps", "agg", "reference_acc", "reference_n",
              "failed", "ended_at_max_turns", "turns", "mean_turns", *ACTIONS, "valid_proactive", "run",
              "reference_run", "data_sha256")


@dataclass
class Setting:
    """The runs of one setting, indexed by (model, source)."""

    name: str
    main: dict[tuple[str, str], Run]
    ref: dict[tuple[str, str], Run]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in [*self.main, *self.ref]))

    @property
    def sources(self) -> list[str]:
        have = {s for _, s in [*self.main, *self.ref]}
        return [s for s in TABLE_ORDER if s in have] + sorted(have - set(TABLE_ORDER))

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


def group(runs: list[Run]) -> list[Setting]:
    """Settings in order of first appearance."""
    out: dict[str, Setting] = {}
    for r in runs:
        s = out.setdefault(r.setting, Setting(r.setting, {}, {}))
        (s.ref if r.reference else s.main)[(r.model, r.source)] = r
    return list(out.values())


def _avg(values: list[float]) -> float:
    return sum(values) / len(values)


def _paper_row(setting: Setting, reference: bool) -> tuple[str, dict[str, float]] | None:
    if reference:
        key = "Table 6 (reference)"
    elif setting.name.startswith("with hints"):
        key = None if "unfiltered" in setting.name else "Table 7 (with hints, filtered)"
    else:
        key = "Table 4 (zero-shot, unfiltered)" if "unfiltered" in setting.name else "Table 1 (zero-shot, filtered)"
    return (key, PAPER_MEAN_ACC[key]) if key else None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def main_table(s: Setting) -> list[str]:
    """Paper Table 1: ``acc / psr`` per source and the average over sources."""
    rows, partial = [], False
    for m in s.models:
        cells = [f"{r.acc:.1f} / {r.psr:.2f}" if (r := s.main.get((m, src))) else "–" for src in s.sources]
        have = [r for src in s.sources if (r := s.main.get((m, src)))]
        mark = "" if len(have) == len(s.sources) else "*"
        partial |= bool(mark) and bool(have)
        avg = f"{_avg([r.acc for r in have]):.1f} / {_avg([r.psr for r in have]):.2f}{mark}" if have else "–"
        rows.append([m, *cells, avg])
    paper = _paper_row(s, reference=False)
    if paper:
        vals = [paper[1].get(src) for src in s.sources]
        rows.append([f"*paper mean acc, {paper[0]}*", *(f"*{v:.1f}*" if v is not None else "" for v in vals), ""])
    lines = _table(["model", *s.sources, "avg"], rows)
    if partial:
        lines.append("\n\\* average over the sources this model was run on only.")
    return lines


def oeg_table(s: Setting) -> list[str]:
    """Paper Table 2: ``cc / ps / agg`` (%) per source and their average."""
    rows = []
    for m in s.models:
        have = [r for src in s.sources if (r := s.main.get((m, src)))]
        cells = [f"{r.oeg['cc']:.1f} / {r.oeg['ps']:.1f} / {r.oeg['agg']:.1f}" if (r := s.main.get((m, src)))
                 else "–" for src in s.sources]
        avg = " / ".join(f"{_avg([r.oeg[k] for r in have]):.1f}" for k in ("cc", "ps", "agg"))
        rows.append([m, *cells, avg + ("" if len(have) == len(s.sources) else "*")])
    return _table(["model", *s.sources, "avg"], rows)


def reference_table(s: Setting) -> list[str]:
    """ProactiveBench accuracy next to the reference accuracy (Fig. 3): ``acc (reference acc)``."""
    rows = []
    for m in s.models:
        cells, pb, ref = [], [], []
        for src in s.sources:
            r, q = s.main.get((m, src)), s.ref.get((m, src))
            cells.append(f"{r.acc:.1f}" if r else "–")
            cells[-1] += f" ({q.acc:.1f})" if q else " (–)"
            if r and q:
                pb.append(r.acc)
                ref.append(q.acc)
        avg = f"{_avg(pb):.1f} ({_avg(ref):.1f})" if pb else "–"
        rows.append([m, *cells, avg])
    paper = _paper_row(s, reference=False)
    if paper:
        ref_paper = PAPER_MEAN_ACC["Table 6 (reference)"]
        rows.append([f"*paper mean, {paper[0]} (Table 6)*", *(
            f"*{paper[1][src]:.1f} ({ref_paper[src]:.1f})*" if src in ref_paper else "" for src in s.sources), ""])
    return _table(["model", *s.sources, "avg (both run)"], rows)


def model_actions(s: Setting) -> dict[str, dict[str, float]]:
    """Per model over its main runs: episodes, turns, action counts and turns per episode."""
    out = {}
    for m in s.models:
        runs = [r for (mm, _), r in s.main.items() if mm == m]
        if not runs:
            continue
        acts: Counter = sum((r.actions for r in runs), Counter())
        turns = [t for r in runs for t in r.turns]
        out[m] = {"episodes": len(turns), "turns": sum(turns), **{a: acts[a] for a in ACTIONS},
                  "valid_proactive": sum(r.valid_proactive for r in runs),
                  "max_turns": sum(r.max_steps for r in runs), "failed": sum(r.failed for r in runs),
                  "turn_counts": Counter(turns)}
    return out


def actions_table(acts: dict[str, dict]) -> list[str]:
    """Share of turns per action, per model, and turns used."""
    rows = []
    for m, a in acts.items():
        total = max(a["turns"], 1)
        pct = [f"{100 * a[k] / total:.1f}" for k in ACTIONS]
        rows.append([m, str(a["episodes"]), str(a["turns"]), f"{a['turns'] / max(a['episodes'], 1):.2f}", pct[0],
                     str(a["valid_proactive"]), *pct[1:], str(a["max_turns"]), str(a["failed"])])
    return _table(["model", "episodes", "turns", "turns / episode", "proactive %", "valid proactive",
                   "abstain %", "predict %", "unparsed %", "ended at max turns", "failed"], rows)


def csv_rows(s: Setting) -> list[dict[str, object]]:
    """One CSV row per (model, source) of a setting."""
    out = []
    for m in s.models:
        for src in s.sources:
            r, q = s.main.get((m, src)), s.ref.get((m, src))
            if not r and not q:
                continue
            row: dict[str, object] = {"setting": s.name, "model": m, "source": src,
                                      "reference_acc": f"{q.acc:.2f}" if q else "",
                                      "reference_n": q.n if q else "", "reference_run": str(q.folder) if q else "",
                                      "data_sha256": (r or q).data_sha256}
            if r and r.mode == "oeg":
                row.update(n=r.n, failed=r.failed, run=str(r.folder), **{k: f"{v:.2f}" for k, v in r.oeg.items()})
            elif r:
                row.update(n=r.n, acc=f"{r.acc:.2f}", psr=f"{r.psr:.4f}", failed=r.failed,
                           ended_at_max_turns=r.max_steps, turns=sum(r.turns),
                           mean_turns=f"{sum(r.turns) / max(len(r.turns), 1):.3f}",
                           valid_proactive=r.valid_proactive, run=str(r.folder),
                           **{a: r.actions[a] for a in ACTIONS})
            out.append(row)
    return out


def accuracy_plot(s: Setting) -> bytes:
    """Grouped bars per source: each model's ProactiveBench accuracy, its reference accuracy hatched beside it."""
    plt = plots.pyplot()
    models, sources = s.models, s.sources
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(sources) * max(1, len(models)) ** 0.5 + 2),
                                    3.0 + 0.2 * ((len(models) + 2) // 3)), dpi=100)
    width = 0.8 / max(len(models), 1)
    colours = plt.get_cmap("tab10")
    for k, m in enumerate(models):
        xs = [i + k * width - 0.4 + width / 2 for i in range(len(sources))]
        acc = [r.acc if (r := s.main.get((m, src))) else 0 for src in sources]
        ref = [q.acc if (q := s.ref.get((m, src))) else 0 for src in sources]
        if any(s.ref.get((m, src)) for src in sources):
            ax.bar(xs, ref, width * 0.95, color="none", edgecolor=colours(k % 10), hatch="//", linewidth=0.8)
        ax.bar(xs, acc, width * 0.6, color=colours(k % 10), label=m[:40])
    ax.set_xticks(range(len(sources)), sources)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"acc (solid) vs reference acc (hatched): {s.name}", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(3, len(models)))
    return plots.to_png(fig)


def actions_plot(s: Setting, acts: dict[str, dict]) -> bytes:
    """Per model, stacked shares of turns that were proactive, abstain, predict or unparsed."""
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(acts) + 1.4), dpi=100)
    colours = {"proactive": "#f08a00", "abstain": "#c62828", "predict": "#1f6fd1", "unparsed": "#9e9e9e"}
    names = list(acts)[::-1]  # barh draws bottom-up; keep the table's order top-down
    left = [0.0] * len(names)
    for kind in ACTIONS:
        share = [100 * acts[m][kind] / max(acts[m]["turns"], 1) for m in names]
        ax.barh([m[:40] for m in names], share, left=left, color=colours[kind], label=kind)
        left = [a + b for a, b in zip(left, share, strict=True)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of turns (%)")
    ax.set_title(f"actions per model: {s.name}", fontsize=9, pad=24)
    ax.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.08))
    return plots.to_png(fig)


def turns_plot(s: Setting, acts: dict[str, dict]) -> bytes:
    """Per model, the share of episodes that used 1, 2, ... turns."""
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 2.8), dpi=100)
    for m, a in acts.items():
        counts, total = a["turn_counts"], max(a["episodes"], 1)
        xs = sorted(counts)
        ax.plot(xs, [100 * counts[x] / total for x in xs], marker="o", label=m[:40])
    ax.set_xlabel("turns used")
    ax.set_ylabel("episodes (%)")
    ax.set_title(f"turns per episode: {s.name}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return plots.to_png(fig)


def write_report(run_folders: list[Path], out: Path, overwrite: bool = False, progress: bool = False) -> dict:
    """Write ``report.md``, ``results.csv`` and the plots of ``run_folders`` to ``out``; returns counts."""
    if not run_folders:
        raise PbBuildError("no run folders given")
    runs = [read_run(f) for f in tqdm(run_folders, desc="runs", unit="run", disable=not progress)]
    check(runs)
    settings = group(runs)
    with fresh_folder(out, overwrite) as tmp:
        md = ["# Evaluation report", "", f"{len(runs)} run(s); {len(settings)} setting(s), reported separately.", ""]
        md += _data_section(runs)
        rows: list[dict[str, object]] = []
        for s in tqdm(settings, desc="report", unit="setting", disable=not progress):
            if s.name.startswith("OEG"):
                md += [f"## Setting: {s.name}", "", "### Open-ended generation (judged): cc / ps / agg (%)", "",
                       *oeg_table(s), ""]
                rows += csv_rows(s)
                continue
            acts = model_actions(s)
            md += [f"## Setting: {s.name}", "", "### ProactiveBench (MCQA): acc (%) / psr", "", *main_table(s), ""]
            figures = {}
            if s.main:
                figures["accuracy"] = accuracy_plot(s)
            if s.ref:
                md += ["### Accuracy on ProactiveBench next to the reference setting: acc (reference acc)", "",
                       *reference_table(s), ""]
            if acts:
                md += ["### Actions per model (share of turns) and turns used", "", *actions_table(acts), ""]
                figures["actions"] = actions_plot(s, acts)
                figures["turns"] = turns_plot(s, acts)
            for key, png in figures.items():
                name = f"{key}-{s.slug}.png"
                (tmp / name).write_bytes(png)
                md += [f"![{key}: {s.name}]({name})", ""]
            rows += csv_rows(s)
        with open(tmp / "results.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        (tmp / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return {"runs": len(runs), "settings": len(settings), "rows": len(rows)}


def _data_section(runs: list[Run]) -> list[str]:
    by_source: dict[str, Run] = {}
    for r in runs:
        by_source.setdefault(r.source, r)
    rows = [[src, f"`{r.data_sha256[:16]}`", r.data_folder,
             ", ".join(sorted({x.version for x in runs if x.source == src}))] for src, r in by_source.items()]
    lines = ["## Data", "", *_table(["source", "official JSONL sha256", "release folder", "pb-build"], rows), ""]
    folders = {r.data_folder for r in by_source.values()}
    if len(folders) > 1:
        lines += [f"The sources come from {len(folders)} different release folders (above); every run of one "
                  "source used the same data.", ""]
    return lines
