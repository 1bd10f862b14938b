"""ChangeIt raw data (Souček et al., CVPR 2022): categories, per-second annotations and the annotated videos.

Layout of a raw folder (a checkout of https://github.com/soCzech/ChangeIt plus the downloaded videos):

* ``categories.csv``: header ``DIR_NAME,ACTION_NAME,CENTERING_PARAM``, one row per category, e.g.
  ``box,"Gift/Box Wrapping",0.346``.
* ``annotations/<DIR_NAME>/<youtube_id>.fps1.csv``: no header, rows ``second,label``, one per second of the
  original video, the seconds consecutive from 0; labels 0 background, 1 initial state, 2 action, 3 end state
  (``labels.csv``). Labels are not monotonic (state2 -> action -> state2 happens).
* the videos, one file ``<youtube_id>.<ext>`` per annotated video (``ext`` one of :data:`VIDEO_EXTS`, tried in
  that order), looked up in ``videos/<DIR_NAME>/`` and then in ``downloads/<DIR_NAME>/`` (the folder the
  ChangeIt README's youtube-dl recipe writes to), or in ``<video_dir>/<DIR_NAME>/`` when a video folder is given.
  YouTube ids are 11 characters of ``A-Z a-z 0-9 _ -`` and may start with ``-``.
  ``videos/<DIR_NAME>.csv`` (the id lists of the whole dataset) are not needed.

Everything is streamed in sorted order (categories by name, annotation files by name). A bad record raises
:class:`BadRecord` naming the file (and line) or, with ``on_bad`` (``--skip-bad``), is reported and skipped.
Videos are decoded with OpenCV's FFmpeg backend on one thread.
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pb_build import imageio
from pb_build.errors import BadRecord, Ineligible, PbBuildError, handle_bad

OnBad = Callable[[BadRecord], None] | None

CATEGORIES_FILE = "categories.csv"
ANNOTATIONS_DIR = "annotations"
ANNOTATION_SUFFIX = ".fps1.csv"
DEFAULT_VIDEO_DIRS = ("videos", "downloads")
VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".flv", ".3gp")
LABELS = {0: "background", 1: "state1", 2: "action", 3: "state2"}
CATEGORY_HEADER = ("DIR_NAME", "ACTION_NAME")
YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
DIR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# A video may be this many seconds shorter than its annotation (the authors' 1 fps extraction rounds the
# duration); the frames of the missing tail are clamped to the last video frame.
LENGTH_TOLERANCE_S = 1.0
# A video up to this many seconds shorter is a valid but ineligible item (a re-upload or a trimmed download of the
# same video: excluded and counted); a video shorter still is a bad record (truncated, or not the annotated video).
SHORT_VIDEO_MAX_S = 5.0
# A frame at most this many frames after the one read last is reached by decoding forward, a farther one by
# seeking: OpenCV's seek restarts decoding at a keyframe at least 16 frames before the target, so it never
# decodes fewer frames than this.
GRAB_AHEAD_MAX = 16


@dataclass(frozen=True)
class Category:
    """One row of ``categories.csv``."""

    dir_name: str
    action_name: str
    centering: str
    path: str
    line: int


@dataclass(frozen=True)
class Annotation:
    """The per-second labels of one annotated video."""

    category: str
    youtube_id: str
    labels: tuple[int, ...]
    path: str

    @property
    def seconds(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class VideoFrames:
    """Frames read from a video (BGR uint8) and what the video reported about itself."""

    frames: tuple[np.ndarray, ...]
    indices: tuple[int, ...]
    num_frames: int
    avg_fps: float
    width: int
    height: int


def read_categories(raw_dir: Path, on_bad: OnBad = None) -> list[Category]:
    """The rows of ``categories.csv`` in file order; a missing file or header is a fatal error."""
    path = raw_dir / CATEGORIES_FILE
    if not path.is_file():
        raise PbBuildError(f"{path}: not found; the raw folder must be a ChangeIt checkout "
                           "(categories.csv, annotations/<category>/<youtube_id>.fps1.csv) plus the videos")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PbBuildError(f"{path}: cannot read: {exc}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or tuple(c.strip() for c in rows[0][:2]) != CATEGORY_HEADER:
        raise PbBuildError(f"{path}:1: header must start with {','.join(CATEGORY_HEADER)}")
    out: list[Category] = []
    seen: set[str] = set()
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            out.append(_category(row, seen, str(path), line_no))
        except BadRecord as bad:
            handle_bad(bad, on_bad)
    return out


def _category(row: list[str], seen: set[str], path: str, line_no: int) -> Category:
    if len(row) < 2:
        raise BadRecord(path, f"expected DIR_NAME,ACTION_NAME[,CENTERING_PARAM], got {len(row)} field(s)", line_no)
    dir_name, action = row[0].strip(), row[1].strip()
    if not DIR_NAME.match(dir_name):
        raise BadRecord(path, f"DIR_NAME {dir_name!r} is not a folder name of letters, digits, '_' and '-'", line_no)
    if dir_name in seen:
        raise BadRecord(path, f"duplicate category {dir_name!r}", line_no)
    if len(action) < 2 or not any(c.isalpha() for c in action):
        raise BadRecord(path, f"ACTION_NAME {action!r} is empty or too short", line_no)
    if "," in action:
        raise BadRecord(path, f"ACTION_NAME {action!r} contains a comma (the official OEG scoring splits answers "
                              "on commas)", line_no)
    if "{" in action or "}" in action or "." in action:
        raise BadRecord(path, f"ACTION_NAME {action!r} contains '{{', '}}' or '.'", line_no)
    seen.add(dir_name)
    return Category(dir_name, action, row[2].strip() if len(row) > 2 else "", path, line_no)


def annotation_dirs(raw_dir: Path) -> list[Path]:
    """The category folders of ``annotations/``, sorted by name."""
    root = raw_dir / ANNOTATIONS_DIR
    if not root.is_dir():
        raise PbBuildError(f"{root}: not found; expected annotations/<category>/<youtube_id>.fps1.csv")
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def annotation_files(folder: Path, on_bad: OnBad = None) -> Iterator[tuple[str, Path]]:
    """``(youtube_id, path)`` of each annotation file of a category folder, sorted by file name."""
    for path in sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name):
        if not path.is_file() or not path.name.endswith(ANNOTATION_SUFFIX):
            handle_bad(BadRecord(path, f"unexpected entry: expected <youtube_id>{ANNOTATION_SUFFIX} files"), on_bad)
            continue
        youtube_id = path.name[: -len(ANNOTATION_SUFFIX)]
        if not YOUTUBE_ID.match(youtube_id):
            handle_bad(BadRecord(path, f"file name does not parse: {youtube_id!r} is not an 11-character YouTube id"),
                 on_bad)
            continue
        yield youtube_id, path


def read_annotation(path: Path, category: str, youtube_id: str) -> Annotation:
    """Parse one ``<id>.fps1.csv``; rows must be ``second,label`` with seconds 0, 1, 2, ... in order."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise BadRecord(path, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BadRecord(path, "not UTF-8 text") from None
    labels: list[int] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not all(re.fullmatch(r"-?\d+", f) for f in fields):
            raise BadRecord(path, f"expected 'second,label' integers, got {line.strip()!r}", line_no)
        second, label = int(fields[0]), int(fields[1])
        if second != len(labels):
            order = "out of order" if labels else "not starting at 0"
            raise BadRecord(path, f"rows {order}: second {second} where {len(labels)} was expected", line_no)
        if label not in LABELS:
            raise BadRecord(path, f"unknown label {label} (expected one of {sorted(LABELS)})", line_no)
        labels.append(label)
    if len(labels) < 2:
        raise BadRecord(path, f"annotation has {len(labels)} row(s); at least 2 seconds are needed")
    return Annotation(category, youtube_id, tuple(labels), str(path))


