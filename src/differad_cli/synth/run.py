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
from differad_cli.core.images import png_intact
from differad_cli.core.io import atomic_write, check_out_dir, writing
from differad_cli.core.records import Pair, iter_jsonl, short
from differad_cli.synth.config import SynthConfig, SynthSummary
from differad_cli.synth.pool import (
    auto_workers,
    pool_results,
)
from differad_cli.synth.sources import Generator, Plan, category_of, inputs_digest, scan_folder

MANIFEST = "pairs.jsonl"
SETTINGS = "synth.json"
DEFAULT_N = 1000


_KEYS = {"id", "ref", "tgt", "mask", "box", "label", "width", "height", "category", "subset", "synth"}
_LINE_START = '{"id": "synth-'  # how every manifest line synth writes begins (core.records.dumps)


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


class _Foreign(Exception):
    """A manifest line that synth did not write (or not with these settings)."""


def _finished(out: Path, cfg: SynthConfig) -> tuple[dict[int, str], int]:
    """(manifest lines of finished samples by index, number of lines verified). Resume trusts nothing it
    cannot verify:

    - a line synth did not write (not JSON, another id, other fields or file names, another size, out of
      order or repeated) is refused (BadInput naming the file and line): it may be the user's, so it is
      neither dropped nor overwritten;
    - a torn last line (no newline, and a prefix of a synth line: an interrupted append) is dropped and its
      sample redone; a last line without newline that is not such a prefix is refused like any other;
    - a finished sample whose ref/tgt/mask PNG is missing or damaged is redone. The check is cheap, without
      decoding pixels (``core.images.png_intact``): signature, every chunk's CRC, IHDR = the record's
      width x height, IEND last. Truncated and flipped bytes are caught; an intact PNG of the right size
      that is not ours is trusted.
    """
    path = out / MANIFEST
    if not path.is_file():
        return {}, 0
    try:
        *lines, tail = path.read_bytes().split(b"\n")
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    done: dict[int, str] = {}
    verified = 0
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            text, files, size = _verify_line(raw, verified, cfg, out)
        except _Foreign as e:
            raise _refusal(out, path, lineno, str(e)) from None
        if all(png_intact(f, size) for f in files):
            done[verified] = text
        verified += 1
    if tail.strip():
        head = tail.decode("utf-8", "replace")
        if not (head.startswith(_LINE_START) or _LINE_START.startswith(head)):
            raise _refusal(out, path, len(lines) + 1, "is not a line synth wrote (and has no newline)")
        console.info(f"{path}:{len(lines) + 1}: dropping a torn last line (an interrupted write); redoing it")
    return done, verified


def _refusal(out: Path, path: Path, lineno: int, why: str) -> BadInput:
    return BadInput(
        f"cannot resume {out}: {path}:{lineno} {why}; move that line out of the manifest "
        "or rerun without --resume into a new folder"
    )


def _verify_line(
    raw: bytes, index: int, cfg: SynthConfig, out: Path
) -> tuple[str, list[Path], tuple[int, int]]:
    """(line, PNG files, (width, height)) when ``raw`` is the line synth writes for sample ``index``."""
    try:
        text = raw.decode("utf-8").rstrip("\r")
        obj = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Foreign("is not a line synth wrote (not JSON)") from None
    stem = f"{index:06d}"
    rid = obj.get("id") if isinstance(obj, dict) else None
    if rid != f"synth-{stem}" or set(obj) - _KEYS or not _KEYS - {"subset"} <= set(obj):
        raise _Foreign(
            f"is not a line synth wrote (expected synth-{stem} with synth's fields, got id {short(rid)})"
        )
    try:
        pair = Pair.from_dict(obj, out, "record")
    except BadInput as e:
        raise _Foreign(f"is not a valid record ({str(e).removeprefix('record: ')})") from None
    names = (obj["ref"], obj["tgt"], obj["mask"])
    if names != (f"ref/{stem}.png", f"tgt/{stem}.png", f"mask/{stem}.png" if pair.label else None):
        raise _Foreign("is not a line synth wrote (other file names)")
    w, h = pair.width, pair.height
    keep = cfg.normals is not None and cfg.resize == "keep"
    if max(w, h) != cfg.size or (not keep and w != h):
        raise _Foreign(f"is a {w}x{h} pair, not one of --size {cfg.size} (made with other settings)")
    files = [pair.ref, pair.tgt] + ([pair.mask] if pair.mask is not None else [])
    return text, files, (w, h)


def _count_records(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _check_settings(cfg: SynthConfig, out: Path, settings: dict[str, Any], existing: int) -> None:
    """On resume of a run with records, its synth.json must be readable and hold these very settings: a
    missing or damaged one cannot vouch for them, and pairs of two settings must never share a manifest."""
    if not cfg.resume or not existing:
        return
    path = out / SETTINGS
    redo = "rerun without --resume into a new folder"
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"cannot verify settings of {out}: {path} is missing; {redo}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        before = None
    if not isinstance(before, dict):
        raise BadInput(f"cannot verify settings of {out}: {path} is unreadable or damaged; {redo}")
    before.setdefault("surfaces", "textured")  # written before --surfaces existed: textured was all there was
    if before != settings:
        diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        raise BadInput(
            f"cannot resume {out}: it was made with different settings ({', '.join(diff)}); "
            "repeat the original options or choose a new --out folder"
        )


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
    settings = _settings(cfg, normals, textures)
    _check_settings(cfg, out, settings, existing)
    done, verified = _finished(out, cfg) if cfg.resume else ({}, 0)
    if verified > n:
        raise BadInput(
            f"{manifest} already holds pairs up to index {verified - 1}; pass --n {verified} or more"
        )
    atomic_write(out / SETTINGS, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())
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
