"""Benchmark: how builds scale, for every source, in one run (issue 11).

For each source it writes synthetic raw input in the source's real layout (the generators of the other bench
scripts and of the tests), then prints, each the best of ``--repeat`` runs:

- frames/s of a full release build with 1 worker and with 2, and their ratio (target >= 1.7);
- the 1-worker build against a bare loop over the same samples that only calls the builder's ``build()`` (decode
  + transform + encode; nothing written, hashed or assembled) (target >= 0.8);
- the floor: the bare loop plus only the output a release cannot do without (each official frame in its own file,
  each frame in a parquet file), against the bare loop (the most any build can reach) and the 1-worker build
  against it (what pb-build itself adds);
- for QuickDraw, the 1-worker and the 2-worker build against a naive single-process PIL script producing the same
  output (PNG frames drawn with ImageDraw and a JSONL file) (target >= 3);
- peak RSS of QuickDraw builds of two sizes (default 10,000 and 100,000 drawings) at 1 and 2 workers, each in its
  own process: the main process and the largest worker (target < 1 GB, and the larger within 10% of the smaller).

    python bench/scale.py                                  # every source, default scale
    python bench/scale.py --sources quickdraw --rss-sizes 10000 100000 --repeat 3

No timings are asserted anywhere; the verdicts are printed and the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from pb_build.build import SourceJob, build_release  # noqa: E402
from pb_build.builders import get_builder  # noqa: E402
from pb_build.shards import one_opencv_thread  # noqa: E402

# --------------------------------------------------------------------------------------- synthetic raw inputs


def _quickdraw(root: Path, scale: int) -> list[SourceJob]:
    from quickdraw_build import write_synthetic_raw

    categories = min(100, max(1, scale // 40))
    per_class = max(1, scale // categories)
    write_synthetic_raw(root, categories, per_class)
    qd = get_builder("quickdraw")
    return [SourceJob(qd, qd.Config(per_class=per_class, pool=per_class), root)]


def _changeit(root: Path, scale: int) -> list[SourceJob]:
    from changeit_build import write_synthetic_raw

    write_synthetic_raw(root, max(2, scale // 20), 40, 24.0, (320, 180))
    cit = get_builder("changeit")
    return [SourceJob(cit, cit.Config(), root)]


def _coco(root: Path, scale: int) -> list[SourceJob]:
    from coco_build import write_synthetic_raw

    write_synthetic_raw(root, max(1, scale // 2))
    coco = get_builder("coco")
    return [SourceJob(coco, coco.Config(), root)]


def _imagenet_c(root: Path, scale: int) -> list[SourceJob]:
    from imagenet_c_build import write_tree

    inc = get_builder("imagenet-c")
    corruptions = tuple(inc.Config().corruption_list)
    classes = max(1, min(200, scale // 40))
    per_class = max(2, scale // (20 * classes))  # past 200 classes (scale 8000) the classes grow instead
    # Past the default scale each image is written under two corruptions only: the full tree holds 80 files per
    # image, and a build reads the 5 of one
    write_tree(root, classes, per_class, corruptions, per_image=0 if scale <= 8000 else 2)
    return [SourceJob(inc, inc.Config(per_class=per_class, corruptions=",".join(corruptions)), root)]


def _mvp_n(root: Path, scale: int) -> list[SourceJob]:
    from mvp_n_build import write_synthetic_raw

    classes = min(44, max(1, scale // 100))
    raw_dir, names, _ = write_synthetic_raw(root, classes, max(1, scale // (4 * classes)), 4, (240, 320))
    mvp = get_builder("mvp-n")
    return [SourceJob(mvp, mvp.Config(names=str(names)), raw_dir)]


def _rod(root: Path, scale: int) -> list[SourceJob]:
    from test_rod import make_sweep

    rod = get_builder("rod")
    from pb_build.raw.rod import CLASSES, COLOURS

    # <setting>_<occluder: colour + kind>_<background token>, as in the real file names
    groups = [f"{s}_{c}bl_{b}" for s in ("natural", "dim") for c in COLOURS for b in ("greenr", "bluebl")]
    sweeps = [(g, c.replace(" ", "_")) for g in groups for c in CLASSES][: max(1, scale // 14)]
    for group, cls in sweeps:
        make_sweep(root, f"{group}-{cls}", cls, size=(320, 240))
    return [SourceJob(rod, rod.Config(), root)]


def _vsod(root: Path, scale: int) -> list[SourceJob]:
    from test_vsod import SEGMENTS, write_labels, write_segment

    names, boxes = SEGMENTS["seg_a"]
    segments = [f"seg_{i:05d}" for i in range(max(1, scale // len(names)))]
    raw_dir = root / "raw"
    for segment in segments:
        write_segment(raw_dir / "OcclusionDataSet-MM20", segment, names, boxes)
    rows = [(s, "event_type", "Press conference", "Concert|Wedding|Football match") for s in segments]
    labels = write_labels(root / "labels.csv", rows)
    vsod = get_builder("vsod")
    return [SourceJob(vsod, vsod.Config(labels=str(labels)), raw_dir)]


# generator, default scale (about the frames built): large enough that a one-worker build lasts several seconds,
# so the rows measure throughput rather than start-up
SOURCES: dict[str, tuple[Callable[[Path, int], list[SourceJob]], int]] = {
    "quickdraw": (_quickdraw, 8000),
    "changeit": (_changeit, 2400),
    "coco": (_coco, 1200),
    "imagenet-c": (_imagenet_c, 8000),
    "mvp-n": (_mvp_n, 6400),
    "rod": (_rod, 8000),
    "vsod": (_vsod, 8000),
}

# ----------------------------------------------------------------------------------------------- measurements


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, of its children that have ended, and of the ended children of
    its running ones (local workers are forked, and reaped, by the fork server)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + _reaped_by_children()


def _reaped_by_children() -> float:
    """CPU seconds of the ended processes that this process's running children have waited for (Linux /proc)."""
    total, me = 0.0, os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime
    return total


