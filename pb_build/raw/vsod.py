"""OcclusionDataSet-MM20 (VSOD v1.0) raw data: segment folders, per-frame PASCAL-VOC annotations, question labels.

Layout (the published VSOD v1.0 archive), below the raw folder or its ``OcclusionDataSet-MM20/`` subfolder::

    Data/<split>/<segment>/<frame>.<jpg|jpeg|png|bmp>
    Annotations/<split>/<segment>/<frame>.xml      # one PASCAL-VOC XML per frame

Reading rules:

* Frames of a segment are ordered by file name, comparing runs of digits as numbers (``natural`` order: for
  zero-padded names, the usual case, this is the plain sorted order the authors' code uses; for unpadded names
  ``2`` comes before ``10``, so the video is never scrambled). Equal keys cannot occur (names are unique).
* Hidden files (names starting with ``.``) are ignored. A frame and its annotation are paired by file stem
  (``0001.jpg`` with ``0001.xml``); a frame without an XML, an XML without a frame, or a segment folder present
  on one side only is a Data/Annotations mismatch. Two frames with the same stem are an error.
* An XML must have the root ``<annotation>`` with ``<size><width>``/``<height>`` (positive numbers), and every
  ``<object>`` must carry a ``<bndbox>`` with numeric ``xmin < xmax`` and ``ymin < ymax``. A frame is *occluded*
  iff its XML has at least one ``<object>``. Its *occluded fraction* is the area of the union of its boxes,
  clipped to the image, divided by ``width * height`` (coordinates taken as continuous pixel positions).
* Labels (:func:`read_labels`): a UTF-8 CSV with the header ``segment,question_type,answer`` and an optional
  fourth column ``distractors`` (wrong answers separated by ``|``). ``question_type`` is one of
  :data:`QUESTION_TYPES`. Blank lines are ignored; one row is one sample.

Every problem is a :class:`BadRecord` naming the file (and line), raised or handed to ``on_bad``.
"""

from __future__ import annotations

import csv
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pb_build import imageio
from pb_build.errors import BadRecord, PbBuildError
from pb_build.names import check_component, check_text

OnBad = Callable[[BadRecord], None] | None

FOLDER = "OcclusionDataSet-MM20"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
QUESTION_TYPES = ("speaker_name", "number_of_people", "event_type")
LABEL_COLUMNS = ("segment", "question_type", "answer")
OPTIONAL_COLUMNS = ("distractors",)


@dataclass(frozen=True)
class FrameAnnotation:
    """One annotated frame: its image, its XML and how much of it the boxes hide."""

    image: str
    xml: str
    boxes: int
    fraction: float

    @property
    def occluded(self) -> bool:
        return self.boxes > 0


@dataclass(frozen=True)
class Segment:
    """One video segment: its frames in playback order with their annotations."""

    split: str
    name: str
    frames: tuple[FrameAnnotation, ...]


@dataclass(frozen=True)
class LabelRow:
    """One row of the user's labels file: one question about one segment."""

    segment: str
    question_type: str
    answer: str
    distractors: tuple[str, ...]
    path: str
    line: int


def find_root(raw_dir: Path) -> Path:
    """The folder that holds ``Data/`` and ``Annotations/`` (``raw_dir`` or its ``OcclusionDataSet-MM20/``)."""
    if not raw_dir.is_dir():
        raise PbBuildError(f"{raw_dir}: raw folder does not exist or is not a folder")
    for root in (raw_dir, raw_dir / FOLDER):
        if (root / "Data").is_dir() and (root / "Annotations").is_dir():
            return root
    raise PbBuildError(f"{raw_dir}: no Data/ and Annotations/ folders (nor {FOLDER}/Data and {FOLDER}/Annotations)")


