"""COCO 2014: a badly framed photo of one object; the model should ask to move the camera or zoom out.

Input: ``--raw`` holds ``annotations/instances_<split>2014.json`` and ``<split>2014/`` (or the published zips,
read in place; see :mod:`pb_build.raw.coco`); ``--split val`` (default, the benchmark) or ``train``.
Construction (benchmark.md §3.2, §6 COCO, §7):

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

import functools
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pb_build.builders.base import OnBad, Plan, SourceInfo, WorkUnit
from pb_build.episode import Episode, OfficialExport, OfficialFile, State
from pb_build.errors import BadRecord, PbBuildError
from pb_build.frames import encode_png
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

LEFT, RIGHT, UP, DOWN = ("Move the camera to the left.", "Move the camera to the right.", "Move the camera up.",
                         "Move the camera down.")
ZOOM = "Move farther from the object."
OPTION_OF = {"left": LEFT, "right": RIGHT, "up": UP, "down": DOWN}

DIRECTIONS = ("left", "right", "up", "down", "up_left", "up_right", "down_left", "down_right", "zoom")
GRANULARITIES = (3, 4, 5)

MIN_SIDE = 32
MIN_BOX_SIDE = 16
MIN_BOX_AREA = 32 * 32
CUT_CARDINAL = (3, 10)
CUT_TWO_AXES = (1, 2)
NEAR = (1, 2)
MAX_IOU = 0.3

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

ABSTAIN = ("I cannot tell.", "I cannot answer this question.", "I do not know what is this object.")

# The documented similarity that tops up a supercategory with fewer than 3 other categories: each COCO
# supercategory's related supercategories, most related first.
RELATED_SUPERCATEGORIES: dict[str, tuple[str, ...]] = {
    "person": ("accessory", "sports", "animal"),
    "vehicle": ("outdoor", "sports", "electronic"),
    "outdoor": ("vehicle", "furniture", "indoor"),
    "animal": ("person", "food", "outdoor"),
    "accessory": ("sports", "indoor", "person"),
    "sports": ("accessory", "outdoor", "vehicle"),
    "kitchen": ("food", "appliance", "indoor"),
    "food": ("kitchen", "animal", "indoor"),
    "furniture": ("indoor", "appliance", "electronic"),
    "electronic": ("appliance", "indoor", "furniture"),
    "appliance": ("electronic", "kitchen", "furniture"),
    "indoor": ("furniture", "kitchen", "electronic"),
}

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


# ------------------------------------------------------------------------------------------------ distractors


class DistractorChooser(Protocol):
    """Chooses 3 wrong categories for ``answer`` among ``candidates`` (every category of the file but the answer).

    Must be deterministic given ``rng`` (the sample's own generator) and return 3 distinct candidates.
    """

    def __call__(self, answer: raw.Category, candidates: Sequence[raw.Category],
                 rng: np.random.Generator) -> list[raw.Category]: ...


def supercategory_chooser(answer: raw.Category, candidates: Sequence[raw.Category],
                          rng: np.random.Generator) -> list[raw.Category]:
    """Same supercategory first, then the related supercategories in table order, then the rest; random within."""
    tiers: list[list[raw.Category]] = []
    order = (answer.supercategory, *RELATED_SUPERCATEGORIES.get(answer.supercategory, ()))
    used: set[int] = set()
    for sup in order:
        tier = sorted((c for c in candidates if c.supercategory == sup and c.id not in used), key=lambda c: c.name)
        used.update(c.id for c in tier)
        tiers.append(tier)
    tiers.append(sorted((c for c in candidates if c.id not in used), key=lambda c: c.name))
    chosen: list[raw.Category] = []
    for tier in tiers:
        if len(chosen) == 3:
            break
        chosen += [tier[i] for i in rng.permutation(len(tier))][: 3 - len(chosen)]
    return chosen


class EmbeddingChooser:
    """The 3 candidates whose embeddings are most cosine-similar to the answer's (ties broken by name)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PbBuildError(f"{path}: cannot read the embeddings file: {exc}") from None
        if not isinstance(table, dict) or not table:
            raise PbBuildError(f"{path}: the embeddings file must be a JSON object {{name: [floats]}}")
        vectors: dict[str, np.ndarray] = {}
        for key, vec in table.items():
            arr = np.asarray(vec, dtype=np.float64) if isinstance(vec, list) else np.zeros(0)
            norm = float(np.linalg.norm(arr)) if arr.ndim == 1 and arr.size else 0.0
            if not math.isfinite(norm) or norm == 0.0:
                raise PbBuildError(f"{path}: the embedding of {key!r} is not a non-zero list of numbers")
            vectors[key.lower()] = arr / norm
        sizes = {v.size for v in vectors.values()}
        if len(sizes) != 1:
            raise PbBuildError(f"{path}: embeddings have different lengths {sorted(sizes)}")
        self.vectors = vectors

    def missing(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if n.lower() not in self.vectors]

    def __call__(self, answer: raw.Category, candidates: Sequence[raw.Category],
                 rng: np.random.Generator) -> list[raw.Category]:
        target = self.vectors[answer.name.lower()]
        scored = sorted(candidates, key=lambda c: (-round(float(self.vectors[c.name.lower()] @ target), 12), c.name))
        return list(scored[:3])


def chooser_spec(spec: str) -> tuple[str, Path | None]:
    """Parse ``--distractors``: ('supercategory', None) or ('embeddings', path)."""
    if spec == "supercategory":
        return spec, None
    kind, sep, arg = spec.partition(":")
    if kind == "embeddings" and sep and arg:
        path = Path(arg).expanduser()
        if not path.is_file():
            raise PbBuildError(f"--distractors: embeddings file {path} does not exist")
        return kind, path
    raise PbBuildError(f"--distractors must be 'supercategory' or 'embeddings:<file.json>', got {spec!r}")


@functools.lru_cache(maxsize=4)
def get_chooser(spec: str) -> DistractorChooser:
    """The chooser named by ``--distractors`` (loaded once per process)."""
    kind, path = chooser_spec(spec)
    if kind == "embeddings":
        assert path is not None
        return EmbeddingChooser(path)
    return supercategory_chooser


# -------------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class ObjectBox:
    """The object box rounded outwards to whole pixels and clipped to the image (half-open)."""

    x1: int
    y1: int
    x2: int
    y2: int

    @classmethod
    def from_bbox(cls, bbox: tuple[float, float, float, float], width: int, height: int) -> ObjectBox:
        x, y, w, h = bbox
        return cls(max(0, math.floor(x)), max(0, math.floor(y)), min(width, math.ceil(x + w)),
                   min(height, math.ceil(y + h)))

    @property
    def w(self) -> int:
        return self.x2 - self.x1

    @property
    def h(self) -> int:
        return self.y2 - self.y1

    def usable(self) -> bool:
        """False for tiny (or empty) boxes, which are excluded."""
        return self.w >= MIN_BOX_SIDE and self.h >= MIN_BOX_SIDE and self.w * self.h >= MIN_BOX_AREA


def _moving_candidates(length: int, b1: int, b2: int, m: int, cut: tuple[int, int],
                       first_only: bool = False) -> list[tuple[int, int]]:
    """Feasible (q0, qF*) for an axis whose high edge moves up by m steps: first edge q0, smallest final edge.

    Constraints: q0 in [b1 - e/2, b1 + e*cut]; q0 >= MIN_SIDE (first view side with the low edge at 0); final
    edge qF >= b2, qF <= length, qF = q0 + m*s with s >= 1; zero-step box positive (s < q0 with low edge 0).
    """
    e = b2 - b1
    lo = max(b1 - e * NEAR[0] // NEAR[1], MIN_SIDE)
    hi = b1 + e * cut[0] // cut[1]
    out = []
    for q0 in range(lo, hi + 1):
        need = max(b2, q0 + m)
        q_final = q0 + m * -(-(need - q0) // m)
        if q_final <= length and (q_final - q0) // m < q0:
            out.append((q0, q_final))
            if first_only:
                break
    return out


def _sample_moving(rng: np.random.Generator, length: int, b1: int, b2: int, m: int,
                   cut: tuple[int, int]) -> tuple[int, int, int]:
    """(fixed low edge p1, first moving edge q0, step s) for an axis moving towards larger coordinates."""
    cands = _moving_candidates(length, b1, b2, m, cut)
    q0, q_min = cands[int(rng.integers(len(cands)))]
    s_min = (q_min - q0) // m
    p1 = int(rng.integers(0, min(b1, q0 - MIN_SIDE, q0 - s_min - 1) + 1))
    s_max = min((length - q0) // m, q0 - p1 - 1)
    return p1, q0, int(rng.integers(s_min, s_max + 1))


def _sample_fixed(rng: np.random.Generator, length: int, b1: int, b2: int) -> tuple[int, int]:
    p1 = int(rng.integers(0, min(b1, length - MIN_SIDE) + 1))
    p2 = int(rng.integers(max(b2, p1 + MIN_SIDE), length + 1))
    return p1, p2


def _zoom_grid(length: int, b1: int, b2: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feasible first views (w0, z1) inside the box with their step range [s_lo, s_hi] for g zoom-outs."""
    e = b2 - b1
    w_max = e * CUT_TWO_AXES[0] // CUT_TWO_AXES[1]
    if w_max < MIN_SIDE:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    w0, u = np.meshgrid(np.arange(MIN_SIDE, w_max + 1), np.arange(0, e - MIN_SIDE + 1), indexing="ij")
    w0, u = w0.ravel(), u.ravel()
    keep = u <= e - w0
    w0, u = w0[keep], u[keep]
    z1 = b1 + u
    z2 = z1 + w0
    s_lo = np.maximum(1, -(-np.maximum(u, e - w0 - u) // g))
    s_hi = np.minimum(np.minimum(z1 // g, (length - z2) // g), (w0 - 1) // 2)
    ok = s_lo <= s_hi
    return w0[ok], z1[ok], s_lo[ok], s_hi[ok]


def _sample_zoom(rng: np.random.Generator, length: int, b1: int, b2: int, g: int) -> tuple[int, int, int]:
    """(first low edge z1, first high edge z2, step s) of a zoom axis."""
    w0, z1, s_lo, s_hi = _zoom_grid(length, b1, b2, g)
    i = int(rng.integers(len(w0)))
    return int(z1[i]), int(z1[i] + w0[i]), int(rng.integers(s_lo[i], s_hi[i] + 1))


def _mirror(length: int, b1: int, b2: int) -> tuple[int, int]:
    return length - b2, length - b1


def _axes(direction: str) -> tuple[str, str]:
    """The role of the horizontal and the vertical axis: '+', '-' (moving), 'fixed', 'none' or 'zoom'."""
    if direction == "zoom":
        return "zoom", "zoom"
    horizontal = "-" if "left" in direction else "+" if "right" in direction else "fixed"
    vertical = "-" if "up" in direction else "+" if "down" in direction else "fixed"
    return horizontal, vertical


def _cut(direction: str) -> tuple[int, int]:
    return CUT_TWO_AXES if "_" in direction else CUT_CARDINAL


def _axis_feasible(role: str, length: int, b1: int, b2: int, g: int, cut: tuple[int, int]) -> bool:
    if role == "fixed":
        return length >= MIN_SIDE
    if role == "zoom":
        return len(_zoom_grid(length, b1, b2, g)[0]) > 0
    if role == "-":
        b1, b2 = _mirror(length, b1, b2)
    return bool(_moving_candidates(length, b1, b2, g - 1, cut, first_only=True))


def feasible(direction: str, g: int, width: int, height: int, box: ObjectBox) -> bool:
    """Whether a crop sequence with ``direction`` and granularity ``g`` exists for this image and box."""
    h_role, v_role = _axes(direction)
    cut = _cut(direction)
    return (_axis_feasible(h_role, width, box.x1, box.x2, g, cut)
            and _axis_feasible(v_role, height, box.y1, box.y2, g, cut))


def any_feasible(width: int, height: int, box: ObjectBox) -> bool:
    """Whether some (direction, granularity) pair is feasible (cheap pairs first)."""
    return any(feasible(d, g, width, height, box) for d in DIRECTIONS for g in GRANULARITIES)


@dataclass(frozen=True)
class Geometry:
    """The official crop parameters of one sample."""

    direction: str
    granularity: int
    horizontal_step: int
    vertical_step: int
    crop: dict[str, int]  # top, left, height, width with the official conventions


def _axis_record(role: str, rng: np.random.Generator, length: int, b1: int, b2: int, g: int,
                 cut: tuple[int, int]) -> tuple[int, int, int]:
    """(crop low value, crop high value, step) of one axis in the official conventions."""
    if role == "fixed":
        p1, p2 = _sample_fixed(rng, length, b1, b2)
        return p1, p2, 0
    if role == "zoom":
        z1, z2, s = _sample_zoom(rng, length, b1, b2, g)
        return z1 + s, (z2 - s) - (z1 + s), s  # zoom: position and *size* of the zero-step box
    if role == "+":
        p1, q0, s = _sample_moving(rng, length, b1, b2, g - 1, cut)
        return p1, q0 - s, s  # the zero-step high edge (a coordinate)
    mb1, mb2 = _mirror(length, b1, b2)
    p1, q0, s = _sample_moving(rng, length, mb1, mb2, g - 1, cut)
    return (length - q0) + s, length - p1, s  # the zero-step low edge, the fixed high edge


def sample_geometry(rng: np.random.Generator, width: int, height: int, box: ObjectBox) -> Geometry:
    """Draw the (direction, granularity) pair among the feasible ones, then the crop geometry."""
    pairs = [(d, g) for d in DIRECTIONS for g in GRANULARITIES]
    for i in rng.permutation(len(pairs)):
        direction, g = pairs[int(i)]
        if feasible(direction, g, width, height, box):
            break
    else:
        raise PbBuildError(f"no feasible crop for a {width}x{height} image with object box {box}")
    h_role, v_role = _axes(direction)
    cut = _cut(direction)
    left, right, h_step = _axis_record(h_role, rng, width, box.x1, box.x2, g, cut)
    top, bottom, v_step = _axis_record(v_role, rng, height, box.y1, box.y2, g, cut)
    return Geometry(direction, g, h_step, v_step, {"top": top, "left": left, "height": bottom, "width": right})


def official_box(direction: str, crop: dict[str, float], horizontal_step: float,
                 vertical_step: float) -> tuple[float, float, float, float]:
    """The PIL crop box of ``COCO2014Environment._get_transform`` for the given running steps (a copy of it)."""
    top = crop["top"] - vertical_step if "up" in direction or "zoom" in direction else crop["top"]
    left = crop["left"] - horizontal_step if "left" in direction or "zoom" in direction else crop["left"]
    height = crop["height"] + vertical_step if "down" in direction or "zoom" in direction else crop["height"]
    width = crop["width"] + horizontal_step if "right" in direction or "zoom" in direction else crop["width"]
    if direction == "zoom":
        height += crop["top"]
        width += crop["left"]
    return left, top, width, height


def official_limits(direction: str, g: int, h0: int, v0: int) -> tuple[int, int, int]:
    """(max_steps, max horizontal step, max vertical step) exactly as ``COCO2014Environment.__init__``."""
    if "zoom" in direction:
        return g + 1, h0 * (g + 1), v0 * (g + 1)
    max_h = h0 * g if "left" in direction or "right" in direction else 0
    max_v = v0 * g if "up" in direction or "down" in direction else 0
    return (g if "_" not in direction else 2 * g), max_h, max_v


def official_shown(direction: str, options: Sequence[str], h: int, v: int, max_h: int, max_v: int) -> list[str]:
    """The options ``COCO2014Environment._get_valid_options`` shows at running steps (h, v) (a copy of it)."""
    shown = list(options)
    if direction == "zoom":
        if h == max_h:
            shown.remove(ZOOM)
        return shown
    if h >= max_h:
        shown = [o for o in shown if o not in (LEFT, RIGHT)]
    if v >= max_v:
        shown = [o for o in shown if o not in (UP, DOWN)]
    return shown


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


@dataclass(frozen=True)
class Machine:
    """The state machine of one sample: states (a, b) in sorted order, their views, shown options and moves."""

    moves: list[tuple[int, int]]
    boxes: list[tuple[int, int, int, int]]
    shown: list[list[str]]
    targets: list[dict[str, int]]  # option text -> target state
    max_steps: int


def running_step(step: float, moves: int) -> float:
    """The running step of an axis after ``moves`` moves on it, computed as ``COCO2014Environment`` does
    (``step <- step / n * (n + 1)`` for n = 1 .. moves): exactly ``step * (moves + 1)`` for whole-pixel steps."""
    for n in range(1, moves + 1):
        step = step / n * (n + 1)
    return step


def pil_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """The integer box ``PIL.Image.crop`` uses for ``box`` (it rounds every coordinate)."""
    x1, y1, x2, y2 = (int(round(c)) for c in box)
    return x1, y1, x2, y2


def state_machine(geo: Geometry, options: Sequence[str]) -> Machine:
    """Explore every reachable state from (0, 0) with the official rules.

    A move is only explored from a state before the turn limit; a move still shown at the last turn (only possible
    in records whose steps never exhaust an axis in time) targets its own state, as the episode ends there anyway.
    """
    d, g, h0, v0 = geo.direction, geo.granularity, geo.horizontal_step, geo.vertical_step
    max_steps, max_h, max_v = official_limits(d, g, h0, v0)
    effect = {LEFT: (1, 0), RIGHT: (1, 0), UP: (0, 1), DOWN: (0, 1), ZOOM: (1, 1)}
    turn = {(0, 0): 1}  # the turn at which a state is shown (every path to it has the same length)
    frontier = [(0, 0)]
    while frontier:
        a, b = frontier.pop()
        if turn[(a, b)] >= max_steps:
            continue
        for opt in official_shown(d, options, running_step(h0, a), running_step(v0, b), max_h, max_v):
            if opt in effect:
                nxt = (a + effect[opt][0], b + effect[opt][1])
                if nxt not in turn:
                    turn[nxt] = turn[(a, b)] + 1
                    frontier.append(nxt)
    moves = sorted(turn)
    index = {ab: i for i, ab in enumerate(moves)}
    boxes, shown, targets = [], [], []
    for i, (a, b) in enumerate(moves):
        h, v = running_step(h0, a), running_step(v0, b)
        boxes.append(pil_box(official_box(d, geo.crop, h, v)))
        here = official_shown(d, options, h, v, max_h, max_v)
        shown.append(here)
        targets.append({o: index.get((a + effect[o][0], b + effect[o][1]), i) for o in here if o in effect})
    return Machine(moves, boxes, shown, targets, max_steps)


def machine_states(machine: Machine, options: Sequence[str]) -> tuple[State, ...]:
    """The episode states of a machine: state k shows frame k (the view of ``machine.boxes[k]``)."""
    return tuple(
        State(
            frame=k,
            shown=tuple(i for i, o in enumerate(options) if o in machine.shown[k]),
            valid=tuple(i for i, o in enumerate(options) if o in machine.targets[k]),
            targets=tuple(machine.targets[k][o] for o in options if o in machine.targets[k]),
        )
        for k in range(len(machine.moves))
    )


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
    eligible: list[tuple[raw.CocoImage, raw.Annotation]] = []
    for image, annotation in ann.single_object():
        counts["single_object"] += 1
        box = ObjectBox.from_bbox(annotation.bbox, image.width, image.height)
        if not box.usable():
            counts["tiny_box"] += 1
        elif not any_feasible(image.width, image.height, box):
            counts["no_feasible_crop"] += 1
        else:
            eligible.append((image, annotation))
    folder = raw.folder_name(config.split)
    key_of = lambda image: f"{name}/{folder}/{image.id}"  # noqa: E731
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
    return Plan(units=units, raw_files=layout.raw_files + sorted(image_files), raw_root=raw_dir, notes=notes)


# ---------------------------------------------------------------------------------------------------- build


def decode_image(data: bytes, src: raw.Source, width: int, height: int) -> Any:
    """Decode with PIL (as the official transform does; no EXIF rotation); L and RGB kept, others made RGB."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            pixels = np.asarray(img)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRecord(src, f"image does not decode: {exc}") from None
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
        return encode_png(view)
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
    ).validate()

