"""The source contract: everything pb-build knows about one source, behind one typed interface.

A source is a :class:`Source`: configuration (a ``Config`` dataclass, whose fields become CLI options), planning
and building episodes, fetching, the bundled sample, licence and citation (:class:`SourceInfo`), the official
export and import (:class:`OfficialSpec`, :meth:`Source.import_record`, :meth:`Source.reachable_paths`), the
open-ended answers and the reference prompt. Built-in sources are a builder module (``builders/<s>.py``) plus its
official-layout module (``builders/<s>_official.py``) wrapped by :class:`ModuleSource`; a third-party package may
register a module of the same shape, a Source subclass or a Source instance under the ``pb_build.sources``
entry-point group.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from pb_build.episode import Episode, EpisodeSpec
from pb_build.errors import BadRecord, Ineligible, InvalidEpisode, PbBuildError
from pb_build.official import ACTION_KEYS, FIELD_TYPES, RecordContract, check_record
from pb_build.source_info import SourceInfo  # noqa: F401  (re-exported: builders import it from here)
from pb_build.strings import is_abstain

OnBad = Callable[[BadRecord], None] | None
ANSWERABLE_AT_ONCE = "answerable in its first state"  # the Ineligible reason of an episode that needs no help

#: The abstain options every built-in source draws one from (the official wording).
ABSTAIN = ("I cannot tell.", "I cannot answer this question.", "I do not know what is this object.")


@dataclass(frozen=True)
class OfficialSpec:
    """How a source appears in the official layout and in the paper's tables.

    ``extra_fields`` maps each record field beyond the common ones to a type name of
    :data:`pb_build.official.FIELD_TYPES`; ``actions`` is the action space (values of the official action map).
    """

    alias: str
    actions: frozenset[str]
    extra_fields: Mapping[str, str] = field(default_factory=dict)
    oeg_threshold: int = 1
    reference_prompt: str = ""  # empty: reference mode asks the record's own prompt
    one_key: bool = True  # every proactive option holds exactly one action key (else at least one)
    cot_prompt: str = ""  # the official environment's chain-of-thought lead-in (CoT and ICL experiments only)
    option_field: str = ""  # a record field that must be one of the options, instead of the action-key check


@dataclass(frozen=True)
class WorkUnit:
    """A picklable description of one sample, planned in the main process and built in a worker."""

    key: str
    payload: Any


@dataclass
class Plan:
    """The planned work of one build, in release order, plus what the manifest must record."""

    units: Iterable[WorkUnit]  # a list, or an iterator when the builder streams its raw records
    raw_files: list[Path | str]  # every raw file read, under raw_root (strings: cheaper for many thousands)
    raw_root: Path
    notes: dict[str, Any] = field(default_factory=dict)
    total: int | None = None  # how many units a streamed plan yields (at most), when cheap to count
    ineligible: list[Ineligible] = field(default_factory=list)  # valid raw items the source's rules exclude

    def size(self) -> int | None:
        """The number of planned units when known (progress bars show a total and an ETA then)."""
        return len(self.units) if isinstance(self.units, Sized) else self.total


class ImportFailure(PbBuildError):
    """One official record that cannot be turned into an episode (missing or unreadable frame, bad fields)."""


def read_frame(test_dir: Path, rel: str) -> bytes:
    """The bytes of one frame file named by a template, relative to ``test_dir``."""
    path = test_dir / rel
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailure(f"frame {rel}: {exc.strerror or exc}") from exc
    if not data:
        raise ImportFailure(f"frame {rel}: empty file")
    return data


def with_reference(paths: list[str], reference: str) -> tuple[list[str], int]:
    """The frame paths an import reads and the index of the reference frame among them (appended when the
    reachable frames do not include it)."""
    if reference in paths:
        return paths, paths.index(reference)
    return [*paths, reference], len(paths)


def record_episode(record: dict[str, Any], *, source: str, key: str, **machine: Any) -> Episode:
    """An imported episode: the official record's prompt, options, categories and answer, plus the state machine,
    frames and limits the source's import rebuilt (``machine``)."""
    return Episode(source=source, key=key, prompt=record["prompt"], options=tuple(record["options"]),
                   categories=tuple(record["categories"]), answer=record["answer"], **machine)


def option_roles(options: tuple[str, ...], roles: tuple[Callable[[str], bool], ...], expected: str) -> tuple[int, ...]:
    """The index of the one proactive option matching each role, then of the abstain option; an official record
    whose options are not exactly these is an ImportFailure saying what was ``expected``."""
    picks = [[i for i, o in enumerate(options) if not is_abstain(o) and role(o)] for role in roles]
    picks.append([i for i, o in enumerate(options) if is_abstain(o)])
    if len(options) != len(picks) or any(len(p) != 1 for p in picks) or len({p[0] for p in picks}) != len(picks):
        raise ImportFailure(f"options must be {expected}, are {list(options)}")
    return tuple(p[0] for p in picks)


