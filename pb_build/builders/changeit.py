"""ChangeIt: temporal ambiguity in a video; the model should wait or rewind to a moment that answers the question.

Raw layout: see :mod:`pb_build.raw.changeit` (a ChangeIt checkout plus the videos in
``videos/<category>/<youtube_id>.<ext>`` or ``downloads/<category>/...``, or ``--video-dir``).

Construction (ProactiveBench, arXiv 2603.19466, App. A.6), for every annotated video of every category folder
(sorted by category, then YouTube id) and every question type of ``--questions`` (object, then action):

* **Sampled frames.** ``num_images = N = ceil(S * fps)`` frames for an annotation of S rows (seconds), frame j
  shows second ``t = j / fps``, labelled by annotation row ``floor(t)``; at the default 1 fps frame t is row t.
  Frame j is the video frame ``floor(t * avg_fps + 0.5)`` (the container's average frame rate), clamped to the last
  frame. A video 1 to 5 s shorter than its annotation is ineligible: its samples are excluded and counted per
  reason in the manifest (``--strict``: an error). A video more than 5 s shorter (truncated, or not the annotated
  video), or one that does not open or decode, is a bad record (an error, or skipped and counted with
  ``--skip-bad``); so is a missing video.
* **Steps.** ``step_size = ceil(N / frames)`` and ``max_steps = ceil(N / step_size)`` (``--frames``, default 20):
  the reachable frames are ``0, step_size, 2*step_size, ...`` (``max_steps`` of them, at most ``--frames``),
  ``first_image = 0`` and ``step_size < N`` always holds (N >= 2), so no reachable frame is both first and last.
  ``max_steps`` lets the oracle walk to the farthest reachable frame and still answer.
* **Exported frames.** Exactly the reachable frames, as JPEG files ``ChangeIt/<category>/<youtube_id>/<k*step>.jpg``
  (template ``{image}`` un-padded); the native episode holds the same frames renumbered 0..max_steps-1. The
  object and action samples of one video share these files.
* **Reference frame** (the first reachable frame, in video order, where the answer is visible per the labels):
  object question: label 1, 2 or 3 (initial state, action or end state: the object is on screen; label 0 is
  background); action question: label 2. It is frame 0 when the video opens on the answer. A (video, question)
  with no such reachable frame is ineligible: not built, listed under ``dropped`` in the manifest notes and
  counted per reason (``--strict``: an error).
* **Questions and answers.** Object: a question from :data:`OBJECT_QUESTIONS` (15); the answer is the object name
  of the category folder (:func:`object_name`: a leading verb of :data:`VERB_PREFIXES` is dropped,
  :data:`OBJECT_OVERRIDES` name the object of three folders, ``_`` becomes a space; ``whisk_eggs`` -> ``Eggs.``,
  ``boil_milk`` -> ``Milk.``, ``t-shirt`` -> ``T-shirt.``, ``dragon_fruit`` -> ``Dragon fruit.``). Action: a
  question from :data:`ACTION_QUESTIONS` (11); the answer is the category's ``ACTION_NAME``. Category strings are
  ``name.capitalize() + "."`` (``Gift/Box Wrapping`` -> ``Gift/box wrapping.``); an ACTION_NAME with a comma is a
  bad record. The 3 wrong categories are drawn from the other distinct names of the same question type over every
  row of ``categories.csv``.
* **Options.** ``Rewind the video.``, the wait option (object: ``Wait for the object to appear.``; action:
  ``Wait for the action to happen.``) and one abstain option of :data:`ABSTAIN`, shuffled once; the four
  categories shuffled once; all from the sample's own RNG ``sample_rng(seed, "changeit", key)``.
* **States** (one per reachable frame, not circular), exactly the official ``if/elif``: at frame 0 the rewind
  option is hidden; else at the last reachable frame (``frame + step_size >= N``) the wait option is hidden.
  Shown moves are valid (wait: next reachable frame, rewind: previous one) and the answer is accepted at every
  turn; ``max_steps`` ends the episode. ``State.valid`` lists the wait option before the rewind option (not the
  stored order): the generic oracle takes the first valid move until the reference frame is shown, so it waits
  forward from frame 0 to the reference frame and answers there. The order of ``valid`` changes no verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from pb_build import imageio
from pb_build.builders.base import ABSTAIN, OnBad, Plan, SourceInfo, WorkUnit
from pb_build.episode import Episode, OfficialExport, OfficialFile, State
from pb_build.errors import BadRecord, Ineligible, PbBuildError, handle_bad
from pb_build.matching import normalise_text
from pb_build.names import check_inside
from pb_build.raw import changeit as raw
from pb_build.seeding import draw, pick, sample_rng, shuffled
from pb_build.strings import category_string

name = "changeit"
VERSION = "1.1.0"
RELEASE_NOTES = {
    "1.0.0": "First pb-build ChangeIt builder.",
    "1.1.0": "Videos are decoded with OpenCV's FFmpeg on one thread instead of decord, whose read-ahead thread "
             "decoded and converted frames it then dropped and made parallel workers slower than one. The same "
             "frame indices; the pixels are identical on the test videos and may differ by rounding on others.",
}
POOL_VERSION = "pb-build-cit-1"

info = SourceInfo(
    official_name="ChangeIt",
    title="ChangeIt",
    licence="MIT (annotations); videos are YouTube content under their uploaders' terms",
    attribution="ChangeIt annotations by Souček et al. (CVPR 2022), MIT licence; frames come from the "
    "annotated YouTube videos, which remain their uploaders' property.",
    homepage="https://github.com/soCzech/ChangeIt",
    citation="Souček, T., Alayrac, J.-B., Miech, A., Laptev, I., Sivic, J. Look for the Change: Learning Object "
    "States and State-Modifying Actions from Untrimmed Web Videos. CVPR 2022.",
    description="Frames sampled from the annotated ChangeIt test videos; the model should wait or rewind until "
    "the object or the action is visible before naming it.",
)

PRE_PROMPT = "This is a frame extracted from a video. Answer the following question."
HINT = ("Hint: If you cannot answer the question, waiting for it to appear or rewinding the video could help "
        "with classification.")
REWIND = "Rewind the video."
WAIT = {"object": "Wait for the object to appear.", "action": "Wait for the action to happen."}
QUESTION_TYPES = ("object", "action")
# Labels under which the answer counts as visible (labels.csv: 0 background, 1 state1, 2 action, 3 state2).
VISIBLE_LABELS = {"object": (1, 2, 3), "action": (2,)}

OBJECT_QUESTIONS = (
    "Describe the object in the video in terms of its category.",
    "What object is shown in the video?",
    "Which object appears in this video?",
    "What is the object in the video?",
    "Can you identify the object in the video?",
    "What kind of object is visible in this video?",
    "Name the object that appears in the video.",
    "What is the main object in this video?",
    "Which category does the object in the video belong to?",
    "Identify the object shown in this video.",
    "What object is being handled in the video?",
    "Tell me which object the video shows.",
    "What is the category of the object in the video?",
    "Which object is the video about?",
    "What object can be seen in this video?",
)

ACTION_QUESTIONS = (
    "What action is being performed in the video?",
    "Which activity is shown in the video?",
    "What is the person doing in the video?",
    "Describe the action in the video.",
    "What task is being carried out in this video?",
    "Can you identify the action shown in the video?",
    "What activity does this video show?",
    "Which action takes place in this video?",
    "Name the action performed in the video.",
    "What is happening in this video?",
    "Identify the activity in this video.",
)


# Folder names that start with the verb of the change; the object follows ("whisk_eggs" -> "eggs").
VERB_PREFIXES = ("boil_", "whisk_")
# Folders named after the tool or the result rather than the changed object (see their ACTION_NAME).
OBJECT_OVERRIDES = {"drill": "wood", "plane": "paper plane", "cube": "rubik's cube"}


def object_name(dir_name: str) -> str:
    """The object a category folder is about, lower case (``whisk_eggs`` -> ``eggs``)."""
    if dir_name in OBJECT_OVERRIDES:
        return OBJECT_OVERRIDES[dir_name]
    for prefix in VERB_PREFIXES:
        if dir_name.startswith(prefix) and len(dir_name) > len(prefix):
            dir_name = dir_name[len(prefix):]
            break
    return dir_name.replace("_", " ")


@dataclass(frozen=True)
class Config:
    """Parameters of a ChangeIt build; every field is recorded in the manifest."""

    questions: str = field(default="object,action", metadata={
        "help": "Comma-separated question types per video: object, action."})
    frames: int = field(default=20, metadata={
        "help": "Reachable frames per episode at most: step_size = ceil(num_images / frames)."})
    fps: float = field(default=1.0, metadata={"help": "Frames sampled per second of video (annotations are 1 fps)."})
    video_dir: str = field(default="", metadata={
        "help": "Folder of <category>/<youtube_id>.<ext> videos [default: RAW/videos, then RAW/downloads]."})
    categories: str = field(default="", metadata={
        "help": "Comma-separated category folders to build [default: every folder of annotations/]."})
    max_side: int = field(default=0, metadata={"help": "Downscale frames to this longest side (0: keep)."})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality of the exported frames (1-100)."})
    seed: int = 0

    @property
    def question_list(self) -> list[str]:
        return list(dict.fromkeys(q.strip() for q in self.questions.split(",") if q.strip()))

    @property
    def category_list(self) -> list[str]:
        return list(dict.fromkeys(c.strip() for c in self.categories.split(",") if c.strip()))

    @property
    def sample_fps(self) -> Fraction:
        return Fraction(repr(float(self.fps))).limit_denominator(1000)

    def __post_init__(self) -> None:
        qs = self.question_list
        if not qs or any(q not in QUESTION_TYPES for q in qs):
            raise PbBuildError(f"--questions must be a comma-separated subset of {', '.join(QUESTION_TYPES)}")
        if self.frames < 2:
            raise PbBuildError("--frames must be at least 2")
        if not (math.isfinite(self.fps) and 0.01 <= self.fps <= 60):
            raise PbBuildError("--fps must be between 0.01 and 60")
        if self.max_side != 0 and not 16 <= self.max_side <= 8192:
            raise PbBuildError("--max-side must be 0 or between 16 and 8192")
        if not 1 <= self.jpeg_quality <= 100:
            raise PbBuildError("--jpeg-quality must be between 1 and 100")


@dataclass(frozen=True)
class Layout:
    """How an annotation of ``seconds`` rows becomes an episode's frames."""

    seconds: int
    fps: Fraction
    num_images: int
    step_size: int
    reachable: int

    def time(self, k: int) -> Fraction:
        """Seconds into the video of reachable frame k (official image ``k * step_size``)."""
        return Fraction(k * self.step_size) / self.fps

    def label(self, labels: tuple[int, ...], k: int) -> int:
        return labels[math.floor(self.time(k))]


