"""Worker processes for `differad synth`: each builds one Generator and makes samples by index; results come
back in index order, and a dead worker ends the run cleanly (workers also die with their parent)."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from typing import Any

from differad_cli.synth.sources import Generator, Plan

AUTO_WORKER_MIN_TASKS = 32  # below this many pairs per worker a pool costs more than it saves


_WORKER: Generator | None = None


def _die_with_parent() -> None:
    """Ask Linux to end this worker when its parent dies (a killed run must not leave orphans behind)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(plan: Plan) -> None:
    global _WORKER
    _die_with_parent()
    _WORKER = Generator(plan)


def _work(index: int) -> tuple[int, str, list[str], bool]:
    assert _WORKER is not None
    return _WORKER(index)


def auto_workers(todo: int, requested: int) -> int:
    if requested:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, todo // AUTO_WORKER_MIN_TASKS))


def _pool_context() -> Any:
    """fork on Linux when this process runs no other Python thread (instant start; children never
    re-import the caller's ``__main__``, so unguarded scripts work), else forkserver preloaded with this
    module; spawn elsewhere. Workers only run NumPy/OpenCV on single threads, so fork is safe here."""
    if sys.platform.startswith("linux"):
        if threading.active_count() == 1:
            return mp.get_context("fork")
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["differad_cli.synth.run"])
        return ctx
    return mp.get_context("spawn")


def pool_results(plan: Plan, todo: list[int], workers: int, stack: ExitStack) -> Iterator[tuple]:
    """Ordered results from a process pool, started now (before any progress-bar thread exists, so the
    fork start method stays available). A worker that dies raises instead of hanging the run."""
    pool = ProcessPoolExecutor(
        workers, mp_context=_pool_context(), initializer=_init_worker, initargs=(plan,)
    )
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    chunk = max(1, min(16, len(todo) // (workers * 8)))
    return unbroken(pool.map(_work, todo, chunksize=chunk))


def unbroken(results: Iterator[tuple]) -> Iterator[tuple]:
    try:
        yield from results
    except BrokenProcessPool:
        raise RuntimeError(
            "a synth worker process died; when calling synthesize() from a script, guard the call with "
            "`if __name__ == '__main__':`, or use workers=1"
        ) from None