def segment_names(root: Path, split: str) -> list[str]:
    """The segment folder names of ``Data/<split>``, sorted."""
    data = root / "Data" / split
    if not data.is_dir():
        raise PbBuildError(f"{data}: split folder does not exist (choose the split with --split)")
    return sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs numerically (``'2.jpg' < '10.jpg'``), then the name itself."""
    parts = tuple((1, int(p), p) if p.isdigit() else (0, 0, p) for p in _DIGITS.split(name) if p)
    return (parts, name)


def list_segment(root: Path, split: str, name: str) -> list[tuple[str, str]]:
    """(frame image, XML) paths of one segment in playback order, paired and checked, nothing parsed."""
    data_dir, ann_dir = root / "Data" / split / name, root / "Annotations" / split / name
    if not data_dir.is_dir():
        raise BadRecord(data_dir, "segment folder missing under Data/ (Data/Annotations mismatch)")
    if not ann_dir.is_dir():
        raise BadRecord(ann_dir, "segment folder missing under Annotations/ (Data/Annotations mismatch)")
    check_component(name, data_dir, "segment name")
    # Names and string paths, listed with scandir: pathlib and a stat per file were about a third of planning
    images = sorted(((n, p) for n, p in _files(str(data_dir)) if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES),
                    key=lambda entry: natural_key(entry[0]))
    xmls = sorted(((n, p) for n, p in _files(str(ann_dir)) if os.path.splitext(n)[1].lower() == ".xml"),
                  key=lambda entry: natural_key(entry[0]))
    if not images:
        raise BadRecord(data_dir, "segment has no frame images (.jpg, .jpeg, .png, .bmp)")
    if len(images) != len(xmls):
        raise BadRecord(data_dir, f"{len(images)} frame(s) but {len(xmls)} annotation(s) in {ann_dir}; frames and "
                                  "XML files pair by sorted position (Data/Annotations mismatch)")
    for image_name, image in images:
        check_component(image_name, image, "frame file name")
    return [(image, xml) for (_, image), (_, xml) in zip(images, xmls, strict=True)]


def parse_segment(split: str, name: str, files: list[tuple[str, str]]) -> Segment:
    """The segment of listed (image, XML) pairs (:func:`list_segment`) with their annotations parsed."""
    return Segment(split, name, tuple(FrameAnnotation(image, xml, *parse_annotation(xml, image))
                                      for image, xml in files))


def read_segment(root: Path, split: str, name: str) -> Segment:
    """List and pair the frames of one segment and parse their annotations."""
    return parse_segment(split, name, list_segment(root, split, name))


def _files(folder: str) -> list[tuple[str, str]]:
    """(name, path) of the visible files of a folder (``.DS_Store``, ``._0001.xml`` and other hidden files are
    not frames)."""
    with os.scandir(folder) as entries:
        return [(e.name, e.path) for e in entries if not e.name.startswith(".") and e.is_file()]


def _number(node: ET.Element, tag: str, path: Path | str, where: str) -> float:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise BadRecord(path, f"missing <{tag}> in {where}")
    try:
        value = float(child.text.strip())
    except ValueError:
        raise BadRecord(path, f"<{tag}> in {where} is not a number: {child.text.strip()!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadRecord(path, f"<{tag}> in {where} is not a finite number")
    return value


def parse_annotation(path: Path | str, frame: Path | str | None = None) -> tuple[int, float]:
    """(number of boxes, occluded fraction) of one PASCAL-VOC XML file.

    Boxes are VOC's 1-based inclusive pixel ranges (``xmin == xmax`` is one pixel wide). A missing or zero
    ``<size>`` falls back to the size in ``frame``'s image header (the MM20 authors read nothing else)."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise BadRecord(path, f"malformed XML: {exc}", exc.position[0] if exc.position else None) from None
    except OSError as exc:
        raise BadRecord(path, f"cannot read: {exc.strerror or exc}") from None
    ann = tree.getroot()
    if ann.tag != "annotation":
        raise BadRecord(path, f"root element is <{ann.tag}>, expected <annotation>")
    width, height = _declared_size(ann, path)
    if (width <= 0 or height <= 0) and frame is not None:
        w, h, _ = imageio.probe(imageio.read_bytes(frame), frame)
        width, height = float(w), float(h)
    if width <= 0 or height <= 0:
        raise BadRecord(path, f"<size> must be positive, got {width:g}x{height:g}")
    rects = []
    for k, obj in enumerate(ann.findall("object")):
        box = obj.find("bndbox")
        where = f"<bndbox> of <object> {k}"
        if box is None:
            raise BadRecord(path, f"<object> {k} has no <bndbox>")
        x0, y0 = _number(box, "xmin", path, where), _number(box, "ymin", path, where)
        x1, y1 = _number(box, "xmax", path, where), _number(box, "ymax", path, where)
        if not (x0 <= x1 and y0 <= y1):
            raise BadRecord(path, f"{where} is inverted ({x0:g},{y0:g})-({x1:g},{y1:g})")
        x0, y0 = x0 - 1, y0 - 1  # inclusive 1-based pixels -> half-open 0-based area
        rects.append((min(max(x0, 0.0), width), min(max(y0, 0.0), height),
                      min(max(x1, 0.0), width), min(max(y1, 0.0), height)))
    return len(rects), union_area(rects) / (width * height)


