"""MS-COCO 2014 raw data: the ``instances_{val,train}2014.json`` annotations, the image folder, and the fetcher.

Raw layout (that of the published COCO 2014 archives), looked up in this order inside the raw folder, for
``split`` = ``val`` or ``train``:

* annotations: ``annotations/instances_<split>2014.json``, ``instances_<split>2014.json``, or the member
  ``annotations/instances_<split>2014.json`` of ``annotations_trainval2014.zip`` (the published archive);
* images: ``<split>2014/<file_name>`` (the extracted archive), or the member ``<split>2014/<file_name>`` of
  ``<split>2014.zip`` (the published archive, read in place: nothing is extracted).

The annotation file is one JSON document (about 160 MB for val2014); it is parsed with :func:`json.load`, then
reduced at once to typed, frozen records (only the fields pb-build uses), so the raw dicts are freed. Nothing
per image is read until asked: :func:`image_header` reads a header, :func:`read_image` the bytes.

Bad records: a top-level problem (not JSON, not an object, a missing or non-list ``images`` / ``annotations`` /
``categories``) makes the whole file unusable and always raises :class:`BadRecord`. A bad entry
(``images[i]``, ``annotations[i]`` or ``categories[i]``: missing or mistyped keys, a duplicate id, an
annotation whose ``image_id`` or ``category_id`` names nothing in the file) raises :class:`BadRecord`, or with
``on_bad`` (``--skip-bad``) is reported and skipped (the annotations of a skipped image entry go with it,
unreported). The file is usually a single line, so the record is named
by its array index and id in the cause; ``line`` is set only for JSON syntax errors. An image with a bad
annotation is never treated as a single-object image (its annotation count is unknown).

Data licence: annotations CC BY 4.0 (COCO Consortium); images under their per-image Flickr licences.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pb_build import imageio
from pb_build.errors import BadRecord, PbBuildError
from pb_build.names import check_component, check_text
from pb_build.raw.checksums import check_download
from pb_build.raw.download import cache_root, download

OnBad = Callable[[BadRecord], None] | None

SPLITS = ("val", "train")
TOP_LEVEL_KEYS = ("images", "annotations", "categories")
IMAGE_KEYS = ("id", "file_name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "iscrowd")
CATEGORY_KEYS = ("id", "name", "supercategory")
ANNOTATION_ZIP = "annotations_trainval2014.zip"


def folder_name(split: str) -> str:
    """``val2014`` or ``train2014``."""
    if split not in SPLITS:
        raise PbBuildError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    return f"{split}2014"


def annotation_name(split: str) -> str:
    return f"instances_{folder_name(split)}.json"


@dataclass(frozen=True)
class Category:
    """``categories[index]``: a COCO category (ids are sparse, 1..90)."""

    id: int
    name: str
    supercategory: str
    index: int


@dataclass(frozen=True)
class CocoImage:
    """``images[index]``: one image entry."""

    id: int
    file_name: str
    width: int
    height: int
    license: int | None
    flickr_url: str
    index: int


@dataclass(frozen=True)
class Annotation:
    """``annotations[index]``: one object annotation; ``bbox`` = (x, y, w, h) in pixels, origin top-left."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    iscrowd: bool
    area: float | None
    index: int


@dataclass(frozen=True)
class Source:
    """Where a file lives: a plain file (``member`` None) or a member of a zip archive."""

    path: Path
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)


@dataclass(frozen=True)
class Layout:
    """The annotation file and the image store of one split inside a raw folder."""

    root: Path
    split: str
    annotations: Source
    images: Path  # the ``<split>2014`` folder, or the ``<split>2014.zip`` archive
    images_zipped: bool

    def image_source(self, file_name: str) -> Source:
        if self.images_zipped:
            return Source(self.images, f"{folder_name(self.split)}/{file_name}")
        return Source(self.images / file_name)

    @property
    def raw_files(self) -> list[Path]:
        """The raw files the manifest records (image files of a folder are added by the builder)."""
        files = [self.annotations.path]
        if self.images_zipped:
            files.append(self.images)
        return files


def find_layout(raw_dir: Path, split: str) -> Layout:
    """Locate the annotation file and the images of ``split``; a one-line error says what is missing."""
    folder = folder_name(split)
    ann_name = annotation_name(split)
    if not raw_dir.is_dir():
        raise PbBuildError(f"{raw_dir}: raw folder does not exist or is not a folder")
    annotations: Source | None = None
    for candidate in (raw_dir / "annotations" / ann_name, raw_dir / ann_name):
        if candidate.is_file():
            annotations = Source(candidate)
            break
    if annotations is None and (raw_dir / ANNOTATION_ZIP).is_file():
        annotations = Source(raw_dir / ANNOTATION_ZIP, f"annotations/{ann_name}")
    if annotations is None:
        raise PbBuildError(f"{raw_dir}: no annotations/{ann_name} (nor {ann_name} or {ANNOTATION_ZIP}); "
                           "download annotations_trainval2014.zip from https://cocodataset.org or omit --raw")
    if (raw_dir / folder).is_dir():
        return Layout(raw_dir, split, annotations, raw_dir / folder, False)
    if (raw_dir / f"{folder}.zip").is_file():
        return Layout(raw_dir, split, annotations, raw_dir / f"{folder}.zip", True)
    raise PbBuildError(f"{raw_dir}: no {folder}/ image folder (nor {folder}.zip); download {folder}.zip from "
                       "https://cocodataset.org or omit --raw")


