"""Benchmark: ImageNet-C release build throughput next to a bare decode + (corrupt) + encode loop.

For each raw layout, in one run, frames per second of

1. a full release build (``build_release(..., workers=1, progress=False)`` into a temporary folder: planning,
   reading, decoding, corrupting (clean layout), encoding, writing, card, manifest and checksums),
2. a bare loop over the *same* planned samples (``imagenet_c.plan``, untimed) and frames that only
   * published tree: reads each severity's JPEG, decodes it (Pillow) and encodes it again (JPEG, quality 85);
     the build itself copies the bytes after a decode check, so it may beat this floor;
   * clean images: reads and decodes the clean image, resizes and crops it, corrupts it at severities 5..1 with
     the same corruption and seeds as the build, and encodes each frame (JPEG, quality 85, optimize),
3. optionally the build with ``--workers N`` (N > 1),

and the ratio build fps / bare fps. Each measurement is the best of ``--repeat`` runs (build and bare
interleaved). Input is synthetic: a temporary tree of 224x224 JPEGs, or clean 500x375 JPEGs in wnid folders.
There are no assertions and no target; the numbers are printed (and saved with ``--json``).

    .venv/bin/python bench/imagenet_c_build.py
    .venv/bin/python bench/imagenet_c_build.py --layout clean --classes 40 --corruptions all --json /tmp/inc.json
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pb_build.build import SourceJob, build_release
from pb_build.builders import imagenet_c
from pb_build.pipeline import default_workers
from pb_build.raw import imagenet_c as raw
from pb_build.seeding import sample_rng

TREE_SIZE = 224
CLEAN_SIZE = (500, 375)


# --------------------------------------------------------------------------------------------- synthetic input


def _picture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A photo-like synthetic picture: smooth colour field, a few discs, mild noise."""
    blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(blocks).resize((width, height), Image.BICUBIC)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(3):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, min(width, height) / 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def write_tree(root: Path, classes: int, images: int, corruptions: tuple[str, ...], seed: int = 0,
               per_image: int = 0) -> Path:
    """``<corruption>/<severity>/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG``; severities add more noise. Each image is
    written under every corruption, or under ``per_image`` of them in turn (a build reads one per image)."""
    rng = np.random.default_rng(seed)
    for w_idx, wnid in enumerate(raw.WNIDS[:classes]):
        for i in range(images):
            base = _picture(rng, TREE_SIZE, TREE_SIZE).astype(np.int16)
            number = w_idx * images + i
            name = f"ILSVRC2012_val_{number + 1:08d}.JPEG"
            chosen = corruptions
            if per_image:
                chosen = tuple(corruptions[(number + k) % len(corruptions)] for k in range(per_image))
            for corruption in chosen:
                for severity in raw.SEVERITIES:
                    folder = root / corruption / str(severity) / wnid
                    folder.mkdir(parents=True, exist_ok=True)
                    noisy = np.clip(base + rng.normal(0, 6 * severity, base.shape), 0, 255).astype(np.uint8)
                    (folder / name).write_bytes(_jpeg(noisy))
    return root


def write_clean(root: Path, classes: int, images: int, seed: int = 0) -> Path:
    """``<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG`` clean pictures of ImageNet val's typical size."""
    rng = np.random.default_rng(seed)
    for w_idx, wnid in enumerate(raw.WNIDS[:classes]):
        folder = root / wnid
        folder.mkdir(parents=True)
        for i in range(images):
            (folder / f"ILSVRC2012_val_{w_idx * images + i + 1:08d}.JPEG").write_bytes(
                _jpeg(_picture(rng, *CLEAN_SIZE), 92))
    return root


# ------------------------------------------------------------------------------------------------ measurements


def time_build(raw_dir: Path, config: imagenet_c.Config, workers: int) -> tuple[float, int, int]:
    """One full release build into a temp folder: (wall seconds, samples, frames)."""
    with tempfile.TemporaryDirectory(prefix="pb-bench-inc-out-") as tmp:
        gc.collect()
        started = time.perf_counter()
        [report] = build_release(Path(tmp) / "release", [SourceJob(imagenet_c, config, raw_dir)],
                                 workers=workers, progress=False)
        return time.perf_counter() - started, report.samples, report.frames


def time_bare(units: list, config: imagenet_c.Config) -> tuple[float, int]:
    """Decode + (corrupt) + encode every frame of the planned samples, keeping nothing: (seconds, frames)."""
    gc.collect()
    frames = 0
    started = time.perf_counter()
    for unit in units:
        sample = unit.payload
        image = sample.image
        if isinstance(image, raw.TreeImage):
            for level in range(5, 0, -1):
                with Image.open(io.BytesIO(Path(image.paths[level - 1]).read_bytes())) as img:
                    pixels = np.asarray(img.convert("RGB"))
                _jpeg(pixels, 85)
                frames += 1
        else:
            with Image.open(io.BytesIO(Path(image.path).read_bytes())) as img:
                clean = raw.resize_center_crop(img.convert("RGB"), config.image_size)
            for level in range(5, 0, -1):
                seed = int(sample_rng(config.seed, imagenet_c.name, f"{unit.key}/severity{level}").integers(2**32))
                _jpeg(raw.corrupt(clean, sample.corruption, level, seed), config.jpeg_quality)
                frames += 1
    return time.perf_counter() - started, frames


