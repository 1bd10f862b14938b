"""ROD, the Realistic Occlusion Dataset (Lee et al. 2023): file-name parsing, sweep grouping and the fetcher.

Raw layout (only what the Hub metadata shows). The Hub dataset ``arielnlee/Realistic-Occlusion-Dataset``
ships ``rod_0.tar.gz`` and ``rod_1.tar.gz``, 1,231 images of 16 classes. Their folder layout inside the archives
is not documented, so the reader is tolerant: it walks the raw folder recursively (sorted) and takes every
``.jpg``/``.jpeg``/``.png`` file (any case) whose name does not start with ``.`` (macOS ``._*`` resource forks
and other hidden files are ignored). A file may sit directly in the raw folder or in any sub-folder.

File names. The only name known for certain is ``natural_bluebl_greenr-banana-s6`` (the image the official
evaluator substitutes), so the assumed pattern is::

    <setting>_<occluder token>[_<occluder token>...]-<class>-s<k>.<ext>

* ``<setting>`` and each occluder token: ASCII letters and digits (``natural``; ``bluebl``, ``greenr``);
  at least one occluder token. The part before the first ``-`` is the sweep's *occluder group*.
* ``<class>``: everything between the first ``-`` and the final ``-s<k>``; letters, digits, spaces, ``_`` and
  ``-``. It is matched to the 16 classes ignoring case, spaces, ``_`` and ``-`` (``cowboy hat``,
  ``cowboy_hat``, ``cowboyhat`` all mean "cowboy hat").
* ``s<k>``: the occluder position ``k`` (decimal digits) in a sweep of :data:`POSITIONS` positions.
* A *sweep* is every file sharing the stem before ``-s<k>`` (its name; one setting, occluder group and object).

Class folders. When a file's parent folder (below the raw folder) is named like one of the 16 classes (same
normalisation), it must agree with the class in the file name; a parent folder with any other name (``rod_0``,
``images``) is not a class folder and is ignored, so trees with and without class folders both read.

Bad records (:class:`BadRecord` naming the file, or ``on_bad``): a name that does not follow the pattern, an
unknown class, a class folder that contradicts the name, a position outside 0..13 (the sweep is too long),
two files for one position (duplicates), more missing positions than allowed, a missing ``s0`` (the unoccluded
reference) and a sweep mixing file extensions. Any of these drops the whole sweep (with ``--skip-bad``).

Occluder descriptions (the ``{occluder}`` in "Move the blue blocks to the left."): see :func:`describe`.
Data licence: none stated (Hub card "other"); the ProactiveBench paper says "released without a license".
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pb_build.errors import BadRecord, PbBuildError
from pb_build.raw.checksums import check_download
from pb_build.raw.download import cache_root, hub_download

OnBad = Callable[[BadRecord], None] | None

POSITIONS = 14
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Label order of the Hub loader's classes_rod.py (numbered 1-16 there).
CLASSES = ("banana", "baseball", "cowboy hat", "cup", "dumbbell", "hammer", "laptop", "microwave", "mouse", "orange",
           "pillow", "plate", "screwdriver", "skillet", "spatula", "vase")

_NAME = re.compile(r"^(?P<group>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+)-(?P<cls>[A-Za-z0-9][A-Za-z0-9 _-]*?)-s(?P<pos>[0-9]+)$")
_TOKEN = re.compile(r"^[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*$")
_DESCRIPTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 '-]*[A-Za-z0-9]$")
# Phrases a description must not contain: the abstain markers (an option holding one is never valid) and the
# ROD action keys (the official action map matches keys as substrings, so a move option must hold exactly one).
_FORBIDDEN = ("cannot", "do not", "to the left", "to the right")


def class_key(text: str) -> str:
    """The matching key of a class spelling: lower case without spaces, ``_`` and ``-``."""
    return re.sub(r"[ _-]", "", text.lower())


_CLASS_BY_KEY = {class_key(c): c for c in CLASSES}


@dataclass(frozen=True)
class RodImage:
    """One raw image: where it is and what its name says."""

    path: str  # absolute path
    rel: str  # POSIX path relative to the raw folder
    sweep: str  # the stem before "-s<k>", e.g. "natural_bluebl_greenr-banana"
    setting: str
    occluders: tuple[str, ...]
    category: str  # canonical class name, e.g. "cowboy hat"
    position: int
    suffix: str  # lower-case file suffix, e.g. ".jpg"


@dataclass(frozen=True)
class Sweep:
    """The images of one sweep by position (``None`` where the raw data lacks that position)."""

    name: str
    setting: str
    occluders: tuple[str, ...]
    category: str
    suffix: str
    images: tuple[RodImage | None, ...]

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(k for k, img in enumerate(self.images) if img is None)

    @property
    def group(self) -> str:
        """The occluder group of the name (occluder tokens joined by ``_``)."""
        return "_".join(self.occluders)

    @property
    def where(self) -> str:
        """A path pattern naming the sweep in messages: ``<folder>/<sweep>-s*``."""
        first = next(img for img in self.images if img is not None)
        return str(Path(first.path).with_name(f"{self.name}-s*"))


def parse_name(path: Path, root: Path) -> RodImage:
    """Parse one image file name (and check its class folder); raises :class:`BadRecord`."""
    return _parse(str(path), path.relative_to(root).as_posix(), path.stem, path.suffix)


def _parse(path: str, rel: str, stem: str, suffix: str) -> RodImage:
    """:func:`parse_name` on strings: the file's path, its POSIX path relative to the raw folder, stem and suffix."""
    match = _NAME.match(stem)
    if match is None:
        raise BadRecord(path, f"file name {rel.rpartition('/')[2]!r} does not follow '<setting>_<occluder>"
                              "[_<occluder>...]-<class>-s<position>' (e.g. natural_bluebl_greenr-banana-s6.jpg)")
    raw_class = match["cls"]
    category = _CLASS_BY_KEY.get(class_key(raw_class))
    if category is None:
        raise BadRecord(path, f"unknown class {raw_class!r} in the file name (not one of the 16 ROD classes: "
                              f"{', '.join(CLASSES)})")
    parts = rel.split("/")
    if len(parts) > 1:
        folder_class = _CLASS_BY_KEY.get(class_key(parts[-2]))
        if folder_class is not None and folder_class != category:
            raise BadRecord(path, f"the file name says class {category!r} but its class folder is "
                                  f"{parts[-2]!r}")
    setting, *occluders = match["group"].split("_")
    return RodImage(
        path=path, rel=rel, sweep=stem[: match.start("pos") - 2], setting=setting,
        occluders=tuple(occluders), category=category, position=int(match["pos"]), suffix=suffix.lower(),
    )