@functools.lru_cache(maxsize=4)
def _zip(path: Path) -> zipfile.ZipFile:
    # One open archive per process (workers read many members of the same archive).
    return zipfile.ZipFile(path)


def _open_source(src: Source) -> io.BufferedIOBase:
    if src.member is None:
        return open(src.path, "rb")
    try:
        archive = _zip(src.path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BadRecord(src.path, f"cannot open the zip archive: {exc}") from None
    try:
        return archive.open(src.member)  # type: ignore[return-value]
    except KeyError:
        raise BadRecord(src.path, f"the archive has no member {src.member}") from None


@dataclass
class Annotations:
    """The typed content of one annotation file."""

    source: Source
    categories: dict[int, Category]
    images: dict[int, CocoImage]
    annotations_of: dict[int, list[Annotation]]
    tainted: set[int]  # images with a bad annotation: their object count is unknown

    def single_object(self) -> Iterator[tuple[CocoImage, Annotation]]:
        """Images with exactly one annotation, which is not a crowd annotation, by ascending image id.

        Every annotation counts, crowd ones included (an image with one object and one crowd region shows a
        group of further objects); a lone crowd annotation is a group, not one object.
        """
        for image_id in sorted(self.images):
            anns = self.annotations_of.get(image_id, [])
            if len(anns) == 1 and not anns[0].iscrowd and image_id not in self.tainted:
                yield self.images[image_id], anns[0]


def load_annotations(src: Source, on_bad: OnBad = None) -> Annotations:
    """Parse an ``instances_*.json`` file into typed records (see the module docstring for bad records)."""
    try:
        with _open_source(src) as handle:
            doc = json.load(handle)
    except OSError as exc:
        raise BadRecord(str(src), f"cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BadRecord(str(src), f"malformed JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise BadRecord(str(src), f"not UTF-8 text: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRecord(str(src), "the annotation file is not a JSON object")
    for key in TOP_LEVEL_KEYS:
        if key not in doc:
            raise BadRecord(str(src), f"missing top-level key {key!r} (not a COCO instances file?)")
        if not isinstance(doc[key], list):
            raise BadRecord(str(src), f"top-level key {key!r} is not a list")

    def bad(cause: str) -> None:
        record = BadRecord(str(src), cause)
        if on_bad is None:
            raise record
        on_bad(record)

    categories: dict[int, Category] = {}
    names: set[str] = set()
    for i, obj in enumerate(doc["categories"]):
        try:
            cat = _category(obj, i)
        except ValueError as exc:
            bad(f"categories[{i}]{_id_of(obj)}: {exc}")
            continue
        if cat.id in categories or cat.name.lower() in names:
            bad(f"categories[{i}] (id {cat.id}): duplicate category id or name {cat.name!r}")
            continue
        categories[cat.id] = cat
        names.add(cat.name.lower())

    images: dict[int, CocoImage] = {}
    bad_images: set[int] = set()  # ids of skipped image entries: their annotations go with them, unreported
    for i, obj in enumerate(doc["images"]):
        try:
            image = _image(obj, i)
        except ValueError as exc:
            image_id = obj.get("id") if isinstance(obj, dict) else None
            if isinstance(image_id, int) and not isinstance(image_id, bool):
                bad_images.add(image_id)
            bad(f"images[{i}]{_id_of(obj)}: {exc}")
            continue
        if image.id in images:
            bad(f"images[{i}] (id {image.id}): duplicate image id")
            continue
        images[image.id] = image

    annotations_of: dict[int, list[Annotation]] = {}
    tainted: set[int] = set()
    seen_ids: set[int] = set()
    for i, obj in enumerate(doc["annotations"]):
        try:
            ann = _annotation(obj, i)
        except ValueError as exc:
            image_id = obj.get("image_id") if isinstance(obj, dict) else None
            if isinstance(image_id, int) and not isinstance(image_id, bool):
                tainted.add(image_id)
            bad(f"annotations[{i}]{_id_of(obj)}: {exc}")
            continue
        if ann.id in seen_ids:
            tainted.add(ann.image_id)
            bad(f"annotations[{i}] (id {ann.id}): duplicate annotation id")
            continue
        seen_ids.add(ann.id)
        if ann.image_id in bad_images and ann.image_id not in images:
            continue
        if ann.image_id not in images:
            bad(f"annotations[{i}] (id {ann.id}): image_id {ann.image_id} is not in 'images' (dangling)")
            continue
        if ann.category_id not in categories:
            tainted.add(ann.image_id)
            bad(f"annotations[{i}] (id {ann.id}): category_id {ann.category_id} is not in 'categories'")
            continue
        annotations_of.setdefault(ann.image_id, []).append(ann)
    del doc
    return Annotations(src, categories, images, annotations_of, tainted)


def _id_of(obj: Any) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("id"), int | str):
        return f" (id {obj['id']})"
    return ""


def _require(obj: Any, keys: tuple[str, ...]) -> dict:
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(missing)}")
    return obj


def _int(obj: dict, key: str, minimum: int | None = None) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key} must be at least {minimum}, got {value}")
    return value


