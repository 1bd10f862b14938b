"""Test-only packages that the test extra cannot install, provided once per machine in a locked cache folder.

* ``imagecorruptions`` (the ImageNet-C corruption engine): its wheel requires ``opencv-python``, which would
  overwrite the ``cv2`` of ``opencv-python-headless`` (and needs libGL), so no extra can name it. The tests install
  it with ``pip install --no-deps --target`` into ``~/.cache/pb-build/test-packages/`` and add that folder to
  ``sys.path``; users who regenerate ImageNet-C install it as the README says.
* The official ``proactivebench`` package needs Python 3.12 (``tests/official.py``).

Both come from PyPI on first use; when that fails the tests that need them skip with the reason and the fix.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

READY = ".pb-build-ready"
IMAGECORRUPTIONS = "imagecorruptions==1.1.2"


def cache_root() -> Path:
    return Path.home() / ".cache" / "pb-build"


def run_steps(steps: list[list[str]], env: dict[str, str] | None = None) -> str | None:
    """Run commands in order; the first failure as one line, or None."""
    for step in steps:
        try:
            proc = subprocess.run(step, capture_output=True, text=True, env=env, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(step[:4])}: {exc}"
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            return f"{' '.join(step[:4])} failed: {last}"
    return None


def provide(target: Path, create: Callable[[Path], str | None]) -> str | None:
    """Make ``target`` once per machine with ``create`` (under a file lock); why it failed, or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / READY).is_file():
            return None
        shutil.rmtree(target, ignore_errors=True)
        problem = create(target)
        if problem is None:
            (target / READY).write_text("ok\n")
        return problem


def provide_imagecorruptions() -> str | None:
    """Make ``import imagecorruptions`` work in this process (and its worker processes); why not, or None."""
    if importlib.util.find_spec("imagecorruptions") is not None:
        return None
    target = cache_root() / "test-packages" / IMAGECORRUPTIONS.replace("==", "-")

    def install(folder: Path) -> str | None:
        return run_steps([[sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder),
                           IMAGECORRUPTIONS]])

    problem = provide(target, install)
    if problem:
        return (f"{problem}; install it with `pip install --no-deps {IMAGECORRUPTIONS}` "
                "(without --no-deps it pulls opencv-python)")
    sys.path.append(str(target))
    importlib.invalidate_caches()
    return None
