"""Benchmark: QuickDraw release build throughput against the bare render+encode floor.

Measures, in one run, frames per second of

1. a full release build (``build_release(..., workers=1, progress=False)`` into a temporary folder; the wall time
   covers planning, reading the raw files, rendering, encoding, writing, card, manifest and checksums),
2. a bare loop over the *same* drawings (selected by ``quickdraw.plan``, untimed) that only calls
   ``quickdraw.render_frames(drawing, config)`` and keeps nothing,
3. optionally the build with ``--workers N`` (N > 1),

and the ratio build fps / bare fps. Target: the one-worker build reaches at least 60% of the bare floor.
Each measurement is the best of ``--repeat`` repetitions (build and bare are interleaved to share drift).

By default the raw input is synthetic: a temporary folder in the QuickDraw *simplified* ndjson format, one
``<category>.ndjson`` per category. ``--raw DIR`` measures a real folder instead. Exit status is 0 whether or not
the target is met; the verdict is printed (and saved with ``--json``).

    .venv/bin/python bench/quickdraw_build.py
    .venv/bin/python bench/quickdraw_build.py --per-class 20 --repeat 5 --workers 2 --json /tmp/qd.json
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

from pb_build.build import SourceJob, build_release
from pb_build.builders import quickdraw
from pb_build.pipeline import default_workers
from pb_build.raw.quickdraw_categories import CATEGORIES

TARGET_RATIO = 0.6


# --------------------------------------------------------------------------------------------- synthetic input


def _stroke(rng: random.Random) -> list[list[int]]:
    """A random-walk stroke of 5-40 integer points on the 0..255 grid (sketch-like, not uniform noise)."""
    n = rng.randint(5, 40)
    x, y = rng.randint(0, 255), rng.randint(0, 255)
    step = rng.uniform(3.0, 14.0)
    xs, ys = [], []
    for _ in range(n):
        xs.append(x)
        ys.append(y)
        x = min(255, max(0, round(x + rng.gauss(0.0, step))))
        y = min(255, max(0, round(y + rng.gauss(0.0, step))))
    return [xs, ys]


def write_synthetic_raw(folder: Path, categories: int, per_file: int, seed: int = 0) -> Path:
    """Write ``categories`` QuickDraw simplified ndjson files of ``per_file`` recognised drawings each."""
    if not 1 <= categories <= len(CATEGORIES):
        raise SystemExit(f"--categories must be between 1 and {len(CATEGORIES)}")
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for c_idx, word in enumerate(CATEGORIES[:categories]):
        lines = []
        for d_idx in range(per_file):
            record = {
                "word": word,
                "countrycode": rng.choice(("US", "GB", "DE", "FR", "BR", "JP", "IN", "CA")),
                "timestamp": f"2017-03-{1 + d_idx % 28:02d} 12:{d_idx % 60:02d}:00.00000 UTC",
                "recognized": True,
                "key_id": f"{4_000_000_000_000_000 + c_idx * 100_000 + d_idx:016d}",
                "drawing": [_stroke(rng) for _ in range(rng.randint(3, 12))],
            }
            lines.append(json.dumps(record, separators=(",", ":")))
        (folder / f"{word}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------------------ measurements


def time_build(raw: Path, config: quickdraw.Config, workers: int, out: Path) -> tuple[float, int, int, float]:
    """One full release build into ``out`` (a fresh path): (wall seconds, samples, frames, source seconds).

    Outputs are kept until the whole run ends: on some file systems (ext4 mounted with ``discard``) deleting a
    release between repetitions slows the next one's file writes several-fold, which is not the build's cost.
    """
    gc.collect()
    started = time.perf_counter()
    reports = build_release(out, [SourceJob(quickdraw, config, raw)], workers=workers, progress=False)
    wall = time.perf_counter() - started
    report = reports[0]
    return wall, report.samples, report.frames, report.seconds


def time_bare(drawings: list, config: quickdraw.Config) -> tuple[float, int, int]:
    """Render and encode every drawing's frames, keeping nothing: (seconds, frames, encoded bytes)."""
    gc.collect()
    frames = nbytes = 0
    started = time.perf_counter()
    for drawing in drawings:
        for png in quickdraw.render_frames(drawing, config):
            frames += 1
            nbytes += len(png)
    return time.perf_counter() - started, frames, nbytes


def time_plan(raw: Path, config: quickdraw.Config) -> tuple[float, list, int]:
    """Plan alone (read, parse, select): (seconds, selected drawings, raw files)."""
    gc.collect()
    started = time.perf_counter()
    plan = quickdraw.plan(raw, config, None)
    drawings = [unit.payload for unit in plan.units]  # units are produced lazily: reading happens here
    return time.perf_counter() - started, drawings, len(plan.raw_files)


def make_config(args: argparse.Namespace) -> quickdraw.Config:
    return quickdraw.Config(per_class=args.per_class, pool=max(args.pool, args.per_class), frames=args.frames,
                            image_size=args.image_size)