def _category(obj: Any, index: int) -> Category:
    obj = _require(obj, CATEGORY_KEYS)
    name, sup = obj["name"], obj["supercategory"]
    if not isinstance(name, str) or len(name.strip()) < 2 or any(c in name for c in ",{}."):
        raise ValueError(f"name must be a string of at least 2 characters without ',', '.', braces: {name!r}")
    if not isinstance(sup, str) or not sup.strip():
        raise ValueError(f"supercategory must be a non-empty string, got {sup!r}")
    _as_value_error(check_text, name, "name")
    return Category(_int(obj, "id"), name.strip(), sup.strip(), index)


def _as_value_error(check: Callable[[str, str, str], str], value: str, field: str) -> None:
    """Run a :mod:`pb_build.names` check; its problem becomes the ValueError the entry readers report."""
    try:
        check(value, "", field)
    except BadRecord as bad:
        raise ValueError(bad.cause) from None


def _image(obj: Any, index: int) -> CocoImage:
    obj = _require(obj, IMAGE_KEYS)
    file_name = obj["file_name"]
    if not isinstance(file_name, str) or file_name.startswith(".") or any(c in file_name for c in "{}"):
        raise ValueError(f"file_name must be a plain file name, got {file_name!r}")
    _as_value_error(check_component, file_name, "file_name")
    licence = obj.get("license")
    return CocoImage(
        id=_int(obj, "id"), file_name=file_name, width=_int(obj, "width", 1), height=_int(obj, "height", 1),
        license=licence if isinstance(licence, int) and not isinstance(licence, bool) else None,
        flickr_url=str(obj.get("flickr_url", "")), index=index,
    )


def _annotation(obj: Any, index: int) -> Annotation:
    obj = _require(obj, ANNOTATION_KEYS)
    bbox = obj["bbox"]
    if (not isinstance(bbox, list) or len(bbox) != 4
            or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in bbox)):
        raise ValueError(f"bbox must be a list of 4 finite numbers [x, y, w, h], got {bbox!r}")
    crowd = obj["iscrowd"]
    if crowd not in (0, 1) or isinstance(crowd, float):
        raise ValueError(f"iscrowd must be 0 or 1, got {crowd!r}")
    area = obj.get("area")
    return Annotation(
        id=_int(obj, "id"), image_id=_int(obj, "image_id"), category_id=_int(obj, "category_id"),
        bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])), iscrowd=bool(crowd),
        area=float(area) if isinstance(area, int | float) and not isinstance(area, bool) else None, index=index,
    )


def read_image(src: Source) -> bytes:
    """The bytes of one image file (or archive member); a missing or unreadable one is a :class:`BadRecord`."""
    try:
        with _open_source(src) as handle:
            return handle.read()
    except FileNotFoundError:
        raise BadRecord(str(src), "image file is missing") from None
    except OSError as exc:
        raise BadRecord(str(src), f"cannot read the image: {exc.strerror or exc}") from None


def image_header(src: Source) -> tuple[int, int]:
    """(width, height) read from the image header only (size limits checked); a missing, unidentifiable or
    oversized image is a BadRecord."""
    try:
        with _open_source(src) as handle:
            width, height, _ = imageio.probe(handle, str(src))
    except FileNotFoundError:
        raise BadRecord(str(src), "image file is missing") from None
    except OSError as exc:
        raise BadRecord(str(src), f"cannot read the image header: {exc.strerror or exc}") from None
    return width, height


# --------------------------------------------------------------------------------------------- fetching

BASE_URL = "http://images.cocodataset.org"
URL_ENV = "PB_BUILD_COCO_URL"
CACHE_SUBDIR = Path("coco2014")


def archive_urls(split: str, base_url: str = BASE_URL) -> dict[str, str]:
    """File name -> URL of the two published archives a build of ``split`` needs."""
    base = base_url.rstrip("/")
    return {ANNOTATION_ZIP: f"{base}/annotations/{ANNOTATION_ZIP}",
            f"{folder_name(split)}.zip": f"{base}/zips/{folder_name(split)}.zip"}


def fetch(split: str, cache_dir: Path | None = None, *, base_url: str | None = None, progress: bool = True) -> Path:
    """Download ``annotations_trainval2014.zip`` and ``<split>2014.zip`` (resumable) into the cache.

    The archives are read in place (see :func:`find_layout`), so nothing is extracted. ``base_url`` defaults
    to ``$PB_BUILD_COCO_URL``, then :data:`BASE_URL`. Returns the raw folder.
    """
    base = base_url or os.environ.get(URL_ENV) or BASE_URL
    folder = cache_root(cache_dir) / CACHE_SUBDIR
    for file_name, url in archive_urls(split, base).items():
        check_download("coco", file_name, download(url, folder / file_name, progress=progress), url)
    return folder
