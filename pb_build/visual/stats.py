"""Per-source statistics of a release: samples, frames per sample, categories, steps to the reference, options.

``collect`` reads one source and keeps only small per-episode facts, so a source of any size is summarised with
the memory of one loaded source; ``markdown_table`` gives the statistics table of galleries and dataset cards.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from pb_build.eval.data import Dataset
from pb_build.visual import episodes


@dataclass
class SourceStats:
    """What a source holds, per episode reduced to a few numbers."""

    source: episodes.SourceRef
    frames: list[int] = field(default_factory=list)
    states: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    options: list[int] = field(default_factory=list)
    max_steps: list[int] = field(default_factory=list)
    answers: Counter = field(default_factory=Counter)
    unsolved: list[int] = field(default_factory=list)  # sample ids the oracle cannot answer
    no_step: list[int] = field(default_factory=list)  # sample ids already answerable in their initial state
    load_failures: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return len(self.frames)

    def add(self, sample_id: int, ep: episodes.Episode, fx: episodes.Facts) -> None:
        self.frames.append(len(ep.frames))
        self.states.append(len(ep.states))
        self.steps.append(fx.steps)
        self.options.append(len(ep.options))
        self.max_steps.append(ep.max_steps)
        self.answers[ep.answer] += 1
        if not fx.solved:
            self.unsolved.append(sample_id)
        elif not fx.steps:
            self.no_step.append(sample_id)


def collect(ref: episodes.SourceRef, dataset: Dataset, progress: bool = False) -> tuple[SourceStats, dict]:
    """Statistics of a loaded source, and the facts of every episode by sample id."""
    out = SourceStats(ref, load_failures=len(dataset.failures), dropped=dict(dataset.dropped))
    facts: dict[int, episodes.Facts] = {}
    for item in tqdm(dataset.items, desc=f"{ref.name}: statistics", unit="ep", disable=not progress):
        fx = episodes.facts(item.sample_id, item.episode)
        facts[item.sample_id] = fx
        out.add(item.sample_id, item.episode, fx)
    return out, facts


def spread(values: list[int]) -> str:
    """'min–max (median m)' of integer values, or '–' when there are none."""
    if not values:
        return "–"
    lo, hi, mid = min(values), max(values), statistics.median(values)
    return f"{lo}" if lo == hi else f"{lo}–{hi} (median {mid:g})"


HEADER = ("source", "official name", "samples", "frames", "frames / sample", "categories", "steps to reference",
          "options", "max turns")


def row(s: SourceStats) -> tuple[str, ...]:
    """One table row of a source."""
    return (s.source.name, s.source.official_name, str(s.samples), str(sum(s.frames)), spread(s.frames),
            str(len(s.answers)), spread(s.steps), spread(s.options), spread(s.max_steps))


def markdown_table(all_stats: list[SourceStats]) -> str:
    """The statistics table (Markdown), one row per source and a total row."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(s)) + " |" for s in all_stats]
    if len(all_stats) > 1:
        samples = sum(s.samples for s in all_stats)
        frames = sum(sum(s.frames) for s in all_stats)
        lines.append(f"| **total** | | **{samples}** | **{frames}** | | | | | |")
    return "\n".join(lines)
