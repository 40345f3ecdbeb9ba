"""Aligning the reference to the target (working resolution)."""

from __future__ import annotations

import cv2
import numpy as np

from differad_cli.predict.backends.diff.config import DiffConfig

ECC_MARGIN = 0.12  # image fraction left out on each side when fitting the alignment
HIGH_PASS = 24.0  # sigma (working pixels) of the lighting removed before the homography's ECC
# Without ORB's start (too few matches: smooth, low-texture images), the homography's ECC correlation below
# which its fit is not trusted: on retina photographs the 8-dof fit drifted to 0.68-0.78 with wrong
# rotations of 10-20 degrees, while correct fits scored 0.95-0.999 (bench_diff_robust --photos skimage).
ECC_MIN = 0.9
# The shift + rotation start's correlation on high-passed images below which their homography fit is not tried
# (the plain images are): 0.14-0.78 on smooth synth surfaces, where the high-passed fit then failed too.
HP_HOPELESS = 0.8


def _ecc(tgt: np.ndarray, ref: np.ndarray, warp: np.ndarray, iters: int) -> tuple[np.ndarray, float] | None:
    """One ECC (Euclidean) fit on the central part: a moved target's borders hold filled-in content."""
    h, w = tgt.shape
    my, mx = round(h * ECC_MARGIN), round(w * ECC_MARGIN)
    fit = np.zeros((h, w), np.uint8)
    fit[my : h - my, mx : w - mx] = 1
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iters, 1e-6)
    try:
        cc, out = cv2.findTransformECC(tgt, ref, warp.copy(), cv2.MOTION_EUCLIDEAN, criteria, fit, 5)
    except cv2.error:
        return None  # did not converge (flat or unrelated images)
    return out, float(cc)


def estimate_alignment(
    ref_gray: np.ndarray, tgt_gray: np.ndarray, cfg: DiffConfig, *, coarse_only: bool = False
) -> np.ndarray:
    """2x3 warp W with ref(W(x)) ~ tgt(x) (use with WARP_INVERSE_MAP); identity when nothing fits.

    Coarse to fine: phase correlation and ECC on a half-size copy (cheap, wide basin), then a short ECC
    refinement at full working size (sub-pixel accuracy where it matters: at the image borders), left out
    with ``coarse_only`` (a start for the homography, which refines at full size itself).
    """
    return _euclidean(ref_gray, tgt_gray, cfg, coarse_only)[0]