def image_files(root: Path) -> list[tuple[str, str]]:
    """Every visible image file below ``root`` (recursive) as (relative POSIX path, path), sorted by the first.

    Plain strings: a raw folder holds tens of thousands of images.
    """
    if not root.is_dir():
        raise PbBuildError(f"{root}: raw folder does not exist or is not a folder")
    found: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        prefix = os.path.relpath(folder, root).replace(os.sep, "/") + "/"
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append((name if prefix == "./" else prefix + name, os.path.join(folder, name)))
    found.sort()
    return found


def read_images(root: Path, on_bad: OnBad = None) -> Iterator[RodImage]:
    """Stream the parsed images of a raw folder in sorted path order; bad names go to ``on_bad``."""
    for rel, path in image_files(root):
        stem, suffix = os.path.splitext(rel.rpartition("/")[2])
        try:
            yield _parse(path, rel, stem, suffix)
        except BadRecord as bad:
            _bad(bad, on_bad)


def group_sweeps(images: list[RodImage], max_missing: int = 1, on_bad: OnBad = None) -> list[Sweep]:
    """Group images into sweeps of :data:`POSITIONS` positions, sorted by (class, sweep name).

    A sweep may lack at most ``max_missing`` positions, never position 0 (the reference).
    """
    by_sweep: dict[str, list[RodImage]] = {}
    for img in images:
        by_sweep.setdefault(img.sweep, []).append(img)
    sweeps: list[Sweep] = []
    for name in sorted(by_sweep, key=lambda n: (by_sweep[n][0].category, n)):
        try:
            sweeps.append(_sweep(name, by_sweep[name], max_missing))
        except BadRecord as bad:
            _bad(bad, on_bad)
    return sweeps


