"""Algorithm 1 for one sample (paper III-C): a reference in, a reference/target/mask/box out.

Each sample's randomness comes from (seed, index) alone (:func:`sample_rngs`): any worker makes the same
pair."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from differad_cli.core.boxes import ZERO_BOX, IntBox, mask_box
from differad_cli.synth.augment import augment
from differad_cli.synth.config import SynthConfig
from differad_cli.synth.geometry import (
    blend,
    jitter_rotate,
    jitter_rotate_defect,
    n_components,
    one_component,
    rotate_mask,
)
from differad_cli.synth.perlin import perlin_mask


def sample_rngs(seed: int, index: int, k: int = 4) -> list[np.random.Generator]:
    """Independent streams for one sample: source, branch, anomaly, jitter.

    Separate streams keep e.g. the reference image fixed when only --p-normal or --beta-max changes.
    """
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(k)]


@dataclass
class Sample:
    ref: np.ndarray
    tgt: np.ndarray
    mask: np.ndarray | None
    box: IntBox
    meta: dict[str, Any]
    fallback: bool = False


TEXTURE_CONTEXT = 64  # smallest texture window augmented around a defect (keeps its statistics global)


TextureSource = np.ndarray | Callable[[int, int, np.random.Generator], np.ndarray]


def texture_patch(
    texture: TextureSource, box: IntBox, rng: np.random.Generator, *, augmented: bool = True
) -> tuple[np.ndarray, list[str]]:
    """The augmented texture over ``box``. Only a window around the box (>= TEXTURE_CONTEXT px a side) is
    augmented: the texture is only ever seen through the mask, so augmenting the whole frame is waste.
    A procedural texture (a maker function) is drawn at the window's size directly. ``augmented`` False
    pastes it as drawn (blank surfaces: white must stay white, not be inverted into the black surface).
    """
    x1, y1, x2, y2 = box
    grow_x = max(0, TEXTURE_CONTEXT - (x2 - x1)) // 2
    grow_y = max(0, TEXTURE_CONTEXT - (y2 - y1)) // 2
    if callable(texture):
        wx1, wy1 = x1 - grow_x, y1 - grow_y
        window = texture(y2 - y1 + 2 * grow_y, x2 - x1 + 2 * grow_x, rng)
    else:
        h, w = texture.shape[:2]
        wx1, wy1 = max(0, x1 - grow_x), max(0, y1 - grow_y)
        wx2, wy2 = min(w, x2 + grow_x), min(h, y2 + grow_y)
        window = np.ascontiguousarray(texture[wy1:wy2, wx1:wx2])
    window, ops = augment(window, rng) if augmented else (window, [])
    return window[y1 - wy1 : y2 - wy1, x1 - wx1 : x2 - wx1], ops


def synthesize_pair(
    ref: np.ndarray,
    texture: TextureSource,
    fg: np.ndarray | None,
    rng_branch: np.random.Generator,
    rng_anom: np.random.Generator,
    rng_jit: np.random.Generator,
    cfg: SynthConfig,
) -> Sample:
    """Algorithm 1 for one reference image (texture already chosen: an image of the reference's size
    or a procedural maker; fg None = full frame)."""
    h, w = ref.shape[:2]
    gain = 1.0 + float(rng_jit.uniform(-cfg.brightness, cfg.brightness))
    angle = float(rng_jit.uniform(-cfg.rotation, cfg.rotation))
    if rng_branch.random() < cfg.p_normal:
        if not cfg.jitter_normals:
            return Sample(ref, ref.copy(), None, ZERO_BOX, {})
        tgt, _ = jitter_rotate(ref, None, gain, angle)
        return Sample(ref, tgt, None, ZERO_BOX, {"gain": round(gain, 4), "angle": round(angle, 3)})
    for region in (fg, None) if fg is not None else (None,):
        for _ in range(cfg.max_retries):
            m = perlin_mask((h, w), rng_anom, threshold=cfg.threshold)
            if region is not None:
                m &= region
            comp = one_component(m, rng_anom, cfg.min_area)
            if comp is None:
                continue
            final = rotate_mask(comp, angle)
            if int(final.sum()) < cfg.min_area or n_components(final) != 1:
                continue  # the rotation cut the region away or split it: redraw
            box = mask_box(comp)
            patch, ops = texture_patch(texture, box, rng_anom, augmented=cfg.surfaces != "blank")
            beta = float(rng_anom.uniform(0.0, cfg.beta_max))
            tgt = jitter_rotate_defect(ref, blend(ref, patch, comp, beta, box), box, gain, angle, final)
            meta = {"beta": round(beta, 4), "ops": ops, "gain": round(gain, 4), "angle": round(angle, 3)}
            return Sample(ref, tgt, final, mask_box(final), meta)
    tgt, _ = jitter_rotate(ref, None, gain, angle)  # no usable region at all: an honest normal pair
    return Sample(ref, tgt, None, ZERO_BOX, {"gain": round(gain, 4), "angle": round(angle, 3)}, fallback=True)


def fit_size(img: np.ndarray, size: int, mode: str) -> np.ndarray:
    h, w = img.shape[:2]
    if mode == "square":
        nw = nh = size
    else:
        s = size / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
    if (nh, nw) == (h, w):
        return img
    interp = cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR
    return cv2.resize(img, (nw, nh), interpolation=interp)