def video_dirs(raw_dir: Path, video_dir: str) -> list[Path]:
    """The folders searched for ``<category>/<youtube_id>.<ext>``."""
    if video_dir:
        root = Path(video_dir)
        if not root.is_dir():
            raise PbBuildError(f"{root}: --video-dir is not a folder")
        return [root]
    return [raw_dir / d for d in DEFAULT_VIDEO_DIRS]


def find_video(dirs: Sequence[Path], category: str, youtube_id: str) -> Path | None:
    """The first existing ``<dir>/<category>/<youtube_id><ext>`` over ``dirs`` then :data:`VIDEO_EXTS`."""
    for root in dirs:
        for ext in VIDEO_EXTS:
            path = root / category / f"{youtube_id}{ext}"
            if path.is_file():
                return path
    return None


def frame_index(seconds: float, avg_fps: float, num_frames: int) -> int:
    """The video frame shown at ``seconds``: ``floor(seconds * avg_fps + 0.5)``, clamped to the last frame."""
    return min(max(math.floor(seconds * avg_fps + 0.5), 0), num_frames - 1)


def read_frames(path: Path, times: Sequence[float], annotated_seconds: int) -> VideoFrames:
    """Decode the frames at ``times`` (seconds) of a video annotated for ``annotated_seconds`` seconds.

    Raises :class:`BadRecord` naming the video when it does not open or decode, reports no frames or frame rate,
    or is more than :data:`SHORT_VIDEO_MAX_S` shorter than its annotation; :class:`Ineligible` when it is shorter
    by more than :data:`LENGTH_TOLERANCE_S` but at most :data:`SHORT_VIDEO_MAX_S`. What the decoder logs on
    stderr is not printed; on failure its messages become the cause.
    """
    with _native_stderr() as log:
        capture = imageio.open_video(path)
    if not capture.isOpened():
        raise BadRecord(path, f"video does not open: {_cause(log, path, 'FFmpeg cannot read it')}")
    num_frames, avg_fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    with _native_stderr() as log:
        try:
            frames = _frames_at(capture, times, annotated_seconds, num_frames, avg_fps, path)
        finally:
            capture.release()
        if frames is None:  # the header may count more frames than the file holds (a truncated download)
            num_frames = _count_frames(path)
            capture = imageio.open_video(path)
            try:
                frames = _frames_at(capture, times, annotated_seconds, num_frames, avg_fps, path)
            finally:
                capture.release()
    if frames is None:
        raise BadRecord(path, f"video does not decode: {_cause(log, path, 'a frame does not decode')}")
    indices, images = frames
    return VideoFrames(images, indices, num_frames, avg_fps, width, height)


