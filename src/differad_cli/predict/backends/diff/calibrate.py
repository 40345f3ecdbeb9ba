"""``--calibrate``: the diff backend's seed threshold picked on normal pairs for a chosen false-alarm rate.

Why: a fixed threshold (16) or a per-pair noise rule knows nothing of a product's own harmless variation;
the industrial practice (a variation model's tolerance, an anomaly detector's threshold) is to set it on good
samples so that at most a chosen share of them is flagged. Each normal pair is aligned and compared once; the
decision is then monotone in the threshold (higher: fewer seeds, smaller regions; the window-mean level's
median rule scales with the map), so the smallest threshold that calls the pair normal is found by bisection
on its difference map alone. With several references (the minimum of maps that have different noise floors)
it is monotone only nearly: contrived maps can turn normal and flagged again as the threshold rises. The
threshold is the smallest value that flags at most ``false_alarm`` of the pairs (the pipeline's noise floor
still applies per pair).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from differad_cli.core.errors import BadInput
from differad_cli.core.images import image_size, list_images
from differad_cli.core.records import Pair, read_pairs
from differad_cli.predict.backends.diff.config import DiffConfig
from differad_cli.predict.backends.diff.localize import Difference, largest_region

LOWEST, HIGHEST = 0.5, 256.0  # thresholds searched (0-255 units); above 255 no pixel can be a seed


def critical_threshold(diffs: list[Difference], cfg: DiffConfig, steps: int = 12) -> float:
    """The smallest seed threshold at which this pair is called normal (``compare``'s output)."""
    raw = [d.diff * (d.threshold / cfg.threshold) for d in diffs]  # undo the noise-floor scaling

    def flagged(thr: float) -> bool:
        maps = [r * (thr / max(thr, d.floor)) for r, d in zip(raw, diffs, strict=True)]
        diff = maps[0] if len(maps) == 1 else np.minimum.reduce(maps)
        region = largest_region(diff, thr, cfg)
        return region is not None and region[3] >= cfg.min_area

    lo = LOWEST
    hi = HIGHEST / cfg.area_ratio if cfg.area_window > 1 else HIGHEST  # window seeds: thr x area_ratio
    if not flagged(lo):
        return lo
    for _ in range(steps):  # flagged(lo), not flagged(hi)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if flagged(mid) else (lo, mid)
    return hi


def pick_threshold(criticals: list[float], false_alarm: float) -> tuple[float, int]:
    """(threshold, normal pairs flagged at it): the smallest threshold flagging at most ``false_alarm`` of
    the pairs (a pair is flagged below its critical threshold)."""
    ordered = sorted(criticals, reverse=True)
    allowed = math.floor(false_alarm * len(ordered) + 1e-9)
    thr = ordered[allowed] if allowed < len(ordered) else LOWEST
    return thr, sum(c > thr for c in ordered)


def calibration_pairs(source: Path, reference: Path | None = None, seed: int = 0) -> list[Pair]:
    """Normal pairs to calibrate on: a manifest's label-0 pairs, or a folder of good images, each compared
    with ``reference`` (line mode's golden image) or, without one, with another image of the folder (a
    seeded derangement: every image is a target once, never against itself)."""
    source = Path(source)
    if source.is_file():
        pairs = [p for p in read_pairs(source) if p.label == 0]
        if not pairs:
            raise BadInput(f"--calibrate {source}: no normal pairs (label 0) in it")
        return pairs
    if not source.is_dir():
        raise BadInput(f"--calibrate {source}: no such manifest or folder")
    images = list_images(source)
    if reference is not None:
        images = [p for p in images if p.resolve() != Path(reference).resolve()]
    if not images or (reference is None and len(images) < 2):
        need = "an image" if reference is not None else "two images"
        raise BadInput(f"--calibrate {source}: needs at least {need} of good parts")
    order = np.random.default_rng(seed).permutation(len(images))
    pairs = []
    for i, j in enumerate(order):
        tgt = images[j]
        ref = reference if reference is not None else images[order[(i + 1) % len(order)]]
        w, h = image_size(tgt)
        pairs.append(Pair(f"calibrate-{i:05d}", Path(ref), tgt, (0, 0, 0, 0), 0, w, h))
    return pairs
