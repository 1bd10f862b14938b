"""Per-source statistics of a release: samples, frames per sample, categories, steps to the reference, options.

``collect`` reads one source and keeps only small per-episode facts, so a source of any size is summarised with
the memory of one loaded source; ``markdown_table`` gives the statistics table of galleries and dataset cards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from pb_build.eval.data import Dataset
from pb_build.visual import episodes


@dataclass(kw_only=True)
class Tally:
    """Per-episode numbers of a set of episodes, kept as histograms ({value: episodes}): the tallies of a
    release's shards are built by the workers and merged, so nobody re-reads the frames to describe them."""

    frames: Counter = field(default_factory=Counter)
    states: Counter = field(default_factory=Counter)
    steps: Counter = field(default_factory=Counter)
    options: Counter = field(default_factory=Counter)
    max_steps: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)
    unsolved: list[int] = field(default_factory=list)  # sample ids the oracle cannot answer
    no_step: list[int] = field(default_factory=list)  # sample ids already answerable in their initial state

    @property
    def samples(self) -> int:
        return self.frames.total()

    def add(self, sample_id: int, ep: episodes.Episode, fx: episodes.Facts) -> None:
        """Count one episode."""
        self.frames[len(ep.frames)] += 1
        self.states[len(ep.states)] += 1
        self.steps[fx.steps] += 1
        self.options[len(ep.options)] += 1
        self.max_steps[ep.max_steps] += 1
        self.answers[ep.answer] += 1
        if not fx.solved:
            self.unsolved.append(sample_id)
        elif not fx.steps:
            self.no_step.append(sample_id)

    def merge(self, other: Tally, id_offset: int = 0) -> None:
        """Add ``other``'s counts, its sample ids shifted by ``id_offset``."""
        for name in HISTOGRAMS:
            getattr(self, name).update(getattr(other, name))
        self.unsolved += [i + id_offset for i in other.unsolved]
        self.no_step += [i + id_offset for i in other.no_step]

    def to_dict(self) -> dict:
        """A JSON-able form (histogram keys become strings, as JSON needs)."""
        body: dict = {name: {str(k): v for k, v in sorted(getattr(self, name).items())} for name in HISTOGRAMS}
        return {**body, "unsolved": self.unsolved, "no_step": self.no_step}

    @classmethod
    def from_dict(cls, body: dict) -> Tally:
        """The inverse of :meth:`to_dict`."""
        counts = {name: Counter({(k if name == "answers" else int(k)): v for k, v in body[name].items()})
                  for name in HISTOGRAMS}
        return cls(**counts, unsolved=list(body["unsolved"]), no_step=list(body["no_step"]))


HISTOGRAMS = ("frames", "states", "steps", "options", "max_steps", "answers")


@dataclass
class SourceStats(Tally):
    """What a source holds, per episode reduced to a few numbers."""

    source: episodes.SourceRef
    load_failures: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def collect(ref: episodes.SourceRef, dataset: Dataset, progress: bool = False) -> tuple[SourceStats, dict]:
    """Statistics of a loaded source, and the facts of every episode by sample id."""
    out = SourceStats(ref, load_failures=len(dataset.failures), dropped=dict(dataset.dropped))
    facts: dict[int, episodes.Facts] = {}
    for item in tqdm(dataset.items, desc=f"{ref.name}: statistics", unit="ep", disable=not progress):
        fx = episodes.facts(item.sample_id, item.episode)
        facts[item.sample_id] = fx
        out.add(item.sample_id, item.episode, fx)
    return out, facts


def spread(histogram: Counter) -> str:
    """'min–max (median m)' of integer values given as {value: count}, or '–' when there are none."""
    if not histogram.total():
        return "–"
    lo, hi = min(histogram), max(histogram)
    return f"{lo}" if lo == hi else f"{lo}–{hi} (median {median(histogram):g})"


def median(histogram: Counter) -> float:
    """The median of the values a {value: count} histogram holds (the mean of the middle two for an even count)."""
    n = histogram.total()
    middle, seen, low = ((n - 1) // 2, n // 2), 0, None
    for value in sorted(histogram):
        seen += histogram[value]
        if low is None and seen > middle[0]:
            low = value
        if seen > middle[1]:
            return (low + value) / 2
    raise ValueError("the median of no values")


def total(histogram: Counter) -> int:
    """The sum of the values a {value: count} histogram holds."""
    return sum(value * count for value, count in histogram.items())


HEADER = ("source", "official name", "samples", "frames", "frames / sample", "categories", "steps to reference",
          "options", "max turns")


def row(s: SourceStats) -> tuple[str, ...]:
    """One table row of a source."""
    return (s.source.name, s.source.official_name, str(s.samples), str(total(s.frames)), spread(s.frames),
            str(len(s.answers)), spread(s.steps), spread(s.options), spread(s.max_steps))


def markdown_table(all_stats: list[SourceStats]) -> str:
    """The statistics table (Markdown), one row per source and a total row."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(s)) + " |" for s in all_stats]
    if len(all_stats) > 1:
        samples = sum(s.samples for s in all_stats)
        frames = sum(total(s.frames) for s in all_stats)
        lines.append(f"| **total** | | **{samples}** | **{frames}** | | | | | |")
    return "\n".join(lines)
