"""Benchmark of `differad synth` against a DRAEM-style reference generator, side by side in one run.

Measures, on one core and the same inputs:
  1. generation (Algorithm 1 for one anomalous pair, no file I/O) at 256x256: ours vs a DRAEM-style
     reference written here (float64 Perlin from np.repeat'ed gradient grids as DRAEM's
     rand_perlin_2d_np, the noise image rotated afterwards, per-op full-image float augmentations as
     imgaug runs them, full-frame float64 blending and jitter). Goal: ours >= 20x faster per pair.
  2. PNG encoding per pair (ref + tgt) at zlib levels 0..9: time and bytes (the default is chosen here).
  3. end to end (`synthesize`, built-in surfaces, files written) at 256^2 and 512^2 with 1 and 2 workers:
     pairs/s and the scaling from 1 to 2 workers (goal: >= 1.6x wall clock on 2 free cores; on a busy
     shared machine: <= 1.25x CPU per pair, i.e. no real parallel overhead), peak memory.

Exit status 1 when a goal is missed. Run: `python bench/bench_synth.py` (about a minute; `--quick` for less).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from differad_cli.core.boxes import mask_box
from differad_cli.core.images import encode_png
from differad_cli.synth.config import SynthConfig
from differad_cli.synth.geometry import foreground_mask
from differad_cli.synth.procedural import SURFACES, TEXTURES
from differad_cli.synth.run import synthesize
from differad_cli.synth.sample import sample_rngs, synthesize_pair

SPEEDUP_GOAL = 20.0
SCALING_GOAL = 1.6

# ---------------------------------------------------------------------------------------------- reference


def ref_perlin(shape: tuple[int, int], res: tuple[int, int], rs: np.random.Generator) -> np.ndarray:
    """DRAEM-style Perlin: float64 lattice coordinates via mgrid, gradient grids blown up with np.repeat."""
    step = (res[0] / shape[0], res[1] / shape[1])
    cell = (shape[0] // res[0], shape[1] // res[1])
    grid = np.mgrid[0 : res[0] : step[0], 0 : res[1] : step[1]].transpose(1, 2, 0) % 1
    phi = 2 * math.pi * rs.random((res[0] + 1, res[1] + 1))
    grads = np.stack((np.cos(phi), np.sin(phi)), axis=-1)

    def tiled(ys: slice, xs: slice) -> np.ndarray:
        return np.repeat(np.repeat(grads[ys, xs], cell[0], axis=0), cell[1], axis=1)

    def dot(g: np.ndarray, sy: float, sx: float) -> np.ndarray:
        off = np.stack((grid[: shape[0], : shape[1], 0] + sy, grid[: shape[0], : shape[1], 1] + sx), axis=-1)
        return (off * g[: shape[0], : shape[1]]).sum(axis=-1)

    n00 = dot(tiled(slice(0, -1), slice(0, -1)), 0, 0)
    n10 = dot(tiled(slice(1, None), slice(0, -1)), -1, 0)
    n01 = dot(tiled(slice(0, -1), slice(1, None)), 0, -1)
    n11 = dot(tiled(slice(1, None), slice(1, None)), -1, -1)
    g = grid[: shape[0], : shape[1]]
    t = 6 * g**5 - 15 * g**4 + 10 * g**3

    def lerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
        return (b - a) * w + a

    return math.sqrt(2) * lerp(lerp(n00, n10, t[..., 0]), lerp(n01, n11, t[..., 0]), t[..., 1])


def _rot(img: np.ndarray, angle: float, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _ref_ops() -> dict:
    """imgaug-style augmenters: each converts the whole image to float, computes, clips, converts back."""

    def gamma(img, rs):
        x = img.astype(np.float64) / 255.0
        return _u8(255.0 * x ** rs.uniform(0.5, 2.0, size=3))

    def brightness(img, rs):
        ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float64)
        ycc[..., 0] = ycc[..., 0] * rs.uniform(0.8, 1.2) + rs.uniform(-30, 30)
        return cv2.cvtColor(_u8(ycc), cv2.COLOR_YCrCb2RGB)

    def sharpness(img, rs):
        x = img.astype(np.float64)
        k = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float64) / 13.0
        smooth = cv2.filter2D(x, -1, k, borderType=cv2.BORDER_REPLICATE)
        f = rs.uniform(0.0, 2.0)
        return _u8(smooth + f * (x - smooth))

    def hue_saturation(img, rs):
        hsv = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV).astype(np.float64)
        dh, ds = rs.uniform(-50, 50, size=2)
        hsv[..., 0] = (hsv[..., 0] + dh * 360.0 / 510.0) % 360.0
        hsv[..., 1] = np.clip(hsv[..., 1] + ds / 255.0, 0, 1)
        return _u8(cv2.cvtColor(hsv.astype(np.float32), cv2.COLOR_HSV2RGB) * 255.0)

    def solarize(img, rs):
        x = img.astype(np.float64)
        if rs.random() < 0.5:
            t = rs.uniform(32, 128)
            x = np.where(x >= t, 255.0 - x, x)
        return _u8(x)

    def posterize(img, rs):
        q = 2.0 ** (8 - int(rs.integers(1, 9)))
        return _u8(np.floor(img.astype(np.float64) / q) * q)

    def invert(img, rs):
        return _u8(255.0 - img.astype(np.float64))

    def autocontrast(img, rs):
        x = img.astype(np.float64)
        cut = rs.uniform(0, 20)
        out = np.empty_like(x)
        for c in range(3):
            lo, hi = np.percentile(x[..., c], [cut, 100 - cut])
            out[..., c] = (x[..., c] - lo) * (255.0 / max(hi - lo, 1e-6))
        return _u8(out)

    def equalize(img, rs):
        x = img.astype(np.float64)
        out = np.empty_like(x)
        for c in range(3):
            hist, edges = np.histogram(x[..., c], bins=256, range=(0, 256))
            cdf = hist.cumsum() / hist.sum()
            out[..., c] = np.interp(x[..., c], edges[:-1], cdf * 255.0)
        return _u8(out)

    def rotate(img, rs):
        return _rot(img, rs.uniform(-45, 45))

    return {f.__name__: f for f in (gamma, brightness, sharpness, hue_saturation, solarize, posterize,
                                    invert, autocontrast, equalize, rotate)}  # fmt: skip


REF_OPS = _ref_ops()


def ref_pair(ref: np.ndarray, texture: np.ndarray, fg: np.ndarray | None, rs: np.random.Generator) -> tuple:
    """Algorithm 1 (anomalous branch) the DRAEM way: full-frame float work at every step."""
    h, w = ref.shape[:2]
    names = list(REF_OPS)
    tex = texture
    for i in rs.permutation(len(names))[:3]:
        tex = REF_OPS[names[i]](tex, rs)
    gain = 1.0 + rs.uniform(-0.1, 0.1)
    angle = rs.uniform(-3, 3)
    for _ in range(50):
        res = (2 ** int(rs.integers(0, 6)), 2 ** int(rs.integers(0, 6)))
        noise = _rot(ref_perlin((h, w), res, rs), rs.uniform(-90, 90))  # imgaug Affine(rotate=(-90, 90))
        thr = np.where(noise > 0.5, 1.0, 0.0)
        if fg is not None:
            thr = thr * fg
        n, labels, stats, _ = cv2.connectedComponentsWithStats(thr.astype(np.uint8), connectivity=8)
        if n <= 1:
            continue
        areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
        lab = 1 + int(rs.choice(n - 1, p=areas / areas.sum()))
        m = (labels == lab).astype(np.float64)[..., None]
        beta = rs.uniform(0, 0.8)
        img = ref.astype(np.float64) / 255.0
        t = tex.astype(np.float64) / 255.0
        aug = img * (1 - m) + (1 - beta) * t * m + beta * img * m
        aug = m * aug + (1 - m) * img
        aug = np.clip(aug * gain, 0, 1)
        tgt = _u8(_rot(aug, angle, cv2.BORDER_REFLECT_101) * 255.0)
        mask = _rot(m[..., 0], angle) > 0.5
        if mask.any():
            return tgt, mask, mask_box(mask)
    return ref, None, (0, 0, 0, 0)


# ---------------------------------------------------------------------------------------------- measures


def _inputs(k: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    rng = np.random.default_rng(seed)
    fams, texs = list(SURFACES), list(TEXTURES)
    out = []
    for i in range(k):
        ref = SURFACES[fams[i % len(fams)]](size, size, rng)
        out.append((ref, TEXTURES[texs[i % len(texs)]](size, size, rng), foreground_mask(ref)))
    return out


def bench_generation(n: int, rounds: int, size: int = 256) -> tuple[float, float]:
    """Per-pair ms (best round) for ours and the reference; rounds interleave them to share the load."""
    inputs = _inputs(10, size)
    cfg = SynthConfig(out=Path("unused"), size=size, p_normal=0.0)
    ours_t, ref_t = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        for i in range(n):
            ref, tex, fg = inputs[i % len(inputs)]
            _, rb, ra, rj = sample_rngs(r, i)
            synthesize_pair(ref, tex, fg, rb, ra, rj, cfg)
        ours_t.append((time.perf_counter() - t0) / n * 1e3)
        t0 = time.perf_counter()
        for i in range(n // 4):  # the reference is slow; fewer pairs give the same precision
            ref, tex, fg = inputs[i % len(inputs)]
            ref_pair(ref, tex, None if fg is None else fg.astype(np.float64), np.random.default_rng([r, i]))
        ref_t.append((time.perf_counter() - t0) / max(1, n // 4) * 1e3)
    return min(ours_t), min(ref_t)


def bench_png(size: int = 256, k: int = 20) -> list[tuple[int, float, float]]:
    """(level, ms per pair for ref + tgt, KiB per pair) on synthesized pairs."""
    cfg = SynthConfig(out=Path("unused"), size=size)
    pairs = []
    for i, (ref, tex, fg) in enumerate(_inputs(k, size, seed=1)):
        _, rb, ra, rj = sample_rngs(7, i)
        s = synthesize_pair(ref, tex, fg, rb, ra, rj, cfg)
        pairs.append((s.ref, s.tgt))
    rows = []
    for level in range(10):
        t0 = time.perf_counter()
        nbytes = sum(len(encode_png(a, level)) + len(encode_png(b, level)) for a, b in pairs)
        rows.append((level, (time.perf_counter() - t0) / k * 1e3, nbytes / k / 1024))
    return rows


def _cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_end_to_end(size: int, n: int, workers: int, png_level: int) -> tuple[float, float]:
    """(pairs/s wall clock, ms of CPU per pair over this process and its reaped workers)."""
    out = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        cpu0 = _cpu_seconds()
        s = synthesize(SynthConfig(out=out, n=n, size=size, workers=workers, png_level=png_level, seed=1))
        return s.pairs_per_s, (_cpu_seconds() - cpu0) / n * 1e3
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs (noisier figures)")
    args = ap.parse_args()
    n, rounds = (60, 2) if args.quick else (200, 3)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_synth: {cores} cores, load average {load:.2f} at start (figures are noisy under load)")
    failed = []

    ours, ref = bench_generation(n, rounds)
    speedup = ref / ours
    print("\n1. generation per anomalous pair, 256x256, one process, no I/O (best of rounds)")
    print(f"   {'implementation':<34}{'ms/pair':>10}{'pairs/s':>10}")
    print(f"   {'DRAEM-style reference':<34}{ref:>10.2f}{1e3 / ref:>10.0f}")
    print(f"   {'differad (float32 Perlin + LUTs)':<34}{ours:>10.2f}{1e3 / ours:>10.0f}")
    ok = speedup >= SPEEDUP_GOAL
    print(f"   speed-up {speedup:.1f}x (goal >= {SPEEDUP_GOAL:.0f}x): {'ok' if ok else 'MISSED'}")
    if not ok:
        failed.append("speed-up")

    print("\n2. PNG encoding per pair (ref + tgt, 256x256 RGB)")
    print(f"   {'level':>5}{'ms/pair':>10}{'KiB/pair':>10}")
    for level, ms, kib in bench_png():
        mark = "  <- default" if level == SynthConfig.__dataclass_fields__["png_level"].default else ""
        print(f"   {level:>5}{ms:>10.2f}{kib:>10.1f}{mark}")

    level = SynthConfig.__dataclass_fields__["png_level"].default
    print(f"\n3. end to end with files (built-in surfaces, png level {level})")
    print(f"   {'size':>6}{'workers':>8}{'pairs/s':>10}{'CPU ms/pair':>13}")
    scale, cpu = {}, {}
    for size, count in ((256, 2 * n), (512, n // 2)):
        for w in (1, 2):
            load_now = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
            scale[(size, w)], cpu[(size, w)] = bench_end_to_end(size, count, w, level)
            print(
                f"   {size:>6}{w:>8}{scale[(size, w)]:>10.1f}{cpu[(size, w)]:>13.1f}   (load {load_now:.1f})"
            )
    # Wall-clock scaling needs two free cores. On a shared, busy machine it measures the neighbours, so
    # there the goal is judged on CPU per pair instead: 2 workers must not cost more than 1.25x the CPU
    # of one (contention alone adds 5-20% there), which is what near-linear scaling on free cores needs.
    busy = load > 0.5
    for size in (256, 512):
        ratio = scale[(size, 2)] / scale[(size, 1)]
        overhead = cpu[(size, 2)] / cpu[(size, 1)]
        if cores < 2:
            ok, how = True, "one core: not judged"
        elif busy:
            ok, how = (
                overhead <= 1.25,
                f"machine busy: judged on CPU overhead {overhead:.2f}x (goal <= 1.25x)",
            )
        else:
            ok, how = ratio >= SCALING_GOAL, f"goal >= {SCALING_GOAL}x"
        verdict = "ok" if ok else "MISSED"
        print(f"   {size}^2 scaling 1 -> 2 workers: {ratio:.2f}x wall clock; {how}: {verdict}")
        if not ok:
            failed.append(f"scaling {size}")
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS: this process {peak_self:.0f} MiB, largest worker {peak_kids:.0f} MiB")
    if failed:
        print(f"\nMISSED: {', '.join(failed)}")
        return 1
    print("\nall goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
