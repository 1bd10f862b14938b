"""MVP-N: an uninformative view of a product; the model should ask to rotate it or change the viewpoint.

Input: ``--raw`` is a folder holding ``data/<split>/<class>/<set>/<view>_<flag>.png`` (or ``data/`` itself, or
the split folder), and ``--names`` a CSV file of class names (see :data:`pb_build.raw.mvp_n.NAMES_FORMAT`), because
the names are only in the MVP-N documentation PDF; a relative ``--names`` is looked up in the raw folder first, then
in the current folder, and its sha256 is recorded in the manifest notes. The manifest lists every view file of
the planned sets (and the names file when it lies in the raw folder).

Construction (ProactiveBench, arXiv 2603.19466, App. A.3; record fields as the official MVP-N environment reads them):

* One sample per multi-view set. Sets come from the folder tree in sorted order (never from MVP-N's pickled
  ``test_list`` files). ``per_class`` sets per class are chosen by a rank hashed from (seed, source, key); 0 keeps
  every set.
* Eligibility: a set needs at least one informative view (flag 1) and at least one uninformative view (flag 0),
  otherwise it has no answerable last turn or no proactive step. Such a set is excluded and counted per reason
  ("no informative view", "no uninformative view") in the manifest (``--strict``: an error); the sets without an
  uninformative view are also listed in the manifest notes.
* The sequence is the set's uninformative views in a seeded random order, followed by ONE informative view. When a
  set has several informative views, one is drawn at random (seeded) and the others are not used: showing an
  informative view before the last turn would defeat the sample. When the sequence would exceed ``max_views``
  views, a seeded random subset of ``max_views - 1`` uninformative views is kept.
* ``valid_images`` holds the image ids in visiting order; ``first_image`` is its first and ``reference_image`` its
  last entry; ``num_images`` = ``max_steps`` = the sequence length. Image ids are the view tokens when they are
  distinct decimal numbers, else the set's views renumbered 0, 1, ... in sorted file order
  (:func:`pb_build.raw.mvp_n.view_ids`); the raw file of every view is kept in the native row's ``meta``.
* Exported files: ``MVP-N/<split>/<class>/<set>/<id:04d>_0.png`` for the uninformative views and
  ``<id:04d>_1.png`` for the informative one: exactly the paths the official environment opens (``{informative}``
  is 1 only at the last turn and in reference mode). Frames are the raw PNG bytes (each is fully decoded once to
  reject broken files); with ``image_size`` > 0, views whose longer side exceeds it are downscaled (area
  interpolation) and re-encoded as PNG.
* States: state k shows frame k with both options. Before the last state the proactive option is valid and leads
  to state k+1, and the correct category is accepted; in the last state only the category is valid.
* Options: one proactive phrasing from a pool of 11 (each holds a ROTATE key of the official action map: rotate,
  view, angle, orientation or different) and one abstain option from a pool of 3, shuffled once. A question from a
  pool of 15.
* Categories: the answer plus 3 look-alike products. Distractors come first from the class's own confusable group
  (the 19 MVP-N groups), drawn at random when it has more than 3 other members. When it has fewer, the rest comes
  from the nearest groups in MVP-N's group order: groups at distance 1 in the group list (the previous and the
  next group), then distance 2, and so on; at the first distance whose pooled classes exceed what is still needed,
  they are drawn at random from that pool. Distractors may be any of the 44 classes (also those not built).
  Category strings are ``name.capitalize() + '.'``.
* Randomness, in this order, all from ``sample_rng(seed, "mvp-n", key)``: question, proactive option, abstain
  option, option order, informative view, uninformative order (and subset), distractors, category order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pb_build import imageio
from pb_build.builders.base import ABSTAIN, OnBad, Plan, SourceInfo, WorkUnit
from pb_build.episode import Episode, OfficialExport, OfficialFile, linear_states
from pb_build.errors import Ineligible, PbBuildError
from pb_build.hashing import sha256_file
from pb_build.names import check_inside
from pb_build.raw import mvp_n as raw
from pb_build.seeding import pick, sample_rank, sample_rng, shuffled
from pb_build.strings import category_string

name = "mvp-n"
VERSION = "1.0.0"
RELEASE_NOTES = {"1.0.0": "First pb-build MVP-N builder."}
POOL_VERSION = "pb-build-mvpn-1"

info = SourceInfo(
    official_name="MVP-N",
    title="MVP-N: multi-view products",
    licence="Non-commercial use only (MVP-N dataset terms; the MVP-N code is MIT)",
    attribution="MVP-N by Ren Wang, Jiayue Wang, Tae Sung Kim, Jinsung Kim and Hyuk-Jae Lee (Seoul National "
    "University), for non-commercial purposes only. Class names come from the MVP-N documentation, supplied by "
    "the user.",
    homepage="https://github.com/SMNUResearch/MVP-N",
    citation="Wang, R., Wang, J., Kim, T. S., Kim, J., Lee, H.-J. MVP-N: A Dataset and Benchmark for Real-World "
    "Multi-View Object Classification. NeurIPS 2022 Datasets and Benchmarks Track.",
    description="Multi-view sets of retail products: uninformative views first, one informative view last; the "
    "model should ask to rotate the object before naming the product among look-alike products.",
)

HINT = "Hint: rotating the object could provide a more informative view."

QUESTIONS = (
    "Could you name the object in this image?",
    "Identify the object in this image.",
    "What product is shown in this image?",
    "Which product is this?",
    "What is the object in the picture?",
    "Can you tell which product this is?",
    "Name the product shown in the image.",
    "What item is depicted here?",
    "Which object can you see in this image?",
    "What kind of product is this?",
    "Classify the object in this image.",
    "What is this product?",
    "Tell me which object is in the picture.",
    "Recognize the product in this image.",
    "What object is shown here?",
)

# Each holds at least one ROTATE key of the official action map (rotate, view, angle, orientation, different)
# and neither 'cannot' nor 'do not'.
PROACTIVE = (
    "Change the camera angle of the object.",
    "Rotate the object.",
    "Give me a view of the object from a different perspective.",
    "Show the object from another angle.",
    "Turn the object to show a different side.",
    "Please rotate the product.",
    "Change the viewpoint on the object.",
    "Show me another view of the item.",
    "Change the orientation of the object.",
    "Rotate the item so that its front is visible.",
    "Look at the object from a different angle.",
)


N_DISTRACTORS = 3


@dataclass(frozen=True)
class Config:
    """Parameters of an MVP-N build; every field is recorded in the manifest."""

    names: str = field(default="", metadata={"table": "names",
        "help": "CSV file 'class_id,name' naming all 44 classes (the names are in the MVP-N documentation PDF)."})
    per_class: int = field(default=100, metadata={"help": "Sets per class (0 = every set of the folder)."})
    max_views: int = field(default=6, metadata={"help": "Most views per sample (uninformative views + 1)."})
    image_size: int = field(default=0, metadata={
        "help": "Downscale views whose longer side exceeds this many pixels (0 = export the raw PNG bytes)."})
    split: str = field(default="test", metadata={"help": "MVP-N split folder: test, valid or train."})
    classes: str = field(default="", metadata={"help": "Comma-separated class ids to build [default: all found]."})
    seed: int = 0

    @property
    def class_list(self) -> list[str]:
        return [c.strip() for c in self.classes.split(",") if c.strip()]

    def __post_init__(self) -> None:
        if self.per_class < 0:
            raise PbBuildError("--per-class must be 0 (every set) or more")
        if self.max_views < 2:
            raise PbBuildError("--max-views must be at least 2 (one uninformative and one informative view)")
        if self.image_size != 0 and not 32 <= self.image_size <= 8192:
            raise PbBuildError("--image-size must be 0 or between 32 and 8192")
        if self.split not in raw.SPLITS:
            raise PbBuildError(f"--split must be one of {', '.join(raw.SPLITS)}")
        unknown = [c for c in self.class_list if c not in raw.GROUP_OF]
        if unknown:
            raise PbBuildError(f"--classes: unknown class id(s) {', '.join(unknown)} (MVP-N classes are 0000-0043)")


@dataclass(frozen=True)
class SetUnit:
    """The payload of one work unit: the set and the class names (for the answer and the distractors)."""

    view_set: raw.ViewSet
    names: tuple[tuple[str, str], ...]


def sample_dir() -> None:
    """MVP-N ships no bundled sample (the data is non-commercial and not redistributable here)."""
    return None


CAN_FETCH = False  # fetch() only says how to get the data by hand


def fetch(config: Config, cache_dir: Path | None, progress: bool) -> Path:
    """MVP-N is on Google Drive behind a confirmation page: the user downloads it and passes ``--raw``."""
    raise PbBuildError(f"MVP-N cannot be downloaded by pb-build: get {raw.DATA_ZIP}, unzip it and pass --raw with "
                       "the folder holding data/ (and --names with the class-name CSV)")


def load_names(config: Config, raw_dir: Path) -> tuple[Path, dict[str, str]]:
    """The names file of ``config`` and its names; a clear error when it is not given.

    A relative ``--names`` is looked up in the raw folder first, then in the current folder. A names file inside the
    raw folder is also listed (size, sha256) with the raw files, and the manifest then holds no machine path.
    """
    if not config.names:
        raise PbBuildError(f"MVP-N class names are not in the raw data; they are listed in {raw.DOC_PDF}: write them "
                           f"to {raw.NAMES_FORMAT} and pass it with --names")
    path = Path(config.names).expanduser()
    if not path.is_absolute() and (raw_dir / path).is_file():
        path = raw_dir / path
    if not path.is_file():
        raise PbBuildError(f"{path}: names file does not exist (--names; a relative path is looked up in the raw "
                           "folder, then in the current folder)")
    return path, raw.read_names(path, category_string)


def plan(raw_dir: Path, config: Config, on_bad: OnBad) -> Plan:
    """Read the names and the folder tree; select ``per_class`` eligible sets per class."""
    names_path, names = load_names(config, raw_dir)
    split_dir = raw.locate_split(raw_dir, config.split)
    wanted = config.class_list
    by_class: dict[str, list[raw.ViewSet]] = {}
    excluded: list[str] = []
    ineligible: list[Ineligible] = []
    found = 0
    for view_set in raw.iter_sets(split_dir, wanted or None, on_bad):
        found += 1
        if not view_set.informative:
            ineligible.append(Ineligible(_key(view_set), "no informative view", "no <view>_1.png file"))
            continue
        if not view_set.uninformative:
            excluded.append(_key(view_set))
            ineligible.append(Ineligible(_key(view_set), "no uninformative view", "no <view>_0.png file"))
            continue
        by_class.setdefault(view_set.class_id, []).append(view_set)
    missing = [c for c in wanted if c not in by_class]
    if missing:
        raise PbBuildError(f"{split_dir}: no usable set for class(es) {', '.join(missing)}")
    name_table = tuple(sorted(names.items()))
    units: list[WorkUnit] = []
    raw_files: list[Path] = []
    if names_path.resolve().is_relative_to(raw_dir.resolve()):
        raw_files.append(raw_dir / names_path.resolve().relative_to(raw_dir.resolve()))
    for class_id in sorted(by_class):
        sets = by_class[class_id]
        if config.per_class:
            ranked = sorted(sets, key=lambda s: sample_rank(config.seed, name, _key(s)))
            chosen = {s.set_name for s in ranked[: config.per_class]}
            sets = [s for s in sets if s.set_name in chosen]
        for view_set in sets:
            units.append(WorkUnit(_key(view_set), SetUnit(view_set, name_table)))
            raw_files += [Path(v.path) for v in view_set.views]
    notes = {
        "pool_version": POOL_VERSION,
        "names_file": names_path.name,
        "names_sha256": sha256_file(names_path),
        "set_order": "folder tree, sorted by class then set name (MVP-N's pickled test lists are not read)",
        "sets_found": found,
        "excluded_no_uninformative_view": excluded,
    }
    check_inside(raw_dir, raw_files)
    return Plan(units=units, raw_files=raw_files, raw_root=raw_dir, notes=notes, ineligible=ineligible)


def _key(view_set: raw.ViewSet) -> str:
    return f"{name}/{view_set.split}/{view_set.class_id}/{view_set.set_name}"


def distractors(class_id: str, rng: np.random.Generator) -> list[str]:
    """Three look-alike classes: the own group first, then the nearest groups (see the module docstring)."""
    g0 = raw.GROUP_OF[class_id]
    picked = _draw([c for c in raw.GROUPS[g0] if c != class_id], N_DISTRACTORS, rng)
    distance = 1
    while len(picked) < N_DISTRACTORS:
        pool = [c for g in (g0 - distance, g0 + distance) if 0 <= g < len(raw.GROUPS) for c in raw.GROUPS[g]]
        if not pool and distance > len(raw.GROUPS):
            raise PbBuildError("not enough MVP-N classes for the distractors")  # unreachable with 44 classes
        picked += _draw(pool, N_DISTRACTORS - len(picked), rng)
        distance += 1
    return picked


def _draw(pool: list[str], need: int, rng: np.random.Generator) -> list[str]:
    if len(pool) <= need:
        return list(pool)
    return [pool[i] for i in sorted(rng.choice(len(pool), size=need, replace=False))]


def sequence(view_set: raw.ViewSet, max_views: int, rng: np.random.Generator) -> list[raw.View]:
    """The views in visiting order: shuffled uninformative views (at most ``max_views - 1``), one informative."""
    informative = view_set.informative
    last = informative[int(rng.integers(len(informative)))]
    others = list(view_set.uninformative)
    order = [others[i] for i in rng.permutation(len(others))][: max_views - 1]
    return [*order, last]


def load_frame(view: raw.View, image_size: int) -> bytes:
    """The exported PNG bytes of one view: the raw PNG (checked to decode) or a downscaled re-encoding."""
    return imageio.load_frame(view.path, ".png", image_size)

def build(unit: WorkUnit, config: Config) -> Episode:
    """Build the episode of one multi-view set."""
    payload: SetUnit = unit.payload
    view_set, names = payload.view_set, dict(payload.names)
    rng = sample_rng(config.seed, name, unit.key)
    prompt, proactive, abstain = pick(rng, QUESTIONS), pick(rng, PROACTIVE), pick(rng, ABSTAIN)
    options = shuffled(rng, (proactive, abstain))
    views = sequence(view_set, config.max_views, rng)
    wrong = distractors(view_set.class_id, rng)
    classes = shuffled(rng, (view_set.class_id, *wrong))
    categories = tuple(category_string(names[c]) for c in classes)
    answer = category_string(names[view_set.class_id])

    frames = tuple(load_frame(v, config.image_size) for v in views)
    ids_of = raw.view_ids(view_set)
    ids = [ids_of[v.token] for v in views]
    n = len(views)
    p_idx, a_idx = options.index(proactive), options.index(abstain)
    states = linear_states(n, len(options), (p_idx,))
    folder = f"MVP-N/{view_set.split}/{view_set.class_id}/{view_set.set_name}"
    escaped = folder.replace("{", "{{").replace("}", "}}")
    record = {
        "image_template": escaped + "/{image}_{informative}.png",
        "first_image": ids[0],
        "num_images": n,
        "valid_images": ids,
        "reference_image": ids[-1],
        "prompt": prompt,
        "options": list(options),
        "categories": list(categories),
        "answer": answer,
    }
    files = tuple(
        OfficialFile(f"{folder}/{str(ids[k]).zfill(4)}_{int(k == n - 1)}.png", frames[k]) for k in range(n)
    )
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
        meta={"class_id": view_set.class_id, "set": view_set.set_name, "split": view_set.split,
              "views": [v.file_name for v in views], "image_ids": ids,
              "informative_views": [v.file_name for v in view_set.informative],
              "distractor_classes": wrong},
    )
