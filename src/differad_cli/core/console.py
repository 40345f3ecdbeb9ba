"""Verbosity, warnings and progress bars shared by every command.

Human-facing messages go to stderr so that stdout stays machine-readable where a command emits data;
progress bars appear only on an interactive terminal and never with --quiet.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

QUIET = 0
NORMAL = 1
VERBOSE = 2

_level = NORMAL


def set_verbosity(level: int) -> None:
    global _level
    _level = level
    logging.basicConfig(level=logging.DEBUG if level >= VERBOSE else logging.WARNING, format="%(message)s")
    if level < VERBOSE:
        # transformers/TRL/DeepSpeed are chatty; keep their warnings behind --verbose.
        for name in ("transformers", "trl", "accelerate", "deepspeed", "torch", "peft"):
            logging.getLogger(name).setLevel(logging.ERROR)
        for module in ("transformers", "trl", "torch", "peft", "accelerate"):
            warnings.filterwarnings("ignore", category=FutureWarning, module=module)
            warnings.filterwarnings("ignore", category=UserWarning, module=module)
    if not progress_enabled():
        # Library progress bars (weight loading, shard writing) only on an interactive terminal. Set before
        # transformers is imported: the commands import it lazily, after this callback has run.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def verbosity() -> int:
    return _level


def info(msg: str) -> None:
    """A progress or status line for humans (stderr, hidden by --quiet)."""
    if _level >= NORMAL:
        print(msg, file=sys.stderr, flush=True)


def debug(msg: str) -> None:
    if _level >= VERBOSE:
        print(msg, file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    """Warnings are shown even with --quiet: they tell the user something was skipped or changed."""
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def progress_enabled() -> bool:
    return _level >= NORMAL and sys.stderr.isatty()


def progress(it: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """tqdm on an interactive stderr, a plain iterator otherwise (pipes and CI logs stay clean)."""
    if not progress_enabled():
        yield from it
        return
    from tqdm import tqdm

    yield from tqdm(it, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
