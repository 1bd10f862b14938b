"""The episodes of one evaluation: from a pb-build release or an official-layout folder, with kept-id lists.

A release (``manifest.json``) is read from its native shards; an official-layout folder
(``[test/]<Name>_preprocessed.jsonl`` plus images) is imported record by record (``importers``). Like the
official loader, records with ``strong_occlusions == false`` are dropped, and a kept-id list (the official
``FILTER`` or one written by ``pb-build filter``) can be applied. A record that cannot be loaded is returned as
a failure with its reason, so the run can record it.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pb_build.episode import Episode
from pb_build.errors import InvalidEpisode, PbBuildError
from pb_build.eval import sources
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance

JSONL_SUFFIX = "_preprocessed.jsonl"
FILTER_SUFFIX = "_filter.json"


@dataclass(frozen=True)
class Item:
    """One episode to evaluate, with its sample id (the official record id)."""

    sample_id: int
    episode: Episode


@dataclass(frozen=True)
class LoadFailure:
    """A sample that could not be loaded, with the reason."""

    sample_id: int
    key: str
    reason: str


@dataclass
class Dataset:
    """What an evaluation runs on, and where it came from."""

    folder: Path
    kind: str  # "release" or "official"
    source: str
    official_name: str
    items: list[Item] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)
    fingerprint: str = ""  # sha256 of the official JSONL
    kept_ids: str = "all"  # where the kept-id list came from
    dropped: dict[str, int] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # sample ids of items and failures, in file order

    def describe(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "kind": self.kind, "source": self.source,
                "official_name": self.official_name, "official_jsonl_sha256": self.fingerprint,
                "kept_ids": self.kept_ids, "episodes": len(self.items), "load_failures": len(self.failures),
                "dropped": self.dropped}


def test_dir_of(folder: Path) -> Path:
    """The folder holding ``<Name>_preprocessed.jsonl`` files: ``folder/test`` or ``folder`` itself."""
    inner = folder / "test"
    return inner if any(inner.glob(f"*{JSONL_SUFFIX}")) else folder


def read_keep_ids(path: Path, official_name: str) -> set[int]:
    """A kept-id list: a JSON list, a JSON ``{name: [ids]}``, or a Python file assigning ``FILTER = {...}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PbBuildError(f"{path}: cannot read the kept-id list ({exc.strerror or exc})") from exc
    if path.suffix == ".py":
        table = _filter_table(text, path)
    else:
        try:
            table = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PbBuildError(f"{path}: not JSON ({exc})") from exc
    if isinstance(table, dict):
        if official_name not in table:
            raise PbBuildError(f"{path}: no kept-id list for {official_name!r}; it has {', '.join(table)}")
        table = table[official_name]
    if not isinstance(table, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in table):
        raise PbBuildError(f"{path}: a kept-id list must be a list of integer ids")
    return set(table)


def _filter_table(text: str, path: Path) -> Any:
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FILTER" for t in node.targets):
            return ast.literal_eval(node.value)
    raise PbBuildError(f"{path}: no top-level 'FILTER = {{...}}' assignment")


def available_sources(folder: Path) -> list[str]:
    """The official names of the sources a release or an official-layout folder holds."""
    if not folder.is_dir():
        raise PbBuildError(f"{folder}: not a folder")
    if (folder / manifests.MANIFEST).is_file():
        return [e.official_name for e in manifests.read(folder).sources]
    return sorted(p.name[: -len(JSONL_SUFFIX)] for p in test_dir_of(folder).glob(f"*{JSONL_SUFFIX}"))


def has_filter(folder: Path, official_name: str) -> bool:
    """Whether the folder carries the paper's filtered set (a kept-id list) for this source."""
    return (test_dir_of(folder) / f"{official_name}{FILTER_SUFFIX}").is_file()


