"""`differad synth`: synthetic reference/target pairs from defect-free images (paper III-C, Algorithm 1).

Each sample's randomness derives from (seed, index) alone, so the output is byte-identical for any number
of workers and on re-run, and an interrupted run resumes exactly where it stopped. Images are written to a
temporary name and renamed; a manifest line is appended only after its files are complete, in index order.

Two choices the paper leaves open, made here:
- Normal targets get the same brightness jitter and small rotation as anomalous ones (Algorithm 1 applies
  JitterRotate after both branches). Otherwise "target differs from reference at all" would itself reveal
  the label, and the model would learn to flag nuisance changes instead of defects.
- With ``--normals``, images keep their aspect ratio by default: the longer side becomes ``--size``
  (``--resize square`` stretches to size x size). Industrial frames are often far from square.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.boxes import area
from differad_cli.core.errors import BadInput
from differad_cli.core.io import atomic_write, check_out_dir, writing
from differad_cli.core.records import iter_jsonl
from differad_cli.synth.config import SynthConfig, SynthSummary
from differad_cli.synth.pool import (
    auto_workers,
    pool_results,
)
from differad_cli.synth.sources import Generator, Plan, category_of, inputs_digest, scan_folder

MANIFEST = "pairs.jsonl"
SETTINGS = "synth.json"
DEFAULT_N = 1000


_ID_RE = re.compile(r"^synth-(\d{6,})$")


def _settings(cfg: SynthConfig, normals: list[Path], textures: list[Path]) -> dict[str, Any]:
    skip = {"out", "n", "workers", "resume", "force"}
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in skip}
    d["normals"] = None if cfg.normals is None else str(cfg.normals)
    d["textures"] = None if cfg.textures is None else str(cfg.textures)
    d["normals_digest"] = inputs_digest(normals, cfg.normals)
    d["textures_digest"] = inputs_digest(textures, cfg.textures)
    return d


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out must be a folder, got a file: {out}")
    # the manifest is written before any picture, so a folder of ours always has one
    check_out_dir(out, ("ref", "tgt", "mask", SETTINGS), lambda d: (d / MANIFEST).is_file(), force=force)
    try:
        for sub in ("ref", "tgt", "mask"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BadInput(f"cannot write to output folder {out}: {e.strerror or e}") from None


def _finished(out: Path) -> dict[int, str]:
    """Manifest lines of finished samples (record complete, files present), by index; bad lines dropped."""
    path = out / MANIFEST
    done: dict[int, str] = {}
    if not path.is_file():
        return done
    with path.open("r", encoding="utf-8") as f:
        for line in f:
            text = line.rstrip("\n")
            if not line.endswith("\n") or not text.strip():
                continue  # a partial last line from an interrupted write
            try:
                obj = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                continue
            m = _ID_RE.match(str(obj.get("id", ""))) if isinstance(obj, dict) else None
            if m is None:
                continue
            files = [obj.get("ref"), obj.get("tgt")] + ([obj["mask"]] if obj.get("mask") else [])
            if all(isinstance(p, str) and (out / p).is_file() for p in files):
                done[int(m.group(1))] = text
    return done


def _count_records(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _write_settings(cfg: SynthConfig, out: Path, settings: dict[str, Any], existing: int) -> None:
    """Refuse to resume a run made with other settings; then record this run's settings."""
    settings_path = out / SETTINGS
    if cfg.resume and settings_path.is_file():
        try:
            before = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            before = None
        if isinstance(before, dict) and before != settings:
            diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise BadInput(
                f"cannot resume {out}: it was made with different settings ({', '.join(diff)}); "
                "repeat the original options or choose a new --out folder"
            )
    elif cfg.resume and existing:
        console.warn(f"{settings_path} is missing: cannot check that the resumed settings match")
    atomic_write(settings_path, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())