def layout(seconds: int, config: Config) -> Layout | None:
    """The frame layout, or None when fewer than 2 frames would be sampled."""
    f = config.sample_fps
    n = math.ceil(seconds * f)
    if n < 2:
        return None
    step = math.ceil(n / config.frames)
    reachable = math.ceil(n / step)
    assert step < n and 2 <= reachable <= config.frames
    return Layout(seconds, f, n, step, reachable)


def reference_frame(labels: tuple[int, ...], lay: Layout, question: str) -> int | None:
    """The first reachable frame (0-based reachable index) whose label shows the answer, or None."""
    wanted = VISIBLE_LABELS[question]
    return next((k for k in range(lay.reachable) if lay.label(labels, k) in wanted), None)


@dataclass(frozen=True)
class Sample:
    """One planned (video, question) pair: what a worker needs to build its episode."""

    category: str
    youtube_id: str
    question: str
    answer: str
    pool: tuple[str, ...]
    labels: tuple[int, ...]
    video: str
    video_rel: str
    annotation_rel: str


def _pools(categories: list[raw.Category]) -> dict[str, tuple[str, ...]]:
    """Distinct category strings per question type, sorted (the distractor pools)."""
    pools: dict[str, tuple[str, ...]] = {}
    for q, names in (("object", [object_name(c.dir_name) for c in categories]),
                     ("action", [c.action_name for c in categories])):
        by_norm = {normalise_text(category_string(n)): category_string(n) for n in names}
        pools[q] = tuple(sorted(by_norm.values()))
    return pools