def _frames_at(capture: cv2.VideoCapture, times: Sequence[float], annotated_seconds: int, num_frames: int,
               avg_fps: float, path: Path) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]] | None:
    """The indices and BGR frames shown at ``times`` in a video of ``num_frames`` frames, after the length
    checks; None when a frame cannot be read."""
    if num_frames < 1 or not math.isfinite(avg_fps) or avg_fps <= 0:
        raise BadRecord(path, f"video reports {num_frames} frame(s) at {avg_fps:g} fps")
    duration = num_frames / avg_fps
    if duration < annotated_seconds - SHORT_VIDEO_MAX_S:
        raise BadRecord(path, f"video ends early: {duration:.1f} s ({num_frames} frames at {avg_fps:g} fps) but "
                              f"its annotation has {annotated_seconds} seconds")
    if duration < annotated_seconds - LENGTH_TOLERANCE_S:
        raise Ineligible(str(path), "video shorter than its annotation",
                         f"{duration:.1f} s for {annotated_seconds} annotated seconds")
    indices = tuple(frame_index(t, avg_fps, num_frames) for t in times)
    images: list[np.ndarray] = []
    position = -1  # the index of the frame read last
    for index in indices:
        if index != position:
            if 0 < index - position <= GRAB_AHEAD_MAX:
                for _ in range(index - position - 1):  # decoded, not converted
                    if not capture.grab():
                        return None
            else:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, image = capture.read()
            if not ok or image is None or image.ndim != 3 or image.shape[2] != 3:
                return None
            position = index
        images.append(image)
    return indices, tuple(images)


def _count_frames(path: Path) -> int:
    """How many frames of a video decode, read from the start (only when the header may say more)."""
    capture = imageio.open_video(path)
    count = 0
    try:
        while capture.read()[0]:
            count += 1
    finally:
        capture.release()
    return count


@contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Collect what native code (FFmpeg, OpenCV) writes to file descriptor 2 instead of printing it."""
    sys.stderr.flush()
    saved = os.dup(2)
    log: list[str] = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.append(sink.read(64 * 1024).decode("utf-8", "replace"))


_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*")  # FFmpeg's "[demuxer @ 0x...] "
_OPENCV_LINE = re.compile(r"^\[\s*(?:WARN|ERROR|INFO|DEBUG)\b")  # OpenCV's own notes, not the file's problem


def _cause(log: list[str], path: Path, default: str) -> str:
    """One line from the decoder's messages (FFmpeg's reason first), else ``default``."""
    parts: list[str] = []
    for line in "".join(log).splitlines():
        if _OPENCV_LINE.match(line):
            continue
        text = _LOG_PREFIX.sub("", line).strip().replace(str(path), "the file")
        if text and text not in parts:
            parts.append(text)
    return "; ".join(parts or [default])[:300]
