"""Benchmark: MVP-N release build throughput next to a bare decode + encode loop over the same images.

Measures, in one run, frames per second of

1. a full release build (``build_release(..., workers=1, progress=False)`` into a temporary folder; the wall time
   covers reading the names file, walking the tree, checking every view decodes, writing the official files and
   native shards, card, manifest and checksums) with the default ``image_size=0`` (raw PNG bytes exported),
2. the same build with ``--image-size`` (views downscaled and re-encoded),
3. a bare loop over the *same* view files (those of the planned sets; the synthetic sets are made so that every
   view is used) that reads, decodes and re-encodes each image as PNG, keeping nothing,
4. the same bare loop with the downscale between decode and encode,
5. optionally the default build with ``--workers N`` (N > 1; only when ``mvp-n`` is in the builder registry,
   because worker processes look builders up there).

Each measurement is the best of ``--repeat`` repetitions (interleaved to share drift). No assertions: the numbers
are printed (and saved with ``--json``).

The raw input is synthetic: a temporary ``data/test/<class>/<set>/<view>_<flag>.png`` tree of textured PNGs written
with OpenCV, and a names CSV with invented product names.

    .venv/bin/python bench/mvp_n_build.py
    .venv/bin/python bench/mvp_n_build.py --classes 44 --sets 10 --size 480x640 --repeat 3 --json /tmp/mvpn.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pb_build.build import SourceJob, build_release
from pb_build.builders import mvp_n
from pb_build.frames import encode_png
from pb_build.pipeline import default_workers
from pb_build.raw import mvp_n as raw

# --------------------------------------------------------------------------------------------- synthetic input


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A product-photo-like image: smooth background gradient, a few filled shapes, mild noise."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 200, 3).astype(np.float32)
    grad = (xs / w)[..., None] * rng.uniform(-40, 40, 3) + (ys / h)[..., None] * rng.uniform(-40, 40, 3)
    img = np.clip(base + grad + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 8))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))),
                          colour, -1)
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(5, min(h, w) // 3)), colour, -1, cv2.LINE_AA)
    return img


def write_synthetic_raw(root: Path, classes: int, sets: int, views: int, size: tuple[int, int],
                        seed: int = 0) -> tuple[Path, Path, int]:
    """A ``data/test`` tree: ``classes`` x ``sets`` sets of ``views`` views (the last informative) and a names
    CSV; returns (raw root, names file, number of view files)."""
    rng = np.random.default_rng(seed)
    h, w = size
    n = 0
    for class_id in raw.CLASSES[:classes]:
        for s in range(sets):
            folder = root / "data" / "test" / class_id / f"{s:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for v in range(views):
                cv2.imwrite(str(folder / f"{v:04d}_{int(v == views - 1)}.png"), _image(rng, h, w))
                n += 1
    names = root / "names.csv"
    names.write_text("class_id,name\n" + "".join(f"{c},Synthetic product {c}\n" for c in raw.CLASSES),
                     encoding="utf-8")
    return root, names, n


# ------------------------------------------------------------------------------------------------ measurements


def time_build(raw_dir: Path, config: mvp_n.Config, workers: int) -> tuple[float, int, int]:
    """One full release build into a temp folder: (wall seconds, samples, frames)."""
    with tempfile.TemporaryDirectory(prefix="pb-bench-out-") as tmp:
        gc.collect()
        started = time.perf_counter()
        [report] = build_release(Path(tmp) / "release", [SourceJob(mvp_n, config, raw_dir)], workers=workers,
                                 progress=False)
        wall = time.perf_counter() - started
    return wall, report.samples, report.frames


def time_bare(paths: list[Path], image_size: int) -> tuple[float, int]:
    """Read, decode (and downscale when ``image_size``) and PNG-encode every image: (seconds, frames)."""
    gc.collect()
    frames = 0
    started = time.perf_counter()
    for path in paths:
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
        if image_size:
            h, w = image.shape[:2]
            scale = image_size / max(h, w)
            if scale < 1:
                image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                   interpolation=cv2.INTER_AREA)
        encode_png(image)
        frames += 1
    return time.perf_counter() - started, frames


def run(args: argparse.Namespace, raw_dir: Path, names: Path) -> dict[str, Any]:
    plain = mvp_n.Config(names=str(names), per_class=0, max_views=args.views)
    resized = mvp_n.Config(names=str(names), per_class=0, max_views=args.views, image_size=args.image_size)
    plan = mvp_n.plan(raw_dir, plain, None)  # the bare loop's work list: every view of every planned set
    paths = [Path(v.path) for unit in plan.units for v in unit.payload.view_set.views]
    if not paths:
        raise SystemExit(f"{raw_dir}: the plan selected no sets")
    time_bare(paths[:4], 0)  # warm-up (imports, OpenCV)

    best: dict[str, float] = {}
    counts: dict[str, int] = {}

    def keep(key: str, seconds: float) -> None:
        best[key] = min(best.get(key, float("inf")), seconds)

    parallel = args.workers > 1
    for _ in range(args.repeat):
        wall, samples, frames = time_build(raw_dir, plain, 1)
        keep("build", wall)
        counts.update(samples=samples, frames=frames)
        wall, _, frames_r = time_build(raw_dir, resized, 1)
        keep("build_resized", wall)
        counts.update(frames_resized=frames_r)
        seconds, bare_frames = time_bare(paths, 0)
        keep("bare", seconds)
        seconds, _ = time_bare(paths, args.image_size)
        keep("bare_resized", seconds)
        counts.update(bare_frames=bare_frames)
        if parallel:
            wall, _, _ = time_build(raw_dir, plain, args.workers)
            keep("build_n", wall)

    if not counts["frames"] == counts["frames_resized"] == counts["bare_frames"] == len(paths):
        raise SystemExit(f"mismatch: builds made {counts['frames']}/{counts['frames_resized']} frames, the bare "
                         f"loop {counts['bare_frames']} over {len(paths)} files")
    frames = counts["frames"]
    fps = {key: frames / seconds for key, seconds in best.items()}
    result: dict[str, Any] = {
        "input": {"raw": "synthetic", "classes": args.classes, "sets_per_class": args.sets, "views": args.views,
                  "size": args.size, "samples": counts["samples"], "frames": frames},
        "config": {"image_size": args.image_size, "repeat": args.repeat},
        "seconds": best,
        "fps": fps,
        "ratio_build_over_bare": fps["build"] / fps["bare"],
        "ratio_build_resized_over_bare_resized": fps["build_resized"] / fps["bare_resized"],
        "machine": {"cpus": default_workers(), "python": platform.python_version(), "opencv": cv2.__version__,
                    "opencv_threads": cv2.getNumThreads(), "platform": platform.platform()},
    }
    if parallel:
        result["workers"] = args.workers
        result["speedup_n_over_1"] = fps["build_n"] / fps["build"]
    return result


def print_table(r: dict[str, Any]) -> None:
    inp, s, fps = r["input"], r["seconds"], r["fps"]
    print(f"MVP-N build benchmark: {inp['samples']} samples, {inp['frames']} frames ({inp['size']} px, synthetic), "
          f"best of {r['config']['repeat']}; {r['machine']['cpus']} CPUs, OpenCV {r['machine']['opencv']}")
    print(f"{'measurement':<44}{'seconds':>10}{'frames/s':>12}")
    size = r["config"]["image_size"]
    rows = [("bare read+decode+encode loop", "bare"),
            ("build, 1 worker (raw bytes exported)", "build"),
            (f"bare read+decode+resize {size}+encode loop", "bare_resized"),
            (f"build, 1 worker, --image-size {size}", "build_resized")]
    if "workers" in r:
        rows.append((f"build, {r['workers']} workers (raw bytes)", "build_n"))
    for label, key in rows:
        print(f"{label:<44}{s[key]:>10.3f}{fps[key]:>12.1f}")
    print(f"ratio build/bare = {r['ratio_build_over_bare']:.2f}; resized build/bare = "
          f"{r['ratio_build_resized_over_bare_resized']:.2f}")
    if "workers" in r:
        print(f"speed-up {r['workers']} workers / 1 worker = {r['speedup_n_over_1']:.2f}")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("--size must be HxW, e.g. 480x640") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError("--size must be at least 8x8")
    return h, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=8, help="synthetic classes (default 8, at most 44)")
    parser.add_argument("--sets", type=int, default=10, help="sets per class (default 10)")
    parser.add_argument("--views", type=int, default=4, help="views per set, the last informative (default 4)")
    parser.add_argument("--size", type=_size, default=(480, 640), help="view size HxW (default 480x640)")
    parser.add_argument("--image-size", type=int, default=224, help="--image-size of the resized build (224)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best time of each is kept")
    parser.add_argument("--workers", type=int, default=min(4, default_workers()),
                        help="also time the build with this many workers when > 1 (default: min(4, CPUs))")
    parser.add_argument("--json", type=Path, help="save the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or not 1 <= args.classes <= 44 or args.sets < 1 or not 2 <= args.views <= 6:
        parser.error("need --repeat >= 1, 1 <= --classes <= 44, --sets >= 1 and 2 <= --views <= 6")
    with tempfile.TemporaryDirectory(prefix="pb-bench-raw-") as tmp:
        raw_dir, names, _ = write_synthetic_raw(Path(tmp), args.classes, args.sets, args.views, args.size)
        result = run(args, raw_dir, names)
    result["input"]["size"] = f"{args.size[0]}x{args.size[1]}"
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
