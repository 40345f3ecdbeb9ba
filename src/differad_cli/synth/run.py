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

import hashlib
import json
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from differad_cli.core import console
from differad_cli.core.boxes import area
from differad_cli.core.errors import BadInput, ImageError
from differad_cli.core.images import (
    IMAGE_SUFFIXES,
    image_size,
    list_images,
    load_rgb,
    save_png,
)
from differad_cli.core.io import atomic_write
from differad_cli.core.records import Pair, dumps
from differad_cli.synth.config import SynthConfig, SynthSummary
from differad_cli.synth.geometry import (
    foreground_mask,
)
from differad_cli.synth.procedural import SURFACES, TEXTURES
from differad_cli.synth.sample import (
    Sample,
    fit_size,
    sample_rngs,
    synthesize_pair,
)

MANIFEST = "pairs.jsonl"
SETTINGS = "synth.json"
DEFAULT_N = 1000
AUTO_WORKER_MIN_TASKS = 32  # below this many pairs per worker a pool costs more than it saves


# ---------------------------------------------------------------------------------------------- pure steps


# ---------------------------------------------------------------------------------------------- sources


def scan_folder(root: Path | None, what: str) -> tuple[list[Path], list[str]]:
    """Readable-looking images under ``root`` (header check only) and the skipped ones with reasons."""
    if root is None:
        return [], []
    if not root.exists():
        raise BadInput(f"{what} folder not found: {root}")
    if not root.is_dir():
        raise BadInput(f"{what} must be a folder, got a file: {root}")
    found = list_images(root)
    if not found:
        raise BadInput(
            f"no images in {what} folder {root} (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)"
        )
    good: list[Path] = []
    problems: list[str] = []
    for p in found:
        try:
            image_size(p)
        except ImageError as e:
            problems.append(str(e))
            continue
        good.append(p)
    if not good:
        raise BadInput(
            f"none of the {len(found)} images in {what} folder {root} could be read ({problems[0]})"
        )
    for msg in problems:
        console.warn(f"skipping {what} image: {msg}")
    skipped = sorted(set(map(str, found)) - set(map(str, good)))
    return good, skipped


def _category_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else (root.resolve().name or "default")


def _digest(paths: list[Path], root: Path | None) -> str | None:
    if root is None:
        return None
    h = hashlib.sha256()
    for p in paths:
        h.update(p.relative_to(root).as_posix().encode())
        h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]


@dataclass
class Plan:
    """Everything a worker needs (picklable): settings and the resolved input lists."""

    cfg: SynthConfig
    out: Path
    normals: list[Path]
    textures: list[Path]
    categories: list[str]