def time_build(jobs: list[SourceJob], workers: int, tmp: Path, shard_size: int | None) -> tuple[float, int, float]:
    """(seconds, frames, CPU cores busy on average) of one full release build.

    The release is left in ``tmp`` until the whole run ends: on ext4, creating files right after deleting many
    (a previous release) is several times slower in the kernel (inode allocation skips recently deleted inodes),
    which would charge one row for the clean-up of the one before.
    """
    out = tmp / f"out-{workers}-{time.monotonic_ns()}"
    gc.collect()
    cpu, started = cpu_seconds(), time.perf_counter()
    reports = build_release(out, jobs, workers=workers, progress=False, shard_size=shard_size)
    seconds = time.perf_counter() - started
    while multiprocessing.active_children():  # workers exit after the build returns: count their CPU too
        time.sleep(0.01)
    return seconds, sum(r.frames for r in reports), (cpu_seconds() - cpu) / seconds


def planned_units(jobs: list[SourceJob]) -> list[tuple[SourceJob, list]]:
    """Each job with the work units its builder plans, for the loops that call ``build()`` themselves."""
    return [(job, list(job.builder.plan(job.raw, job.config, None).units)) for job in jobs]


def time_bare(jobs: list[SourceJob]) -> tuple[float, int, float]:
    """(seconds, frames, cores) of calling build() on every planned unit in this process, keeping nothing; OpenCV
    single-threaded, as in a build's workers."""
    units = planned_units(jobs)  # untimed
    gc.collect()
    frames = 0
    with one_opencv_thread():
        cpu, started = cpu_seconds(), time.perf_counter()
        for job, planned in units:
            for unit in planned:
                frames += len(job.builder.build(unit, job.config).frames)
        seconds = time.perf_counter() - started
    return seconds, frames, (cpu_seconds() - cpu) / seconds