def load(folder: Path, source: str, *, keep_ids: Path | None = None, filtered: bool | None = False,
         limit: int | None = None) -> Dataset:
    """The episodes of ``source`` in ``folder``, after the loader rules, the kept ids and ``limit``.

    ``filtered=None`` is the paper's evaluation set: the filtered set when the folder carries a kept-id list for
    the source, every sample otherwise (``kept_ids`` says which)."""
    if not folder.is_dir():
        raise PbBuildError(f"{folder}: not a folder")
    errors: tuple[type[BaseException], ...] = (InvalidEpisode, KeyError, TypeError, ValueError, json.JSONDecodeError)
    if (folder / manifests.MANIFEST).is_file():
        data, rows = _release(folder, source)
    else:
        from pb_build.eval.importers import ImportFailure  # the importers need the builders (opencv)

        data, rows = _official(folder, source)
        errors += (ImportFailure,)
    if filtered is None:
        filtered = keep_ids is None and has_filter(folder, data.official_name)
    kept: set[int] | None = None
    if keep_ids is not None:
        kept, data.kept_ids = read_keep_ids(keep_ids, data.official_name), str(keep_ids)
    elif filtered:
        kept, data.kept_ids = _own_filter(folder, data)
    dropped = {"strong_occlusions_false": 0, "not_kept": 0}
    for sample_id, record, load_one in rows:
        if record is not None and record.get("strong_occlusions") is False:
            dropped["strong_occlusions_false"] += 1
            continue
        if kept is not None and sample_id not in kept:
            dropped["not_kept"] += 1
            continue
        if limit is not None and len(data.items) + len(data.failures) >= limit:
            break
        data.order.append(sample_id)
        try:
            data.items.append(Item(sample_id, load_one()))
        except errors as exc:
            key = record.get("image_template", "") if record else ""
            reason = str(exc) if type(exc).__name__ == "ImportFailure" else f"{type(exc).__name__}: {exc}"
            data.failures.append(LoadFailure(sample_id, key, reason))
    data.dropped = dropped
    return data


def _release(folder: Path, source: str) -> tuple[Dataset, Any]:
    from pb_build.writers.native import from_row, read_rows  # needs datasets: only when reading a release

    manifest = manifests.read(folder)
    name, official_name = sources.resolve(source, [(e.source, e.official_name) for e in manifest.sources])
    entry = manifest.entry(name)
    jsonl = folder / entry.files.official
    data = Dataset(folder, "release", name, official_name,
                   fingerprint=provenance.sha256_file(jsonl) if jsonl.is_file() else "")
    shards = [folder / p for p in entry.files.native]
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        raise PbBuildError(f"{folder}: native shard missing: {missing[0]}")

    def rows():
        for row in read_rows(shards):
            record = json.loads(row["official_record"]) if row.get("official_record") else None
            yield row["id"], record, lambda row=row: from_row(row).validate()

    return data, rows()


def _official(folder: Path, source: str) -> tuple[Dataset, Any]:
    from pb_build.eval.importers import get_importer, import_record

    test_dir = test_dir_of(folder)
    names = sorted(p.name[: -len(JSONL_SUFFIX)] for p in test_dir.glob(f"*{JSONL_SUFFIX}"))
    if not names:
        raise PbBuildError(f"{folder}: neither a pb-build release (no manifest.json) nor an official layout "
                           f"(no test/<Name>{JSONL_SUFFIX})")
    from pb_build.builders import REGISTRY

    # (builder name, official name) of each layout in the folder; an unregistered one keeps its official name
    pairs = [(getattr(REGISTRY.by_official_name(o), "name", o), o) for o in names]
    name, official_name = sources.resolve(source, pairs)
    get_importer(official_name)  # fail early, with the list of importers, rather than once per record
    jsonl = test_dir / f"{official_name}{JSONL_SUFFIX}"
    data = Dataset(folder, "official", name, official_name, fingerprint=provenance.sha256_file(jsonl))

    def rows():
        with open(jsonl, encoding="utf-8") as handle:
            for n, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    sample_id = record["id"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise PbBuildError(f"{jsonl}:{n}: not an official record ({exc})") from exc
                yield sample_id, record, lambda r=record: import_record(official_name, r, test_dir)

    return data, rows()


def _own_filter(folder: Path, data: Dataset) -> tuple[set[int], str]:
    path = test_dir_of(folder) / f"{data.official_name}{FILTER_SUFFIX}"
    if not path.is_file():
        raise PbBuildError(f"{folder}: no kept-id list for {data.official_name} ({path.name}); run "
                           "`pb-build filter` first or pass --keep-ids")
    return read_keep_ids(path, data.official_name), str(path)
