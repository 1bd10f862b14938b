"""Quick, Draw! raw data: streaming readers (simplified/raw ndjson, binary), the category list, and the fetcher.

Every reader yields :class:`Drawing` records in file order and never loads a whole file. A bad record raises
:class:`BadRecord` naming the file and line, or is handed to ``on_bad`` (``--skip-bad``) and skipped.
Data licence: CC BY 4.0, Google (https://github.com/googlecreativelab/quickdraw-dataset).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from pb_build.errors import BadRecord, PbBuildError
from pb_build.raw.download import cache_root, download_prefix
from pb_build.raw.quickdraw_categories import CATEGORIES

OnBad = Callable[[BadRecord], None] | None

FORMATS = ("simplified", "raw", "binary")
SUFFIX = {"simplified": ".ndjson", "raw": ".ndjson", "binary": ".bin"}
REQUIRED_KEYS = ("word", "key_id", "recognized", "drawing")


@dataclass(frozen=True)
class Drawing:
    """One drawing. ``strokes`` holds per stroke a tuple of x and a tuple of y coordinates."""

    word: str
    key_id: str
    recognized: bool
    countrycode: str
    timestamp: str
    strokes: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]
    normalised: bool
    path: str
    line: int

    @property
    def n_strokes(self) -> int:
        return len(self.strokes)


def read_drawings(path: Path, fmt: str = "simplified", on_bad: OnBad = None) -> Iterator[Drawing]:
    """Stream the drawings of one category file in ``fmt`` ('simplified', 'raw' or 'binary')."""
    if fmt == "binary":
        yield from _read_binary(path, on_bad)
    elif fmt in ("simplified", "raw"):
        yield from _read_ndjson(path, fmt == "simplified", on_bad)
    else:
        raise ValueError(f"unknown QuickDraw format {fmt!r}; expected one of {FORMATS}")


def _read_ndjson(path: Path, simplified: bool, on_bad: OnBad) -> Iterator[Drawing]:
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise BadRecord(path, f"cannot open: {exc.strerror or exc}") from None
    with handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if not raw_line.strip():
                continue
            try:
                yield _parse_line(raw_line, simplified, str(path), line_no)
            except BadRecord as bad:
                if on_bad is None:
                    raise
                on_bad(bad)


def _parse_line(raw_line: bytes, simplified: bool, path: str, line_no: int) -> Drawing:
    try:
        obj = json.loads(raw_line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        cause = "truncated record (file ends mid-line)" if not raw_line.endswith(b"\n") else "malformed JSON"
        raise BadRecord(path, f"{cause}: {exc}", line_no) from None
    if not isinstance(obj, dict):
        raise BadRecord(path, "record is not a JSON object", line_no)
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise BadRecord(path, f"missing key(s) {', '.join(missing)}", line_no)
    key_id = obj["key_id"]
    if not isinstance(key_id, str) or not key_id.isdigit():
        raise BadRecord(path, f"key_id must be a string of digits, got {key_id!r}", line_no)
    if not isinstance(obj["word"], str) or not obj["word"]:
        raise BadRecord(path, "word must be a non-empty string", line_no)
    if not isinstance(obj["recognized"], bool):
        raise BadRecord(path, "recognized must be true or false", line_no)
    strokes = _strokes(obj["drawing"], simplified, path, line_no)
    return Drawing(
        word=obj["word"],
        key_id=key_id,
        recognized=obj["recognized"],
        countrycode=str(obj.get("countrycode", "")),
        timestamp=str(obj.get("timestamp", "")),
        strokes=strokes if simplified else normalise(strokes),
        normalised=True,
        path=path,
        line=line_no,
    )


def _strokes(drawing: object, simplified: bool, path: str, line_no: int) -> tuple:
    if not isinstance(drawing, list) or not drawing:
        raise BadRecord(path, "drawing has no strokes", line_no)
    out = []
    for s_idx, stroke in enumerate(drawing):
        if not isinstance(stroke, list) or len(stroke) < 2 or not all(isinstance(a, list) for a in stroke):
            raise BadRecord(path, f"stroke {s_idx} is not a list of coordinate arrays", line_no)
        xs, ys = stroke[0], stroke[1]
        if not xs or len(xs) != len(ys):
            raise BadRecord(path, f"stroke {s_idx} has empty or unequal x/y arrays", line_no)
        values = xs + ys
        # Fast path: whole-list checks; the per-value scan below only runs to name the culprit.
        if simplified:
            ok = set(map(type, values)) == {int} and 0 <= min(values) and max(values) <= 255
        else:
            ok = set(map(type, values)) <= {int, float} and math.isfinite(math.fsum(values))
        if not ok:
            raise BadRecord(path, _bad_coordinate(values, simplified, s_idx), line_no)
        out.append((tuple(xs), tuple(ys)))
    return tuple(out)


def _bad_coordinate(values: list, simplified: bool, s_idx: int) -> str:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return f"stroke {s_idx} has a non-numeric coordinate {v!r}"
        if simplified and not (0 <= v <= 255 and float(v).is_integer()):
            return f"stroke {s_idx} has coordinate {v!r} outside the 0-255 grid"
    return f"stroke {s_idx} has coordinates that are not integers on the 0-255 grid" if simplified else \
        f"stroke {s_idx} has coordinates too large to normalise"


def normalise(strokes: tuple) -> tuple:
    """Align raw strokes to the top-left corner and scale uniformly to a maximum of 255 (as simplification does)."""
    xs = [x for s in strokes for x in s[0]]
    ys = [y for s in strokes for y in s[1]]
    x0, y0 = min(xs), min(ys)
    extent = max(max(xs) - x0, max(ys) - y0) or 1.0
    scale = 255.0 / extent
    return tuple(
        (tuple((x - x0) * scale for x in sx), tuple((y - y0) * scale for y in sy)) for sx, sy in strokes
    )


_HEADER = struct.Struct("<Q2sbIH")


def _read_binary(path: Path, on_bad: OnBad) -> Iterator[Drawing]:
    """The packed format: key_id u64, countrycode 2s, recognized i8, timestamp u32, n_strokes u16, strokes."""
    word = path.stem
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise BadRecord(path, f"cannot open: {exc.strerror or exc}") from None
    with handle:
        record = 0
        while True:
            head = handle.read(_HEADER.size)
            if not head:
                return
            record += 1
            if len(head) < _HEADER.size:
                raise BadRecord(path, "truncated record header", record)
            key_id, country, recognized, ts, n_strokes = _HEADER.unpack(head)
            strokes = []
            for s_idx in range(n_strokes):
                count_bytes = handle.read(2)
                if len(count_bytes) < 2:
                    raise BadRecord(path, f"truncated stroke {s_idx}", record)
                (n_points,) = struct.unpack("<H", count_bytes)
                data = handle.read(2 * n_points)
                if len(data) < 2 * n_points:
                    raise BadRecord(path, f"truncated stroke {s_idx}", record)
                strokes.append((tuple(data[:n_points]), tuple(data[n_points:])))
            if not strokes or any(not s[0] for s in strokes):
                bad = BadRecord(path, "drawing has no strokes" if not strokes else "empty stroke", record)
                if on_bad is None:
                    raise bad
                on_bad(bad)
                continue
            yield Drawing(
                word=word,
                key_id=str(key_id),
                recognized=bool(recognized),
                countrycode=country.decode("ascii", "replace").rstrip("\x00"),
                timestamp=datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                strokes=tuple(strokes),
                normalised=True,
                path=str(path),
                line=record,
            )


def pack_binary(drawings: list[Drawing], timestamp: int = 0) -> bytes:
    """Pack drawings (0-255 integer coordinates) in the binary layout; used to make ``.bin`` files."""
    out = bytearray()
    for d in drawings:
        out += _HEADER.pack(int(d.key_id), d.countrycode.encode("ascii")[:2].ljust(2, b"\x00"),
                            int(d.recognized), timestamp, len(d.strokes))
        for xs, ys in d.strokes:
            out += struct.pack("<H", len(xs)) + bytes(int(v) for v in xs) + bytes(int(v) for v in ys)
    return bytes(out)


# Fetching: each category file is tens of MB, but a benchmark needs only a pool of drawings per category, so
# only a prefix holding that many is read (HTTP Range), and a later call with a bigger pool resumes from there.
BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full"
# A pool of ~100 drawings is ~100 KB; a small chunk avoids reading megabytes per category.
FETCH_CHUNK_BYTES = 256 * 1024
URL_ENV = "PB_BUILD_QUICKDRAW_URL"
CACHE_SUBDIR = Path("quickdraw") / "simplified"


def category_url(category: str, base_url: str = BASE_URL) -> str:
    """The URL of a category's simplified ndjson file (spaces become %20, capitals stay)."""
    return f"{base_url.rstrip('/')}/simplified/{quote(category)}.ndjson"