def _declared_size(ann: ET.Element, path: Path | str) -> tuple[float, float]:
    """(width, height) from ``<size>``; (0, 0) when it is missing or incomplete."""
    size = ann.find("size")
    if size is None or size.find("width") is None or size.find("height") is None:
        return 0.0, 0.0
    return _number(size, "width", path, "<size>"), _number(size, "height", path, "<size>")


def union_area(rects: list[tuple[float, float, float, float]]) -> float:
    """Area of the union of axis-aligned rectangles (x0, y0, x1, y1), by coordinate compression."""
    xs = sorted({v for r in rects for v in (r[0], r[2])})
    ys = sorted({v for r in rects for v in (r[1], r[3])})
    area = 0.0
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            cx, cy = (xs[i] + xs[i + 1]) / 2, (ys[j] + ys[j + 1]) / 2
            if any(r[0] <= cx < r[2] and r[1] <= cy < r[3] for r in rects):
                area += (xs[i + 1] - xs[i]) * (ys[j + 1] - ys[j])
    return area


def read_labels(path: Path, on_bad: OnBad = None) -> Iterator[LabelRow]:
    """Stream the rows of a labels CSV (see the module docstring); structural problems name file and line."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise PbBuildError(f"{path}: cannot open the labels file: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BadRecord(path, f"unreadable CSV header: {exc}", 1) from None
        names = [h.strip() for h in header or []]
        if names[:3] != list(LABEL_COLUMNS) or any(n not in OPTIONAL_COLUMNS for n in names[3:]) or len(names) > 4:
            raise BadRecord(path, f"header must be 'segment,question_type,answer[,distractors]', got "
                            f"{','.join(names)!r}", 1)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise BadRecord(path, f"unreadable CSV: {exc}", reader.line_num) from None
            if not any(f.strip() for f in fields):
                continue
            try:
                yield _label_row(fields, len(names), str(path), reader.line_num)
            except BadRecord as bad:
                if on_bad is None:
                    raise
                on_bad(bad)


def _label_row(fields: list[str], n_columns: int, path: str, line: int) -> LabelRow:
    if len(fields) > n_columns or len(fields) < 3:
        raise BadRecord(path, f"expected {n_columns} fields, got {len(fields)} (quote fields that contain commas)",
                        line)
    segment, qtype, answer = (f.strip() for f in fields[:3])
    if not segment:
        raise BadRecord(path, "empty segment", line)
    if qtype not in QUESTION_TYPES:
        raise BadRecord(path, f"unknown question_type {qtype!r}; expected one of {', '.join(QUESTION_TYPES)}", line)
    if not answer:
        raise BadRecord(path, "empty answer", line)
    extra = fields[3].strip() if len(fields) > 3 else ""
    distractors = tuple(d.strip() for d in extra.split("|") if d.strip()) if extra else ()
    check_component(segment, path, "segment", line)
    for field, text in (("answer", answer), *(("distractor", d) for d in distractors)):
        check_text(text, path, field, line)
    return LabelRow(segment, qtype, answer, distractors, path, line)
