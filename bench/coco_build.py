"""Benchmark: COCO 2014 release build throughput against a bare decode + crop + encode loop.

Measures, in one run, views per second of

1. a full release build (``build_release(..., workers=1, progress=False)`` into a temporary folder; the wall time
   covers reading and checking the annotation file, image headers, decoding, cropping, encoding every state's
   view, writing the official files and the parquet shards, card, manifest and checksums),
2. a bare loop over the *same* images and the *same* view boxes (taken, untimed, from the built episodes): read
   the file, decode it with PIL, crop every view and encode it in the build's frame format, keeping nothing,
3. optionally the build with ``--workers N`` (N > 1),

and the ratio build / bare. A "view" is one encoded state frame; the reference frame (the original file) is
copied, not encoded, and is not counted. Each measurement is the best of ``--repeat`` repetitions (build and bare
interleaved). No assertions: the numbers are printed (and saved with ``--json``).

The raw input is synthetic: a temporary folder in the published layout (``annotations/instances_val2014.json``
and ``val2014/COCO_val2014_<id>.jpg``) with textured JPEGs at COCO-like sizes (640 x 360..480) and one object
box per image. ``--raw DIR`` measures a real raw folder instead.

    .venv/bin/python bench/coco_build.py
    .venv/bin/python bench/coco_build.py --images 200 --frame-format jpeg --repeat 3 --json /tmp/coco.json
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

import cv2
import numpy as np
from PIL import Image

from pb_build.build import SourceJob, build_release
from pb_build.builders import coco
from pb_build.pipeline import default_workers
from pb_build.raw import coco as raw

CATEGORIES = [(1, "person", "person"), (3, "car", "vehicle"), (6, "bus", "vehicle"), (8, "truck", "vehicle"),
              (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"), (44, "bottle", "kitchen"),
              (47, "cup", "kitchen"), (62, "chair", "furniture"), (63, "couch", "furniture"), (72, "tv", "electronic")]


def write_synthetic_raw(folder: Path, n_images: int, seed: int = 0) -> Path:
    """``n_images`` single-object COCO images (640 wide, 360-480 high) with their instances file."""
    rng = np.random.default_rng(seed)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    (folder / "val2014").mkdir(exist_ok=True)
    images, annotations = [], []
    for i in range(n_images):
        image_id = 1000 + i
        width, height = 640, int(rng.choice([360, 427, 480]))
        coarse = rng.integers(0, 256, size=(height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
        img = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
        noise = rng.integers(-12, 13, size=(height, width, 3))
        img = Image.fromarray(np.clip(np.asarray(img, np.int16) + noise, 0, 255).astype(np.uint8), "RGB")
        name = f"COCO_val2014_{image_id:012d}.jpg"
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        (folder / "val2014" / name).write_bytes(buf.getvalue())
        bw, bh = float(rng.uniform(80, width * 0.6)), float(rng.uniform(80, height * 0.6))
        x, y = float(rng.uniform(0, width - bw)), float(rng.uniform(0, height - bh))
        images.append({"license": 4, "file_name": name, "coco_url": "", "height": height, "width": width,
                       "date_captured": "2013-11-14 11:18:45", "flickr_url": "", "id": image_id})
        annotations.append({"segmentation": [[x, y, x + bw, y, x + bw, y + bh]], "area": bw * bh / 2, "iscrowd": 0,
                            "image_id": image_id, "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                            "category_id": CATEGORIES[i % len(CATEGORIES)][0], "id": 50_000 + i})
    body = {"info": {"description": "synthetic"}, "images": images, "licenses": [], "annotations": annotations,
            "categories": [{"supercategory": s, "id": c, "name": n} for c, n, s in CATEGORIES]}
    (folder / "annotations" / "instances_val2014.json").write_text(json.dumps(body), encoding="utf-8")
    return folder


def time_build(raw_dir: Path, config: coco.Config, workers: int) -> tuple[float, int, int, list]:
    """One full release build into a temp folder: (wall seconds, samples, views, [(image path, boxes)])."""
    with tempfile.TemporaryDirectory(prefix="pb-bench-out-") as tmp:
        gc.collect()
        started = time.perf_counter()
        reports = build_release(Path(tmp) / "release", [SourceJob(coco, config, raw_dir)], workers=workers,
                                progress=False)
        wall = time.perf_counter() - started
        from pb_build.manifests.manifest import read_dict as read_manifest
        from pb_build.writers.native import read_rows

        entry = read_manifest(Path(tmp) / "release")["sources"][0]
        work = []
        for row in read_rows([Path(tmp) / "release" / p for p in entry["files"]["native"]]):
            meta = json.loads(row["meta"])
            work.append((meta["split"], meta["file_name"], [tuple(b) for b in meta["view_boxes"]]))
    views = sum(len(boxes) for _, _, boxes in work)
    return wall, reports[0].samples, views, work


def time_bare(raw_dir: Path, work: list, config: coco.Config) -> tuple[float, int, int]:
    """Read, decode, crop and encode every view of the same images, keeping nothing: (seconds, views, bytes)."""
    layout = raw.find_layout(raw_dir, config.split)
    gc.collect()
    views = nbytes = 0
    started = time.perf_counter()
    for _split, file_name, boxes in work:
        data = raw.read_image(layout.image_source(file_name))
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            pixels = np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB"))
        for box in boxes:
            views += 1
            nbytes += len(coco.encode_view(pixels, box, config))
    return time.perf_counter() - started, views, nbytes


def run(args: argparse.Namespace, raw_dir: Path) -> dict[str, Any]:
    config = coco.Config(frame_format=args.frame_format)
    _, samples, views, work = time_build(raw_dir, config, 1)  # warm-up, and the bare loop's work list
    if not work:
        raise SystemExit(f"{raw_dir}: the build made no samples")
    parallel = args.workers > 1
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    counts: dict[str, Any] = {"samples": samples, "views": views}
    for _ in range(args.repeat):
        wall, _, _, _ = time_build(raw_dir, config, 1)
        keep("build", wall)
        bare_s, bare_views, nbytes = time_bare(raw_dir, work, config)
        keep("bare", bare_s)
        counts.update(bare_views=bare_views, encoded_bytes=nbytes)
        if parallel:
            wall_n, _, _, _ = time_build(raw_dir, config, args.workers)
            keep("build_n", wall_n)
    fps = {name: views / seconds for name, seconds in best.items()}
    result: dict[str, Any] = {
        "input": {"raw": str(raw_dir) if args.raw else "synthetic", **counts},
        "config": {"frame_format": config.frame_format, "repeat": args.repeat},
        "seconds": best,
        "views_per_second": fps,
        "ratio_build_over_bare": fps["build"] / fps["bare"],
        "machine": {"cpus": default_workers(), "python": platform.python_version(), "opencv": cv2.__version__,
                    "pillow": Image.__version__, "platform": platform.platform()},
    }
    if parallel:
        result["workers"] = args.workers
        result["speedup_n_over_1"] = fps["build_n"] / fps["build"]
        result["ratio_build_n_over_bare"] = fps["build_n"] / fps["bare"]
    return result


def print_table(r: dict[str, Any]) -> None:
    inp, s, fps = r["input"], r["seconds"], r["views_per_second"]
    print(f"COCO build benchmark: {inp['samples']} samples, {inp['views']} views ({inp['raw']}), "
          f"{r['config']['frame_format']} frames, best of {r['config']['repeat']}; {r['machine']['cpus']} CPUs")
    print(f"{'measurement':<38}{'seconds':>10}{'views/s':>12}{'vs bare':>10}")
    rows = [("bare read+decode+crop+encode loop", "bare"), ("build, 1 worker (build_release)", "build")]
    if "workers" in r:
        rows.append((f"build, {r['workers']} workers", "build_n"))
    for label, key in rows:
        print(f"{label:<38}{s[key]:>10.3f}{fps[key]:>12.1f}{fps[key] / fps['bare']:>10.2f}")
    print(f"ratio build/bare (1 worker) = {r['ratio_build_over_bare']:.2f}")
    if "speedup_n_over_1" in r:
        print(f"speed-up {r['workers']} workers / 1 worker = {r['speedup_n_over_1']:.2f}")
    if "note" in r:
        print(r["note"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, help="a real COCO raw folder (default: synthetic, in a temp dir)")
    parser.add_argument("--images", type=int, default=80, help="synthetic: number of images (default 80)")
    parser.add_argument("--frame-format", choices=coco.FRAME_FORMATS, default="png", help="view encoding")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best time of each is kept")
    parser.add_argument("--workers", type=int, default=min(4, default_workers()),
                        help="also time the build with this many workers when > 1 (default: min(4, CPUs))")
    parser.add_argument("--json", type=Path, help="save the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="pb-bench-raw-") as tmp:
        raw_dir = args.raw if args.raw else write_synthetic_raw(Path(tmp) / "coco", args.images)
        result = run(args, raw_dir)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
