"""VSOD (OcclusionDataSet-MM20): someone walks in front of the camera; the model should wait or rewind the video.

Inputs: the raw MM20 tree (``Data/<split>/<segment>/`` frames, ``Annotations/<split>/<segment>/*.xml``; see
``pb_build.raw.vsod``) and a user-supplied labels file (``--labels``), because the questions' answers (speaker
name, number of people, event type) are not part of the raw data. The labels file is a UTF-8 CSV::

    segment,question_type,answer,distractors
    0006,speaker_name,Ursula von der Leyen,Monika Schnitzer|Ge You
    0006,number_of_people,Two,
    0017,event_type,Press conference,

``question_type`` is ``speaker_name``, ``number_of_people`` or ``event_type``; ``distractors`` (optional column,
``|``-separated) are wrong answers for that row. One row is one sample; a (segment, question type) pair may
appear once. A row naming a segment that is not a folder of ``Data/<split>`` is an error naming the file and
line. Answers and distractors become categories with ``text.capitalize() + "."``, so they need at least 2
characters, no comma, no brace and no upper-case letter before a period (e.g. ``"J. Smith"``); a number of
people is best written as a word or with a noun (``"Two"``, ``"3 people"``; a bare ``"3"`` is too short).
A relative ``--labels`` path is looked up in the raw folder first, then in the current folder. The file's name,
size and sha256 are recorded in the manifest (``notes.labels``); a labels file inside the raw folder is also
listed with the raw files, so ``pb-build rebuild`` checks it and the manifest holds no machine-specific path.
The raw files are every frame and XML of the labelled segments: planning lists them first, then parses the
annotations segment by segment while the first shards build, so an ineligible segment's files are listed too.

Construction (ProactiveBench, arXiv 2603.19466, App. A.2, and the official VSOD environment), per labelled segment:

* Frames are the segment's frames in natural file-name order (``pb_build.raw.vsod``), exported 0-based with
  4-digit indices (``0000.jpg`` ...) to ``OcclusionDataSet-MM20/Data/<split>/<segment>/``. Every question about
  a segment uses the same files at the same paths, so the official layout stores each frame once.
* Occluded frame: its XML has an ``<object>``; its occluded fraction is the union area of its boxes over the
  image area. **First frame**: the occluded frame with the largest fraction (ties: the earliest).
  ``strong_occlusions`` is ``fraction(first) >= --strong-threshold`` (default 0.5: at least half of the picture
  is hidden). **Reference frame**: the unoccluded frame nearest to the first frame in circular distance (the
  moves are circular), ties broken towards waiting (the later frame).
* Eligibility: a segment with no occluded frame, and a segment whose every frame is occluded (no reference frame)
  are excluded, not an error: listed in the manifest's ``ineligible_items`` (key ``vsod/<split>/<segment>``,
  the reason, and how many labelled questions it had) and counted per reason (``--strict``: an error).
* One state per frame, all showing the three options; REWIND leads to frame ``k - 1``, wait to ``k + 1``, both
  modulo ``num_images``; both moves and the correct category are valid at every turn; ``max_steps =
  num_images``. The video pre-prompt and the VSOD hint are the official strings.
* Options: exactly ``"Rewind the video."``, ``"Wait for the occlusion to disappear."`` and one abstain option
  (pool of 3), shuffled once. The question comes from the question type's pool of 15.
* Wrong categories: when the row has 3 or more distractors, 3 of them; otherwise all of the row's distractors
  plus the missing ones drawn from the answers of the other rows of the same question type (the whole labels
  file, distinct after normalisation). Fewer than 3 candidates is an error naming the row. The 4 categories are
  shuffled once. All draws use the sample's own RNG from (seed, source, key).
* Frames are copied byte for byte (checked to decode through :mod:`pb_build.imageio`; a JPEG must end with its
  EOI marker; bytes that are not the extension's format, or not 8-bit grey/RGB, are re-encoded), or with
  ``--max-side N`` downscaled so the longer side is at most N pixels (INTER_AREA) and re-encoded as JPEG
  quality 90. A frame that does not decode or is over the size limits fails its samples (``--skip-bad`` counts
  them).

Size: each native row embeds every frame of its segment, so a segment with q questions is stored q times in
the parquet shards (about q x frames x frame size, e.g. 3 x 230 x 60 KB = 41 MB); the official layout stores
each frame once. ``--max-side`` bounds the frame size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pb_build import imageio
from pb_build.builders.base import ABSTAIN, OnBad, Plan, SourceInfo, WorkUnit
from pb_build.episode import Episode, OfficialExport, OfficialFile, State
from pb_build.errors import BadRecord, Ineligible, PbBuildError, handle_bad
from pb_build.hashing import sha256_file
from pb_build.matching import normalise_text
from pb_build.names import check_inside
from pb_build.raw import vsod as raw
from pb_build.seeding import draw, pick, sample_rng, shuffled
from pb_build.strings import category_string

name = "vsod"
VERSION = "1.1.0"
RELEASE_NOTES = {"1.0.0": "First pb-build OcclusionDataSet-MM20 (VSOD) builder.",
                 "1.1.0": "Annotations are parsed while the first shards build: ineligible segments move from "
                          "notes.ineligible_segments to ineligible_items only, and their files are listed with "
                          "the raw files."}
POOL_VERSION = "pb-build-vsod-1"

info = SourceInfo(
    official_name="OcclusionDataSet-MM20",
    title="OcclusionDataSet-MM20 (VSOD v1.0)",
    licence="Data licence not stated by the authors (their code is MIT; the ProactiveBench paper lists MIT)",
    attribution="OcclusionDataSet-MM20 by Junhua Liao, Haihan Duan, Xin Li, Haoran Xu, Yanbing Yang, Wei Cai, "
    "Yanru Chen and Liangyin Chen (ACM MM 2020); question labels supplied by the release builder.",
    homepage="https://junhua-liao.github.io/Occlusion-Detection/",
    citation="Liao, J., Duan, H., Li, X., Xu, H., Yang, Y., Cai, W., Chen, Y., Chen, L. Occlusion Detection for "
    "Automatic Video Editing. ACM Multimedia 2020, pp. 2255-2263. doi:10.1145/3394171.3413725",
    description="Video segments with an annotated occlusion; the first frame is the most occluded one and the "
    "model should wait or rewind the video before naming the speaker, the number of people or the event.",
)

PRE_PROMPT = "This is a frame extracted from a video. Answer the following question."
HINT = ("Hint: If there is an occlusion, waiting for it to disappear or rewinding the video might reveal what's "
        "behind it.")
REWIND = "Rewind the video."
WAIT = "Wait for the occlusion to disappear."
JPEG_QUALITY = 90

QUESTIONS: dict[str, tuple[str, ...]] = {
    "speaker_name": (
        "Can you say who is speaking?",
        "Could you tell me who is talking?",
        "Who is the person speaking in this video?",
        "Who is talking in this scene?",
        "Can you identify the speaker?",
        "Who is giving the speech here?",
        "What is the name of the person speaking?",
        "Identify the person who is talking.",
        "Who is addressing the audience in this video?",
        "Which person is speaking in this clip?",
        "Tell me the name of the speaker.",
        "Who is the speaker in this frame?",
        "Can you recognise who is talking?",
        "Name the person who is speaking.",
        "Who is speaking to the camera?",
    ),
    "number_of_people": (
        "How many people are in the scene?",
        "Can you count the people in this video?",
        "How many persons appear in this frame?",
        "What is the number of people shown?",
        "Count the people in the scene.",
        "How many individuals can be seen in the video?",
        "Tell me how many people are present.",
        "How many people are taking part in this scene?",
        "What is the number of persons in the video?",
        "How many people does the scene show?",
        "Could you tell me how many people are there?",
        "How many people are visible in this clip?",
        "Give the number of people in the frame.",
        "How many people are in front of the camera?",
        "How many participants are in this scene?",
    ),
    "event_type": (
        "What kind of event is shown in the video?",
        "What type of event is taking place?",
        "Can you tell what event this is?",
        "What event is being recorded here?",
        "Describe the type of event in this video.",
        "What is happening in this scene?",
        "Which kind of event does this clip show?",
        "What sort of gathering is this?",
        "Identify the type of event in the video.",
        "What occasion is shown in this frame?",
        "Could you tell me what type of event this is?",
        "What event is captured in this video?",
        "Classify the event shown in the scene.",
        "What type of occasion is being filmed?",
        "Name the kind of event in this clip.",
    ),
}


@dataclass(frozen=True)
class Config:
    """Parameters of a VSOD build; every field is recorded in the manifest."""

    labels: str = field(default="", metadata={"table": "labels",
        "help": "CSV of question labels with header segment,question_type,answer[,distractors] (required)."})
    split: str = field(default="test", metadata={"help": "Split folder under Data/ and Annotations/."})
    strong_threshold: float = field(default=0.5, metadata={
        "help": "strong_occlusions is true when the first frame's occluded area fraction is at least this."})
    max_side: int = field(default=0, metadata={
        "help": "Downscale frames to at most N pixels on the longer side and re-encode as JPEG (0: copy as is)."})
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.split or "/" in self.split or "\\" in self.split or self.split in (".", ".."):
            raise PbBuildError("--split must be a folder name such as 'test'")
        if not 0.0 < self.strong_threshold <= 1.0:
            raise PbBuildError("--strong-threshold must be in (0, 1]")
        if self.max_side != 0 and not 16 <= self.max_side <= 8192:
            raise PbBuildError("--max-side must be 0 (copy frames) or between 16 and 8192")


@dataclass(frozen=True)
class Sample:
    """The work unit payload: one question about one segment, with its frames already chosen."""

    split: str
    segment: str
    frames: tuple[str, ...]
    extension: str
    first: int
    reference: int
    fraction: float
    strong: bool
    question_type: str
    answer: str
    distractors: tuple[str, ...]
    pool: tuple[str, ...]
    labels_line: int


def sample_dir() -> None:
    """VSOD ships no bundled sample."""
    return None


CAN_FETCH = False  # fetch() only says how to get the data by hand


def fetch(config: Config, cache_dir: Path | None, progress: bool) -> Path:
    raise PbBuildError(f"{info.official_name} cannot be downloaded automatically: get it from {info.homepage} "
                       "(VSOD v1.0), then pass --raw <folder with Data/ and Annotations/> and --labels <csv>")


def _label_problem(text: str) -> str | None:
    cat = category_string(text)
    if len(text.strip()) < 2:
        return f"{text!r} is too short (a category needs at least 2 characters)"
    if "," in cat or "{" in cat or "}" in cat:
        return f"{text!r} contains a comma or a brace"
    if any(ch.isupper() and nxt == "." for ch, nxt in zip(cat, cat[1:], strict=False)):
        return f"{text!r} becomes {cat!r}, with an upper-case letter before '.', which the matcher would cut"
    return None


def _check_row(row: raw.LabelRow, known: set[str], seen: set[tuple[str, str]]) -> None:
    if row.segment not in known:
        raise BadRecord(row.path, f"unknown segment {row.segment!r}: no folder Data/<split>/{row.segment}", row.line)
    if (row.segment, row.question_type) in seen:
        raise BadRecord(row.path, f"duplicate row for segment {row.segment!r} and {row.question_type}", row.line)
    for text in (row.answer, *row.distractors):
        problem = _label_problem(text)
        if problem:
            raise BadRecord(row.path, f"label {problem}", row.line)
    answer = normalise_text(category_string(row.answer))
    if any(normalise_text(category_string(d)) == answer for d in row.distractors):
        raise BadRecord(row.path, f"a distractor equals the answer {row.answer!r}", row.line)


def _distinct(texts: list[str], exclude: set[str]) -> list[str]:
    """Category strings of ``texts`` in order, without repeats or ``exclude`` (compared normalised)."""
    out, seen = [], set(exclude)
    for text in texts:
        cat = category_string(text)
        key = normalise_text(cat)
        if key not in seen:
            seen.add(key)
            out.append(cat)
    return out


def choose_frames(segment: raw.Segment, threshold: float) -> tuple[int, int, bool] | str:
    """(first, reference, strong) by the documented rules, or the reason the segment is ineligible."""
    frames, n = segment.frames, len(segment.frames)
    occluded = [k for k, f in enumerate(frames) if f.occluded]
    clear = [k for k, f in enumerate(frames) if not f.occluded]
    if not occluded:
        return "no occluded frame (no annotation has an <object>)"
    if not clear:
        return "every frame is occluded (no unoccluded reference frame)"
    first = max(occluded, key=lambda k: (frames[k].fraction, -k))

    def distance(k: int) -> tuple[int, int]:
        forward, backward = (k - first) % n, (first - k) % n
        return (forward, 0) if forward <= backward else (backward, 1)

    reference = min(clear, key=distance)
    return first, reference, frames[first].fraction >= threshold


def plan(raw_dir: Path, config: Config, on_bad: OnBad) -> Plan:
    """Read the labels and list the labelled segments' files now; parse their annotations and plan one unit per
    label row lazily, segment by segment, so the first shards build while later segments are parsed."""
    if not config.labels:
        raise PbBuildError("--labels is required: OcclusionDataSet-MM20 has no question labels; supply a CSV with "
                           "header segment,question_type,answer[,distractors] (see pb_build/builders/vsod.py)")
    root = raw.find_root(raw_dir)
    labels = _labels_path(raw_dir, config.labels)
    known = set(raw.segment_names(root, config.split))
    rows: list[raw.LabelRow] = []
    seen: set[tuple[str, str]] = set()
    for row in raw.read_labels(labels, on_bad):
        try:
            _check_row(row, known, seen)
        except BadRecord as bad:
            handle_bad(bad, on_bad)
            continue
        seen.add((row.segment, row.question_type))
        rows.append(row)
    answers = {q: sorted((r.answer for r in rows if r.question_type == q), key=category_string)
               for q in raw.QUESTION_TYPES}
    # Each question type's distinct answers once, with their normalised keys: a row's pool is this list less its
    # own answer and distractors (the same list _distinct gives per row, without reading every row per row)
    distinct = {q: [(cat, normalise_text(cat)) for cat in _distinct(texts, set())] for q, texts in answers.items()}
    by_segment: dict[str, list[raw.LabelRow]] = {}
    for row in rows:
        by_segment.setdefault(row.segment, []).append(row)
    listed: list[_Listed] = []
    files: list[Path | str] = []
    for seg_name in sorted(by_segment, key=raw.natural_key):
        try:
            if "{" in seg_name or "}" in seg_name:
                raise BadRecord(root / "Data" / config.split / seg_name, "segment name contains a brace, which "
                                "the official image_template cannot hold")
            pairs = raw.list_segment(root, config.split, seg_name)
            extension = _extension([image for image, _ in pairs], config)
        except BadRecord as bad:
            handle_bad(bad, on_bad)
            continue
        order = sorted(by_segment[seg_name], key=lambda r: raw.QUESTION_TYPES.index(r.question_type))
        listed.append(_Listed(seg_name, pairs, extension, order))
        files += [p for pair in pairs for p in pair]
    inside = _inside(labels, raw_dir)
    if inside is not None:
        files.insert(0, inside)
    check_inside(raw_dir, files)
    notes = {
        "pool_version": POOL_VERSION,
        "labels": {"file": labels.name, "size": labels.stat().st_size, "sha256": sha256_file(labels),
                   "rows": len(rows)},
        "strong_threshold": config.strong_threshold,
        "unlabelled_segments": len(known - set(by_segment)),
    }
    ineligible: list[Ineligible] = []  # filled while the units stream
    return Plan(units=_units(listed, distinct, config, on_bad, ineligible), raw_files=files, raw_root=raw_dir,
                notes=notes, total=sum(len(seg.rows) for seg in listed), ineligible=ineligible)


@dataclass(frozen=True)
class _Listed:
    """A labelled segment whose files are listed and paired, its annotations not yet parsed."""

    name: str
    pairs: list[tuple[str, str]]
    extension: str
    rows: list[raw.LabelRow]


def _units(listed: list[_Listed], distinct: dict[str, list[tuple[str, str]]], config: Config, on_bad: OnBad,
           ineligible: list[Ineligible]) -> Iterator[WorkUnit]:
    """Parse each listed segment's annotations, choose its frames and yield a unit per labelled question (an
    ineligible segment is appended to ``ineligible`` instead); ``distinct`` holds each question type's answers."""
    for seg in listed:
        try:
            segment = raw.parse_segment(config.split, seg.name, seg.pairs)
        except BadRecord as bad:
            handle_bad(bad, on_bad)
            continue
        chosen = choose_frames(segment, config.strong_threshold)
        if isinstance(chosen, str):
            ineligible.append(Ineligible(f"{name}/{config.split}/{seg.name}", chosen,
                                         f"{len(seg.rows)} labelled question(s)"))
            continue
        first, reference, strong = chosen
        for row in seg.rows:
            own = _distinct(list(row.distractors), {normalise_text(category_string(row.answer))})
            taken = {normalise_text(c) for c in (category_string(row.answer), *own)}
            pool = [cat for cat, key in distinct[row.question_type] if key not in taken]
            if len(own) + len(pool) < 3:
                handle_bad(BadRecord(row.path, f"only {len(own) + len(pool)} wrong categories for {row.question_type} "
                               "(3 needed): add distractors to this row or more labelled segments", row.line), on_bad)
                continue
            sample = Sample(
                split=config.split, segment=seg.name, frames=tuple(f.image for f in segment.frames),
                extension=seg.extension, first=first, reference=reference, fraction=segment.frames[first].fraction,
                strong=strong, question_type=row.question_type, answer=category_string(row.answer),
                distractors=tuple(own), pool=tuple(pool), labels_line=row.line,
            )
            yield WorkUnit(f"{name}/{config.split}/{seg.name}/{row.question_type}", sample)


