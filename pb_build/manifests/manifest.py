"""The typed ``manifest.json`` of a release: read and written only here.

A release manifest records the tool version, the recipe, and per source its parameters, seed, raw inputs, user
tables (by file name and sha256, never a machine path), counts, keys and files, so the release can be rebuilt.
``manifest_version`` grows when the layout changes; a manifest this version of pb-build cannot read (not JSON,
missing keys, wrong types, a newer version) is one clear error naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pb_build import __version__, plain
from pb_build.errors import PbBuildError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_SPLIT = "test"


class ManifestError(PbBuildError):
    """A manifest that cannot be read."""


@dataclass
class RawInputs:
    """How the raw folder was obtained ('sample', 'fetch' or 'folder') and every raw file (path, size, sha256)."""

    kind: str
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Table:
    """A user-supplied table (e.g. VSOD labels): its file name and content hash."""

    file: str
    sha256: str


@dataclass
class Counts:
    samples: int
    frames: int
    official_files: int
    skipped: int


@dataclass
class Files:
    """Where a source's data lies in the release: the official JSONL and the native parquet shards."""

    official: str
    native: list[str]


@dataclass
class SourceEntry:
    """Everything recorded about one source of a release."""

    source: str
    official_name: str
    builder_version: str
    builder_sha256: str
    parameters: dict[str, Any]
    seed: int
    raw: RawInputs
    counts: Counts
    files: Files
    licence: str
    notes: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)
    official_fields: list[str] = field(default_factory=list)
    filter: dict[str, Any] | None = None
    # Valid raw items the source's eligibility rules excluded: how many per reason, and each one.
    ineligible: dict[str, int] = field(default_factory=dict)
    ineligible_items: list[dict[str, Any]] = field(default_factory=list)
    # The source's card metadata (title, licence, attribution, homepage, citation, description), so the card and
    # verify need no source code.
    info: dict[str, str] = field(default_factory=dict)

    @property
    def synthetic_sample(self) -> bool:
        """Whether the source was built from pb-build's bundled synthetic sample."""
        return self.raw.kind == "sample"


@dataclass
class Manifest:
    """A release's manifest."""

    sources: list[SourceEntry]
    release: dict[str, Any] | None = None
    split: str = DEFAULT_SPLIT
    writer: dict[str, Any] = field(default_factory=dict)
    pb_build_version: str = __version__
    manifest_version: int = MANIFEST_VERSION

    def entry(self, source: str) -> SourceEntry:
        """The entry of ``source`` (its registry name)."""
        for e in self.sources:
            if e.source == source:
                return e
        raise PbBuildError(f"{source} is not in this release (it has {', '.join(e.source for e in self.sources)})")

    def to_dict(self) -> dict[str, Any]:
        body = plain.to_plain(self)
        for e in body["sources"]:
            if e["filter"] is None:
                del e["filter"]
        return body


@dataclass
class TrainSplitManifest:
    """The manifest of a ``train-split`` output folder."""

    parameters: dict[str, Any]
    report: dict[str, Any]
    counts: dict[str, int]
    rows: list[list[Any]]
    pb_build_version: str = __version__
    manifest_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "train-split", "manifest_version": self.manifest_version,
                "pb_build_version": self.pb_build_version, "parameters": self.parameters, **self.report,
                "counts": self.counts, "rows": self.rows}


def dumps(body: dict[str, Any]) -> str:
    """The deterministic text of a manifest (sorted keys, no timestamps)."""
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(root: Path, manifest: Manifest | TrainSplitManifest) -> Path:
    """Write ``root/manifest.json``."""
    dest = root / MANIFEST
    dest.write_text(dumps(manifest.to_dict()), encoding="utf-8", newline="\n")
    return dest


def read(root: Path) -> Manifest:
    """The manifest of the release folder ``root``."""
    return load(root / MANIFEST)


def load(path: Path) -> Manifest:
    """Read a release manifest file; any problem is a :class:`ManifestError` naming the file and the cause."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a pb-build manifest (not UTF-8 text: {exc.reason} at byte "
                            f"{exc.start})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{path}: not a pb-build manifest (not JSON: {exc})") from None
    return parse(data, str(path))


def parse(data: Any, where: str) -> Manifest:
    """Validate the JSON of a release manifest."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: not a pb-build manifest (a JSON object is expected)")
    version = data.get("manifest_version", MANIFEST_VERSION)  # written before the field existed: same layout
    if not isinstance(version, int) or isinstance(version, bool):
        raise ManifestError(f"{where}: manifest_version must be an integer, got {version!r}")
    if version > MANIFEST_VERSION:
        raise ManifestError(f"{where}: manifest_version {version} is newer than this pb-build {__version__} reads "
                            f"({MANIFEST_VERSION}); upgrade pb-build")
    if data.get("kind", "release") != "release":
        raise ManifestError(f"{where}: a {data['kind']} manifest, not a release manifest")
    sources = _get(data, "sources", list, where)
    return Manifest(
        sources=[_entry(e, f"{where}: sources[{i}]") for i, e in enumerate(sources)],
        release=_get(data, "release", (dict, type(None)), where, None),
        split=_get(data, "split", str, where, DEFAULT_SPLIT),
        writer=_get(data, "writer", dict, where, {}),
        pb_build_version=_get(data, "pb_build_version", str, where, ""),
        manifest_version=version,
    )


