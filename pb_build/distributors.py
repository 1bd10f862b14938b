"""Where shard tasks run: in this process, in local worker processes, or on a Ray cluster.

A distributor takes shard tasks (an iterator; at most a few are held at a time, so memory stays flat) and
yields each finished shard's small summary as it completes, in any order: the release does not depend on it.
A worker that dies (killed, out of memory) fails the build naming the sample it was building and the cause.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pb_build.builders import BUILT_IN
from pb_build.errors import PbBuildError
from pb_build.names import FOLLOW_ENV
from pb_build.shards import ShardSummary, ShardTask, last_attempt, run_shard

DISTRIBUTORS = ("local", "ray")

Distributor = Callable[[Iterable[ShardTask], int], Iterator[ShardSummary]]


# What every shard needs, imported once by the fork server (pyarrow imports pandas on its first array: half a
# second); workers forked from it start with them loaded. Not the registry itself: a worker reads it afresh.
WORKER_MODULES = ["cv2", "pyarrow", "pyarrow.parquet", "pandas", "pb_build.shards",
                  *(module for pair in BUILT_IN for module in pair)]


def _worker_context() -> Any:
    """On Linux, workers fork from a fork server (each spawned worker paid a second of imports); elsewhere they are
    spawned (macOS frameworks are not safe to fork). The server lives as long as this process."""
    import multiprocessing as mp

    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    # "__main__" is the default preload; Python 3.11 does not pass the server its path, so each worker still
    # imports the main script itself
    context.set_forkserver_preload(["__main__", *WORKER_MODULES])
    return context


def _init_worker(environ: dict[str, str]) -> None:
    """Start with the parent's environment as it is now (the fork server's dates from its own start), and with
    every module a shard needs (already there when forked from the server)."""
    os.environ.clear()
    os.environ.update(environ)
    for module in WORKER_MODULES:
        importlib.import_module(module)


def _ready() -> None:
    """A no-op task: submitting one per worker starts the worker processes."""


def _start(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start the pool's workers (one no-op task each)."""
    try:
        for _ in range(workers):
            pool.submit(_ready)
    except RuntimeError:  # the build failed while planning, and the pool is shut down
        pass


def run_local(tasks: Iterable[ShardTask], workers: int) -> Iterator[ShardSummary]:
    """Run shard tasks here (one worker) or in ``workers`` local processes."""
    if workers <= 1:
        for task in tasks:
            yield run_shard(task)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(), initializer=_init_worker,
                               initargs=(dict(os.environ),))
    finished = False
    # Start every worker now, from another thread: the first start waits for the fork server's imports, and
    # both overlap the parent's planning
    starter = threading.Thread(target=_start, args=(pool, workers), name="pb-build-start-workers", daemon=True)
    starter.start()
    try:
        running: dict[Future[ShardSummary], ShardTask] = {}
        todo = iter(tasks)
        while True:
            for task in todo:
                try:
                    running[pool.submit(run_shard, task)] = task
                except BrokenProcessPool:  # a worker died before this task was handed out
                    raise _broken(pool, [task, *running.values()]) from None
                if len(running) >= 2 * workers:
                    break
            if not running:
                finished = True
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                try:
                    summary = future.result()
                except BrokenProcessPool:
                    raise _broken(pool, [task, *running.values()]) from None
                yield summary
    finally:
        starter.join()
        # Once every shard is done, the idle workers exit while the parent assembles the release (waiting for
        # them cost a third of a second); after a failure they are stopped and waited for.
        pool.shutdown(wait=not finished, cancel_futures=True)


class WorkerDied(PbBuildError):
    """A worker process died (killed, out of memory): the finished shards are kept for a rerun."""


def _broken(pool: ProcessPoolExecutor, tasks: list[ShardTask]) -> WorkerDied:
    """The error of a broken pool: which of ``tasks`` a dead worker held, and how it died. A broken pool keeps
    every process it started (CPython 3.11-3.13 remove one only at a clean shutdown), including a worker the
    starter thread started after the parent's last submit."""
    return _died(tasks, _deaths((getattr(pool, "_processes", None) or {}).values()))


def _deaths(processes: Iterable[Any]) -> dict[int, str]:
    """{pid: cause} of the worker processes that died; those the pool stopped afterwards (SIGTERM) last."""
    deaths: dict[int, str] = {}
    deadline = time.monotonic() + 5
    for proc in processes:
        # The pool's own thread reaps its dead workers too; when it wins that race our join returns before the
        # exit code is stored on the shared process object, so wait until it is there.
        proc.join(timeout=1)
        while proc.exitcode is None and time.monotonic() < deadline:
            proc.join(timeout=0.05)
        code = proc.exitcode
        if code is not None and code < 0:
            hint = ", e.g. out of memory" if -code == signal.SIGKILL else ""
            deaths[proc.pid] = f"killed by {signal.Signals(-code).name}{hint}"
        elif code not in (None, 0):
            deaths[proc.pid] = f"exited with status {code}"
    return dict(sorted(deaths.items(), key=lambda item: "SIGTERM" in item[1]))


def _died(tasks: list[ShardTask], deaths: dict[int, str]) -> WorkerDied:
    attempts = [(task, last_attempt(task.folder)) for task in tasks]
    for pid, cause in deaths.items():
        for task, attempt in attempts:
            if attempt is not None and attempt[0] == pid:
                return WorkerDied(f"{task.source}: the worker building sample {attempt[1]} died ({cause}); "
                                  "nothing was written at the target")
    for task, attempt in attempts:
        if attempt is not None:
            cause = next(iter(deaths.values()), "a worker process died")
            return WorkerDied(f"{task.source}: the worker building sample {attempt[1]} died ({cause}); "
                              "nothing was written at the target")
    return WorkerDied(f"a worker died ({next(iter(deaths.values()), 'unknown cause')}); nothing was written at "
                      "the target")


def run_ray(tasks: Iterable[ShardTask], workers: int) -> Iterator[ShardSummary]:
    """Run shard tasks on a Ray cluster (``RAY_ADDRESS``, or a local instance started here), ``workers`` at a
    time. Shard folders must be on a file system every Ray node sees."""
    try:
        import ray
    except ImportError:
        raise PbBuildError("--distributor ray needs Ray: pip install 'pb-build[ray]'") from None
    from ray.exceptions import RayTaskError, WorkerCrashedError

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False)
    # Ray workers do not inherit this process's environment: pass on what workers read from it.
    env = {FOLLOW_ENV: os.environ[FOLLOW_ENV]} if FOLLOW_ENV in os.environ else {}
    remote = ray.remote(num_cpus=1, max_retries=0)(run_shard).options(runtime_env={"env_vars": env})
    running: dict[Any, ShardTask] = {}
    todo = iter(tasks)
    try:
        while True:
            for task in todo:
                running[remote.remote(task)] = task
                if len(running) >= 2 * workers:
                    break
            if not running:
                return
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                task = running.pop(ref)
                try:
                    yield ray.get(ref)
                except RayTaskError as err:
                    raise err.as_instanceof_cause() from None
                except WorkerCrashedError:
                    raise _died([task], {}) from None
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def get_distributor(name: str) -> Distributor:
    """The distributor called ``name`` (one of :data:`DISTRIBUTORS`)."""
    if name == "ray":
        return run_ray
    if name == "local":
        return run_local
    raise PbBuildError(f"unknown distributor {name!r} (choose {', '.join(DISTRIBUTORS)})")