def _euclidean(
    ref_gray: np.ndarray, tgt_gray: np.ndarray, cfg: DiffConfig, coarse_only: bool
) -> tuple[np.ndarray, float]:
    """:func:`estimate_alignment` and the ECC correlation of the last fit it kept (0 when none)."""
    h, w = tgt_gray.shape
    factors = ((2,) if coarse_only else (2, 1)) if min(h, w) >= 64 else (1,)
    warp = np.eye(2, 3, dtype=np.float32)
    cc = 0.0
    prev = factors[0]
    for level, f in enumerate(factors):
        t = cv2.resize(tgt_gray, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else tgt_gray
        r = cv2.resize(ref_gray, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else ref_gray
        if level == 0:
            win = cv2.createHanningWindow((t.shape[1], t.shape[0]), cv2.CV_32F)
            (dx, dy), _ = cv2.phaseCorrelate(t, r, win)
            if abs(dx) <= cfg.max_shift * t.shape[1] and abs(dy) <= cfg.max_shift * t.shape[0]:
                warp[:, 2] = (dx, dy)
        else:
            warp[:, 2] *= prev / f
        prev = f
        result = _ecc(t, r, warp, 100 if level == 0 else 30)
        if result is None:
            continue
        fitted, score = result
        angle = np.degrees(np.arctan2(fitted[1, 0], fitted[0, 0]))
        if abs(angle) <= cfg.max_rotation and np.all(np.abs(fitted[:, 2]) <= cfg.max_shift * max(t.shape)):
            warp, cc = fitted.astype(np.float32), score
    warp[:, 2] *= prev
    return warp, cc


def motion(warp: np.ndarray, w: int, h: int, scale: float) -> tuple[tuple[float, float], float]:
    """Reference -> target motion from ``warp`` (2x3 or a 3x3 homography, mapping target to reference
    coordinates): the displacement of the image centre in target pixels, and the rotation in degrees
    (counter-clockwise positive, as cv2.getRotationMatrix2D; in image coordinates that is the angle of
    ``warp`` itself)."""
    full = warp.astype(np.float64) if warp.shape == (3, 3) else np.vstack([warp, [0.0, 0.0, 1.0]])
    c = np.array([[[(w - 1) / 2.0, (h - 1) / 2.0]]])
    moved = (cv2.perspectiveTransform(c, np.linalg.inv(full)) - c)[0, 0]
    # the mean of the two axes' angles: a homography's shear tilts one axis, a rotation both
    angles = np.arctan2(full[1, 0], full[0, 0]), np.arctan2(-full[0, 1], full[1, 1])
    rotation = float(np.degrees(sum(angles) / 2))
    return (float(moved[0]) / scale, float(moved[1]) / scale), rotation


def orb_features(gray: np.ndarray) -> tuple[list, np.ndarray | None]:
    u8 = np.clip(gray, 0, 255).astype(np.uint8)
    orb = cv2.ORB_create(nfeatures=400, edgeThreshold=15, patchSize=15, fastThreshold=10)  # low contrast too
    return orb.detectAndCompute(u8, None)


def _plausible(hom: np.ndarray, w: int, h: int, cfg: DiffConfig) -> bool:
    """A homography that moves the corners about as far as the allowed shift + rotation could."""
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    try:
        moved = cv2.perspectiveTransform(corners, hom.astype(np.float64))
    except cv2.error:
        return False
    reach = (cfg.max_shift + np.radians(cfg.max_rotation)) * max(w, h)
    return bool(np.all(np.isfinite(moved)) and np.abs(moved - corners).max() <= reach)


def _high_pass(gray: np.ndarray) -> np.ndarray:
    return gray - cv2.GaussianBlur(gray, (0, 0), HIGH_PASS)


def _half(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def reference_side(ref_gray: np.ndarray, cache: dict | None = None) -> dict:
    """What the homography fit needs of the reference alone (ORB keypoints, the high-passed ECC pyramid):
    made once and kept in ``cache`` (line mode: one reference, many targets)."""
    cache = {} if cache is None else cache
    if "features" not in cache:
        cache["features"] = orb_features(ref_gray)
        hp = _high_pass(ref_gray)
        cache["pyramid"] = {1: hp, 2: _half(hp)}
        cache["plain"] = {1: ref_gray, 2: _half(ref_gray)}
    return cache


def _refine(
    start: np.ndarray,
    tgt: np.ndarray,
    ref_levels: dict,
    w: int,
    h: int,
    cfg: DiffConfig,
    give_up: float = 0.0,
) -> tuple[np.ndarray | None, float]:
    """ECC with a homography model from ``start``, half size then full size: (warp or None, correlation).
    The full-size step (the costly one) is left out when the half-size fit correlates below ``give_up``."""
    half = np.diag([0.5, 0.5, 1.0]).astype(np.float32)
    warp, cc = None, 0.0
    # 5 full-size steps: 10 scored the same on every bench set (clean, bad day, photographs), 3 lost a pair.
    # 15 half-size steps (was 30; 2026-11-28): estimate_homography 38.8 -> 36.2 ms per 800x800 target (best
    # of 5), identical boxes on bench_line's 30 targets; Acc@0.3 photographs 0.811 = 0.811, clean 0.950 ->
    # 0.960, synth's bad day 0.837 -> 0.827 (one pair each way)
    levels = ((2, 15), (1, 5)) if min(h, w) >= 64 else ((1, 40),)
    for f, iters in levels:
        t = _half(tgt) if f > 1 else tgt
        r = ref_levels[f] if f in ref_levels else ref_levels[1]
        m = half if f == 2 else np.eye(3, dtype=np.float32)
        inv = np.linalg.inv(m)
        my, mx = round(t.shape[0] * ECC_MARGIN / 2), round(t.shape[1] * ECC_MARGIN / 2)
        fit = np.zeros(t.shape, np.uint8)
        fit[my : t.shape[0] - my, mx : t.shape[1] - mx] = 1
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iters, 1e-5)
        guess = (m @ (start if warp is None else warp) @ inv).astype(np.float32)
        try:
            score, out = cv2.findTransformECC(t, r, guess, cv2.MOTION_HOMOGRAPHY, criteria, fit, 5)
        except cv2.error:
            continue
        if _plausible(inv @ out @ m, w, h, cfg):
            warp, cc = (inv @ out @ m).astype(np.float32), score  # the correlation of the fit kept
        if f > 1 and score < give_up:
            break
    return warp, cc


def estimate_homography(
    ref_gray: np.ndarray, tgt_gray: np.ndarray, cfg: DiffConfig, ref_cache: dict | None = None
) -> tuple[np.ndarray | None, np.ndarray]:
    """(3x3 H with ref(H(x)) ~ tgt(x) or None when nothing plausible fits, the 2x3 Euclidean fallback).

    Why: scale and perspective (a camera that moved) leave a residual that grows toward the borders under
    shift + rotation. ORB matches + RANSAC give a wide-basin start (the Euclidean fit of
    :func:`estimate_alignment` only when they fail: it costs as much as the rest), then ECC with a
    homography model refines it coarse to fine (half size, then a few full-size steps).
    """
    h, w = tgt_gray.shape
    start = None
    prepared = reference_side(ref_gray, ref_cache)
    kr, dr = prepared["features"]
    kt, dt = orb_features(tgt_gray)
    if dr is not None and dt is not None and len(kr) >= 8 and len(kt) >= 8:
        matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(dt, dr)
        if len(matches) >= 12:
            src = np.float32([kt[m.queryIdx].pt for m in matches])
            dst = np.float32([kr[m.trainIdx].pt for m in matches])
            hom, inl = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
            if hom is not None and int(inl.sum()) >= 12 and _plausible(hom, w, h, cfg):
                start = hom.astype(np.float32)
    euclid = np.eye(2, 3, dtype=np.float32)
    fell_back = start is None
    tgt_hp = _high_pass(tgt_gray)
    hopeless = False
    if fell_back:  # on high-passed images too: on a flat surface a lighting ramp alone fakes a shift
        euclid, ecc_cc = _euclidean(prepared["pyramid"][1], tgt_hp, cfg, coarse_only=True)
        start = np.vstack([euclid, [0.0, 0.0, 1.0]]).astype(np.float32)
        hopeless = ecc_cc < HP_HOPELESS
    # ECC on high-passed images: a lighting ramp would otherwise pull the 8-dof fit into a false zoom. Without
    # ORB's start the image has little texture: a fit that correlates poorly is retried on the plain images,
    # and the Euclidean start is kept when that does no better. Where even the Euclidean start correlates
    # poorly on the high-passed images (smooth surfaces: the high-pass leaves mostly noise), the plain images
    # come first; fits that cannot reach ECC_MIN at half size are not refined at full size
    give_up = ECC_MIN - 0.2 if fell_back else 0.0
    warp, cc = (None, 0.0) if hopeless else _refine(start, tgt_hp, prepared["pyramid"], w, h, cfg, give_up)
    if fell_back and (hopeless or (warp is not None and cc < ECC_MIN)):
        warp, cc = _refine(start, tgt_gray, prepared["plain"], w, h, cfg, give_up)
        warp = warp if cc >= ECC_MIN else None
    refined = warp is not None
    start = warp if warp is not None else start
    if (refined or not fell_back) and _plausible(start, w, h, cfg):
        return start, euclid
    return None, euclid if fell_back else estimate_alignment(ref_gray, tgt_gray, cfg)
