"""The paper's metrics: MCQA acc/psr (Table 1; reference acc, Table 6) and OEG cc/ps/agg (Table 2).

* acc = 100 x mean(correct), psr = mean(num_turns - 1), over every sample of the source; the average column is
  the mean over sources, as in Table 1.
* Failed samples stay in the denominators (counted incorrect, contributing ``max(num_turns - 1, 0)`` to psr), so
  a failure can only lower a score and is reported in ``failed``; the official example's -1 for a sample with
  zero turns (the official ``tests/mcqa.py`` stops a sample on a processor error, possibly before any turn) is
  not copied.
* OEG: ps, cc and agg are percentages of samples whose judge vector has a 1 among the first T answers, after
  them, or anywhere; an unparsed judge output scores 0 on all three, as officially.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pb_build.eval.sources import TABLE_ORDER, alias


def _column(record: dict[str, Any]) -> str:
    return alias(record.get("official_name") or "") or record.get("source", "?")


def _ordered(groups: dict[str, Any]) -> list[str]:
    known = [a for a in TABLE_ORDER if a in groups]
    return known + sorted(k for k in groups if k not in TABLE_ORDER)


def _per_source(records: Iterable[dict[str, Any]], row: Callable[[list[dict[str, Any]]], dict[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(_column(rec), []).append(rec)
    return {key: row(groups[key]) for key in _ordered(groups)}


def _average(per: dict[str, dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, float]:
    return {m: sum(v[m] for v in per.values()) / len(per) for m in metrics} if per else {}


def _mcqa_row(recs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(recs)
    return {
        "n": n,
        "acc": 100.0 * sum(bool(r["correct"]) for r in recs) / n,
        "psr": sum(max(int(r["num_turns"]) - 1, 0) for r in recs) / n,
        "failed": sum(r["status"] != "ok" for r in recs),
        "max_steps": sum(bool(r.get("max_steps")) for r in recs),
    }


def _oeg_row(recs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(recs)
    return {
        "n": n,
        "cc": 100.0 * sum(r["category_prediction"] for r in recs) / n,
        "ps": 100.0 * sum(r["proactive_suggestion"] for r in recs) / n,
        "agg": 100.0 * sum(r["aggregate"] for r in recs) / n,
        "unparsed": sum(not r.get("parsed", False) and r["status"] == "ok" for r in recs),
        "failed": sum(r["status"] != "ok" for r in recs),
    }


def mcqa_summary(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per-source n, acc, psr and failures, plus their average over sources."""
    per = _per_source(records, _mcqa_row)
    return {"sources": per, "avg": _average(per, ("acc", "psr"))}


def oeg_summary(judgements: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per-source n, cc, ps, agg (percent), unparsed judge outputs and failures, plus the average."""
    per = _per_source(judgements, _oeg_row)
    return {"sources": per, "avg": _average(per, ("cc", "ps", "agg"))}


def format_table(summary: dict[str, Any], metrics: tuple[str, ...], title: str = "") -> str:
    """A plain-text table: one column per source and ``avg``, one row per metric, plus counts."""
    cols = list(summary["sources"])
    width = max([8, *(len(c) + 2 for c in cols)])
    lines = [title] if title else []
    lines.append(f"{'':10s}" + "".join(f"{c:>{width}s}" for c in [*cols, "avg"]))
    for m in metrics:
        cells = [summary["sources"][c][m] for c in cols] + [summary["avg"].get(m, float("nan"))]
        digits = 2 if m == "psr" else 1
        lines.append(f"{m:10s}" + "".join(f"{v:>{width}.{digits}f}" for v in cells))
    for count in ("n", "failed"):
        lines.append(f"{count:10s}" + "".join(f"{summary['sources'][c][count]:>{width}d}" for c in cols))
    return "\n".join(lines)
