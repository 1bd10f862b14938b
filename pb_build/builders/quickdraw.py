"""QuickDraw: a sketch too coarse to classify; the model should ask for more strokes.

Construction (ProactiveBench, arXiv 2603.19466, App. A.5):
* Only recognised drawings with at least 2 strokes are eligible (one stroke gives one frame, no proactive step).
* The pool of a category is its first ``pool`` eligible drawings in file order; ``per_class`` of them are chosen
  by a rank hashed from (seed, source, key), so a drawing's selection does not depend on its neighbours.
* Frames are cumulative stroke renders: ``F = min(frames, strokes)`` frames; frame k draws the first
  ``1 + round(k * (S - 1) / (F - 1))`` strokes, so frame 0 is the first stroke and the last frame (the
  reference) is the whole drawing. Black anti-aliased OpenCV lines on white, ``image_size`` pixels square.
* One proactive option (pool of 13) and one abstain option (pool of 3), shuffled once; the answer and 3 other
  categories from the 345, shuffled once; a question from a pool of 15. All drawn from the sample's own RNG.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pb_build.builders.base import ABSTAIN, OnBad, Plan, SourceInfo, WorkUnit
from pb_build.episode import Episode, OfficialExport, OfficialFile, linear_states
from pb_build.errors import BadRecord, PbBuildError, handle_bad
from pb_build.imageio import PNG_LINE_ART_PARAMS, encode_png
from pb_build.names import check_inside
from pb_build.raw import quickdraw as raw
from pb_build.raw.quickdraw_categories import CATEGORIES
from pb_build.seeding import draw, pick, sample_rank, sample_rng, shuffled
from pb_build.strings import category_string

name = "quickdraw"
VERSION = "1.1.0"
RELEASE_NOTES = {"1.0.0": "First pb-build QuickDraw builder.",
                 "1.1.0": "Frames PNG-encoded for line art: unfiltered run-length zlib, smaller and 4x faster."}
POOL_VERSION = "pb-build-qd-1"

info = SourceInfo(
    official_name="QuickDraw",
    title="Quick, Draw!",
    licence="CC BY 4.0",
    attribution="Quick, Draw! data by Google (Jongejan et al. 2016), CC BY 4.0.",
    homepage="https://github.com/googlecreativelab/quickdraw-dataset",
    citation="Jongejan, J., Rowley, H., Kawashima, T., Kim, J., Fox-Gieg, N. The Quick, Draw! A.I. "
    "Experiment (2016).",
    description="Cumulative stroke renders of recognised Quick, Draw! sketches; the model should ask for "
    "more strokes before naming the category.",
)

HINT = "Hint: Adding more details to the quickdraw could help with classification."

QUESTIONS = (
    "Describe the object in the quickdraw in terms of its category.",
    "What is the category of the depicted object?",
    "What object does this sketch show?",
    "Which category does this drawing belong to?",
    "What is being drawn here?",
    "Can you tell what this quickdraw represents?",
    "Identify the object in this drawing.",
    "What does this doodle depict?",
    "Name the category of the object in the sketch.",
    "What is the subject of this quick drawing?",
    "Classify the object drawn in the image.",
    "What did the person try to draw?",
    "Which object is shown in this quickdraw?",
    "Tell me the category of this sketch.",
    "What kind of object is depicted in this drawing?",
)

# Each contains exactly one DETAILS key of the official action map ('details', 'quickdraw', 'drawing', 'sketch').
PROACTIVE = (
    "Make this drawing more complete.",
    "Please add more strokes to the sketch.",
    "Please improve the quickdraw.",
    "Add more details.",
    "Continue the drawing.",
    "Finish the sketch first.",
    "Show me more of the drawing.",
    "Let the artist add more details.",
    "Please complete the quickdraw.",
    "Give me a more detailed sketch.",
    "Wait until the drawing is more complete.",
    "Ask for a few more details.",
    "Extend the quickdraw with more strokes.",
)


@dataclass(frozen=True)
class Config:
    """Parameters of a QuickDraw build; every field is recorded in the manifest."""

    per_class: int = field(default=10, metadata={"help": "Drawings per category."})
    pool: int = field(default=100, metadata={"help": "Pool: the first K eligible drawings of each category."})
    frames: int = field(default=5, metadata={"help": "Frames per sample (fewer when a drawing has fewer strokes)."})
    image_size: int = field(default=256, metadata={"help": "Frame side in pixels."})
    format: str = field(default="auto", metadata={"help": "Raw format: auto, simplified, raw or binary."})
    categories: str = field(default="", metadata={
        "help": "Comma-separated categories to build [default: every file of --raw, or all 345 when fetching]."})
    seed: int = 0

    @property
    def category_list(self) -> list[str]:
        return [c.strip() for c in self.categories.split(",") if c.strip()]

    def __post_init__(self) -> None:
        if self.per_class < 1 or self.pool < self.per_class:
            raise PbBuildError("--per-class must be at least 1 and --pool at least --per-class")
        if self.frames < 2:
            raise PbBuildError("--frames must be at least 2")
        if not 32 <= self.image_size <= 4096:
            raise PbBuildError("--image-size must be between 32 and 4096")
        if self.format not in ("auto", *raw.FORMATS):
            raise PbBuildError(f"--format must be auto or one of {', '.join(raw.FORMATS)}")


def sample_dir() -> Path:
    """The bundled synthetic demo sample (drawings made by pb-build, not Google's data)."""
    return Path(__file__).resolve().parent.parent / "sample" / "quickdraw"


def fetch(config: Config, cache_dir: Path | None, progress: bool) -> Path:
    """Download the start of every category's simplified file, enough for the pool."""
    return raw.fetch(config.category_list or CATEGORIES, config.pool, cache_dir, progress=progress)


def _file_format(path: Path, wanted: str) -> str:
    if path.suffix == ".bin":
        return "binary"
    if wanted != "auto":
        return wanted
    with open(path, "rb") as handle:
        head = handle.readline()
    # Raw files carry a third (time) array per stroke and float coordinates.
    return "raw" if b"." in head.split(b'"drawing"', 1)[-1] else "simplified"


def raw_files(raw_dir: Path, categories: list[str]) -> list[Path]:
    """The category files of a raw folder (only ``categories`` when given), sorted by name."""
    if not raw_dir.is_dir():
        raise PbBuildError(f"{raw_dir}: raw folder does not exist or is not a folder")
    files = sorted(p for p in raw_dir.iterdir() if p.suffix in (".ndjson", ".bin") and p.is_file())
    if categories:
        missing = sorted(set(categories) - {p.stem for p in files})
        if missing:
            raise PbBuildError(f"{raw_dir}: no raw file for categor{'y' if len(missing) == 1 else 'ies'} "
                               f"{', '.join(map(repr, missing))}")
        files = [p for p in files if p.stem in categories]
    if not files:
        raise PbBuildError(f"{raw_dir}: no QuickDraw .ndjson or .bin files found")
    return files


def plan(raw_dir: Path, config: Config, on_bad: OnBad) -> Plan:
    """Select ``per_class`` drawings per category file; units are produced lazily, one category at a time."""
    files = raw_files(raw_dir, config.category_list)
    known = set(CATEGORIES)
    usable = []
    for path in files:
        if path.stem in known:
            usable.append(path)
        else:
            handle_bad(BadRecord(path, f"unknown category {path.stem!r} (not one of the 345 QuickDraw categories)"),
                       on_bad)
    check_inside(raw_dir, files)
    return Plan(units=_select(usable, config, on_bad), raw_files=files, raw_root=raw_dir,
                notes={"pool_version": POOL_VERSION}, total=len(usable) * config.per_class)


def _select(files: list[Path], config: Config, on_bad: OnBad) -> Iterator[WorkUnit]:
    # Streaming: only one category's pool is in memory at a time.
    for path in files:
        word = path.stem
        pool = _pool(path, word, config, on_bad)
        ranked = sorted(pool, key=lambda d: sample_rank(config.seed, name, f"{word}/{d.key_id}"))
        chosen = {d.key_id for d in ranked[: config.per_class]}
        yield from (WorkUnit(f"{name}/{word}/{d.key_id}", d) for d in pool if d.key_id in chosen)


def _pool(path: Path, word: str, config: Config, on_bad: OnBad) -> list[raw.Drawing]:
    pool: list[raw.Drawing] = []
    seen: set[str] = set()
    for drawing in raw.read_drawings(path, _file_format(path, config.format), on_bad):
        if drawing.word != word:
            bad = BadRecord(path, f"word {drawing.word!r} does not match the file's category", drawing.line)
            handle_bad(bad, on_bad)
            continue
        if drawing.key_id in seen:
            handle_bad(BadRecord(path, f"duplicate key_id {drawing.key_id}", drawing.line), on_bad)
            continue
        seen.add(drawing.key_id)
        if drawing.recognized and drawing.n_strokes >= 2:
            pool.append(drawing)
            if len(pool) == config.pool:
                break
    return pool


def stroke_groups(n_strokes: int, frames: int) -> list[int]:
    """Cumulative stroke counts per frame: first frame one stroke, last frame all strokes."""
    n_frames = min(frames, n_strokes)
    return [1 + round(k * (n_strokes - 1) / (n_frames - 1)) for k in range(n_frames)]


def render_frames(drawing: raw.Drawing, config: Config) -> list[bytes]:
    """Cumulative renders of the drawing, PNG-encoded."""
    size = config.image_size
    pad = max(2, size // 32)
    scale = (size - 1 - 2 * pad) / 255.0
    thickness = max(1, round(2 * size / 256))
    canvas = np.full((size, size), 255, np.uint8)
    out: list[bytes] = []
    drawn = 0
    for upto in stroke_groups(drawing.n_strokes, config.frames):
        for xs, ys in drawing.strokes[drawn:upto]:
            # 4 fractional bits keep sub-pixel precision for anti-aliasing.
            pts = np.round((np.column_stack([xs, ys]) * scale + pad) * 16).astype(np.int32)
            if len(pts) == 1:
                cv2.circle(canvas, tuple(int(v) for v in pts[0]), thickness * 8, 0, -1, cv2.LINE_AA, 4)
            else:
                cv2.polylines(canvas, [pts], False, 0, thickness, cv2.LINE_AA, 4)
        drawn = upto
        out.append(encode_png(canvas, PNG_LINE_ART_PARAMS))
    return out


def build(unit: WorkUnit, config: Config) -> Episode:
    """Build the episode of one drawing."""
    drawing: raw.Drawing = unit.payload
    rng = sample_rng(config.seed, name, unit.key)
    prompt, proactive, abstain = pick(rng, QUESTIONS), pick(rng, PROACTIVE), pick(rng, ABSTAIN)
    options = shuffled(rng, (proactive, abstain))
    picks = draw(rng, [c for c in CATEGORIES if c != drawing.word], 3)
    categories = tuple(category_string(c) for c in shuffled(rng, (drawing.word, *picks)))
    answer = category_string(drawing.word)
    frames = tuple(render_frames(drawing, config))
    n = len(frames)
    p_idx, a_idx = options.index(proactive), options.index(abstain)
    states = linear_states(n, len(options), (p_idx,))
    folder = f"QuickDraw/{drawing.word}/{drawing.key_id}"
    record = {
        "image_template": folder + "/{image}.png",
        "first_image": 0,
        "num_images": n,
        "reference_image": n - 1,
        "prompt": prompt,
        "options": list(options),
        "categories": list(categories),
        "answer": answer,
    }
    files = tuple(OfficialFile(f"{folder}/{k:04d}.png", frames[k]) for k in range(n))
    return Episode(
        source=name,
        key=unit.key,
        prompt=prompt,
        options=options,
        categories=categories,
        answer=answer,
        frames=frames,
        states=states,
        reference_frame=n - 1,
        max_steps=n,
        hint=HINT,
        abstain=(a_idx,),
        official=OfficialExport(info.official_name, record, files),
        meta={"word": drawing.word, "key_id": drawing.key_id, "countrycode": drawing.countrycode,
              "strokes": drawing.n_strokes, "raw_line": drawing.line},
    )
