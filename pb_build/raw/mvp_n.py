"""MVP-N raw data: the class and group tables, the folder-tree reader and the user-supplied class names.

Layout (``data.zip`` of SMNUResearch/MVP-N, unzipped)::

    data/<split>/<class>/<set>/<split>_<class>_<NNNN>_<flag>.png

The real files are named ``<split>_<class>_<NNNN>_<flag>.png`` (e.g. ``data/train/0000/0008/train_0000_0004_1.png``;
``NNNN`` is not the set folder's number); the view token is ``NNNN``. The shorter ``<view>_<flag>.png`` is also read.

* ``<split>`` is ``train``, ``valid`` or ``test``; ``<class>`` one of the 44 ids ``0000`` ... ``0043``; one ``<set>``
  folder is one multi-view set (at most 6 views in the official data).
* ``<flag>`` is the last ``_``-separated token of the file stem (the official loaders read
  ``int(stem.split('_')[-1])``): ``1`` = informative view, ``0`` = uninformative view. ``<view>`` is the rest of the
  stem (it may itself contain ``_``).
* Sets are enumerated from the folder tree: class folders, set folders and view files each sorted by name. MVP-N's
  own ``test_list/test_<class>_100.pkl`` lists are Python pickles; unpickling a file executes code, so pb-build
  never reads them.
* Only ``*.png`` files are views; other files (and hidden entries) are ignored.

Bad input (raised as :class:`BadRecord`, or handed to ``on_bad`` under ``--skip-bad``): an unknown class folder, a
``.png`` whose stem is not ``<view>_<flag>`` with flag 0 or 1 (that file is skipped), a set where one view token
appears twice, a set with no views. A set with no informative (or no uninformative) view is valid data: it is
returned, and the builder's eligibility rules exclude it.

Class names are not in the data: they are only in the MVP-N documentation PDF. :func:`read_names` reads a
user-supplied CSV file (format below). Data licence: non-commercial use only (README FAQ of SMNUResearch/MVP-N).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pb_build.errors import BadRecord, PbBuildError
from pb_build.matching import normalise_text
from pb_build.names import check_component

OnBad = Callable[[BadRecord], None] | None

CLASSES: tuple[str, ...] = tuple(f"{i:04d}" for i in range(44))

# The 19 groups of visually similar products (``GROUPS`` in MVP-N's config/base.yaml), in the official order.
GROUPS: tuple[tuple[str, ...], ...] = (
    ("0000", "0001"), ("0002", "0003"), ("0004", "0005"), ("0006", "0007"), ("0008", "0009"),
    ("0010", "0011", "0012", "0013", "0014"), ("0015", "0016"), ("0017", "0018"), ("0019", "0020"),
    ("0021", "0022"), ("0023", "0024"), ("0025", "0026"), ("0027", "0028", "0029", "0030"), ("0031", "0032"),
    ("0033", "0034"), ("0035", "0036"), ("0037", "0038"), ("0039", "0040"), ("0041", "0042", "0043"),
)
GROUP_OF: dict[str, int] = {c: g for g, members in enumerate(GROUPS) for c in members}

SPLITS = ("test", "valid", "train")
INFORMATIVE, UNINFORMATIVE = 1, 0

DOC_PDF = "the MVP-N dataset documentation PDF (Google Drive file id 167Om0A5rl7s3yxQLULbbJ7KkRXcgVHbC, linked " \
          "from https://github.com/SMNUResearch/MVP-N)"
DATA_ZIP = "data.zip (Google Drive file id 1rbjFXLtXGYSsgFN2r9AZtWxOVHGF5jAS, linked from " \
           "https://github.com/SMNUResearch/MVP-N)"


@dataclass(frozen=True)
class View:
    """One view file of a set: ``<token>_<flag>.png``."""

    token: str
    flag: int
    path: str

    @property
    def informative(self) -> bool:
        return self.flag == INFORMATIVE

    @property
    def file_name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class ViewSet:
    """One multi-view set: ``<split>/<class>/<set>/`` and its views, sorted by file name."""

    split: str
    class_id: str
    set_name: str
    path: str
    views: tuple[View, ...]

    @property
    def informative(self) -> tuple[View, ...]:
        return tuple(v for v in self.views if v.informative)

    @property
    def uninformative(self) -> tuple[View, ...]:
        return tuple(v for v in self.views if not v.informative)


def _bad(bad: BadRecord, on_bad: OnBad) -> None:
    if on_bad is None:
        raise bad
    on_bad(bad)


def locate_split(raw: Path, split: str) -> Path:
    """The ``<split>`` folder of a raw MVP-N tree given as the repository root, ``data/`` or the split itself."""
    if not raw.is_dir():
        raise PbBuildError(f"{raw}: raw folder does not exist or is not a folder")
    candidates = [raw / "data" / split, raw / split]
    if raw.name == split:
        candidates.append(raw)
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise PbBuildError(f"{raw}: no MVP-N '{split}' folder (expected data/{split}/<class>/<set>/<view>_<flag>.png, "
                       f"as unzipped from {DATA_ZIP})")


_REAL_NAME = re.compile(r"(train|valid|test)_(\d{4})_(\d+)_([01])")


def parse_view(path: Path) -> View:
    """Parse ``<split>_<class>_<NNNN>_<flag>.png`` (the real naming; the view token is ``NNNN``) or
    ``<view>_<flag>.png``; raises :class:`BadRecord` naming the file."""
    check_component(path.name, path, "view file name")
    real = _REAL_NAME.fullmatch(path.stem)
    if real:
        split, class_id, number, flag = real.groups()
        folders = (path.parent.parent.parent.name, path.parent.parent.name)
        if (split, class_id) != folders:
            raise BadRecord(path, f"file name says {split}/{class_id} but the file lies in {'/'.join(folders)}/")
        return View(token=number, flag=int(flag), path=str(path))
    token, sep, flag = path.stem.rpartition("_")
    if not sep or not token or flag not in ("0", "1"):
        raise BadRecord(path, "file name is not <split>_<class>_<NNNN>_<flag>.png or <view>_<flag>.png with flag 0 "
                              "(uninformative) or 1 (informative)")
    return View(token=token, flag=int(flag), path=str(path))


def _entries(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def iter_sets(split_dir: Path, classes: list[str] | None = None, on_bad: OnBad = None) -> Iterator[ViewSet]:
    """Stream the sets of a split folder in sorted (class, set) order; ``classes`` restricts the class folders."""
    split = split_dir.name
    known = set(CLASSES)
    wanted = set(classes) if classes else None
    class_dirs = [p for p in _entries(split_dir) if p.is_dir()]
    if not class_dirs:
        raise PbBuildError(f"{split_dir}: no class folders (expected <class>/<set>/<view>_<flag>.png)")
    for class_dir in class_dirs:
        class_id = class_dir.name
        if class_id not in known:
            _bad(BadRecord(class_dir, f"unknown class folder {class_id!r} (MVP-N classes are 0000-0043)"), on_bad)
            continue
        if wanted is not None and class_id not in wanted:
            continue
        set_dirs = [p for p in _entries(class_dir) if p.is_dir()]
        if not set_dirs:
            _bad(BadRecord(class_dir, "class folder has no set folders"), on_bad)
            continue
        for set_dir in set_dirs:
            view_set = _read_set(split, class_id, set_dir, on_bad)
            if view_set is not None:
                yield view_set


def _read_set(split: str, class_id: str, set_dir: Path, on_bad: OnBad) -> ViewSet | None:
    views: list[View] = []
    by_token: dict[str, View] = {}
    for path in _entries(set_dir):
        if path.suffix != ".png" or not path.is_file():
            continue
        try:
            view = parse_view(path)
        except BadRecord as bad:
            _bad(bad, on_bad)
            continue
        if view.token in by_token:
            first = by_token[view.token].file_name
            _bad(BadRecord(set_dir, f"view {view.token!r} appears twice ({first}, {path.name})"), on_bad)
            return None
        by_token[view.token] = view
        views.append(view)
    if not views:
        _bad(BadRecord(set_dir, "set has no <view>_<flag>.png views"), on_bad)
        return None
    return ViewSet(split, class_id, set_dir.name, str(set_dir), tuple(views))


def view_ids(view_set: ViewSet) -> dict[str, int]:
    """The exported 4-digit image id of every view token of a set.

    The official template formats ``{image}`` as ``str(id).zfill(4)``. When every token of the set is a decimal
    number and the numbers are distinct, the id is that number (``0003`` -> 3, exported as ``0003``). Otherwise
    (non-numeric tokens, or ``3`` and ``03`` in one set) the set's views are renumbered 0, 1, ... in sorted file
    name order. The ids are decided per set, from all its views, so they do not depend on which views are used.
    """
    tokens = [v.token for v in view_set.views]
    if all(t.isascii() and t.isdigit() for t in tokens) and len({int(t) for t in tokens}) == len(tokens):
        return {t: int(t) for t in tokens}
    return {t: i for i, t in enumerate(tokens)}


# ---------------------------------------------------------------------------------------------------- names file

NAMES_FORMAT = (
    "a UTF-8 CSV file with one 'class_id,name' row per class (an optional 'class_id,name' header; blank lines and "
    "lines starting with '#' are ignored; class_id is 0000-0043 or 0-43)"
)
_UPPER_DOT = re.compile(r"[A-Z]\.")


def read_names(path: Path, category_of: Callable[[str], str]) -> dict[str, str]:
    """Read the class-name CSV; every one of the 44 classes must be named. Errors name the file (and line).

    ``category_of`` turns a name into its category string (the builder's string rule): names whose strings
    break the official matcher or collide are rejected here, with the line.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PbBuildError(f"{path}: names file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PbBuildError(f"{path}: cannot read the names file: {exc}") from None
    names: dict[str, str] = {}
    lines: dict[str, int] = {}
    seen_norm: dict[str, str] = {}
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in row]
        if line_no == 1 and [f.lower() for f in fields] == ["class_id", "name"]:
            continue
        if len(fields) != 2:
            raise BadRecord(path, f"expected 2 fields 'class_id,name', got {len(fields)} (names may not contain "
                                  "commas)", line_no)
        raw_id, name = fields
        if not (raw_id.isascii() and raw_id.isdigit()) or f"{int(raw_id):04d}" not in GROUP_OF:
            raise BadRecord(path, f"class_id {raw_id!r} is not one of the 44 MVP-N classes 0000-0043", line_no)
        class_id = f"{int(raw_id):04d}"
        if class_id in names:
            raise BadRecord(path, f"class {class_id} is named twice (first on line {lines[class_id]})", line_no)
        problem = name_problem(name, category_of)
        if problem:
            raise BadRecord(path, f"class {class_id}: name {name!r} {problem}", line_no)
        norm = normalise_text(category_of(name))
        if norm in seen_norm:
            raise BadRecord(path, f"class {class_id}: name {name!r} is the same category string as class "
                                  f"{seen_norm[norm]}'s", line_no)
        seen_norm[norm] = class_id
        names[class_id] = name
        lines[class_id] = line_no
    missing = [c for c in CLASSES if c not in names]
    if missing:
        raise BadRecord(path, f"names file misses class id(s) {', '.join(missing)}; it must name all 44 MVP-N "
                              f"classes (expected {NAMES_FORMAT})")
    return names


def name_problem(name: str, category_of: Callable[[str], str]) -> str | None:
    """Why ``name`` cannot become an official category string (the message says which rule), or None."""
    if len(name) < 2:
        return "must have at least 2 characters"
    if "," in name:
        return "contains a comma (the official open-ended judge splits answers on commas)"
    if "{" in name or "}" in name:
        return "contains a brace"
    if any(ord(ch) < 32 for ch in name):
        return "contains a control character"
    if _UPPER_DOT.search(category_of(name)):
        return "has an upper-case letter before '.' once capitalised, which the official matcher would cut"
    return None