def run(args: argparse.Namespace, raw: Path, outs: Path) -> dict[str, Any]:
    """All measurements; release outputs go to fresh folders under ``outs``."""
    config = make_config(args)
    _, drawings, n_files = time_plan(raw, config)  # warm-up (imports, page cache) and the bare loop's work list
    if not drawings:
        raise SystemExit(f"{raw}: the plan selected no drawings")
    quickdraw.render_frames(drawings[0], config)  # warm-up OpenCV
    time_build(raw, config, 1, outs / "warm-up")  # the first build in a process pays one-off costs

    best: dict[str, float] = {}
    counts: dict[str, Any] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    parallel = args.workers > 1
    for rep in range(args.repeat):
        plan_s, _, _ = time_plan(raw, config)
        keep("plan", plan_s)
        wall, samples, frames, source_s = time_build(raw, config, 1, outs / f"build-1-{rep}")
        keep("build", wall)
        keep("build_source", source_s)
        counts.update(samples=samples, frames=frames)
        bare_s, bare_frames, nbytes = time_bare(drawings, config)
        keep("bare", bare_s)
        counts.update(bare_frames=bare_frames, png_bytes=nbytes)
        if parallel:
            wall_n, _, frames_n, _ = time_build(raw, config, args.workers, outs / f"build-n-{rep}")
            keep("build_n", wall_n)
            counts.update(frames_n=frames_n)

    if counts["bare_frames"] != counts["frames"] or counts["samples"] != len(drawings):
        raise SystemExit(f"mismatch: build made {counts['samples']} samples / {counts['frames']} frames, "
                         f"bare loop {len(drawings)} drawings / {counts['bare_frames']} frames")
    frames = counts["frames"]
    fps = {name: frames / seconds for name, seconds in best.items() if name != "plan"}
    ratio = fps["build"] / fps["bare"]
    result: dict[str, Any] = {
        "input": {"raw": str(raw) if args.raw else "synthetic", "categories": n_files,
                  "samples": counts["samples"], "frames": frames, "png_bytes": counts["png_bytes"]},
        "config": {"per_class": config.per_class, "pool": config.pool, "frames": config.frames,
                   "image_size": config.image_size, "repeat": args.repeat},
        "seconds": best,
        "fps": fps,
        "ratio_build_over_bare": ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
        "machine": {"cpus": default_workers(), "python": platform.python_version(), "opencv": cv2.__version__,
                    "opencv_threads": cv2.getNumThreads(), "platform": platform.platform()},
    }
    if parallel:
        result["workers"] = args.workers
        result["speedup_n_over_1"] = fps["build_n"] / fps["build"]
        result["ratio_build_n_over_bare"] = fps["build_n"] / fps["bare"]
    return result


def profile_build(raw: Path, args: argparse.Namespace, out: Path, top: int) -> None:
    """cProfile one more 1-worker build; print the ``top`` functions by own time, as a share of the build."""
    import cProfile
    import pstats

    config = make_config(args)
    profiler = cProfile.Profile()
    profiler.enable()
    build_release(out, [SourceJob(quickdraw, config, raw)], workers=1, progress=False)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    print(f"\ncProfile of one 1-worker build ({total:.3f}s under the profiler, which inflates Python-heavy code)")
    print(f"{'own s':>8}{'own %':>7}{'cum s':>8}{'calls':>9}  function")
    for (filename, line, func), (_, ncalls, own, cum, _) in rows:
        where = func if filename == "~" else f"{'/'.join(Path(filename).parts[-2:])}:{line}({func})"
        print(f"{own:>8.3f}{100 * own / total:>6.1f}%{cum:>8.3f}{ncalls:>9}  {where}")


def print_table(r: dict[str, Any]) -> None:
    inp, s, fps = r["input"], r["seconds"], r["fps"]
    print(f"QuickDraw build benchmark: {inp['samples']} samples, {inp['frames']} frames from {inp['categories']} "
          f"categories ({inp['raw']}), {r['config']['image_size']} px, best of {r['config']['repeat']}; "
          f"{r['machine']['cpus']} CPUs, OpenCV {r['machine']['opencv']}")
    print(f"{'measurement':<34}{'seconds':>10}{'frames/s':>12}{'vs bare':>10}")
    rows = [("bare render+encode loop", "bare"), ("build, 1 worker (build_release)", "build"),
            ("  of which source (plan..shards)", "build_source")]
    if "workers" in r:
        rows.append((f"build, {r['workers']} workers", "build_n"))
    for label, key in rows:
        print(f"{label:<34}{s[key]:>10.3f}{fps[key]:>12.1f}{fps[key] / fps['bare']:>10.2f}")
    print(f"{'  plan alone (read + select)':<34}{s['plan']:>10.3f}")
    verdict = "MET" if r["target_met"] else "NOT MET"
    print(f"ratio build/bare (1 worker) = {r['ratio_build_over_bare']:.2f}; "
          f"target >= {r['target_ratio']:.2f}: {verdict}")
    if "workers" in r:
        print(f"speed-up {r['workers']} workers / 1 worker = {r['speedup_n_over_1']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, help="a real QuickDraw raw folder (default: synthetic, in a temp dir)")
    parser.add_argument("--per-class", type=int, default=10, help="drawings selected per category (default 10)")
    parser.add_argument("--pool", type=int, default=100, help="pool size per category (default 100)")
    parser.add_argument("--frames", type=int, default=5, help="frames per sample (default 5)")
    parser.add_argument("--image-size", type=int, default=256, help="frame side in pixels (default 256)")
    parser.add_argument("--categories", type=int, default=40, help="synthetic: number of categories (default 40)")
    parser.add_argument("--drawings", type=int, default=60, help="synthetic: drawings per category (default 60)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best time of each is kept")
    parser.add_argument("--workers", type=int, default=min(4, default_workers()),
                        help="also time the build with this many workers when > 1 (default: min(4, CPUs))")
    parser.add_argument("--json", type=Path, help="save the numbers to this JSON file")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also cProfile one 1-worker build and print its N costliest functions (own time)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    with tempfile.TemporaryDirectory(prefix="pb-bench-") as tmp:
        raw = args.raw if args.raw else write_synthetic_raw(Path(tmp) / "raw", args.categories, args.drawings)
        result = run(args, raw, Path(tmp) / "out")
        print_table(result)
        if args.profile > 0:
            profile_build(raw, args, Path(tmp) / "out" / "profiled", args.profile)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