def time_floor(jobs: list[SourceJob], tmp: Path) -> tuple[float, int, float]:
    """(seconds, frames, cores) of the bare loop plus the output a release cannot do without, and nothing else:
    each official frame written once to its own file (folders as the official paths name them), and each
    episode's frames appended to one parquet file (snappy, a row group per 25 episodes). No hashing, records,
    shards, planning or assembly; pyarrow is warmed up before the clock starts. ``floor / bare`` bounds what any
    build writing both layouts can reach on this machine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pb_build.writers.official import _store as store  # the official writer's own file write, nothing added

    units = planned_units(jobs)  # untimed
    out = tmp / f"floor-{time.monotonic_ns()}"
    schema = pa.schema([("frames", pa.list_(pa.binary()))])
    pa.array([[b""]], type=schema.field("frames").type)  # pyarrow's one-time pandas import, outside the clock
    gc.collect()
    frames, folders, batch = 0, set(), []
    with one_opencv_thread():
        cpu, started = cpu_seconds(), time.perf_counter()
        out.mkdir()
        with pq.ParquetWriter(out / "frames.parquet", schema, compression="snappy") as parquet:
            for job, planned in units:
                for unit in planned:
                    ep = job.builder.build(unit, job.config)
                    for file in ep.official.files:
                        folder = file.path.rpartition("/")[0]
                        if folder not in folders:
                            os.makedirs(out / folder, exist_ok=True)
                            folders.add(folder)
                        store(os.path.join(out, file.path), file.data)
                    batch.append({"frames": list(ep.frames)})
                    if len(batch) == 25:
                        parquet.write_table(pa.Table.from_pylist(batch, schema=schema))
                        batch = []
                    frames += len(ep.frames)
            if batch:
                parquet.write_table(pa.Table.from_pylist(batch, schema=schema))
        seconds = time.perf_counter() - started
    return seconds, frames, (cpu_seconds() - cpu) / seconds


def time_naive_quickdraw(job: SourceJob, tmp: Path) -> tuple[float, int, float]:
    """A naive single-process PIL script producing the QuickDraw output: every frame drawn with ImageDraw and
    saved as PNG, one JSON line per drawing."""
    from PIL import Image, ImageDraw

    from pb_build.builders.quickdraw import stroke_groups

    config = job.config
    drawings = [u.payload for u in job.builder.plan(job.raw, config, None).units]
    out = tmp / f"naive-{time.monotonic_ns()}"
    out.mkdir()
    size = config.image_size
    frames = 0
    cpu, started = cpu_seconds(), time.perf_counter()
    with open(out / "naive.jsonl", "w") as jsonl:
        for d in drawings:
            folder = out / d.word / d.key_id
            folder.mkdir(parents=True)
            groups = stroke_groups(len(d.strokes), config.frames)
            for k, upto in enumerate(groups):
                img = Image.new("L", (size, size), 255)
                draw = ImageDraw.Draw(img)
                for xs, ys in d.strokes[:upto]:
                    draw.line([(x * size / 256, y * size / 256) for x, y in zip(xs, ys, strict=True)], fill=0, width=2)
                img.save(folder / f"{k:04d}.png")
                frames += 1
            jsonl.write(json.dumps({"key": d.key_id, "word": d.word, "num_images": len(groups)}) + "\n")
    seconds = time.perf_counter() - started
    return seconds, frames, (cpu_seconds() - cpu) / seconds


# Peak RSS is read from /proc (VmHWM), not getrusage: Linux carries ru_maxrss across exec, so a child started by
# this (large) process would report this process's size at the fork. The workers' peaks are sampled while they run.
RSS_CHILD = """
import os, sys, threading, time
from pathlib import Path
sys.path[:0] = [sys.argv[5]]
from scale import _quickdraw_job
from pb_build.build import build_release

def hwm_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

workers_peak, done = [0], threading.Event()

def watch():
    me = os.getpid()
    while not done.wait(0.1):
        try:
            children = open(f"/proc/{me}/task/{me}/children").read().split()
        except OSError:
            children = []
        workers_peak[0] = max([workers_peak[0], *(hwm_kib(c) for c in children)])

