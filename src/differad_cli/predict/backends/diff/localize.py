"""One pair: align, match, compare, box the largest region that differs."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from differad_cli.core.boxes import ZERO_BOX
from differad_cli.predict.backends.diff.align import (
    estimate_alignment,
    estimate_homography,
    motion,
)
from differad_cli.predict.backends.diff.config import DiffConfig, DiffResult
from differad_cli.predict.backends.diff.photometric import (
    match_gain,
    match_gain_field,
    match_local,
    noise_sigma,
)

GROW = 4  # working pixels a region may grow beyond its seeds over weaker differences


def _to_work(img: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return img.astype(np.float32)
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=interp).astype(np.float32)


@dataclass
class WorkingReference:
    """The reference at one target size: resized to the working resolution and, for alignment, its blurred
    gray copy. Line mode computes it once per reference and target size instead of once per pair."""

    height: int  # target size it was made for
    width: int
    scale: float
    rgb: np.ndarray  # working-resolution float32 RGB
    gray: np.ndarray  # blurred gray (alignment)
    aligner: dict = field(default_factory=dict, repr=False)  # align.reference_side: made once, reused


def working_reference(ref: np.ndarray, height: int, width: int, cfg: DiffConfig) -> WorkingReference:
    if ref.shape[:2] != (height, width):
        ref = cv2.resize(ref, (width, height), interpolation=cv2.INTER_AREA)
    # small images are upsampled too: blur, tolerance and morphology then act at one, tuned scale
    scale = cfg.work_size / max(height, width)
    r = _to_work(ref, scale)
    gray = cv2.GaussianBlur(cv2.cvtColor(r, cv2.COLOR_RGB2GRAY), (0, 0), 1.5)
    return WorkingReference(height, width, scale, r, gray)


@dataclass
class Difference:
    """One reference against the target: the tolerant difference scaled so that ``cfg.threshold`` is the
    seed level (0 outside the overlap), the alignment, and how it was found."""

    diff: np.ndarray
    warp: np.ndarray  # 2x3, or the 3x3 homography when one was used
    method: str  # "homography" | "shift + rotation" | "none"
    threshold: float  # the threshold this pair needed (noise floor)
    floor: float = 0.0  # the noise floor alone (noise_k x sigma; 0 when off or auto): what calibration keeps


# --threshold auto (a robust MAD rule): a pair's seed threshold is AUTO_K times its own noise,
# sigma = 1.4826 * MAD of target minus matched reference over the overlap (``noise_sigma``), never below
# AUTO_MIN. It equals --threshold AUTO_MIN with the default noise floor (noise_k 3). Picked on the held-out
# sets of bench_diff (seed 2024) and bench_diff_robust (seed 4242), checked on fresh seeds (77, 5151):
# README, "Measured". Otsu's split of the difference map, kept within the same bounds, did no better.
AUTO_MIN, AUTO_K = 8.0, 3.0


def auto_threshold(sigma: float) -> float:
    """The pair's own seed threshold (0-255 units) from its noise ``sigma`` (``--threshold auto``)."""
    return max(AUTO_MIN, AUTO_K * float(sigma))


