"""Release recipes: a YAML file naming a release, its version, and per source the raw location, parameters and seed.

```yaml
release: proactivebench-pb
version: 1.0.0
sources:
  quickdraw:
    raw: fetch            # 'fetch' (download into the cache), 'sample' (bundled demo data), or a folder
    seed: 0
    parameters: {per_class: 10}
```

A relative ``raw`` folder is resolved against the recipe's own folder. ``--raw SOURCE=DIR`` on the command
line overrides it. Bundled recipes live next to this module in ``recipes/`` and can be named without a path.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pb_build.builders import get_builder
from pb_build.errors import PbBuildError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
RAW_KEYWORDS = ("fetch", "sample")


@dataclass(frozen=True)
class RecipeSource:
    """One source of a recipe."""

    source: str
    raw: str
    seed: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)

    def config(self) -> Any:
        """The builder's validated Config for this source."""
        return get_builder(self.source).Config(seed=self.seed, **self.parameters)


@dataclass(frozen=True)
class Recipe:
    """A whole release: its name, version and sources, in build order."""

    release: str
    version: str
    sources: tuple[RecipeSource, ...]
    path: Path | None = None
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The normalised recipe, as recorded in the manifest (raw locations of folders are not recorded)."""
        body: dict[str, Any] = {"description": self.description} if self.description else {}
        return body | {
            "release": self.release,
            "version": self.version,
            "sources": {s.source: {"raw": s.raw if s.raw in RAW_KEYWORDS else "folder", "seed": s.seed,
                                   "parameters": s.parameters} for s in self.sources},
        }


def resolve_recipe_path(name_or_path: str) -> Path:
    """A recipe file path, or a bundled recipe name such as ``sample`` or ``paper``."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    bundled = RECIPES_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise PbBuildError(f"{name_or_path}: no such recipe file (bundled recipes: {known})")


def load_recipe(name_or_path: str) -> Recipe:
    """Read and validate a recipe; every problem is one line naming the file and the key."""
    path = resolve_recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PbBuildError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # YAML's messages span lines
        raise PbBuildError(f"{where}: not valid YAML ({problem})") from None
    return parse_recipe(_paired(data, path), path)


