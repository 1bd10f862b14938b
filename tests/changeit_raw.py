"""Raw ChangeIt folders for tests: the real annotation samples plus short synthetic videos written with OpenCV.

Every video frame is one flat colour that encodes its frame index (:func:`index_colour`), so a test can read back
which video frame an exported JPEG shows (:func:`decoded_index`).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np

FIXTURES = Path(__file__).resolve().parent / "data" / "changeit"

# (category, youtube id) -> annotated seconds of the real annotation samples in tests/data/changeit.
REAL = {("apple", "2gQYivaDXW0"): 101, ("apple", "OFR57T1G1yM"): 33, ("bacon", "ZArf-W7di1Y"): 29}

# Synthetic annotations (labels per second) for real categories; ids are valid 11-character YouTube ids.
SYNTHETIC = {
    # starts with '-', non-monotonic, video in downloads/ (the ChangeIt README's youtube-dl folder)
    ("box", "-Abc_def123"): [0] * 5 + [1] * 4 + [2] * 6 + [3] * 3 + [2] * 4 + [3] * 6,
    # never labelled 'action': only the object question is built
    ("t-shirt", "TsHiRt0001a"): [0] * 3 + [1] * 10 + [3] * 10,
    ("whisk_eggs", "WhIsK0eggs1"): [0] * 12 + [1] * 8 + [2] * 15 + [3] * 10,
}

# (category, youtube id) -> (folder under the raw root, extension, video fps)
VIDEO_FORMAT = {
    ("apple", "2gQYivaDXW0"): ("videos", ".mp4", 2.0),
    ("apple", "OFR57T1G1yM"): ("videos", ".avi", 2.5),
    ("bacon", "ZArf-W7di1Y"): ("videos", ".mp4", 2.0),
    ("box", "-Abc_def123"): ("downloads", ".avi", 2.0),
    ("t-shirt", "TsHiRt0001a"): ("videos", ".mp4", 3.0),
    ("whisk_eggs", "WhIsK0eggs1"): ("videos", ".avi", 2.0),
}

FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
SIZE = (32, 24)  # width, height


def index_colour(i: int) -> tuple[int, int, int]:
    """A BGR colour that identifies frame ``i`` (0 <= i < 256) even after lossy compression."""
    return (16 * (i % 16) + 8, 16 * (i // 16) + 8, 128)


def decoded_index(image: np.ndarray) -> int:
    """The frame index encoded by :func:`index_colour` in a decoded BGR image."""
    b, g = float(image[..., 0].mean()), float(image[..., 1].mean())
    return int(round((b - 8) / 16)) + 16 * int(round((g - 8) / 16))


def write_video(path: Path, seconds: float, fps: float, frames: int | None = None) -> int:
    """Write a ``seconds``-long flat-colour video (or exactly ``frames`` frames); returns the frame count."""
    n = frames if frames is not None else math.ceil(seconds * fps)
    if n > 256:
        raise ValueError("index colours cover 256 frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), fps, SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for i in range(n):
        writer.write(np.full((SIZE[1], SIZE[0], 3), index_colour(i), np.uint8))
    writer.release()
    return n


def write_annotation(path: Path, labels: list[int]) -> Path:
    """An ``<id>.fps1.csv`` file: ``second,label`` rows, no header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t},{label}\n" for t, label in enumerate(labels)), encoding="utf-8")
    return path


def video_path(raw: Path, category: str, youtube_id: str) -> Path:
    folder, ext, _ = VIDEO_FORMAT[(category, youtube_id)]
    return raw / folder / category / f"{youtube_id}{ext}"


def make_raw(root: Path, synthetic: bool = True) -> Path:
    """A raw folder in the ChangeIt layout: the real files, the synthetic annotations and every video."""
    raw = root / "changeit"
    raw.mkdir(parents=True)
    for name in ("categories.csv", "labels.csv", "LICENCE"):
        shutil.copy(FIXTURES / name, raw / name)
    (raw / "videos").mkdir()
    shutil.copy(FIXTURES / "videos" / "apple.csv", raw / "videos" / "apple.csv")
    for (category, youtube_id), seconds in REAL.items():
        src = FIXTURES / "annotations" / category / f"{youtube_id}.fps1.csv"
        dest = raw / "annotations" / category / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        write_video(video_path(raw, category, youtube_id), seconds, VIDEO_FORMAT[(category, youtube_id)][2])
    if synthetic:
        for (category, youtube_id), labels in SYNTHETIC.items():
            write_annotation(raw / "annotations" / category / f"{youtube_id}.fps1.csv", labels)
            write_video(video_path(raw, category, youtube_id), len(labels), VIDEO_FORMAT[(category, youtube_id)][2])
    return raw


def read_labels(path: Path) -> list[int]:
    """The labels of an annotation file (test-side reader, independent of pb_build)."""
    return [int(line.split(",")[1]) for line in path.read_text().splitlines() if line.strip()]
