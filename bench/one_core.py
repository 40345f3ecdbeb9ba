"""Shared by the one-core benchmarks: import first (before numpy), then call ``pin_one_core()``.

BLAS/OpenMP pools are limited to one thread at import, so a "one core" figure is one core."""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def pin_one_core() -> str:
    """Pin this process to one CPU (Linux); says what was done, for the benchmark's header."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity on this OS)"