def run_layout(layout: str, raw_dir: Path, args: argparse.Namespace, parallel: bool) -> dict[str, Any]:
    config = imagenet_c.Config(per_class=args.per_class, layout=layout, corruptions=args.corruptions)
    units = imagenet_c.plan(raw_dir, config, None).units  # warm-up and the bare loop's work list
    if not units:
        raise SystemExit(f"{raw_dir}: the plan selected no samples")
    best: dict[str, float] = {}
    counts: dict[str, int] = {}

    def keep(key: str, seconds: float) -> None:
        best[key] = min(best.get(key, float("inf")), seconds)

    for _ in range(args.repeat):
        wall, samples, frames = time_build(raw_dir, config, 1)
        keep("build", wall)
        counts.update(samples=samples, frames=frames)
        bare_s, bare_frames = time_bare(units, config)
        keep("bare", bare_s)
        counts["bare_frames"] = bare_frames
        if parallel:
            keep("build_n", time_build(raw_dir, config, args.workers)[0])
    fps = {key: counts["frames"] / seconds for key, seconds in best.items()}
    used: dict[str, int] = {}
    for unit in units:
        used[unit.payload.corruption] = used.get(unit.payload.corruption, 0) + 1
    result: dict[str, Any] = {
        "layout": layout, "samples": counts["samples"], "frames": counts["frames"],
        "bare_frames": counts["bare_frames"], "corruptions_used": dict(sorted(used.items())),
        "seconds": best, "fps": fps, "ratio_build_over_bare": fps["build"] / fps["bare"],
    }
    if parallel:
        result["workers"] = args.workers
        result["speedup_n_over_1"] = fps["build_n"] / fps["build"]
    return result


def print_table(results: list[dict[str, Any]], machine: dict[str, Any], repeat: int) -> None:
    print(f"ImageNet-C build benchmark, best of {repeat}; {machine['cpus']} CPUs, Python {machine['python']}")
    for r in results:
        bare_what = "decode+encode" if r["layout"] == "imagenet-c" else "decode+corrupt+encode"
        print(f"\nlayout {r['layout']}: {r['samples']} samples, {r['frames']} frames; "
              f"corruptions {r['corruptions_used']}")
        print(f"{'measurement':<34}{'seconds':>10}{'frames/s':>12}{'vs bare':>10}")
        rows = [(f"bare {bare_what} loop", "bare"), ("build, 1 worker (build_release)", "build")]
        if "workers" in r:
            rows.append((f"build, {r['workers']} workers", "build_n"))
        for label, key in rows:
            ratio = r["fps"][key] / r["fps"]["bare"]
            print(f"{label:<34}{r['seconds'][key]:>10.3f}{r['fps'][key]:>12.1f}{ratio:>10.2f}")
        print(f"ratio build/bare (1 worker) = {r['ratio_build_over_bare']:.2f}")
        if "workers" in r:
            print(f"speed-up {r['workers']} workers / 1 worker = {r['speedup_n_over_1']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=("both", "imagenet-c", "clean"), default="both")
    parser.add_argument("--classes", type=int, default=20, help="synthetic classes (default 20)")
    parser.add_argument("--images", type=int, default=4, help="synthetic images per class (default 4)")
    parser.add_argument("--per-class", type=int, default=2, help="images selected per class (default 2)")
    parser.add_argument("--corruptions", default="benchmark",
                        help="as the builder's --corruptions (default benchmark: 16 corruptions)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions; the best time of each is kept")
    parser.add_argument("--workers", type=int, default=min(4, default_workers()),
                        help="also time the build with this many workers when > 1 (default: min(4, CPUs))")
    parser.add_argument("--json", type=Path, help="save the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or not 1 <= args.classes <= 1000 or args.images < 1 or args.per_class < 1:
        parser.error("--repeat, --images and --per-class must be at least 1, --classes 1-1000")
    tree_corruptions = imagenet_c.Config(corruptions=args.corruptions).corruption_list

    parallel = args.workers > 1

    layouts = ("imagenet-c", "clean") if args.layout == "both" else (args.layout,)
    results = []
    with tempfile.TemporaryDirectory(prefix="pb-bench-inc-raw-") as tmp:
        for layout in layouts:
            folder = Path(tmp) / layout
            if layout == "imagenet-c":
                write_tree(folder, args.classes, args.images, tree_corruptions)
            else:
                write_clean(folder, args.classes, args.images)
            results.append(run_layout(layout, folder, args, parallel))
    machine = {"cpus": default_workers(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        machine["libraries"] = raw.corruption_engine_versions()
    except Exception as exc:  # the tree layout needs no corruption engine
        machine["libraries"] = {"error": str(exc)}
    print_table(results, machine, args.repeat)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n", encoding="utf-8")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
