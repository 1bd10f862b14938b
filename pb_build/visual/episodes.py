"""A release's sources and episodes (read back by ``pb_build.eval.data``), and what each episode's machine does.

``facts`` plays the oracle over an episode's state machine: the states it visits from the initial state to the
one that accepts the answer on the reference frame are the episode's path from unanswerable to answerable; its
length minus one is the number of proactive steps to the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pb_build.episode import Episode
from pb_build.errors import PbBuildError
from pb_build.eval import data
from pb_build.eval.sources import alias, resolve
from pb_build.manifests import manifest as manifests
from pb_build.replay import oracle, play
from pb_build.strings import is_abstain


@dataclass(frozen=True)
class SourceRef:
    """One source of a release: builder name, official name and the paper's alias."""

    name: str
    official_name: str
    alias: str
    samples: int


def release_sources(release: Path) -> list[SourceRef]:
    """The sources a release holds, in manifest order."""
    if not (release / manifests.MANIFEST).is_file():
        raise PbBuildError(f"{release}: not a pb-build release (no {manifests.MANIFEST})")
    return [SourceRef(e.source, e.official_name, alias(e.official_name), e.counts.samples)
            for e in manifests.read(release).sources]


def pick_sources(release: Path, wanted: list[str] | None) -> list[SourceRef]:
    """The sources named in ``wanted`` (builder name, official name or alias), or all of them."""
    refs = release_sources(release)
    if not wanted:
        return refs
    picked = []
    for query in wanted:
        name, _ = resolve(query, [(r.name, r.official_name) for r in refs])
        picked.extend(r for r in refs if r.name == name and r not in picked)
    return picked


def load(release: Path, source: str, ids: list[int] | None = None, limit: int | None = None) -> data.Dataset:
    """The episodes of ``source`` (all, the first ``limit``, or those with the sample ids ``ids``)."""
    if ids:
        # Release ids count up from 0 in file order, so reading up to the largest one is enough; read all otherwise.
        dataset = data.load(release, source, limit=max(ids) + 1)
        by_id = {item.sample_id: item for item in dataset.items}
        if any(i not in by_id for i in ids):
            dataset = data.load(release, source)
            by_id = {item.sample_id: item for item in dataset.items}
        missing = [i for i in ids if i not in by_id]
        if missing:
            why = (" (rows with strong_occlusions=false are left out, as by the official loader)"
                   if dataset.dropped.get("strong_occlusions_false") else "")
            raise PbBuildError(f"{release}: {dataset.source} has no sample id {missing[0]} to show{why}")
        dataset.items = [by_id[i] for i in ids]
        return dataset
    return data.load(release, source, limit=limit)


@dataclass(frozen=True)
class Facts:
    """What a viewer needs to know about an episode's machine."""

    sample_id: int
    path: tuple[int, ...]  # states the oracle visits, initial first
    moves: tuple[str, ...]  # the options it chooses between them
    solved: bool  # the oracle ends with the correct answer
    option_valid_in: tuple[int, ...]  # per option: in how many states it is a valid move
    reference_states: tuple[int, ...]  # states that show the reference frame

    @property
    def steps(self) -> int:
        """Proactive steps from the initial state to the answerable one."""
        return len(self.moves)


def facts(sample_id: int, ep: Episode) -> Facts:
    """Play the oracle over ``ep`` and count where each option is valid."""
    rep = play(ep, oracle)
    path = tuple(t.state for t in rep.turns)
    moves = tuple(t.answer for t in rep.turns[:-1]) if rep.correct else tuple(t.answer for t in rep.turns)
    valid_in = tuple(sum(i in st.valid for st in ep.states) for i in range(len(ep.options)))
    refs = tuple(i for i, st in enumerate(ep.states) if st.frame == ep.reference_frame)
    return Facts(sample_id, path, moves, rep.correct, valid_in, refs)


def option_mark(ep: Episode, fx: Facts, index: int) -> str:
    """How an option behaves: 'abstain', 'valid' (a move in some state) or 'never valid'."""
    if index in ep.abstain or is_abstain(ep.options[index]) and not fx.option_valid_in[index]:
        return "abstain"
    return "valid" if fx.option_valid_in[index] else "never valid"


def pick_states(ep: Episode, fx: Facts, limit: int) -> list[int]:
    """At most ``limit`` state indices in state order: all of them, or evenly spaced ones that always include
    the initial state and the end of the oracle path."""
    n = len(ep.states)
    if n <= limit:
        return list(range(n))
    must = {ep.initial_state, fx.path[-1]}
    room = max(limit - len(must), 2)
    spaced = {round(k * (n - 1) / (room - 1)) for k in range(room)}
    return sorted(must | spaced)


def compress_moves(moves: tuple[str, ...]) -> str:
    """'Rewind the video. x3, Wait ... x1' style summary of consecutive repeated moves."""
    parts: list[str] = []
    for move in moves:
        if parts and parts[-1][0] == move:
            parts[-1][1] += 1
        else:
            parts.append([move, 1])
    return ", ".join(f"{m} ×{k}" if k > 1 else m for m, k in parts)