def check_categories(categories: Iterable[str]) -> list[str]:
    """The categories in order without repeats; raises :class:`PbBuildError` naming any unknown ones."""
    wanted = list(dict.fromkeys(categories))
    known = set(CATEGORIES)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, CATEGORIES, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        noun = "category" if len(unknown) == 1 else "categories"
        raise PbBuildError(f"unknown QuickDraw {noun}: {', '.join(hints)}")
    return wanted


class RecognizedCounter:
    """A prefix predicate: true once the lines seen hold ``pool`` eligible drawings (recognised, 2+ strokes)."""

    def __init__(self, pool: int) -> None:
        self.pool = pool
        self.count = 0

    def __call__(self, lines: bytes) -> bool:
        for line in lines.splitlines():
            if line.strip() and _recognized(line):
                self.count += 1
        return self.count >= self.pool


def _recognized(line: bytes) -> bool:
    # Malformed lines count as not eligible; the builder's reader reports them with file and line.
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return (isinstance(record, dict) and record.get("recognized") is True
            and isinstance(record.get("drawing"), list) and len(record["drawing"]) >= 2)


def fetch(categories: Iterable[str], pool: int, cache_dir: Path | None = None, *,
          base_url: str | None = None, progress: bool = True,
          chunk_bytes: int = FETCH_CHUNK_BYTES) -> Path:
    """Cache a prefix of each category's simplified file with at least ``pool`` recognized drawings.

    A file with fewer is fetched whole. ``cache_dir`` overrides the cache root (see
    :func:`~pb_build.raw.download.cache_root`); ``base_url`` defaults to ``$PB_BUILD_QUICKDRAW_URL``, then
    :data:`BASE_URL`. Returns the folder of ``<category>.ndjson`` files, a raw folder for the builder.
    """
    if pool < 1:
        raise PbBuildError(f"the pool of drawings per category must be at least 1, got {pool}")
    wanted = check_categories(categories)
    base = base_url or os.environ.get(URL_ENV) or BASE_URL
    folder = cache_root(cache_dir) / CACHE_SUBDIR
    for category in wanted:
        download_prefix(category_url(category, base), folder / f"{category}.ndjson", RecognizedCounter(pool),
                        chunk_bytes=chunk_bytes, progress=progress)
    return folder