class Generator:
    """Makes and writes sample ``index``; caches decoded inputs (results never depend on the cache)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.cfg = plan.cfg
        self._load_normal = lru_cache(maxsize=32)(self._load_normal_uncached)
        self._load_texture = lru_cache(maxsize=32)(self._load_texture_uncached)
        self._perm = lru_cache(maxsize=4)(self._perm_uncached)

    def _load_normal_uncached(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        img = fit_size(load_rgb(self.plan.normals[i]), self.cfg.size, self.cfg.resize)
        fg = foreground_mask(img) if self.cfg.fg == "auto" else None
        img.flags.writeable = False
        return img, fg

    def _load_texture_uncached(self, j: int, h: int, w: int) -> np.ndarray:
        img = load_rgb(self.plan.textures[j])
        shrink = img.shape[0] * img.shape[1] > h * w
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def _perm_uncached(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.cfg.seed, 0x5EED, epoch]).permutation(len(self.plan.normals))

    def make(self, index: int) -> tuple[Sample, str, str, list[str]]:
        """(sample, category, source, skipped input paths) for one index."""
        cfg = self.cfg
        r_src, r_branch, r_anom, r_jit = sample_rngs(cfg.seed, index)
        skipped: list[str] = []
        if self.plan.normals:
            n = len(self.plan.normals)
            perm = self._perm(index // n)
            for k in range(n):  # an unreadable image hands its turn to the next one in the permutation
                i = int(perm[(index + k) % n])
                try:
                    ref, fg = self._load_normal(i)
                    break
                except ImageError as e:
                    skipped.append(f"{self.plan.normals[i]}\t{e}")
            else:
                raise BadInput("none of the normal images could be decoded")
            category = cfg.category or self.plan.categories[i]
            source = self.plan.normals[i].relative_to(cfg.normals).as_posix() if cfg.normals else ""
        else:
            family = list(SURFACES)[index % len(SURFACES)]
            ref = SURFACES[family](cfg.size, cfg.size, r_src)
            fg = foreground_mask(ref) if cfg.fg == "auto" else None
            category, source = cfg.category or family, f"builtin:{family}"
        h, w = ref.shape[:2]
        if self.plan.textures:
            t = len(self.plan.textures)
            first = int(r_src.integers(t))
            for k in range(t):
                j = (first + k) % t
                try:
                    texture = self._load_texture(j, h, w)
                    break
                except ImageError as e:
                    skipped.append(f"{self.plan.textures[j]}\t{e}")
            else:
                raise BadInput("none of the texture images could be decoded")
            tex_name = self.plan.textures[j].relative_to(cfg.textures).as_posix() if cfg.textures else ""
        else:
            name = list(TEXTURES)[int(r_src.integers(len(TEXTURES)))]
            texture, tex_name = TEXTURES[name], f"builtin:{name}"
        sample = synthesize_pair(ref, texture, fg, r_branch, r_anom, r_jit, cfg)
        if sample.mask is not None:
            sample.meta = {"texture": tex_name, **sample.meta}
        return sample, category, source, skipped

    def __call__(self, index: int) -> tuple[int, str, list[str], bool]:
        """Make, write (atomic files) and describe sample ``index`` as its manifest line."""
        sample, category, source, skipped = self.make(index)
        out, cfg = self.plan.out, self.cfg
        stem = f"{index:06d}"
        ref_p, tgt_p = out / "ref" / f"{stem}.png", out / "tgt" / f"{stem}.png"
        mask_p = out / "mask" / f"{stem}.png" if sample.mask is not None else None
        save_png(ref_p, sample.ref, cfg.png_level)
        save_png(tgt_p, sample.tgt, cfg.png_level)
        if mask_p is not None:
            save_png(mask_p, sample.mask, 9)  # binary masks compress to almost nothing at any level
        h, w = sample.tgt.shape[:2]
        pair = Pair(
            id=f"synth-{stem}",
            ref=ref_p,
            tgt=tgt_p,
            box=sample.box,
            label=0 if sample.mask is None else 1,
            width=w,
            height=h,
            mask=mask_p,
            category=category,
            subset=cfg.subset,
            extra={"synth": {"source": source, **sample.meta}},
        )
        return index, dumps(pair.to_dict(out)), skipped, sample.fallback


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


# ---------------------------------------------------------------------------------------------- run


_ID_RE = re.compile(r"^synth-(\d{6,})$")


def _settings(cfg: SynthConfig, normals: list[Path], textures: list[Path]) -> dict[str, Any]:
    skip = {"out", "n", "workers", "resume"}
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in skip}
    d["normals"] = None if cfg.normals is None else str(cfg.normals)
    d["textures"] = None if cfg.textures is None else str(cfg.textures)
    d["normals_digest"] = _digest(normals, cfg.normals)
    d["textures_digest"] = _digest(textures, cfg.textures)
    return d


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out must be a folder, got a file: {out}")
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
            except json.JSONDecodeError:
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


def _auto_workers(todo: int, requested: int) -> int:
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


def _pool_results(plan: Plan, todo: list[int], workers: int, stack: ExitStack) -> Iterator[tuple]:
    """Ordered results from a process pool, started now (before any progress-bar thread exists, so the
    fork start method stays available). A worker that dies raises instead of hanging the run."""
    pool = ProcessPoolExecutor(
        workers, mp_context=_pool_context(), initializer=_init_worker, initargs=(plan,)
    )
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    chunk = max(1, min(16, len(todo) // (workers * 8)))
    return _unbroken(pool.map(_work, todo, chunksize=chunk))


def _unbroken(results: Iterator[tuple]) -> Iterator[tuple]:
    try:
        yield from results
    except BrokenProcessPool:
        raise RuntimeError(
            "a synth worker process died; when calling synthesize() from a script, guard the call with "
            "`if __name__ == '__main__':`, or use workers=1"
        ) from None


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
    _prepare_out(out)
    settings = _settings(cfg, normals, textures)
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

    categories = [_category_of(p, cfg.normals) for p in normals] if cfg.normals else []
    plan = Plan(cfg=cfg, out=out.resolve(), normals=normals, textures=textures, categories=categories)
    workers = _auto_workers(len(todo), cfg.workers)
    skipped = set(skipped_n) | set(skipped_t)
    fallbacks = 0
    t_gen = time.perf_counter()
    with ExitStack() as stack:
        if workers > 1 and len(todo) > 1:
            results: Iterator[tuple] = _pool_results(plan, todo, workers, stack)
        else:
            gen = Generator(plan)
            results = (gen(i) for i in todo)
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
    with manifest.open("r", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
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
