"""Run a builder's work units, in worker processes when asked, yielding episodes in planned order.

Results are reassembled in plan order, so the release bytes do not depend on the number of workers. At most
``window`` units are in flight, so memory does not grow with the number of samples.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from types import ModuleType
from typing import Any

from pb_build.builders.base import WorkUnit
from pb_build.episode import Episode
from pb_build.errors import BadRecord, Ineligible, PbBuildError

Result = Episode | BadRecord | Ineligible


def default_workers() -> int:
    """One worker per available CPU."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _init_worker() -> None:
    import cv2

    # Workers already run in parallel; OpenCV's own threads would only oversubscribe the CPUs.
    cv2.setNumThreads(1)


def _build_one(builder_name: str, unit: WorkUnit, config: Any) -> Result:
    from pb_build.builders import get_builder

    try:
        return get_builder(builder_name).build(unit, config)
    except (BadRecord, Ineligible) as item:
        return item
    except PbBuildError as err:
        return BadRecord(unit.key, str(err))


def run_units(builder: ModuleType, units: Iterable[WorkUnit], config: Any, workers: int) -> Iterator[Result]:
    """Build every unit; yield episodes (or the BadRecord or Ineligible of samples not built) in input order."""
    if workers <= 1:
        for unit in units:
            yield _build_one(builder.name, unit, config)
        return
    window = workers * 4
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        pending: deque[Future[Result]] = deque()
        for unit in units:
            pending.append(pool.submit(_build_one, builder.name, unit, config))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
