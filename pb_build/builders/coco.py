"""COCO 2014: a badly framed photo of one object; the model should ask to move the camera or zoom out.

Input: ``--raw`` holds ``annotations/instances_<split>2014.json`` and ``<split>2014/`` (or the published zips,
read in place; see :mod:`pb_build.raw.coco`); ``--split val`` (default, the benchmark) or ``train``.
Construction (ProactiveBench, arXiv 2603.19466, App. A.7; record fields as the official
``COCO2014Environment`` reads them):

* **Eligible images.** Exactly one annotation in the file, and it is not a crowd annotation (``iscrowd=1``
  annotations count towards "exactly one": an image with one object plus a crowd region shows more objects, and a
  lone crowd annotation is a group, not one object). Images with no annotation are not used.
* **Object box.** ``bbox`` = [x, y, w, h] (floats) is rounded *outwards* to whole pixels, ``[floor(x),
  ceil(x + w)) x [floor(y), ceil(y + h))``, and clipped to the image. Tiny boxes are excluded: a side under
  ``MIN_BOX_SIDE`` (16) px or an area under ``MIN_BOX_AREA`` (32 x 32 = 1024, COCO's "small" threshold) px².
* **Views** are integer pixel boxes (x1, y1, x2, y2), half-open, as ``PIL.Image.crop`` takes them. Every view is
  at least ``MIN_SIDE`` (32) px on each side, lies inside the image (no black padding ever), and the final view
  (every move made) contains the object box. Step sizes are whole pixels (>= 1), so the official running steps
  stay exact.
* **Direction and granularity.** The sample's RNG draws uniformly among the 27 pairs (one of the 9 directions:
  left, right, up, down, up_left, up_right, down_left, down_right, zoom) x (granularity g in 3, 4, 5) whose
  geometry is feasible for this image and box (a random order of the pairs; the first feasible one). Images with
  no feasible pair (e.g. a box too near the borders for any move and too small to zoom into) are excluded.
* **First view (hard crop).** Per moving axis, the first view's moving edge lies between half the box extent
  before the box and a cut into the box; the cut shows at most ``CUT_CARDINAL`` = 3/10 of the box extent for
  cardinal moves (the other axis covers the box), at most 1/2 per axis for diagonal moves, and for zoom the first
  view lies inside the box with at most 1/2 of the box extent per axis. Hence IoU(first view, object box) <=
  0.3 (cardinal) and <= 0.25 (diagonal, zoom); ``MAX_IOU`` = 0.3 is asserted for every sample, and the actual
  IoU is in the row's meta. Moves: g - 1 per axis for directional crops (cardinal: g views; diagonal: g x g views),
  g zoom-outs (g + 1 views).
* **Sampling a geometry** (uniform at each stage over what remains feasible): per moving axis the first edge,
  then the fixed opposite edge (between the image border and the box), then the final edge (between the box and
  the image border, a whole number of steps away); per fixed axis (cardinal) both edges; for zoom the first
  view's size and position inside the box, then the step.
* **Official record** (§7 conventions exactly): ``crop`` is the zero-step box, i.e. the first view shrunk by one
  step on the moving sides (the first view already includes one step); for directional crops ``width``/``height``
  hold the right/bottom *coordinates*, for zoom they are *sizes*. The zero-step box always has a positive size.
  ``horizontal_step``/``vertical_step`` are the pixel steps (0 for the axis a cardinal crop does not move).
  ``first_image`` = 0, ``num_images`` = 1, ``reference_image`` = 0, and the image is written once, unchanged,
  under ``test/coco2014/<split>2014/<file_name>``.
* **State machine** (mirrors ``COCO2014Environment``): a state is the pair (a, b) of horizontal and vertical
  moves made (zoom: a = b = k). An axis's option is shown while its running step is below the official maximum
  (directional: ``step * (n + 1) < step * g``; zoom: shown until ``step * (k + 1) == step * (g + 1)``); shown
  proactive options are valid and lead to (a + 1, b) / (a, b + 1) / (k + 1, k + 1); the correct category is
  accepted in every state. ``max_steps`` is the official one: cardinal g, diagonal 2g, zoom g + 1.
* **Frames.** One frame per state: the view cropped from the image decoded with PIL (no EXIF rotation, like the
  official transform). Default ``--frame-format png``: lossless (OpenCV PNG, compression 3), so every view is
  pixel-identical to what the official transform shows; photos make large PNGs (a full val2014 build holds
  ~50k views). ``--frame-format jpeg`` (``--jpeg-quality``, default 95) is several times smaller and faster to
  encode, at the cost of re-compression. Modes other than L and RGB are converted to RGB. The reference frame
  (last) is the original image file, byte for byte (no re-encoding).
* **Options.** Exactly the official strings: cardinal 1 proactive option, diagonal 2 (vertical, horizontal),
  zoom ``Move farther from the object.``; plus one abstain option from a pool of 3; shuffled once. A question
  from a pool of 15 (``POOL_VERSION``); the hint is the directional or the zoom hint.
* **Categories.** The answer plus 3 hard negatives from a pluggable :class:`DistractorChooser`
  (``--distractors``). ``supercategory`` (default): the other categories of the answer's COCO supercategory, in
  a seeded random order, topped up from the related supercategories of :data:`RELATED_SUPERCATEGORIES` in table
  order (random within each), then from all remaining categories. ``embeddings:<file>``: the 3 categories whose
  text embeddings are most cosine-similar to the answer's (a JSON object ``{"<category name>": [floats], ...}``
  covering every category, e.g. CLIP text embeddings as in the paper; ties broken by name). Category strings are
  ``name.capitalize() + '.'``.
* **Selection.** ``--per-class 0`` (default) keeps every eligible image; N > 0 keeps the N of each category with
  the smallest rank hashed from (seed, source, key). Samples are ordered by image id. An image is read only
  after selection: its header in the plan (missing, unreadable or wrongly sized images are bad records), the
  whole image in the worker.
* Randomness, in this order, all from ``sample_rng(seed, "coco", key)``: question, abstain option, the pair
  order, the geometry, option order, distractors, category order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pb_build import imageio
from pb_build.builders.base import ABSTAIN, OnBad, Plan, SourceInfo, WorkUnit
from pb_build.builders.coco_distractors import EmbeddingChooser, chooser_spec, get_chooser
from pb_build.builders.coco_geometry import (
    CUT_CARDINAL,
    CUT_TWO_AXES,
    MAX_IOU,
    MIN_BOX_AREA,
    MIN_BOX_SIDE,
    MIN_SIDE,
    NEAR,
    OPTION_OF,
    ZOOM,
    Geometry,
    Machine,
    ObjectBox,
    any_feasible,
    iou,
    machine_states,
    sample_geometry,
    state_machine,
)
from pb_build.episode import Episode, OfficialExport, OfficialFile
from pb_build.errors import BadRecord, Ineligible, PbBuildError
from pb_build.names import check_inside
from pb_build.raw import coco as raw
from pb_build.seeding import sample_rank, sample_rng
from pb_build.strings import category_string

name = "coco"
VERSION = "1.0.0"
RELEASE_NOTES = {"1.0.0": "First pb-build COCO 2014 builder."}
POOL_VERSION = "pb-build-coco-1"

info = SourceInfo(
    official_name="coco2014",
    title="MS-COCO 2014",
    licence="Annotations CC BY 4.0 (COCO Consortium); images under their per-image Flickr licences",
    attribution="Microsoft COCO 2014 (Lin et al. 2014), annotations CC BY 4.0 by the COCO Consortium; each image "
    "keeps the Flickr licence listed in the annotation file.",
    homepage="https://cocodataset.org",
    citation="Lin, T.-Y., Maire, M., Belongie, S., Hays, J., Perona, P., Ramanan, D., Dollar, P., Zitnick, C. L. "
    "Microsoft COCO: Common Objects in Context. ECCV 2014.",
    description="COCO 2014 photos with exactly one annotated object, shown as a hard crop with little overlap "
    "with the object; the model should move the camera (or zoom out) before naming the object.",
)

HINT_MOVE = "Hint: moving the camera could help with classification."
HINT_ZOOM = "Hint: zooming out could help with classification."

QUESTIONS = (
    "Identify the object in this image.",
    "Classify the visual content of this image.",
    "What object is shown in this image?",
    "What is the main object in this picture?",
    "Which category does the object in this image belong to?",
    "What kind of object can you see here?",
    "Name the object depicted in this photo.",
    "What is the category of the object in this picture?",
    "Can you tell what object this image shows?",
    "What object does this photo contain?",
    "Determine the category of the object in the image.",
    "What is pictured in this image?",
    "Which object appears in this photo?",
    "Recognise the object shown in the picture.",
    "What type of object is visible in this image?",
)


FRAME_FORMATS = ("png", "jpeg")


@dataclass(frozen=True)
class Config:
    """Parameters of a COCO 2014 build; every field is recorded in the manifest."""

    split: str = field(default="val", metadata={"help": "Raw split: val (val2014, the benchmark) or train."})
    per_class: int = field(default=0, metadata={"help": "Images per category (0 = every eligible image)."})
    frame_format: str = field(default="png", metadata={
        "help": "Native view encoding: png (lossless, as the official transform shows it) or jpeg."})
    jpeg_quality: int = field(default=95, metadata={"help": "JPEG quality of the views with --frame-format jpeg."})
    distractors: str = field(default="supercategory", metadata={
        "help": "Distractor chooser: supercategory, or embeddings:<file.json> ({name: [floats]})."})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in raw.SPLITS:
            raise PbBuildError(f"--split must be one of {', '.join(raw.SPLITS)}, got {self.split!r}")
        if self.per_class < 0:
            raise PbBuildError("--per-class must be 0 (all) or more")
        if self.frame_format not in FRAME_FORMATS:
            raise PbBuildError(f"--frame-format must be one of {', '.join(FRAME_FORMATS)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise PbBuildError("--jpeg-quality must be between 1 and 100")
        chooser_spec(self.distractors)


def sample_dir() -> None:
    """COCO ships no bundled sample (its images carry Flickr licences)."""
    return None


def fetch(config: Config, cache_dir: Path | None, progress: bool) -> Path:
    """Download the annotation archive and the split's image archive (about 6 GB for val2014, 13 GB train)."""
    return raw.fetch(config.split, cache_dir, progress=progress)


