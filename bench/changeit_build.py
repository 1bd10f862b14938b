"""Benchmark: ChangeIt release build throughput against a bare decode + encode loop over the same video frames.

Measures, in one run, exported frames per second of

1. a full release build (``build_release(..., workers=1, progress=False)`` into a temporary folder; the wall time
   covers planning, reading the annotations, opening and decoding the videos, JPEG encoding, writing the official
   files and the parquet shards, card, manifest and checksums),
2. a bare loop over the *same* frames (the units planned by ``changeit.plan``, untimed): per sample, open the
   video and decode the sampled frames as the builder does (``raw.read_frames``: OpenCV's FFmpeg, one thread) and
   JPEG-encode them, keeping nothing. Like the build, it decodes a video once per sample (object and action questions),
3. optionally the build with ``--workers N`` (N > 1),

and the ratio build fps / bare fps. No target is asserted; each measurement is the best of ``--repeat``.

The input is synthetic: a ChangeIt raw folder (categories.csv, annotations/<category>/<id>.fps1.csv, videos in
videos/<category>/<id>.mp4) with moving-pattern videos written by OpenCV (mp4v) and random labels.

    .venv/bin/python bench/changeit_build.py
    .venv/bin/python bench/changeit_build.py --videos 12 --seconds 120 --size 480x270 --workers 4 --json /tmp/cit.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pb_build.build import SourceJob, build_release
from pb_build.builders import changeit
from pb_build.pipeline import default_workers
from pb_build.raw import changeit as raw

CATEGORIES = (("apple", "Apple Peeling/Cutting"), ("bacon", "Bacon Frying"), ("box", "Gift/Box Wrapping"),
              ("butter", "Butter Melting"), ("t-shirt", "T-shirt Dyeing"), ("whisk_eggs", "Eggs Whisking"))


# --------------------------------------------------------------------------------------------- synthetic input


def _labels(rng: random.Random, seconds: int) -> list[int]:
    """Background, state1, action, state2 segments of random lengths, with a non-monotonic return to action."""
    out: list[int] = []
    for label in (0, 1, 2, 3, 2, 3, 0):
        out += [label] * rng.randint(max(1, seconds // 12), max(2, seconds // 5))
    return (out + [0] * seconds)[:seconds]


def _write_video(path: Path, seconds: int, fps: float, size: tuple[int, int], seed: int) -> None:
    w, h = size
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h * 2, w * 2, 3), dtype=np.uint8)
    base = cv2.GaussianBlur(base, (0, 0), 6)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {path}")
    for i in range(int(seconds * fps)):
        x, y = (3 * i) % w, (2 * i) % h
        frame = base[y:y + h, x:x + w].copy()
        cv2.putText(frame, str(i), (8, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()


def write_synthetic_raw(folder: Path, videos: int, seconds: int, fps: float, size: tuple[int, int]) -> Path:
    """A ChangeIt raw folder of ``videos`` annotated videos spread over a few categories."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f'{d},"{a}",0.3\n' for d, a in CATEGORIES)
    (folder / "categories.csv").write_text("DIR_NAME,ACTION_NAME,CENTERING_PARAM\n" + rows, encoding="utf-8")
    for v in range(videos):
        category = CATEGORIES[v % len(CATEGORIES)][0]
        youtube_id = f"bench{v:06d}"
        length = max(2, seconds + rng.randint(-seconds // 4, seconds // 4))
        ann = folder / "annotations" / category / f"{youtube_id}.fps1.csv"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text("".join(f"{t},{lab}\n" for t, lab in enumerate(_labels(rng, length))), encoding="utf-8")
        video = folder / "videos" / category / f"{youtube_id}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        _write_video(video, length, fps, size, seed=v)
    return folder


# ------------------------------------------------------------------------------------------------ measurements


def time_build(raw_dir: Path, config: changeit.Config, workers: int) -> tuple[float, int, int, float]:
    """One full release build into a temp folder: (wall seconds, samples, frames, source seconds)."""
    with tempfile.TemporaryDirectory(prefix="pb-bench-out-") as tmp:
        gc.collect()
        started = time.perf_counter()
        reports = build_release(Path(tmp) / "release", [SourceJob(changeit, config, raw_dir)],
                                workers=workers, progress=False)
        wall = time.perf_counter() - started
    report = reports[0]
    return wall, report.samples, report.frames, report.seconds


def bare_work(raw_dir: Path, config: changeit.Config) -> list[tuple[Path, list[float], int]]:
    """(video, sampled times, annotated seconds) of every planned sample."""
    work = []
    for unit in changeit.plan(raw_dir, config, None).units:
        s = unit.payload
        lay = changeit.layout(len(s.labels), config)
        work.append((Path(s.video), [float(lay.time(k)) for k in range(lay.reachable)], lay.seconds))
    return work


def time_bare(work: list[tuple[Path, list[float], int]], quality: int) -> tuple[float, int, int]:
    """Open, decode the sampled frames and JPEG-encode them, keeping nothing: (seconds, frames, bytes)."""
    gc.collect()
    frames = nbytes = 0
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    started = time.perf_counter()
    for video, times, seconds in work:
        for bgr in raw.read_frames(video, times, seconds).frames:
            ok, buf = cv2.imencode(".jpg", bgr, params)
            frames += 1
            nbytes += len(buf)
    return time.perf_counter() - started, frames, nbytes


def run(args: argparse.Namespace, raw_dir: Path) -> dict[str, Any]:
    config = changeit.Config(frames=args.frames, fps=args.fps)
    work = bare_work(raw_dir, config)  # warm-up (imports, page cache) and the bare loop's work list
    if not work:
        raise SystemExit(f"{raw_dir}: the plan selected no samples")
    time_bare(work[:1], config.jpeg_quality)

    best: dict[str, float] = {}
    counts: dict[str, Any] = {}

    def keep(key: str, seconds: float) -> None:
        best[key] = min(best.get(key, float("inf")), seconds)

    for _ in range(args.repeat):
        wall, samples, frames, source_s = time_build(raw_dir, config, 1)
        keep("build", wall)
        keep("build_source", source_s)
        counts.update(samples=samples, frames=frames)
        bare_s, bare_frames, nbytes = time_bare(work, config.jpeg_quality)
        keep("bare", bare_s)
        counts.update(bare_frames=bare_frames, jpeg_bytes=nbytes)
        if args.workers > 1:
            wall_n, _, _, _ = time_build(raw_dir, config, args.workers)
            keep("build_n", wall_n)

    if counts["bare_frames"] != counts["frames"] or counts["samples"] != len(work):
        raise SystemExit(f"mismatch: build made {counts['samples']} samples / {counts['frames']} frames, "
                         f"bare loop {len(work)} samples / {counts['bare_frames']} frames")
    fps = {key: counts["frames"] / seconds for key, seconds in best.items()}
    result: dict[str, Any] = {
        "input": {"videos": args.videos, "seconds": args.seconds, "video_fps": args.video_fps, "size": args.size,
                  "samples": counts["samples"], "frames": counts["frames"], "jpeg_bytes": counts["jpeg_bytes"]},
        "config": {"frames": config.frames, "fps": config.fps, "jpeg_quality": config.jpeg_quality,
                   "repeat": args.repeat},
        "seconds": best,
        "fps": fps,
        "ratio_build_over_bare": fps["build"] / fps["bare"],
        "machine": {"cpus": default_workers(), "python": platform.python_version(), "opencv": cv2.__version__,
                    "platform": platform.platform()},
    }
    if args.workers > 1:
        result["workers"] = args.workers
        result["speedup_n_over_1"] = fps["build_n"] / fps["build"]
    return result


def print_table(r: dict[str, Any]) -> None:
    inp, s, fps = r["input"], r["seconds"], r["fps"]
    print(f"ChangeIt build benchmark: {inp['samples']} samples, {inp['frames']} exported frames from "
          f"{inp['videos']} synthetic videos (~{inp['seconds']} s, {inp['size']}, {inp['video_fps']:g} fps, mp4v), "
          f"best of {r['config']['repeat']}; {r['machine']['cpus']} CPUs, OpenCV {r['machine']['opencv']}")
    print(f"{'measurement':<36}{'seconds':>10}{'frames/s':>12}{'vs bare':>10}")
    rows = [("bare decode+encode loop", "bare"), ("build, 1 worker (build_release)", "build"),
            ("  of which source (plan..shards)", "build_source")]
    if "workers" in r:
        rows.append((f"build, {r['workers']} workers", "build_n"))
    for label, key in rows:
        print(f"{label:<36}{s[key]:>10.3f}{fps[key]:>12.1f}{fps[key] / fps['bare']:>10.2f}")
    print(f"ratio build/bare (1 worker) = {r['ratio_build_over_bare']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6, help="synthetic videos (default 6)")
    parser.add_argument("--seconds", type=int, default=90, help="mean video length in seconds (default 90)")
    parser.add_argument("--video-fps", type=float, default=24.0, help="video frame rate (default 24)")
    parser.add_argument("--size", default="320x180", help="video size WxH (default 320x180)")
    parser.add_argument("--frames", type=int, default=20, help="reachable frames per episode (default 20)")
    parser.add_argument("--fps", type=float, default=1.0, help="sampled frames per second (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best time of each is kept")
    parser.add_argument("--workers", type=int, default=min(4, default_workers()),
                        help="also time the build with this many workers when > 1 (default: min(4, CPUs))")
    parser.add_argument("--json", type=Path, help="save the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.videos < 1 or args.seconds < 2:
        parser.error("--repeat and --videos must be at least 1, --seconds at least 2")
    w, _, h = args.size.partition("x")
    size = (int(w), int(h))
    with tempfile.TemporaryDirectory(prefix="pb-bench-raw-") as tmp:
        raw_dir = write_synthetic_raw(Path(tmp) / "changeit", args.videos, args.seconds, args.video_fps, size)
        result = run(args, raw_dir)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