def _paired(value: Any, path: Path) -> Any:
    """``value`` with each string's UTF-16 surrogate escapes joined into characters, as JSON reads them (YAML keeps
    ``"\\ud83d\\ude00"`` as two surrogates); a lone surrogate is an error naming the file."""
    if isinstance(value, str):
        if not any("\ud800" <= ch <= "\udfff" for ch in value):
            return value
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise PbBuildError(f"{path}: the text {value!r} holds an unpaired UTF-16 surrogate escape") from None
    if isinstance(value, dict):
        return {_paired(k, path): _paired(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_paired(v, path) for v in value]
    return value


def parse_recipe(data: Any, path: Path) -> Recipe:
    """Validate the parsed YAML of a recipe."""
    if not isinstance(data, dict):
        raise PbBuildError(f"{path}: a recipe is a mapping with release, version and sources")
    unknown = set(data) - {"release", "version", "sources", "description"}
    if unknown:
        raise PbBuildError(f"{path}: unknown key(s) {', '.join(sorted(str(k) for k in unknown))}")
    release, version, sources = data.get("release"), data.get("version"), data.get("sources")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise PbBuildError(f"{path}: 'description' must be a string")
    if not isinstance(release, str) or not release:
        raise PbBuildError(f"{path}: 'release' must be a non-empty string")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise PbBuildError(f"{path}: 'version' must be a string MAJOR.MINOR.PATCH, got {version!r}")
    if not isinstance(sources, dict) or not sources:
        raise PbBuildError(f"{path}: 'sources' must map source names to their settings")
    parsed = tuple(_parse_source(name, spec, path) for name, spec in sources.items())
    return Recipe(release, version, parsed, path, description.strip())


def _parse_source(name: Any, spec: Any, path: Path) -> RecipeSource:
    where = f"{path}: sources.{name}"
    try:
        builder = get_builder(str(name))
    except PbBuildError as err:
        raise PbBuildError(f"{where}: {err}") from None
    if not isinstance(spec, dict):
        raise PbBuildError(f"{where}: must be a mapping with raw, seed and parameters")
    unknown = set(spec) - {"raw", "seed", "parameters"}
    if unknown:
        raise PbBuildError(f"{where}: unknown key(s) {', '.join(sorted(str(k) for k in unknown))}")
    raw, seed, params = spec.get("raw", "fetch"), spec.get("seed", 0), spec.get("parameters") or {}
    if not isinstance(raw, str) or not raw:
        raise PbBuildError(f"{where}.raw: must be 'fetch', 'sample' or a folder")
    if raw not in RAW_KEYWORDS:
        folder = Path(raw).expanduser()
        raw = str(folder if folder.is_absolute() else (path.parent / folder).resolve())
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise PbBuildError(f"{where}.seed: must be an integer")
    if not isinstance(params, dict):
        raise PbBuildError(f"{where}.parameters: must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(builder.Config) if f.name != "seed"}
    bad = sorted(str(k) for k in set(params) - set(fields))
    if bad:
        raise PbBuildError(f"{where}.parameters: unknown parameter(s) {', '.join(bad)} "
                           f"(known: {', '.join(sorted(fields))})")
    for key, value in params.items():
        expected = type(fields[key].default)
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if not ok and not (expected is float and isinstance(value, int) and not isinstance(value, bool)):
            raise PbBuildError(f"{where}.parameters.{key}: must be {expected.__name__}, got {value!r}")
    source = RecipeSource(builder.name, raw, seed, dict(params))
    try:
        source.config()
    except (TypeError, PbBuildError) as err:
        raise PbBuildError(f"{where}.parameters: {err}") from None
    return source


def _pairs(pairs: tuple[str, ...], option: str, form: str, example: str) -> list[tuple[str, Path]]:
    """``NAME=PATH`` pairs of a repeatable option (``form`` and ``example`` are shown in the error)."""
    out = []
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise PbBuildError(f"{option} {pair!r}: expected {form}, e.g. {option} {example}")
        out.append((name, Path(path).expanduser()))
    return out


def parse_raw_overrides(pairs: tuple[str, ...]) -> dict[str, Path]:
    """``SOURCE=DIR`` pairs from the command line."""
    given = _pairs(pairs, "--raw", "SOURCE=DIR", "quickdraw=~/data/quickdraw")
    return {get_builder(name).name: path for name, path in given}


def parse_table_overrides(pairs: tuple[str, ...]) -> dict[str, Path]:
    """``NAME=PATH`` pairs from the command line (new locations of user tables)."""
    return dict(_pairs(pairs, "--table", "NAME=PATH", "labels=~/vsod/labels.csv"))


def source_jobs(sources: tuple[RecipeSource, ...], overrides: dict[str, Path], cache_dir: Path | None,
                progress: bool, *, out: Path | None = None, overwrite: bool = False,
                recorded_tables: dict[str, dict[str, Any]] | None = None) -> list[Any]:
    """One release job per source, with its raw folder located (fetched into the cache when asked).

    Every cheap precondition is checked before anything is downloaded: raw folders exist, sources that cannot be
    fetched have one, user tables are present, and ``out`` may be written. All problems are reported together.
    """
    from pb_build.build import SourceJob, resolve_tables
    from pb_build.release_folder import check_target

    unknown = sorted(set(overrides) - {s.source for s in sources})
    if unknown:
        raise PbBuildError(f"--raw given for source(s) not in the recipe: {', '.join(unknown)}")
    jobs: list[Any] = []
    to_fetch: list[int] = []
    problems: list[str] = []
    for src in sources:
        builder, config = get_builder(src.source), src.config()
        raw: Path | None = None
        if src.source in overrides:
            raw = overrides[src.source]
        elif src.raw == "sample":
            raw = builder.sample_dir()
            if raw is None:
                problems.append(f"{src.source} has no bundled sample; pass --raw {src.source}=DIR")
        elif src.raw == "fetch":
            if _cannot_fetch(builder):
                try:
                    raw = builder.fetch(config, cache_dir, progress)  # raises at once, with how to get the data
                except PbBuildError as err:
                    problems.append(f"{src.source}: {err} (--raw {src.source}=DIR)")
            else:
                to_fetch.append(len(jobs))
        else:
            raw = Path(src.raw)
        if raw is not None and src.raw != "fetch" and not raw.is_dir():
            problems.append(f"{raw}: raw folder of {src.source} does not exist")
            raw = None
        job = SourceJob(builder, config, raw if raw is not None else Path(), sample=src.raw == "sample"
                        and src.source not in overrides, fetched=src.raw == "fetch" and src.source not in overrides,
                        expected_tables=(recorded_tables or {}).get(src.source, {}))
        if raw is not None:
            try:
                resolve_tables(job)
            except PbBuildError as err:
                problems.append(str(err))
        jobs.append(job)
    if out is not None:
        try:
            check_target(out.resolve(), overwrite)
        except PbBuildError as err:
            problems.append(str(err))
    if problems:
        raise PbBuildError("; ".join(problems) if len(problems) == 1 else
                           f"{len(problems)} problems, nothing was downloaded or built: " + "; ".join(problems))
    for i in to_fetch:
        job = jobs[i]
        job.raw = job.builder.fetch(job.config, cache_dir, progress)
    return jobs


def _cannot_fetch(builder: Any) -> bool:
    """Whether the source must be downloaded by hand (its ``fetch`` only raises, so calling it is free)."""
    return not getattr(builder, "can_fetch", True)