# ----------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Payload:
    """What a worker needs to build one sample."""

    split: str
    image: raw.CocoImage
    annotation: raw.Annotation
    category: raw.Category
    categories: tuple[raw.Category, ...]
    source: raw.Source


def plan(raw_dir: Path, config: Config, on_bad: OnBad) -> Plan:
    """Read the annotation file, keep eligible single-object images, select, and check the chosen images."""
    layout = raw.find_layout(raw_dir, config.split)
    ann = raw.load_annotations(layout.annotations, on_bad)
    categories = tuple(sorted(ann.categories.values(), key=lambda c: c.id))
    if len(categories) < 4:
        raise PbBuildError(f"{layout.annotations}: needs at least 4 categories for the 4 answer choices, "
                           f"has {len(categories)}")
    kind, emb_path = chooser_spec(config.distractors)
    if kind == "embeddings":
        chooser = get_chooser(config.distractors)
        assert isinstance(chooser, EmbeddingChooser)
        missing = chooser.missing([c.name for c in categories])
        if missing:
            raise PbBuildError(f"{emb_path}: no embedding for categor{'y' if len(missing) == 1 else 'ies'} "
                               f"{', '.join(map(repr, missing[:10]))}")
    counts = {"images": len(ann.images), "single_object": 0, "tiny_box": 0, "no_feasible_crop": 0}
    folder = raw.folder_name(config.split)
    key_of = lambda image: f"{name}/{folder}/{image.id}"  # noqa: E731
    eligible: list[tuple[raw.CocoImage, raw.Annotation]] = []
    excluded: list[Ineligible] = []
    for image, annotation in ann.single_object():
        counts["single_object"] += 1
        box = ObjectBox.from_bbox(annotation.bbox, image.width, image.height)
        if not box.usable():
            counts["tiny_box"] += 1
            excluded.append(Ineligible(key_of(image), "object box too small"))
        elif not any_feasible(image.width, image.height, box):
            counts["no_feasible_crop"] += 1
            excluded.append(Ineligible(key_of(image), "no feasible crop and move"))
        else:
            eligible.append((image, annotation))
    if config.per_class:
        by_cat: dict[int, list[tuple[raw.CocoImage, raw.Annotation]]] = {}
        for item in eligible:
            by_cat.setdefault(item[1].category_id, []).append(item)
        chosen = {
            image.id
            for items in by_cat.values()
            for image, _ in sorted(items, key=lambda it: sample_rank(config.seed, name, key_of(it[0])))[
                : config.per_class]
        }
        eligible = [item for item in eligible if item[0].id in chosen]
    units: list[WorkUnit] = []
    image_files: list[Path] = []
    for image, annotation in eligible:
        src = layout.image_source(image.file_name)
        try:
            size = raw.image_header(src)
            if size != (image.width, image.height):
                raise BadRecord(src, f"image is {size[0]}x{size[1]} but the annotation file says "
                                     f"{image.width}x{image.height} (images[{image.index}], id {image.id})")
        except BadRecord as bad:
            if on_bad is None:
                raise
            on_bad(bad)
            continue
        if src.member is None:
            image_files.append(src.path)
        payload = Payload(config.split, image, annotation, ann.categories[annotation.category_id], categories, src)
        units.append(WorkUnit(key_of(image), payload))
    counts["selected"] = len(units)
    annotations_at = layout.annotations.path.relative_to(raw_dir).as_posix()
    if layout.annotations.member:
        annotations_at += f"!{layout.annotations.member}"
    notes = {"pool_version": POOL_VERSION, "counts": counts, "annotations": annotations_at,
             "images": "zip" if layout.images_zipped else "folder", "distractors": config.distractors,
             "rules": {"min_side": MIN_SIDE, "min_box_side": MIN_BOX_SIDE, "min_box_area": MIN_BOX_AREA,
                       "cut_cardinal": list(CUT_CARDINAL), "cut_two_axes": list(CUT_TWO_AXES),
                       "near": list(NEAR), "max_iou": MAX_IOU}}
    check_inside(raw_dir, layout.raw_files + image_files)
    return Plan(units=units, raw_files=layout.raw_files + sorted(image_files), raw_root=raw_dir, notes=notes,
                ineligible=excluded)