def synthesize(cfg: SynthConfig) -> SynthSummary:
    """Run Algorithm 1 ``cfg.n`` times into ``cfg.out`` (resuming when asked) and summarize the manifest."""
    t0 = time.perf_counter()
    cfg.validate()
    out = Path(cfg.out)
    cfg = SynthConfig(**{**asdict(cfg), "out": out})
    cfg.normals = Path(cfg.normals).resolve() if cfg.normals else None
    cfg.textures = Path(cfg.textures).resolve() if cfg.textures else None
    normals, skipped_n = scan_folder(cfg.normals, "--normals")
    textures, skipped_t = scan_folder(cfg.textures, "--textures")
    n = cfg.n if cfg.n is not None else (len(normals) if normals else DEFAULT_N)
    manifest = out / MANIFEST
    existing = _count_records(manifest)
    if existing and not cfg.resume:
        raise BadInput(
            f"{manifest} already holds {existing} records; pass --resume to continue that run "
            "or choose a new --out folder"
        )
    _prepare_out(out, cfg.force)
    _write_settings(cfg, out, _settings(cfg, normals, textures), existing)

    done = _finished(out) if cfg.resume else {}
    if done and max(done) >= n:
        raise BadInput(
            f"{manifest} already holds pairs up to index {max(done)}; pass --n {max(done) + 1} or more"
        )
    start = 0
    while start in done:
        start += 1
    atomic_write(manifest, [done[i] for i in range(start)])  # drops partial lines and holes
    if cfg.resume:
        for sub in ("ref", "tgt", "mask"):
            for stale in (out / sub).glob(".*.tmp"):
                stale.unlink(missing_ok=True)
    todo = [i for i in range(start, n) if i not in done]
    resumed = n - len(todo)
    if resumed:
        console.info(f"resuming {out}: {resumed} of {n} pairs already done")

    categories = [category_of(p, cfg.normals) for p in normals] if cfg.normals else []
    plan = Plan(cfg=cfg, out=out.resolve(), normals=normals, textures=textures, categories=categories)
    workers = auto_workers(len(todo), cfg.workers)
    skipped = set(skipped_n) | set(skipped_t)
    fallbacks = 0
    t_gen = time.perf_counter()
    with ExitStack() as stack:
        if workers > 1 and len(todo) > 1:
            results: Iterator[tuple] = pool_results(plan, todo, workers, stack)
        else:
            gen = Generator(plan)
            results = (gen(i) for i in todo)
        stack.enter_context(writing(manifest))
        f = stack.enter_context(manifest.open("a", encoding="utf-8"))
        for i in console.progress(range(start, n), total=n - start, desc="synth", unit="pair"):
            if i in done:
                line = done[i]
            else:
                _, line, bad, fb = next(results)
                fallbacks += fb
                for b in bad:
                    path, _, why = b.partition("\t")
                    if path not in skipped:
                        console.warn(f"skipping unreadable image: {why}")
                        skipped.add(path)
            f.write(line + "\n")
            f.flush()
    gen_elapsed = time.perf_counter() - t_gen
    elapsed = time.perf_counter() - t0
    return _summarize(manifest, len(todo), resumed, sorted(skipped), fallbacks, elapsed, gen_elapsed)


def _summarize(
    manifest: Path,
    generated: int,
    resumed: int,
    skipped: list[str],
    fallbacks: int,
    elapsed: float,
    gen_s: float,
) -> SynthSummary:
    labels, areas = [], []
    for _, obj in iter_jsonl(manifest):
        labels.append(int(obj.get("label", 0)))
        if obj.get("label") == 1:
            areas.append(area(obj["box"]))
    written = len(labels)
    anomalous = sum(labels)
    return SynthSummary(
        manifest=manifest,
        written=written,
        generated=generated,
        resumed=resumed,
        anomalous=anomalous,
        anomalous_share=anomalous / written if written else 0.0,
        mean_box_area=statistics.fmean(areas) if areas else 0.0,
        median_box_area=float(statistics.median(areas)) if areas else 0.0,
        skipped=skipped,
        fallbacks=fallbacks,
        elapsed=elapsed,
        pairs_per_s=generated / gen_s if gen_s > 0 and generated else 0.0,
    )