def _sweep(name: str, members: list[RodImage], max_missing: int) -> Sweep:
    slots: list[RodImage | None] = [None] * POSITIONS
    for img in members:
        if img.position >= POSITIONS:
            raise BadRecord(img.path, f"position s{img.position} is outside the {POSITIONS}-position sweep "
                                      f"(s0-s{POSITIONS - 1}); sweep {name!r} is too long")
        previous = slots[img.position]
        if previous is not None:
            raise BadRecord(img.path, f"duplicate of {previous.rel}: both are position s{img.position} of sweep "
                                      f"{name!r}")
        slots[img.position] = img
    first = members[0]
    suffixes = sorted({_canonical_suffix(img.suffix) for img in members})
    if len(suffixes) > 1:
        raise BadRecord(first.path, f"sweep {name!r} mixes file types {', '.join(suffixes)}")
    sweep = Sweep(name, first.setting, first.occluders, first.category, suffixes[0], tuple(slots))
    missing = sweep.missing
    if 0 in missing:
        raise BadRecord(sweep.where, "position s0 (the unoccluded reference view) is missing")
    if len(missing) > max_missing:
        raise BadRecord(sweep.where, f"sweep has {POSITIONS - len(missing)} of {POSITIONS} positions (missing "
                                     f"{', '.join(f's{k}' for k in missing)}); at most {max_missing} may be missing")
    return sweep


def _canonical_suffix(suffix: str) -> str:
    return ".jpg" if suffix in (".jpg", ".jpeg") else suffix


def fill_source(position: int, present: set[int], n: int = POSITIONS) -> int:
    """The position whose image stands in for a missing ``position``.

    The nearest present position in circular distance; on a tie the one at ``position + d`` (the side the
    official environment falls back to, ``s7`` for the missing ``s6``).
    """
    for d in range(1, n):
        for cand in ((position + d) % n, (position - d) % n):
            if cand in present:
                return cand
    raise ValueError("a sweep with no present position")


def _bad(bad: BadRecord, on_bad: OnBad) -> None:
    if on_bad is None:
        raise bad
    on_bad(bad)


# ------------------------------------------------------------------------------------------------ occluders

