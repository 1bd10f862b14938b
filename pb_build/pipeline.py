"""How many worker processes a build uses by default (the shards they build: :mod:`pb_build.shards`)."""

from __future__ import annotations

import os


def default_workers() -> int:
    """One worker per available CPU."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