def sample_dir() -> None:
    """ChangeIt ships no sample: its frames come from YouTube videos."""
    return None


CAN_FETCH = False  # fetch() only says how to get the data by hand


def fetch(config: Config, cache_dir: Path | None, progress: bool) -> Path:
    """ChangeIt cannot be fetched: the videos are YouTube ids only."""
    raise PbBuildError(
        "ChangeIt cannot be downloaded automatically: clone https://github.com/soCzech/ChangeIt, put the annotated "
        "videos in videos/<category>/<youtube_id>.<ext> (youtube-dl/yt-dlp -f 'bestvideo[height<=480]', or the "
        "authors' copies on request) and pass --raw"
    )


def _relative(path: Path, roots: list[Path]) -> str:
    for root in roots:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def plan(raw_dir: Path, config: Config, on_bad: OnBad) -> Plan:
    """Read categories and annotations, find each video, and plan one unit per (video, question)."""
    if not raw_dir.is_dir():
        raise PbBuildError(f"{raw_dir}: raw folder does not exist or is not a folder")
    categories = raw.read_categories(raw_dir, on_bad)
    by_dir = {c.dir_name: c for c in categories}
    pools = _pools(categories)
    for q in config.question_list:
        if len(pools[q]) < 4:
            raise PbBuildError(f"{raw_dir / raw.CATEGORIES_FILE}: {len(pools[q])} distinct {q} name(s); at least 4 "
                               "are needed (1 answer + 3 wrong categories)")
    folders = raw.annotation_dirs(raw_dir)
    wanted = config.category_list
    if wanted:
        unknown = [c for c in wanted if c not in by_dir]
        if unknown:
            raise PbBuildError(f"--categories: {', '.join(map(repr, unknown))} not in {raw.CATEGORIES_FILE}")
        folders = [d for d in folders if d.name in wanted]
    vdirs = raw.video_dirs(raw_dir, config.video_dir)
    files = [raw_dir / raw.CATEGORIES_FILE] + [p for p in (raw_dir / "labels.csv",) if p.is_file()]
    units: list[WorkUnit] = []
    dropped: list[dict[str, str]] = []
    ineligible: list[Ineligible] = []
    external: list[dict[str, object]] = []
    seen_any = False
    for folder in folders:
        if folder.name not in by_dir:
            bad = BadRecord(folder, f"category folder {folder.name!r} is not in {raw.CATEGORIES_FILE}")
            handle_bad(bad, on_bad)
            continue
        cat = by_dir[folder.name]
        for youtube_id, path in raw.annotation_files(folder, on_bad):
            seen_any = True
            try:
                ann = raw.read_annotation(path, cat.dir_name, youtube_id)
            except BadRecord as bad:
                handle_bad(bad, on_bad)
                continue
            video = raw.find_video(vdirs, cat.dir_name, youtube_id)
            if video is None:
                where = " or ".join(f"{d}/{cat.dir_name}/" for d in vdirs)
                handle_bad(BadRecord(path, f"video missing: no {youtube_id}{{{','.join(raw.VIDEO_EXTS)}}} in "
                                         f"{where}"), on_bad)
                continue
            files.append(path)
            video_rel = _relative(video, [raw_dir, *vdirs])
            if video.resolve().is_relative_to(raw_dir.resolve()):
                files.append(video)
            else:
                external.append({"path": video_rel, "size": video.stat().st_size})
            lay = layout(ann.seconds, config)
            for q in config.question_list:
                key = f"{name}/{cat.dir_name}/{youtube_id}/{q}"
                if lay is None:
                    dropped.append({"key": key, "reason": f"fewer than 2 frames at {config.fps:g} fps"})
                    ineligible.append(Ineligible(key, "fewer than 2 frames", dropped[-1]["reason"]))
                    continue
                if reference_frame(ann.labels, lay, q) is None:
                    wanted_labels = "/".join(raw.LABELS[v] for v in VISIBLE_LABELS[q])
                    dropped.append({"key": key, "reason": f"no reachable frame labelled {wanted_labels} "
                                                          f"(step_size {lay.step_size})"})
                    ineligible.append(Ineligible(key, "no reachable reference frame", dropped[-1]["reason"]))
                    continue
                answer = category_string(object_name(cat.dir_name) if q == "object" else cat.action_name)
                units.append(WorkUnit(key, Sample(
                    category=cat.dir_name, youtube_id=youtube_id, question=q, answer=answer, pool=pools[q],
                    labels=ann.labels, video=str(video.resolve()), video_rel=video_rel,
                    annotation_rel=_relative(path, [raw_dir]),
                )))
    if not seen_any and not units:
        raise PbBuildError(f"{raw_dir / raw.ANNOTATIONS_DIR}: no <youtube_id>{raw.ANNOTATION_SUFFIX} files found"
                           + (f" for {', '.join(wanted)}" if wanted else ""))
    notes: dict[str, object] = {"pool_version": POOL_VERSION, "dropped": dropped}
    if external:
        notes["external_videos"] = external
    check_inside(raw_dir, files)
    return Plan(units=units, raw_files=files, raw_root=raw_dir, notes=notes, ineligible=ineligible)