threading.Thread(target=watch, daemon=True).start()
raw, out, n, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
jobs = _quickdraw_job(raw, n, int(sys.argv[6]))
[report] = build_release(out, jobs, workers=workers, progress=False)
done.set()
print(report.samples, hwm_kib(os.getpid()), workers_peak[0])
"""


def _quickdraw_job(raw: Path, scale: int, image_size: int) -> list[SourceJob]:
    """The QuickDraw job of an existing synthetic raw folder written by :func:`_quickdraw`."""
    categories = min(100, max(1, scale // 40))
    per_class = max(1, scale // categories)
    qd = get_builder("quickdraw")
    return [SourceJob(qd, qd.Config(per_class=per_class, pool=per_class, image_size=image_size), raw)]


def peak_rss(n: int, workers: int, tmp: Path, image_size: int) -> tuple[int, float, float]:
    """(samples, main process peak RSS MiB, largest worker peak RSS MiB) of a QuickDraw build of ``n``."""
    raw = tmp / f"qd-{n}"
    if not raw.is_dir():
        _quickdraw(raw, n)
    out = tmp / f"rss-{n}-{workers}"
    proc = subprocess.run([sys.executable, "-c", RSS_CHILD, str(raw), str(out), str(n), str(workers), str(HERE),
                           str(image_size)],
                          capture_output=True, text=True, check=True)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    samples, main_kb, children_kb = proc.stdout.split()[-3:]
    return int(samples), int(main_kb) / 1024, int(children_kb) / 1024


# ---------------------------------------------------------------------------------------------------- report


def bench_source(name: str, scale: int, repeat: int, shards: int | None, tmp: Path) -> dict[str, Any]:
    make, _ = SOURCES[name]
    jobs = make(tmp / f"raw-{name}", scale)
    units = sum(1 for job in jobs for _ in job.builder.plan(job.raw, job.config, None).units)
    shard_size = -(-units // shards) if shards else None
    best: dict[str, tuple[float, int, float]] = {}

    def keep(key: str, result: tuple[float, int, float]) -> None:
        if key not in best or result[0] < best[key][0]:
            best[key] = result

    for _ in range(repeat):  # interleaved, so drift in the machine's load hits every row alike
        keep("bare", time_bare(jobs))
        keep("floor", time_floor(jobs, tmp))
        keep("1 worker", time_build(jobs, 1, tmp, shard_size))
        keep("2 workers", time_build(jobs, 2, tmp, shard_size))
        if name == "quickdraw":
            keep("naive PIL", time_naive_quickdraw(jobs[0], tmp))
    fps = {k: frames / seconds for k, (seconds, frames, _) in best.items()}
    row = {"source": name, "samples": units, "shard_size": shard_size or "auto", "frames": best["1 worker"][1],
           "fps": fps, "seconds": {k: v[0] for k, v in best.items()}, "cores": {k: v[2] for k, v in best.items()},
           "2w/1w": fps["2 workers"] / fps["1 worker"], "1w/bare": fps["1 worker"] / fps["bare"],
           "floor/bare": fps["floor"] / fps["bare"], "1w/floor": fps["1 worker"] / fps["floor"]}
    if "naive PIL" in fps:
        row["1w/naive"] = fps["1 worker"] / fps["naive PIL"]
        row["2w/naive"] = fps["2 workers"] / fps["naive PIL"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every source's default scale")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best of each row is kept")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[10_000, 100_000],
                        help="QuickDraw drawings for the peak RSS rows (none to skip)")
    parser.add_argument("--rss-image-size", type=int, default=64,
                        help="frame size of the peak RSS builds (small keeps 100,000 drawings quick; memory "
                             "bookkeeping is per sample, not per pixel)")
    parser.add_argument("--shards", type=int, default=16,
                        help="cut each source into this many shards (0: pb-build's default shard size)")
    parser.add_argument("--json", type=Path, help="save the numbers to this JSON file")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start; "
          f"best of {args.repeat}")
    rows, rss = [], []
    with tempfile.TemporaryDirectory(prefix="pb-bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"{'source':11s} {'samples':>7s} {'shard':>5s} {'frames':>7s} {'1w s':>6s} {'bare f/s':>9s} "
              f"{'1w f/s':>8s} {'2w f/s':>8s} {'2w/1w':>6s} {'1w/bare':>7s} {'floor/bare':>10s} {'1w/floor':>8s} "
              f"{'naive PIL 1w/2w':>15s} {'cores 1w':>8s} {'cores 2w':>8s}")
        for name in args.sources:
            row = bench_source(name, int(SOURCES[name][1] * args.scale), args.repeat, args.shards or None, tmp)
            rows.append(row)
            naive = f"{row['1w/naive']:.2f} / {row['2w/naive']:.2f}" if "1w/naive" in row else "-"
            print(f"{name:11s} {row['samples']:7d} {row['shard_size']:>5} {row['frames']:7d} "
                  f"{row['seconds']['1 worker']:6.1f} {row['fps']['bare']:9.1f} {row['fps']['1 worker']:8.1f} "
                  f"{row['fps']['2 workers']:8.1f} {row['2w/1w']:6.2f} {row['1w/bare']:7.2f} {row['floor/bare']:10.2f} "
                  f"{row['1w/floor']:8.2f} {naive:>15s} "
                  f"{row['cores']['1 worker']:8.2f} {row['cores']['2 workers']:8.2f}", flush=True)
        for n in args.rss_sizes:
            for workers in (1, 2):
                samples, main_mb, worker_mb = peak_rss(n, workers, tmp, args.rss_image_size)
                rss.append({"drawings": n, "workers": workers, "samples": samples, "main_mib": main_mb,
                            "worker_mib": worker_mb})
                print(f"QuickDraw peak RSS: {samples:7d} samples, {workers} worker(s): main {main_mb:7.1f} MiB, "
                      f"largest worker {worker_mb:7.1f} MiB", flush=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end")
    verdicts = [f"2 workers >= 1.7x 1 worker: {all(r['2w/1w'] >= 1.7 for r in rows)} "
                f"(min {min(r['2w/1w'] for r in rows):.2f})",
                f"1 worker >= 0.8 of bare: {all(r['1w/bare'] >= 0.8 for r in rows)} "
                f"(min {min(r['1w/bare'] for r in rows):.2f})"]
    verdicts += [f"QuickDraw >= 3x naive PIL: 1 worker {r['1w/naive'] >= 3} ({r['1w/naive']:.2f}), 2 workers "
                 f"(the default here: one per core) {r['2w/naive'] >= 3} ({r['2w/naive']:.2f})"
                 for r in rows if "1w/naive" in r]
    if len(args.rss_sizes) >= 2:
        small, large = min(args.rss_sizes), max(args.rss_sizes)
        for workers in (1, 2):
            peak = {r["drawings"]: max(r["main_mib"], r["worker_mib"]) for r in rss if r["workers"] == workers}
            verdicts.append(f"peak RSS {workers} worker(s) < 1 GB and within 10% ({small} -> {large}): "
                            f"{peak[large] < 1024 and peak[large] <= 1.1 * peak[small]} "
                            f"({peak[small]:.0f} -> {peak[large]:.0f} MiB)")
    print("\n".join(verdicts))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "rss": rss, "verdicts": verdicts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