def _labels_path(raw_dir: Path, given: str) -> Path:
    """``--labels``: absolute, or relative to the raw folder when it is there, else to the current folder."""
    path = Path(given).expanduser()
    if not path.is_absolute() and (raw_dir / path).is_file():
        path = raw_dir / path
    if not path.is_file():
        raise PbBuildError(f"{path}: labels file not found (--labels; a relative path is looked up in the raw "
                           "folder, then in the current folder)")
    return path


def _inside(path: Path, folder: Path) -> Path | None:
    """``path`` spelled below ``folder`` when the file lies inside it (so the manifest lists it with the raw files)."""
    try:
        return folder / path.resolve().relative_to(folder.resolve())
    except ValueError:
        return None


def _extension(images: list[str], config: Config) -> str:
    if config.max_side:
        return ".jpg"
    suffixes = sorted({os.path.splitext(image)[1].lower() for image in images})  # pathlib: 0.07 s more per 8,000
    if len(suffixes) > 1:
        raise BadRecord(Path(images[0]).parent, f"segment mixes frame formats {', '.join(suffixes)}; "
                        "pass --max-side to re-encode them as JPEG")
    return suffixes[0]



def load_frame(path: str, max_side: int, suffix: str) -> bytes:
    """The exported bytes of one frame stored as ``suffix``: the file itself (checked to decode) or a re-encoding."""
    return imageio.load_frame(path, ".jpg" if max_side else suffix, max_side, JPEG_QUALITY)


