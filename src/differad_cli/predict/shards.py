"""Batch prediction over several processes (``--num-processes N``): one shard of the manifest per process,
one GPU each when there are enough, merged in input order.

Shard *k* takes pairs ``k, k + N, k + 2N, …`` and writes ``.<out>.shard-k-of-N.jsonl`` through the ordinary
batch path, so each shard resumes on its own (its partial file) and a finished shard is kept when another one
failed: the rerun recomputes only what is missing. A finished shard file is reused only when it holds exactly
the shard's pair ids; ``out`` is written once, after every shard has finished.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.errors import BadInput, one_line
from differad_cli.core.records import Pair, Prediction, read_predictions, write_predictions
from differad_cli.predict.config import PredictOptions, resolve_backend


def shard_path(out: Path, k: int, n: int, fingerprint: str) -> Path:
    """Shard ``k`` of ``n``, named by the options and pairs it was made with (another run never reuses it)."""
    return out.with_name(f".{out.name}.shard-{k}-of-{n}-{fingerprint}.jsonl")


def _finished(path: Path, ids: list[str]) -> bool:
    """A shard file from an earlier run counts only when it holds exactly this shard's pairs."""
    if not path.is_file():
        return False
    try:
        return [p.id for p in read_predictions(path)] == ids
    except BadInput:
        return False


def _worker(
    predict: Callable[..., Any],
    pairs_path: str,
    out: str,
    opts: PredictOptions,
    k: int,
    n: int,
    resume: bool,
    chunk: int,
    verbosity: int,
) -> None:
    """One shard, in a fresh (spawned) process: its own device, its share of the CPU threads. ``predict`` is
    the runner's batch function (passed in, so this module does not import the runner back)."""
    console.set_verbosity(verbosity)
    if resolve_backend(opts) == "hf":  # torch only where a model runs
        import torch

        if opts.device is None and torch.cuda.is_available():
            opts = dataclasses.replace(opts, device=f"cuda:{k % torch.cuda.device_count()}")
        elif opts.device in (None, "cpu") and not torch.cuda.is_available():
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // n))
    try:
        predict(pairs_path, out, opts, resume=resume, chunk=chunk, shard=(k, n))
    except BadInput as e:  # one line, and the parent reports bad input (exit 2), not a child traceback
        print(f"differad: error: shard {k + 1}/{n}: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


def predict_sharded(
    predict: Callable[..., Any],
    pairs_path: Path,
    out: Path,
    opts: PredictOptions,
    pairs: list[Pair],
    *,
    resume: bool,
    chunk: int,
    fingerprint: str,
) -> list[Prediction]:
    """Run ``opts.num_processes`` shard processes of ``predict`` (the runner's batch function, called with
    ``shard=(k, n)``), then merge their predictions into ``out``."""
    if resolve_backend(opts) == "openai":
        raise BadInput("--num-processes is for local backends; the openai backend scales with --concurrency")
    n = max(1, min(opts.num_processes, len(pairs)))
    paths = [shard_path(out, k, n, fingerprint) for k in range(n)]
    ctx = mp.get_context("spawn")  # a clean interpreter per shard: CUDA cannot be forked
    procs = {}
    for k, path in enumerate(paths):
        if resume and _finished(path, [p.id for p in pairs[k::n]]):
            console.info(f"shard {k + 1}/{n} already done ({path.name})")
            continue
        if not resume:
            path.unlink(missing_ok=True)
        args = (predict, str(pairs_path), str(path), opts, k, n, resume, chunk, console.verbosity())
        procs[k] = ctx.Process(target=_worker, args=args, name=f"differad-shard-{k}")
        procs[k].start()
    failed, bad = [], []
    for k, proc in procs.items():
        proc.join()
        if proc.exitcode == 2:
            bad.append(k + 1)
        elif proc.exitcode != 0:
            failed.append(k + 1)
    if bad:
        raise BadInput(f"shard(s) {', '.join(map(str, bad))} of {n} stopped on bad input (see above)")
    if failed:
        raise RuntimeError(
            f"shard(s) {', '.join(map(str, failed))} of {n} failed; run the same command again to resume"
        )
    by_id = {p.id: p for path in paths for p in read_predictions(path)}
    preds = [by_id[p.id] for p in pairs]
    write_predictions(out, preds)
    for path in paths:
        path.unlink(missing_ok=True)
    console.info(f"wrote {len(preds)} prediction(s) from {n} processes to {out}")
    return preds