def difference(ref: WorkingReference, t: np.ndarray, cfg: DiffConfig) -> Difference:
    """Align ``ref`` to the working-resolution target ``t``, match its lighting, compare tolerantly."""
    r = ref.rgb
    h, w = t.shape[:2]
    valid = np.ones((h, w), dtype=np.uint8)
    warp = np.eye(2, 3, dtype=np.float32)
    method = "none"
    if cfg.align and min(h, w) >= 16:
        tg = cv2.GaussianBlur(cv2.cvtColor(t, cv2.COLOR_RGB2GRAY), (0, 0), 1.5)
        hom = None
        if cfg.homography:
            hom, warp = estimate_homography(ref.gray, tg, cfg, ref.aligner)
        else:
            warp = estimate_alignment(ref.gray, tg, cfg)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        nearest = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        if hom is not None:
            r = cv2.warpPerspective(r, hom, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
            valid = cv2.warpPerspective(valid, hom, (w, h), flags=nearest)
            warp, method = hom / hom[2, 2], "homography"
        else:
            r = cv2.warpAffine(r, warp, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
            valid = cv2.warpAffine(valid, warp, (w, h), flags=nearest)
            method = "shift + rotation (no homography fit)" if cfg.homography else "shift + rotation"
            if cfg.homography and np.allclose(warp, np.eye(2, 3), atol=1e-3):
                method = "nothing: the reference could not be aligned, compared as it is"
        valid = cv2.erode(valid, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    vmask = valid.astype(bool)
    fit_on = vmask if vmask.sum() >= 16 else np.ones_like(vmask)
    if cfg.illumination in ("field", "plane"):
        r = match_gain_field(r, t, fit_on, order=2 if cfg.illumination == "field" else 1)
    elif cfg.illumination == "local":
        r = match_local(match_gain(r, t, fit_on), t)
    else:
        r = match_gain(r, t, fit_on)
    if cfg.blur > 0:
        r = cv2.GaussianBlur(r, (0, 0), cfg.blur)
        t = cv2.GaussianBlur(t, (0, 0), cfg.blur)
    thr, floor = cfg.threshold, 0.0
    if cfg.auto_threshold:  # the pair's own threshold from its noise (--threshold auto)
        thr = auto_threshold(noise_sigma(r, t, fit_on))
    elif cfg.noise_k > 0:  # the pair's own noise floor, measured after blur: where the tolerance must sit
        floor = cfg.noise_k * noise_sigma(r, t, fit_on)
        thr = max(thr, floor)
    k3 = np.ones((3, 3), np.uint8)
    above = t - cv2.dilate(r, k3)
    below = cv2.erode(r, k3) - t
    diff = np.maximum(np.maximum(above, below), 0).max(axis=2)
    diff[~vmask] = 0  # not seen in both images: can never form a defect
    if thr != cfg.threshold:
        diff *= cfg.threshold / thr
    return Difference(diff, warp, method, thr, floor)


def compare(
    ref: np.ndarray | WorkingReference | list[WorkingReference], tgt: np.ndarray, cfg: DiffConfig
) -> tuple[list[Difference], float]:
    """Each reference against the target (aligned, lighting matched, tolerant difference) and the working
    scale: everything before the decision, which :func:`largest_region` makes."""
    height, width = tgt.shape[:2]
    refs = ref if isinstance(ref, list) else [ref]
    refs = [r if isinstance(r, WorkingReference) else working_reference(r, height, width, cfg) for r in refs]
    for r in refs:
        if (r.height, r.width) != (height, width):
            raise ValueError(f"reference prepared for {r.width}x{r.height}, target is {width}x{height}")
    t = _to_work(tgt, refs[0].scale)
    return [difference(r, t, cfg) for r in refs], refs[0].scale


# The window-mean seed level never sits below the map's own background: its median plus AREA_MAD_K robust
# standard deviations (1.4826 MAD, on every other pixel), so a pair whose whole map is raised (a textured
# photograph aligned to a fraction of a pixel) is not flagged by it. Window, ratio and this picked on
# bench_diff_robust --photos skimage, seeds 99, 123, 5 (mean Acc@0.3 0.712 -> 0.798 with the window mean
# and the alternating gain-field fit);
# held out: seeds 4242 and 77 (README, "Measured").
AREA_MAD_K = 16.0


def _area_level(mean: np.ndarray, level: float) -> float:
    sample = mean[::2, ::2]
    med = float(np.median(sample))
    return max(level, med + AREA_MAD_K * 1.4826 * float(np.median(np.abs(sample - med))))


def largest_region(diff: np.ndarray, thr: float, cfg: DiffConfig) -> tuple | None:
    """Seeds above ``thr`` (opened 3x3) or, over ``area_window``, a mean above ``thr * area_ratio``, grown
    over pixels above ``thr * low_ratio`` near them: (labels, the largest seeded component's label, its box
    (x, y, w, h) and its area as an image fraction, in working pixels), or None. With window seeds the box
    and the area count the region's own pixels above ``thr * area_ratio``, not the windows' reach (half a
    window beyond the defect), so ``min_area`` means what it says.

    Why the window mean: a faint defect (a third of its contrast, under noise and JPEG) leaves few pixels
    above a threshold that noise must stay under, but many moderately raised ones side by side, which
    noise rarely does (bench_diff_robust, docs/baselines.md).
    """
    k3 = np.ones((3, 3), np.uint8)
    strong = cv2.morphologyEx((diff > thr).astype(np.uint8), cv2.MORPH_OPEN, k3)
    if cfg.area_window > 1:
        k = int(cfg.area_window)
        mean = cv2.blur(diff, (k, k))
        # whole windows: they also join a faint defect's scattered fragments into one region (the box and
        # the area then count its raised pixels only)
        strong |= (mean > _area_level(mean, thr * cfg.area_ratio)).astype(np.uint8)
    # weak pixels extend a seeded region only near its seeds (not along every edge it touches)
    near = cv2.dilate(strong, np.ones((2 * GROW + 1, 2 * GROW + 1), np.uint8))
    weak = ((diff > thr * cfg.low_ratio) & (near > 0)).astype(np.uint8) | strong
    n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
    seeded = np.zeros(n, dtype=bool)
    seeded[np.unique(labels[strong.astype(bool)])] = True
    seeded[0] = False
    if not seeded.any():
        return None
    areas = np.where(seeded, stats[:, cv2.CC_STAT_AREA], -1)
    best = int(np.argmax(areas))
    box, area = tuple(int(v) for v in stats[best, :4]), float(areas[best])
    if cfg.area_window > 1:
        ys, xs = np.nonzero((labels == best) & (diff > thr * cfg.area_ratio))
        if len(xs):
            box = int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1
        area = float(len(xs))
    return labels, best, box, area / float(diff.size)


def localize(
    ref: np.ndarray | WorkingReference | list[WorkingReference],
    tgt: np.ndarray,
    cfg: DiffConfig | None = None,
    *,
    keep_map: bool = False,
) -> DiffResult:
    """Reference (RGB uint8, or prepared for this target size; several prepared ones form a variation
    model) and target -> the anomaly box in target pixels (or normal).

    With several references a pixel differs only when none of them explains it (the minimum of their
    difference maps): their spread is the per-pixel tolerance."""
    cfg = cfg or DiffConfig()
    height, width = tgt.shape[:2]
    diffs, scale = compare(ref, tgt, cfg)
    diff = diffs[0].diff if len(diffs) == 1 else np.minimum.reduce([d.diff for d in diffs])
    h, w = diff.shape
    shift, rotation = motion(diffs[0].warp, w, h, scale)
    dmap = diff if keep_map else None
    note = {"method": diffs[0].method, "refs": len(diffs), "threshold": max(d.threshold for d in diffs)}
    region = largest_region(diff, cfg.threshold, cfg)
    if region is None:
        return DiffResult(ZERO_BOX, False, 0.0, 0.0, shift, rotation, dmap, note)
    labels, best, (x, y, bw, bh), frac = region
    if frac < cfg.min_area:
        return DiffResult(ZERO_BOX, False, 0.0, frac, shift, rotation, dmap, note)
    box = (
        max(0, int(np.floor(x / scale))),
        max(0, int(np.floor(y / scale))),
        min(width, int(np.ceil((x + bw) / scale))),
        min(height, int(np.ceil((y + bh) / scale))),
    )
    score = float(diff[labels == best].max()) / 255.0
    return DiffResult(box, True, score, frac, shift, rotation, dmap, note)
