"""ROD (Realistic Occlusion Dataset): an object hidden behind an occluder; the model should move the occluder.

Construction (ProactiveBench, arXiv 2603.19466, App. A.1, and the official ROD environment; raw layout and name
parsing in :mod:`pb_build.raw.rod`):
* One sample per sweep: the :data:`~pb_build.raw.rod.POSITIONS` = 14 images of one (setting, occluder group,
  object), frame k = occluder position ``s<k>``. ``first_image`` = 7 (the centre, most occluded position),
  ``reference_image`` = 0 (the unoccluded end), ``num_images`` = ``max_steps`` = 14.
* Moves are circular: "to the left" goes to position k - 1, "to the right" to k + 1, both mod 14 (the official
  environment's ``_prepare_next_state``). At the FIRST turn only the two moves are valid (a category answer is
  wrong there); at every later turn both moves and the correct category are valid. The initial state is
  therefore a state of its own, distinct from the later state at frame 7.
* Options: ``Move the {occluder} to the left.``, ``Move the {occluder} to the right.`` and one abstain option
  (pool of 3), shuffled once. ``{occluder}`` comes from the file name (:func:`pb_build.raw.rod.describe`:
  built-in ``<colour><kind>`` rule, e.g. ``bluebl`` -> ``blue blocks``, overridable/extendable with an
  ``--occluders`` table whose path and sha256 go into the plan notes). Question: one of :data:`QUESTIONS` (15)
  with the same description. Categories: the answer and 3 of the other 15 classes, uniformly without
  replacement, shuffled once. All draws come from the sample's own RNG (seed, source, key).
* The official rewrite (``_fix_corruptions``): any path containing ``natural_bluebl_greenr-banana-s6`` is opened
  with every ``s6`` replaced by ``s5`` when the last action was LEFT, else by ``s7``. For every position whose
  exported path contains that string, the builder resolves the rewritten path to the frame it names and gives
  the position two states (arrived by LEFT / by RIGHT), so the native episode shows exactly what the official
  environment shows (after a LEFT from 7 the s5 image is shown twice). A rewrite that would name a path which
  is not a frame of the record is an error. The rewrite applies to the absolute path, so ``data_dir`` must not
  contain ``s6`` for that one sweep (a limitation of the official code).
* Missing positions (the published archive lacks ``natural_bluebl_greenr-banana-s6``): a sweep may lack at most
  ``--max-missing`` positions (default 1), never s0. A missing position is exported as a byte copy of the
  nearest present position (circular distance, ties to k + 1, i.e. s7 for s6, the official fallback), under the
  missing name, so every path the template can name exists; ``meta["filled"]`` records ``{k: source}``. The
  official environment opens that copy (unless the rewrite above redirects it), and so does the native frame.
* Frames are the raw image bytes unchanged (default) or, with ``--max-side N``, decoded with Pillow (EXIF
  orientation ignored, as the official evaluator's ``PIL.Image.open`` does), shrunk so the longer side is at
  most N (OpenCV INTER_AREA) and re-encoded as JPEG at ``--jpeg-quality``. Every image goes through
  :mod:`pb_build.imageio` (size limits from the header first; in the default mode decoded only as a check, at
  1/8 JPEG scale, which still reads every byte); one that does not decode (corrupt, truncated, oversized) is a
  bad record naming the file. A file whose bytes are not its extension's format, or not 8-bit grey/RGB, is
  re-encoded.
* Shortest correct play: 7 moves in either direction reach frame 0, where the answer is accepted (8 turns).
* Official layout: ``Realistic-Occlusion-Dataset/<class>/<sweep name>-s{image}<ext>`` where ``<class>`` is the
  class name with spaces as ``_`` and ``<ext>`` is ``.jpg`` (JPEG sources or resized frames) or ``.png``.
  The sweep name is kept verbatim so the official rewrite applies to the same sweep as in the official release.
* The reference prompt is the official environment's own ("What type of object is in the image?"); it is
  recorded in ``meta["reference_prompt"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pb_build import imageio
from pb_build.builders.base import ABSTAIN, OnBad, Plan, SourceInfo, WorkUnit
from pb_build.episode import Episode, OfficialExport, OfficialFile, State
from pb_build.errors import BadRecord, PbBuildError, handle_bad
from pb_build.names import check_inside
from pb_build.raw import rod as raw
from pb_build.seeding import draw, pick, sample_rng, shuffled
from pb_build.strings import category_string

name = "rod"
VERSION = "1.0.0"
RELEASE_NOTES = {"1.0.0": "First pb-build ROD builder."}
POOL_VERSION = "pb-build-rod-1"

info = SourceInfo(
    official_name="Realistic-Occlusion-Dataset",
    title="ROD: Realistic Occlusion Dataset",
    licence="none stated (Hub card: other); the ProactiveBench paper says it was released without a license",
    attribution="Realistic Occlusion Dataset by Ariel N. Lee, Sarah Adel Bargal, Janavi Kasera, Stan Sclaroff, "
    "Kate Saenko and Nataniel Ruiz (2023), https://huggingface.co/datasets/arielnlee/Realistic-Occlusion-Dataset.",
    homepage="https://arielnlee.github.io/PatchMixing/",
    citation="Lee, A. N., Bargal, S. A., Kasera, J., Sclaroff, S., Saenko, K., Ruiz, N. Hardwiring ViT Patch "
    "Selectivity into CNNs using Patch Mixing. arXiv:2306.17848 (2023).",
    description="Sweeps of 14 occluder positions in front of real objects; the model should move the occluder "
    "before naming the object.",
)

POSITIONS = raw.POSITIONS
FIRST = POSITIONS // 2
REFERENCE = 0
OFFICIAL_DIR = "Realistic-Occlusion-Dataset"
# The official environment's _fix_corruptions: in a path containing REWRITE_MARK (a frame missing from the raw
# data) every "s6" becomes "s5" after a LEFT move and "s7" otherwise.
REWRITE_MARK = "natural_bluebl_greenr-banana-s6"
REWRITE_FROM, REWRITE_LEFT, REWRITE_OTHER = "s6", "s5", "s7"

HINT = "Hint: moving the occluding object might reveal what is behind it."
REFERENCE_PROMPT = "What type of object is in the image?"

# Worded so that they read well with singular and plural occluders ("red cardboard", "blue blocks").
QUESTIONS = (
    "What missing details are obscured by the {occluder}?",
    "Could you tell me what is behind the {occluder}?",
    "What object is hidden behind the {occluder}?",
    "Which object is covered by the {occluder}?",
    "What is the item partly hidden by the {occluder}?",
    "Can you identify the object behind the {occluder}?",
    "What kind of object is occluded by the {occluder}?",
    "Name the object hidden by the {occluder}.",
    "What lies behind the {occluder} in this picture?",
    "Identify the object concealed by the {occluder}.",
    "What is the category of the object behind the {occluder}?",
    "What can be found behind the {occluder}?",
    "Which item is blocked from view by the {occluder}?",
    "Tell me which object is behind the {occluder}.",
    "What object sits behind the {occluder} on the table?",
)

LEFT_OPTION = "Move the {occluder} to the left."
RIGHT_OPTION = "Move the {occluder} to the right."

LEFT, RIGHT = "LEFT", "RIGHT"


@dataclass(frozen=True)
class Config:
    """Parameters of a ROD build; every field is recorded in the manifest."""

    occluders: str = field(default="", metadata={"table": "occluders",
        "help": "Occluder table: lines '<token or group><TAB><description>' overriding/extending the built-in "
                "<colour><kind> rule (e.g. 'bluebl' -> 'blue blocks')."})
    max_missing: int = field(default=1, metadata={
        "help": "Most positions a sweep may lack (each exported as a copy of its nearest present position)."})
    max_side: int = field(default=0, metadata={
        "help": "Shrink frames so the longer side is at most N pixels (JPEG); 0 keeps the raw bytes."})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality of resized frames (with --max-side)."})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.occluders and not Path(self.occluders).is_file():
            raise PbBuildError(f"--occluders: {self.occluders} is not a file")
        if not 0 <= self.max_missing < POSITIONS - 1:
            raise PbBuildError(f"--max-missing must be between 0 and {POSITIONS - 2}")
        if self.max_side != 0 and not 32 <= self.max_side <= 8192:
            raise PbBuildError("--max-side must be 0 (keep the raw bytes) or between 32 and 8192")
        if not 1 <= self.jpeg_quality <= 100:
            raise PbBuildError("--jpeg-quality must be between 1 and 100")


@dataclass(frozen=True)
class SweepUnit:
    """What a worker needs to build one sweep."""

    sweep: raw.Sweep
    occluder: str
    occluder_source: str


def sample_dir() -> None:
    """ROD ships no bundled sample (the data has no licence to redistribute)."""
    return None


def fetch(config: Config, cache_dir: Path | None, progress: bool) -> Path:
    """Download and unpack rod_0.tar.gz and rod_1.tar.gz (about 3.3 GB) from the Hugging Face Hub."""
    return raw.fetch(cache_dir, progress=progress)


def plan(raw_dir: Path, config: Config, on_bad: OnBad) -> Plan:
    """Parse every image name, group the sweeps and describe their occluders; one unit per sweep."""
    table = raw.read_occluder_table(Path(config.occluders)) if config.occluders else None
    images = list(raw.read_images(raw_dir, on_bad))
    if not images and on_bad is None:
        raise PbBuildError(f"{raw_dir}: no ROD images (*.jpg, *.jpeg, *.png) found")
    units: list[WorkUnit] = []
    files: list[tuple[str, str]] = []  # (relative POSIX path, path)
    filled: dict[str, list[int]] = {}
    for sweep in raw.group_sweeps(images, config.max_missing, on_bad):
        try:
            occluder, source = raw.describe(sweep, table)
        except BadRecord as bad:
            handle_bad(bad, on_bad)
            continue
        units.append(WorkUnit(f"{name}/{sweep.name}", SweepUnit(sweep, occluder, source)))
        files += [(img.rel, img.path) for img in sweep.images if img is not None]
        if sweep.missing:
            filled[sweep.name] = list(sweep.missing)
    notes: dict[str, Any] = {
        "pool_version": POOL_VERSION,
        "occluder_table": None if table is None else {"path": table.path, "sha256": table.sha256,
                                                      "entries": len(table.entries)},
        "missing_positions": filled,
        "frames": "raw bytes" if config.max_side == 0 else f"JPEG q{config.jpeg_quality}, longer side <= "
                                                            f"{config.max_side}",
    }
    files.sort()
    check_inside(raw_dir, [path for _, path in files])
    return Plan(units=units, raw_files=[path for _, path in files], raw_root=raw_dir, notes=notes)


def load_frame(path: str, config: Config, suffix: str) -> bytes:
    """The exported bytes of one raw image stored as ``suffix``; :class:`BadRecord` when it does not decode."""
    return imageio.load_frame(path, ".jpg" if config.max_side else suffix, config.max_side, config.jpeg_quality)


def _frame_bytes(sweep: raw.Sweep, config: Config) -> tuple[list[bytes], dict[int, int]]:
    present = {k for k, img in enumerate(sweep.images) if img is not None}
    loaded = {k: load_frame(img.path, config, sweep.suffix) for k, img in enumerate(sweep.images) if img is not None}
    filled = {k: raw.fill_source(k, present) for k in range(POSITIONS) if k not in present}
    return [loaded[k] if k in loaded else loaded[filled[k]] for k in range(POSITIONS)], filled


def shown_frame(template: str, position: int, last_action: str | None, key: str, positions: int = POSITIONS) -> int:
    """The frame the official environment shows at ``position`` after ``last_action`` (None at the start).

    ``positions`` is the record's ``num_images`` (14 for every sweep pb-build builds).
    """
    path = template.format(image=position)
    if REWRITE_MARK not in path:
        return position
    new = path.replace(REWRITE_FROM, REWRITE_LEFT if last_action == LEFT else REWRITE_OTHER)
    for k in range(positions):
        if template.format(image=k) == new:
            return k
    raise BadRecord(key, f"the official environment would open {new!r} for position {position}, which is not a "
                         "frame of this sample; rename the sweep")


def build_states(template: str, options: tuple[int, int], key: str, positions: int = POSITIONS,
                 first: int = FIRST) -> tuple[tuple[State, ...], dict[int, dict]]:
    """The state machine of a sweep and the positions whose frame depends on the last move.

    State 0 is the first turn (frame ``first``, 7 when built, only the moves valid). Then one state per position
    in order, or two (arrived by LEFT, then by RIGHT) where the official rewrite shows different frames.
    ``options`` holds the indices of the LEFT and the RIGHT option; ``positions`` is ``num_images`` (14 when built).
    """
    left_idx, right_idx = options
    later: list[tuple[int, int]] = []  # (position, frame) of states 1, 2, ...
    state_of: dict[tuple[int, str], int] = {}  # (position, last move) -> state
    rewrites: dict[int, dict] = {}
    for p in range(positions):
        by_left = shown_frame(template, p, LEFT, key, positions)
        by_right = shown_frame(template, p, RIGHT, key, positions)
        state_of[(p, LEFT)] = len(later) + 1
        later.append((p, by_left))
        if by_right != by_left:
            rewrites[p] = {LEFT: by_left, RIGHT: by_right}
            later.append((p, by_right))
        state_of[(p, RIGHT)] = len(later)
    valid = tuple(sorted(options))

    def state(position: int, frame: int, answer_valid: bool) -> State:
        move = {left_idx: ((position - 1) % positions, LEFT), right_idx: ((position + 1) % positions, RIGHT)}
        return State(frame=frame, shown=(0, 1, 2), valid=valid, targets=tuple(state_of[move[i]] for i in valid),
                     answer_valid=answer_valid)

    start = state(first, shown_frame(template, first, None, key, positions), answer_valid=False)
    return (start, *(state(p, frame, answer_valid=True) for p, frame in later)), rewrites


def build(unit: WorkUnit, config: Config) -> Episode:
    """Build the episode of one sweep."""
    job: SweepUnit = unit.payload
    sweep = job.sweep
    rng = sample_rng(config.seed, name, unit.key)
    prompt = pick(rng, QUESTIONS).format(occluder=job.occluder)
    left, right = LEFT_OPTION.format(occluder=job.occluder), RIGHT_OPTION.format(occluder=job.occluder)
    abstain = pick(rng, ABSTAIN)
    options = shuffled(rng, (left, right, abstain))
    others = [c for c in raw.CLASSES if c != sweep.category]
    categories = tuple(category_string(c) for c in shuffled(rng, (sweep.category, *draw(rng, others, 3))))
    answer = category_string(sweep.category)

    frames, filled = _frame_bytes(sweep, config)
    suffix = ".jpg" if config.max_side else sweep.suffix
    folder = f"{OFFICIAL_DIR}/{sweep.category.replace(' ', '_')}"
    template = f"{folder}/{sweep.name}-s{{image}}{suffix}"
    states, rewrites = build_states(template, (options.index(left), options.index(right)), unit.key)
    record = {
        "image_template": template,
        "first_image": FIRST,
        "num_images": POSITIONS,
        "reference_image": REFERENCE,
        "prompt": prompt,
        "options": list(options),
        "categories": list(categories),
        "answer": answer,
    }
    files = tuple(OfficialFile(template.format(image=k), frames[k]) for k in range(POSITIONS))
    meta = {
        "sweep": sweep.name,
        "setting": sweep.setting,
        "occluder_tokens": list(sweep.occluders),
        "occluder": job.occluder,
        "occluder_source": job.occluder_source,
        "class": sweep.category,
        "raw_files": [img.rel if img is not None else None for img in sweep.images],
        "filled": {str(k): v for k, v in sorted(filled.items())},
        "official_rewrite": {str(k): v for k, v in sorted(rewrites.items())},
        "reference_prompt": REFERENCE_PROMPT,
    }
    return Episode(
        source=name,
        key=unit.key,
        prompt=prompt,
        options=options,
        categories=categories,
        answer=answer,
        frames=tuple(frames),
        states=states,
        reference_frame=REFERENCE,
        max_steps=POSITIONS,
        initial_state=0,
        hint=HINT,
        abstain=(options.index(abstain),),
        official=OfficialExport(info.official_name, record, files),
        meta=meta,
    )