class Source:
    """One source of the benchmark. Subclasses set the attributes and implement the methods marked abstract."""

    name: str
    VERSION: str
    RELEASE_NOTES: dict[str, str]
    Config: type
    info: SourceInfo
    official: OfficialSpec
    origin: str = "built-in"  # or the name of the distribution that registered it

    @property
    def modules(self) -> tuple[ModuleType, ...]:
        """The modules that define this source (for provenance fingerprints)."""
        return (sys.modules[type(self).__module__],)

    @property
    def __file__(self) -> str:  # the driver fingerprints ``builder.__file__`` (a module or a Source)
        return str(self.modules[0].__file__)

    # ------------------------------------------------------------------ building (abstract: plan, make_episode)
    def sample_dir(self) -> Path | None:
        """The bundled sample raw folder, if the source ships one."""
        return None

    def fetch(self, config: Any, cache_dir: Path | None, progress: bool) -> Path:
        """Fill the cache with the raw files ``config`` needs and return the raw folder."""
        raise PbBuildError(f"{self.name} cannot fetch its raw data; pass --raw with the source's files")

    @property
    def can_fetch(self) -> bool:
        """Whether ``fetch`` downloads the raw data (otherwise it only raises, saying how to get it)."""
        return type(self).fetch is not Source.fetch

    def plan(self, raw: Path, config: Any, on_bad: OnBad) -> Plan:
        """Read the raw folder and return the work units in their final order."""
        raise NotImplementedError

    def make_episode(self, unit: WorkUnit, config: Any) -> Episode:
        """Turn one work unit into an episode (pure; runs in worker processes)."""
        raise NotImplementedError

    def build(self, unit: WorkUnit, config: Any) -> Episode:
        """The validated episode of one work unit, carrying the source's spec.

        An episode already answerable in its first state (its initial state shows the reference frame and accepts
        the answer) asks for no help, so it is :class:`Ineligible`, for every source.
        """
        ep = self._checked(self.make_episode(unit, config))
        first = ep.states[ep.initial_state]
        if first.answer_valid and first.frame == ep.reference_frame:
            raise Ineligible(ep.key, ANSWERABLE_AT_ONCE, f"its first state shows the reference frame {first.frame}")
        return ep

    # ------------------------------------------------- official layout (abstract: import_episode, reachable_paths)
    def import_episode(self, record: dict[str, Any], test_dir: Path) -> Episode:
        """The episode of one official record (already checked), reading its frames under ``test_dir``."""
        raise NotImplementedError

    def reachable_paths(self, record: dict[str, Any]) -> list[str]:
        """Every image path (relative to ``test/``) the official environment can open for ``record``."""
        raise NotImplementedError

    def action_space(self, record: dict[str, Any]) -> frozenset[str]:
        """The actions of one record (the source's action space unless a record narrows it)."""
        return self.official.actions

    def contract(self, record: dict[str, Any]) -> RecordContract:
        """The official record contract of ``record``."""
        spec = self.official
        return RecordContract(dict(spec.extra_fields), tuple(sorted(self.action_space(record))), spec.one_key,
                              spec.option_field)

    def check_record(self, record: dict[str, Any]) -> list[str]:
        """Problems of one official record: the generic contract, then the images the template names."""
        problems = check_record(record, self.contract(record))
        if not problems:
            try:
                self.reachable_paths(record)
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                problems.append(f"image_template does not format: {exc!r}")
        return problems

    def import_record(self, record: dict[str, Any], test_dir: Path) -> Episode:
        """Check and import one official record; any problem is an ImportFailure naming the record."""
        where = f"{self.info.official_name} record {record.get('id')}"
        problems = self.check_record(record)
        if problems:
            raise ImportFailure(f"{where}: {'; '.join(problems)}")
        try:
            return self._checked(self.import_episode(record, test_dir))
        except ImportFailure as exc:
            raise ImportFailure(f"{where}: {exc}") from exc
        except (PbBuildError, KeyError, TypeError, ValueError, IndexError, OSError) as exc:
            raise ImportFailure(f"{where}: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ evaluation (abstract: oeg_answers)
    def oeg_answers(self, ep: Episode) -> str:
        """The official open-ended valid answers at the episode's first state."""
        raise NotImplementedError

    def spec(self, ep: Episode) -> EpisodeSpec:
        """What evaluating and verifying ``ep`` needs, as data."""
        record = ep.official.record if ep.official is not None else {}
        return EpisodeSpec(
            alias=self.official.alias, reference_prompt=self.official.reference_prompt or ep.prompt,
            oeg_answers=self.oeg_answers(ep), oeg_threshold=self.official.oeg_threshold,
            contract=self.contract(record).to_json(),
            reachable=tuple(self.reachable_paths(record)) if record else (), cot_prompt=self.official.cot_prompt,
        )

    def _checked(self, ep: Episode) -> Episode:
        try:
            if ep.source != self.name:
                raise InvalidEpisode(f"episode {ep.key}: its source is {ep.source!r}, not {self.name!r}")
            return ep.with_spec(self.spec(ep)).validate()
        except InvalidEpisode as exc:
            raise InvalidEpisode(f"source {self.name}: {exc}") from exc


class ModuleSource(Source):
    """A source defined by module attributes: a builder module and (optionally separate) official module."""

    BUILDER_ATTRS = ("name", "VERSION", "RELEASE_NOTES", "Config", "info", "plan", "build")
    OFFICIAL_ATTRS = ("OFFICIAL", "import_record", "reachable_paths", "oeg_answers")

    def __init__(self, builder: ModuleType, official: ModuleType | None = None, origin: str = "built-in"):
        official = official or builder
        missing = [a for a in self.BUILDER_ATTRS if not hasattr(builder, a)]
        missing += [a for a in self.OFFICIAL_ATTRS if not hasattr(official, a)]
        if missing:
            raise PbBuildError(f"missing attribute(s) {', '.join(missing)}")
        self.module, self.official_module, self.origin = builder, official, origin
        self.name, self.VERSION, self.Config = builder.name, builder.VERSION, builder.Config
        self.RELEASE_NOTES, self.info, self.official = builder.RELEASE_NOTES, builder.info, official.OFFICIAL

    @property
    def modules(self) -> tuple[ModuleType, ...]:
        return (self.module,) if self.official_module is self.module else (self.module, self.official_module)

    def sample_dir(self) -> Path | None:
        hook = getattr(self.module, "sample_dir", None)
        return hook() if hook else None

    def fetch(self, config: Any, cache_dir: Path | None, progress: bool) -> Path:
        hook = getattr(self.module, "fetch", None)
        return hook(config, cache_dir, progress) if hook else super().fetch(config, cache_dir, progress)

    @property
    def can_fetch(self) -> bool:
        return bool(getattr(self.module, "CAN_FETCH", hasattr(self.module, "fetch")))

    def plan(self, raw: Path, config: Any, on_bad: OnBad) -> Plan:
        return self.module.plan(raw, config, on_bad)

    def make_episode(self, unit: WorkUnit, config: Any) -> Episode:
        return self.module.build(unit, config)

    def import_episode(self, record: dict[str, Any], test_dir: Path) -> Episode:
        return self.official_module.import_record(record, test_dir)

    def reachable_paths(self, record: dict[str, Any]) -> list[str]:
        return self.official_module.reachable_paths(record)

    def action_space(self, record: dict[str, Any]) -> frozenset[str]:
        hook = getattr(self.official_module, "action_space", None)
        return hook(record) if hook else self.official.actions

    def oeg_answers(self, ep: Episode) -> str:
        return self.official_module.oeg_answers(ep)


def contract_problems(source: Source) -> list[str]:
    """What makes ``source`` unusable, checked once at registration."""
    out = []
    for attr, kind in (("name", str), ("VERSION", str), ("info", SourceInfo), ("official", OfficialSpec)):
        if not isinstance(getattr(source, attr, None), kind):
            out.append(f"{attr} must be a {kind.__name__}")
    config = getattr(source, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        out.append("Config must be a dataclass")
    elif "seed" not in {f.name for f in dataclasses.fields(config)}:
        out.append("Config needs a seed field")
    if out:
        return out
    unknown = set(source.official.actions) - set(ACTION_KEYS.values())
    if unknown:
        out.append(f"official.actions has actions outside the official action map: {sorted(unknown)}")
    bad_types = {f: t for f, t in source.official.extra_fields.items() if t not in FIELD_TYPES}
    if bad_types:
        out.append(f"official.extra_fields has unknown types {bad_types} (known: {', '.join(FIELD_TYPES)})")
    for method in ("plan", "make_episode", "import_episode", "reachable_paths", "oeg_answers"):
        if getattr(type(source), method, None) is getattr(Source, method):
            out.append(f"{method}() is not implemented")
    return out


def iter_units(units: Iterable[WorkUnit]) -> Iterator[WorkUnit]:
    """Check keys are unique while iterating (duplicate keys would make ids ambiguous)."""
    seen = KeyDigests()
    for unit in units:
        if not seen.add(unit.key):
            raise BadRecord(unit.key, "duplicate sample key")
        yield unit


class KeyDigests:
    """A set of keys held as 64-bit digests: 8 bytes a key in a sorted numpy array, plus a set of the latest
    ones (a set of 16-byte digests took about 100 bytes a key: 10 MiB per 100,000 samples in the parent). Two
    different keys share a digest with odds of about 3e-8 among a million keys."""

    def __init__(self) -> None:
        self.sorted = np.empty(0, np.uint64)
        self.latest: set[int] = set()

    def add(self, key: str) -> bool:
        """Add ``key``; False when it was already there."""
        digest = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                "little")
        if digest in self.latest:
            return False
        if self.sorted.size:
            value = np.uint64(digest)  # a Python int would make numpy convert the whole array
            at = self.sorted.searchsorted(value)
            if at < self.sorted.size and self.sorted[at] == value:
                return False
        self.latest.add(digest)
        if len(self.latest) >= max(4096, self.sorted.size // 8):  # merges cost O(n log n) over a whole plan
            merged = np.concatenate([self.sorted, np.fromiter(self.latest, np.uint64, len(self.latest))])
            merged.sort()
            self.sorted, self.latest = merged, set()
        return True


#: The contract's former name (a Protocol over builder modules), kept for callers' type hints.
Builder = Source
