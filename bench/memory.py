"""Peak memory of a QuickDraw build as the number of samples grows (it should stay flat).

Each build runs in its own process on synthetic raw data (categories x drawings), with 1 worker and with 2;
the script prints the peak resident set size of each. Compare within one run: a streaming build keeps the
peak roughly constant from N to 4N samples.

    python bench/memory.py [--categories 40] [--per-class 10 40 160]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quickdraw_build import write_synthetic_raw  # noqa: E402

CHILD = """
import resource, sys
from pathlib import Path
from pb_build.builders import quickdraw
from pb_build.build import SourceJob, build_release
raw, out, per_class, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
config = quickdraw.Config(per_class=per_class, pool=per_class)
[report] = build_release(out, [SourceJob(quickdraw, config, raw)], workers=workers, progress=False)
print(report.samples, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(raw: Path, out: Path, per_class: int, workers: int) -> tuple[int, float, float]:
    """Samples built, the main process's peak RSS and the largest worker's peak RSS (MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", CHILD, str(raw), str(out), str(per_class), str(workers)],
                          capture_output=True, text=True, check=True)
    samples, main_kb = proc.stdout.split()
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(samples), int(main_kb) / 1024, max(before, children_kb) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=40)
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 40, 160])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pb-bench-mem-") as tmp:
        raw = write_synthetic_raw(Path(tmp) / "raw", args.categories, max(args.per_class))
        print(f"{'samples':>8s} {'workers':>8s} {'peak RSS main (MiB)':>20s}")
        rows = []
        for workers in (1, 2):
            for n in args.per_class:
                samples, main_mb, _ = peak_rss_mb(raw, Path(tmp) / f"out-{workers}-{n}", n, workers)
                rows.append((samples, workers, main_mb))
                print(f"{samples:8d} {workers:8d} {main_mb:20.1f}")
        for workers in (1, 2):
            sizes = [r for r in rows if r[1] == workers]
            growth = sizes[-1][2] / sizes[0][2]
            print(f"workers={workers}: {sizes[-1][0] / sizes[0][0]:.0f}x the samples -> {growth:.2f}x the peak RSS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