_MISSING = object()


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    if key not in data:
        if default is _MISSING:
            raise ManifestError(f"{where}: missing key {key!r}")
        return default
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ManifestError(f"{where}: {key!r} must be {names}, got {type(value).__name__}")
    return value


def _entry(e: Any, where: str) -> SourceEntry:
    if not isinstance(e, dict):
        raise ManifestError(f"{where}: must be an object")
    raw = _get(e, "raw", dict, where)
    counts = _get(e, "counts", dict, where)
    files = _get(e, "files", dict, where)
    tables = _get(e, "tables", dict, where, {})
    return SourceEntry(
        source=_get(e, "source", str, where),
        official_name=_get(e, "official_name", str, where),
        builder_version=_get(e, "builder_version", str, where),
        builder_sha256=_get(e, "builder_sha256", str, where),
        parameters=_get(e, "parameters", dict, where),
        seed=_get(e, "seed", int, where),
        raw=RawInputs(_get(raw, "kind", str, f"{where}.raw"), _get(raw, "files", list, f"{where}.raw")),
        counts=Counts(*(_get(counts, k, int, f"{where}.counts") for k in ("samples", "frames", "official_files",
                                                                          "skipped"))),
        files=Files(_get(files, "official", str, f"{where}.files"), _get(files, "native", list, f"{where}.files")),
        licence=_get(e, "licence", str, where),
        notes=_get(e, "notes", dict, where, {}),
        skipped=_get(e, "skipped", list, where, []),
        keys=_get(e, "keys", list, where, []),
        tables={name: Table(_get(t, "file", str, f"{where}.tables.{name}"),
                            _get(t, "sha256", str, f"{where}.tables.{name}"))
                for name, t in tables.items() if _is_object(t, f"{where}.tables.{name}")},
        official_fields=_get(e, "official_fields", list, where, []),
        filter=_get(e, "filter", (dict, type(None)), where, None),
        ineligible=_counts_by_reason(_get(e, "ineligible", dict, where, {}), f"{where}.ineligible"),
        ineligible_items=_get(e, "ineligible_items", list, where, []),
        info={k: v for k, v in _get(e, "info", dict, where, {}).items() if isinstance(v, str)},
    )


def _counts_by_reason(value: dict[str, Any], where: str) -> dict[str, int]:
    for reason, n in value.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ManifestError(f"{where}: the count of {reason!r} must be a non-negative integer, got {n!r}")
    return value


def _is_object(value: Any, where: str) -> bool:
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: must be an object")
    return True


def read_dict(root: Path) -> dict[str, Any]:
    """The validated manifest of ``root`` as plain JSON data (for tools and tests that index it)."""
    return read(root).to_dict()


def write_streaming(root: Path, manifest: Manifest, keys: dict[str, Callable[[], Iterator[str]]]) -> Path:
    """Write ``root/manifest.json`` with each listed source's ``keys`` streamed from ``keys[source]`` (an
    iterable factory) instead of held in memory, and the raw file lists written by :func:`_item_lines`; the text
    is the same as :func:`write` of the full manifest."""
    lists: dict[str, Callable[[str], Iterator[str]]] = {}  # placeholder -> its items' text, given their indent
    raw_files = {e.source: e.raw.files for e in manifest.sources}
    for e in manifest.sources:
        if e.source in keys:
            mark = f"\x00keys of {e.source}\x00"
            lists[mark] = lambda indent, stream=keys[e.source]: (indent + json.dumps(k, ensure_ascii=False)
                                                                 for k in stream())
            e.keys = [mark]
        if e.raw.files:
            mark = f"\x00raw files of {e.source}\x00"
            lists[mark] = lambda indent, files=e.raw.files: _item_lines(files, indent)
            e.raw.files = [mark]
    try:
        text = dumps(manifest.to_dict())
    finally:
        for e in manifest.sources:
            e.raw.files = raw_files[e.source]
            if e.source in keys:
                e.keys = []
    dest = root / MANIFEST
    with open(dest, "w", encoding="utf-8", newline="\n") as handle:
        for mark in sorted(lists, key=lambda m: text.index(json.dumps(m))):
            at = text.index(json.dumps(mark))
            line_start = text.rindex("\n", 0, at) + 1
            handle.write(text[:line_start])
            for n, item in enumerate(lists[mark](text[line_start:at])):  # one at a time: keys are not in memory
                handle.write(item if n == 0 else ",\n" + item)
            text = text[at + len(json.dumps(mark)):]
        handle.write(text)
    return dest


def _item_lines(items: list[Any], indent: str) -> Iterator[str]:
    """The text :func:`dumps` gives each item of a list at ``indent``. A raw file (path, sha256, size) is
    formatted directly: json's indenting encoder is pure Python, and took 0.15 s for 16,000 files."""
    inner = indent + "  "
    for item in items:
        if (type(item) is dict and item.keys() == {"path", "sha256", "size"} and type(item["size"]) is int
                and type(item["path"]) is str and type(item["sha256"]) is str):
            yield (f'{indent}{{\n{inner}"path": {_string(item["path"])},\n{inner}"sha256": '
                   f'{_string(item["sha256"])},\n{inner}"size": {item["size"]}\n{indent}}}')
        else:
            yield indent + json.dumps(item, indent=2, sort_keys=True, ensure_ascii=False).replace("\n", "\n" + indent)


_string = json.encoder.encode_basestring  # how json.dumps(..., ensure_ascii=False) writes a string