# Built-in description rule for one occluder token: <colour><kind>, e.g. "bluebl" -> "blue blocks".
NEUTRAL_DESCRIPTION = "occluder"  # "Move the occluder to the left."
COLOURS = ("black", "blue", "brown", "gray", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow")
KINDS = {"bl": "blocks", "blocks": "blocks", "cb": "cardboard", "cardboard": "cardboard"}


@dataclass(frozen=True)
class OccluderTable:
    """A user-supplied token -> description table and its provenance."""

    path: str
    sha256: str
    entries: dict[str, str]


def read_occluder_table(path: Path) -> OccluderTable:
    """Read ``<key><TAB><description>`` lines (``#`` comments and blank lines ignored).

    A key is an occluder token (``bluebl``) or a whole occluder group (``bluebl_greenr``); keys are matched
    case-insensitively. Any problem raises :class:`BadRecord` naming the file and line.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadRecord(path, f"cannot read the occluder table: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # a BOM is accepted, as the other user tables do
    except UnicodeDecodeError:
        raise BadRecord(path, "the occluder table is not UTF-8 text") from None
    entries: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, desc = line.partition("\t")
        key, desc = key.strip(), " ".join(desc.split())
        if not sep or not key or not desc:
            raise BadRecord(path, "expected '<token><TAB><description>'", n)
        if not _TOKEN.match(key):
            raise BadRecord(path, f"key {key!r} is not an occluder token or group (letters/digits joined by '_')", n)
        problem = description_problem(desc)
        if problem:
            raise BadRecord(path, problem, n)
        if key.lower() in entries:
            raise BadRecord(path, f"key {key!r} is listed twice", n)
        entries[key.lower()] = desc
    if not entries:
        raise BadRecord(path, "the occluder table has no entries")
    return OccluderTable(str(path), hashlib.sha256(data).hexdigest(), entries)


def description_problem(desc: str) -> str | None:
    """Why ``desc`` cannot be an occluder description in an option string (None when it can)."""
    if not _DESCRIPTION.match(desc):
        return (f"description {desc!r} must be letters, digits, spaces, hyphens or apostrophes, starting and "
                "ending with a letter or digit")
    low = desc.lower()
    for phrase in _FORBIDDEN:
        if phrase in low:
            return f"description {desc!r} contains {phrase!r}, which the official environment would misread"
    return None


def builtin_description(token: str) -> str | None:
    """``<colour><kind>`` -> ``"<colour> <kind name>"`` (e.g. ``bluebl`` -> ``blue blocks``); None otherwise."""
    low = token.lower()
    for colour in COLOURS:
        if low.startswith(colour) and low[len(colour):] in KINDS:
            return f"{colour} {KINDS[low[len(colour):]]}"
    return None


def describe(sweep: Sweep, table: OccluderTable | None) -> tuple[str, str]:
    """The occluder description of a sweep and how it was found; raises :class:`BadRecord`.

    The occluder that the options move is named by the first occluder token of the file name (``bluebl`` in
    ``natural_bluebl_greenr``); the remaining tokens are kept in the metadata only. Lookup order:
    1. the table entry for the whole group (``bluebl_greenr``), 2. the table entry for the first token,
    3. the built-in rule :func:`builtin_description` on the first token, 4. :data:`NEUTRAL_DESCRIPTION` (the
    real archive has tokens such as ``greenr`` whose meaning is unknown; they never fail a build).
    """
    group, first = sweep.group.lower(), sweep.occluders[0].lower()
    if table is not None and group in table.entries:
        return table.entries[group], f"table:{group}"
    if table is not None and first in table.entries:
        return table.entries[first], f"table:{first}"
    desc = builtin_description(first)
    if desc is None:
        return NEUTRAL_DESCRIPTION, "neutral"
    return desc, "built-in"


# ------------------------------------------------------------------------------------------------- fetching

REPO_ID = "arielnlee/Realistic-Occlusion-Dataset"
REVISION = "main"
ARCHIVES = ("rod_0.tar.gz", "rod_1.tar.gz")  # sizes (and sha256 once recorded) in checksums/rod.tsv
CACHE_SUBDIR = Path("rod")


def fetch(cache_dir: Path | None = None, *, endpoint: str | None = None, progress: bool = True,
          archives: tuple[str, ...] = ARCHIVES) -> Path:
    """Download the ROD archives from the Hugging Face Hub and unpack them; returns the folder of images.

    Downloads go through ``huggingface_hub.hf_hub_download`` (resume, cache, its integrity checks) into
    ``<cache>/rod/hub``, then are checked against ``checksums/rod.tsv``. ``endpoint`` defaults to the Hub's own
    (``$HF_ENDPOINT``). Each archive is unpacked once into ``<cache>/rod/images/<archive stem>/`` (through a
    temporary folder, so an interrupted unpack is redone).
    """
    root = cache_root(cache_dir) / CACHE_SUBDIR
    images = root / "images"
    for name in archives:
        target = images / name.removesuffix(".tar.gz")
        if target.is_dir():
            continue
        archive = hub_download(REPO_ID, name, root / "hub", endpoint=endpoint, progress=progress)
        check_download("rod", name, archive, f"{REPO_ID}/{name}")
        _unpack(archive, target)
    return images


def _unpack(archive: Path, target: Path) -> None:
    """Extract the image members of ``archive`` into ``target`` (regular files with safe relative paths only)."""
    tmp = target.with_name(f".{target.name}.unpacking")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rel = PurePosixPath(member.name)
                if not member.isfile() or rel.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if rel.is_absolute() or ".." in rel.parts:
                    raise PbBuildError(f"{archive}: unsafe member path {member.name!r}")
                dest = tmp.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PbBuildError(f"{archive}: cannot unpack ({exc}); delete it and fetch again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(target)