def states_for(n: int, rewind: int, wait: int) -> tuple[State, ...]:
    """One state per frame, all three options shown; REWIND leads to frame k - 1, wait to k + 1 (mod ``n``)."""
    moves = sorted([(rewind, -1), (wait, +1)])
    return tuple(
        State(frame=k, shown=(0, 1, 2), valid=tuple(i for i, _ in moves),
              targets=tuple((k + d) % n for _, d in moves))
        for k in range(n)
    )


def build(unit: WorkUnit, config: Config) -> Episode:
    """Build the episode of one question about one segment."""
    s: Sample = unit.payload
    rng = sample_rng(config.seed, name, unit.key)
    questions = QUESTIONS[s.question_type]
    prompt, abstain = pick(rng, questions), pick(rng, ABSTAIN)
    options = shuffled(rng, (REWIND, WAIT, abstain))
    own = list(s.distractors)
    if len(own) >= 3:
        wrong = draw(rng, own, 3)
    else:
        wrong = own + draw(rng, s.pool, 3 - len(own))
    categories = shuffled(rng, (s.answer, *wrong))
    frames = tuple(load_frame(p, config.max_side, s.extension) for p in s.frames)
    n = len(frames)
    r_idx, w_idx, a_idx = options.index(REWIND), options.index(WAIT), options.index(abstain)
    states = states_for(n, r_idx, w_idx)
    folder = f"{info.official_name}/Data/{s.split}/{s.segment}"
    record = {
        "image_template": folder + "/{image}" + s.extension,
        "first_image": s.first,
        "num_images": n,
        "reference_image": s.reference,
        "strong_occlusions": s.strong,
        "prompt": prompt,
        "options": list(options),
        "categories": list(categories),
        "answer": s.answer,
    }
    files = tuple(OfficialFile(f"{folder}/{k:04d}{s.extension}", frames[k]) for k in range(n))
    return Episode(
        source=name,
        key=unit.key,
        prompt=prompt,
        options=options,
        categories=categories,
        answer=s.answer,
        frames=frames,
        states=states,
        reference_frame=s.reference,
        max_steps=n,
        initial_state=s.first,
        hint=HINT,
        pre_prompt=PRE_PROMPT,
        abstain=(a_idx,),
        official=OfficialExport(info.official_name, record, files),
        meta={"segment": s.segment, "split": s.split, "question_type": s.question_type,
              "labels_line": s.labels_line, "first_frame": Path(s.frames[s.first]).name,
              "reference_frame": Path(s.frames[s.reference]).name, "occluded_fraction": round(s.fraction, 6),
              "strong_threshold": config.strong_threshold},
    )