# ---------------------------------------------------------------------------------------------------- build


def decode_image(data: bytes, src: raw.Source, width: int, height: int) -> Any:
    """Decode with PIL (as the official transform does; no EXIF rotation), in a stored mode (L or RGB)."""
    pixels = np.asarray(imageio.decode_pil(data, str(src)))
    if pixels.shape[1] != width or pixels.shape[0] != height:
        raise BadRecord(src, f"image is {pixels.shape[1]}x{pixels.shape[0]}, the annotation says {width}x{height}")
    return pixels


def crop_view(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``PIL.Image.crop(box)`` on decoded pixels: the part of the box outside the image is black, as PIL fills it
    (pb-build's own views always lie inside the image)."""
    x1, y1, x2, y2 = box
    height, width = pixels.shape[:2]
    if 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height:
        return pixels[y1:y2, x1:x2]
    if x2 < x1 or y2 < y1:
        raise ValueError(f"crop box {box} has a negative size")
    view = np.zeros((y2 - y1, x2 - x1, *pixels.shape[2:]), pixels.dtype)
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if ix1 < ix2 and iy1 < iy2:
        view[iy1 - y1:iy2 - y1, ix1 - x1:ix2 - x1] = pixels[iy1:iy2, ix1:ix2]
    return view


def encode_view(pixels: np.ndarray, box: tuple[int, int, int, int], config: Config) -> bytes:
    """One view, cropped exactly like ``PIL.Image.crop(box)``."""
    import cv2

    view = crop_view(pixels, box)
    if view.ndim == 3:
        view = cv2.cvtColor(view, cv2.COLOR_RGB2BGR)
    if config.frame_format == "png":
        return imageio.encode_png(view)
    ok, buf = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
    if not ok:
        raise ValueError("OpenCV could not encode the view as JPEG")
    return buf.tobytes()


def _check_geometry(geo: Geometry, machine: Machine, width: int, height: int, box: ObjectBox) -> float:
    """Assert the documented invariants; return IoU(first view, object box)."""
    def require(ok: bool, what: str) -> None:
        if not ok:
            raise AssertionError(f"COCO geometry bug ({geo}): {what}")

    obj = (box.x1, box.y1, box.x2, box.y2)
    for x1, y1, x2, y2 in machine.boxes:
        require(0 <= x1 and 0 <= y1 and x2 <= width and y2 <= height, "a view leaves the image")
        require(x2 - x1 >= MIN_SIDE and y2 - y1 >= MIN_SIDE, "a view is too small")
    final = machine.boxes[-1]
    require(final[0] <= box.x1 and final[1] <= box.y1 and final[2] >= box.x2 and final[3] >= box.y2,
            "the final view does not contain the object")
    first_iou = iou(machine.boxes[0], obj)
    require(first_iou <= MAX_IOU, f"first view IoU {first_iou:.3f} above {MAX_IOU}")
    return first_iou


def build(unit: WorkUnit, config: Config) -> Episode:
    """Build the episode of one image."""
    p: Payload = unit.payload
    image, annotation = p.image, p.annotation
    rng = sample_rng(config.seed, name, unit.key)
    prompt = QUESTIONS[int(rng.integers(len(QUESTIONS)))]
    abstain = ABSTAIN[int(rng.integers(len(ABSTAIN)))]
    box = ObjectBox.from_bbox(annotation.bbox, image.width, image.height)
    geo = sample_geometry(rng, image.width, image.height, box)
    d = geo.direction
    if d == "zoom":
        proactive = [ZOOM]
    else:
        proactive = [OPTION_OF[part] for part in sorted(d.split("_"), key=lambda s: s not in ("up", "down"))]
    pool = [*proactive, abstain]
    options = tuple(pool[int(i)] for i in rng.permutation(len(pool)))
    others = [c for c in p.categories if c.id != p.category.id]
    wrong = get_chooser(config.distractors)(p.category, others, rng)
    if len({c.id for c in wrong}) != 3 or any(c.id == p.category.id for c in wrong):
        raise PbBuildError(f"the distractor chooser {config.distractors!r} did not return 3 other categories")
    names = [p.category.name, *(c.name for c in wrong)]
    categories = tuple(category_string(names[int(i)]) for i in rng.permutation(4))
    answer = category_string(p.category.name)

    machine = state_machine(geo, options)
    first_iou = _check_geometry(geo, machine, image.width, image.height, box)
    data = raw.read_image(p.source)
    pixels = decode_image(data, p.source, image.width, image.height)
    frames = tuple(encode_view(pixels, b, config) for b in machine.boxes) + (data,)
    reference = len(frames) - 1
    abstain_idx = options.index(abstain)
    states = machine_states(machine, options)
    folder = raw.folder_name(p.split)
    path = f"coco2014/{folder}/{image.file_name}"
    record = {
        "image_template": path,
        "first_image": 0,
        "num_images": 1,
        "reference_image": 0,
        "prompt": prompt,
        "options": list(options),
        "categories": list(categories),
        "answer": answer,
        "direction": d,
        "granularity": geo.granularity,
        "horizontal_step": geo.horizontal_step,
        "vertical_step": geo.vertical_step,
        "crop": dict(geo.crop),
    }
    meta = {
        "split": folder, "image_id": image.id, "file_name": image.file_name, "width": image.width,
        "height": image.height, "license": image.license, "flickr_url": image.flickr_url,
        "annotation_id": annotation.id, "category_id": p.category.id, "supercategory": p.category.supercategory,
        "bbox": list(annotation.bbox), "object_box": [box.x1, box.y1, box.x2, box.y2],
        "direction": d, "granularity": geo.granularity, "moves": [list(m) for m in machine.moves],
        "view_boxes": [list(b) for b in machine.boxes], "first_view_iou": round(first_iou, 6),
        "frame_format": config.frame_format,
    }
    return Episode(
        source=name,
        key=unit.key,
        prompt=prompt,
        options=options,
        categories=categories,
        answer=answer,
        frames=frames,
        states=states,
        reference_frame=reference,
        max_steps=machine.max_steps,
        hint=HINT_ZOOM if d == "zoom" else HINT_MOVE,
        abstain=(abstain_idx,),
        official=OfficialExport(info.official_name, record, (OfficialFile(path, data),)),
        meta=meta,
    )