def states_for(reachable: int, step: int, num_images: int, rewind: int, wait: int, abstain: int,
               offset: int = 0) -> tuple[State, ...]:
    """One state per reachable frame, hiding options exactly as the official ``_get_valid_options`` does.

    State k shows official image ``offset + k * step`` (``offset`` is 0 when built: ``first_image = 0``).
    """
    out = []
    for k in range(reachable):
        image = offset + k * step
        hidden = None
        if image - step < 0:
            hidden = rewind
        elif image + step >= num_images:
            hidden = wait
        shown = tuple(i for i in range(3) if i != hidden)
        valid = tuple(i for i in (wait, rewind) if i in shown)  # forward first: see the module docstring
        targets = tuple(k - 1 if i == rewind else k + 1 for i in valid)
        if any(not 0 <= t < reachable for t in targets):  # the both-conditions case the official code mishandles
            raise PbBuildError(f"step_size {step} with {num_images} images leaves a move out of range")
        out.append(State(frame=k, shown=shown, valid=valid, targets=targets))
    return tuple(out)


def build(unit: WorkUnit, config: Config) -> Episode:
    """Build the episode of one (video, question) pair."""
    s: Sample = unit.payload
    lay = layout(len(s.labels), config)
    ref = reference_frame(s.labels, lay, s.question) if lay else None
    if lay is None or ref is None:
        raise BadRecord(s.annotation_rel, f"{unit.key}: no reference frame (planned with another configuration?)")
    rng = sample_rng(config.seed, name, unit.key)
    questions = OBJECT_QUESTIONS if s.question == "object" else ACTION_QUESTIONS
    prompt, wait, abstain = pick(rng, questions), WAIT[s.question], pick(rng, ABSTAIN)
    options = shuffled(rng, (wait, REWIND, abstain))
    others = [c for c in s.pool if normalise_text(c) != normalise_text(s.answer)]
    categories = shuffled(rng, (s.answer, *draw(rng, others, 3)))

    try:
        video = raw.read_frames(Path(s.video), [float(lay.time(k)) for k in range(lay.reachable)], lay.seconds)
    except BadRecord as bad:  # each sample of a bad video is skipped and counted: say which one this is
        raise BadRecord(bad.path, f"{bad.cause} (sample {unit.key})", bad.line) from None
    except Ineligible as item:  # counted per sample, named by its key and the video's file name (no machine path)
        raise Ineligible(unit.key, item.reason, f"{Path(item.key).name}: {item.detail}") from None
    frames = tuple(imageio.encode_jpeg(imageio.resize_max_side(f, config.max_side), config.jpeg_quality)
                   for f in video.frames)
    states = states_for(lay.reachable, lay.step_size, lay.num_images, options.index(REWIND), options.index(wait),
                        options.index(abstain))
    folder = f"ChangeIt/{s.category}/{s.youtube_id}"
    record = {
        "image_template": folder + "/{image}.jpg",
        "first_image": 0,
        "num_images": lay.num_images,
        "step_size": lay.step_size,
        "max_steps": lay.reachable,
        "reference_image": ref * lay.step_size,
        "prompt": prompt,
        "options": list(options),
        "categories": list(categories),
        "answer": s.answer,
    }
    files = tuple(OfficialFile(f"{folder}/{k * lay.step_size}.jpg", frames[k]) for k in range(lay.reachable))
    return Episode(
        source=name,
        key=unit.key,
        prompt=prompt,
        options=options,
        categories=categories,
        answer=s.answer,
        frames=frames,
        states=states,
        reference_frame=ref,
        max_steps=lay.reachable,
        hint=HINT,
        pre_prompt=PRE_PROMPT,
        abstain=(options.index(abstain),),
        official=OfficialExport(info.official_name, record, files),
        meta={"category": s.category, "youtube_id": s.youtube_id, "question": s.question,
              "annotation": s.annotation_rel, "seconds": lay.seconds, "sample_fps": str(lay.fps),
              "images": [k * lay.step_size for k in range(lay.reachable)],
              "labels": [lay.label(s.labels, k) for k in range(lay.reachable)],
              "video": s.video_rel, "video_frames": video.num_frames, "video_fps": video.avg_fps,
              "video_size": [video.width, video.height], "video_indices": list(video.indices)},
    ).validate()
