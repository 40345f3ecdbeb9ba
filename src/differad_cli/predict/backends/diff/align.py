"""Aligning the reference to the target (working resolution)."""

from __future__ import annotations

import contextlib

import cv2
import numpy as np

from differad_cli.predict.backends.diff.config import DiffConfig

ECC_MARGIN = 0.12  # image fraction left out on each side by the Euclidean fit (the homography's: half)
HIGH_PASS = 24.0  # sigma (working pixels) of the lighting removed before the homography's ECC
# Without ORB's start (too few matches: smooth, low-texture images), the homography's ECC correlation below
# which its fit is not trusted: on retina photographs the 8-dof fit drifted to 0.68-0.78 with wrong
# rotations of 10-20 degrees, while correct fits scored 0.95-0.999 (bench_diff_robust --photos skimage).
ECC_MIN = 0.9
# The shift + rotation start's correlation on high-passed images below which their homography fit is not tried
# (the plain images are): 0.14-0.78 on smooth synth surfaces, where the high-passed fit then failed too.
HP_HOPELESS = 0.8
# The homography's ECC iterations at half and full working size (converged fits stop early). 30 half-size:
# from a start far off (14 deg, 35 px) the inverse-compositional fit needs ~30 where OpenCV's needed 10-15
# (review, 2026-11-28); on the bench sets 15/5 and 30/10 scored the same (docs/baselines.md)
HALF_STEPS, FULL_STEPS = 30, 5
MIN_FIT_PIXELS = 64  # fewer pixels in the fit region: no ECC (too little to fit 8 parameters reliably)


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


class EccTemplate:
    """A reference image ready for inverse-compositional ECC with a homography model.

    Why: OpenCV's ``findTransformECC`` warps the moving image *and its gradients* and rebuilds the Jacobian
    and its Hessian at every iteration (forward additive); with the reference as the fixed template those
    depend on the reference alone, so they are computed once here and an iteration warps the target once and
    projects it on the 8 precomputed steepest-descent images (Evangelidis & Psarakis 2008, the inverse
    compositional form of the same correlation criterion; line mode keeps one per reference and level). The
    fit region is the reference's centre (``ECC_MARGIN``/2 per side); where a warp reaches past the target's
    edge, the pixels it cannot see are left out (as OpenCV masks them) by subtracting their share of the
    precomputed sums: the cost grows with the pixels left out, not with the image.
    """

    def __init__(self, image: np.ndarray):
        img = cv2.GaussianBlur(image.astype(np.float32), (5, 5), 0)  # as findTransformECC's gaussFiltSize=5
        h, w = img.shape
        my, mx = max(1, round(h * ECC_MARGIN / 2)), max(1, round(w * ECC_MARGIN / 2))  # 1: the gradient
        self.size, self.origin, self.region_shape = (w, h), (mx, my), (h - 2 * my, w - 2 * mx)
        # parameters in centred, scaled coordinates (pixels -> about [-0.5, 0.5]): the Hessian's columns then
        # have comparable scales; norm maps pixels there, its inverse an update back to pixels
        s = float(max(h, w))
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        self.norm = np.array([[1 / s, 0, -cx / s], [0, 1 / s, -cy / s], [0, 0, 1]])
        self.full: tuple | None = None  # a flat or tiny reference: nothing to fit; fit() says so
        if min(self.region_shape) <= 0 or self.region_shape[0] * self.region_shape[1] < MIN_FIT_PIXELS:
            return
        region = img[my : h - my, mx : w - mx]
        # central differences, as findTransformECC's [-0.5, 0, 0.5] (the region never touches the border)
        tx = (img[my : h - my, mx + 1 : w - mx + 1] - img[my : h - my, mx - 1 : w - mx - 1]) * (s / 2)
        ty = (img[my + 1 : h - my + 1, mx : w - mx] - img[my - 1 : h - my - 1, mx : w - mx]) * (s / 2)
        x = ((np.arange(mx, w - mx, dtype=np.float32) - cx) / s)[None, :]
        y = ((np.arange(my, h - my, dtype=np.float32) - cy) / s)[:, None]
        r = tx * x + ty * y
        g = np.empty((8, region.size), np.float32)  # d T(W(x; p)) / dp at p = 0, one row per parameter
        for k, col in enumerate((tx * x, tx * y, tx, ty * x, ty * y, ty, -r * x, -r * y)):
            g[k] = col.ravel()
        t = region.ravel()
        # centred over the whole region (float32 dot products stay accurate); sums kept in float64
        self.t = t - np.float32(t.mean(dtype=np.float64))
        self.g = g - g.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        g64, t64 = self.g.astype(np.float64), self.t.astype(np.float64)
        self.sums = (g64 @ g64.T, g64.sum(axis=1), g64 @ t64, float(t64.sum()), float(t64 @ t64))
        with contextlib.suppress(np.linalg.LinAlgError):
            self.full = self._solve(*self.sums, self.t.size)

    @staticmethod
    def _solve(gg: np.ndarray, sg: np.ndarray, gt: np.ndarray, st: float, tt: float, n: int) -> tuple:
        """(H^-1, G't, |t|, lambda's numerator) of the template centred over ``n`` pixels, from its sums."""
        mg, mt = sg / n, st / n
        hinv = np.linalg.inv(gg - n * np.outer(mg, mg))
        gt = gt - n * mg * mt
        tt = tt - n * mt * mt
        return hinv, gt, float(np.sqrt(max(tt, 0.0))), float(tt - gt @ hinv @ gt)

    def fit(self, target: np.ndarray, warp: np.ndarray, iters: int, eps: float) -> tuple[float, np.ndarray]:
        """(correlation, 3x3 H with ref(H(x)) ~ target(x)) from the start ``warp`` (same convention), as
        ``findTransformECC`` with the target as its template; raises ``cv2.error`` where ECC gives up."""
        if self.full is None:
            raise cv2.error("ECC: the reference has no texture to fit")
        if target.shape[:2] != self.size[::-1]:
            raise ValueError(f"ECC: target {target.shape[:2]} and reference {self.size[::-1]} differ in size")
        tgt = cv2.GaussianBlur(target.astype(np.float32), (5, 5), 0)
        w, h = self.size
        mx, my = self.origin
        rh, rw = self.region_shape
        shift = np.array([[1.0, 0, mx], [0, 1.0, my], [0, 0, 1.0]])
        to_px = np.linalg.inv(self.norm)
        corners = np.float64([[mx, my], [w - 1 - mx, my], [w - 1 - mx, h - 1 - my], [mx, h - 1 - my]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        p = np.linalg.inv(warp.astype(np.float64))  # reference -> target: where each template pixel samples
        rho, last = 0.0, -1.0
        for _ in range(iters):
            if abs(rho - last) < eps:
                break
            p = p / p[2, 2]
            m = (p @ shift).astype(np.float32)
            i = cv2.warpPerspective(tgt, m, (rw, rh), flags=flags, borderMode=cv2.BORDER_REPLICATE).ravel()
            hinv, gt, t_norm, lam_n = self.full
            reach = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), p).reshape(-1, 2)
            if np.all(reach >= 0) and np.all(reach[:, 0] <= w - 1) and np.all(reach[:, 1] <= h - 1):
                i = i - np.float32(i.mean(dtype=np.float64))
            else:  # leave out the template pixels that land outside the target
                ones = np.ones((h, w), np.uint8)
                seen = cv2.warpPerspective(ones, m, (rw, rh), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
                out = np.flatnonzero(seen.ravel() == 0)
                n = self.t.size - out.size
                if n < MIN_FIT_PIXELS:
                    raise cv2.error("ECC: the warp leaves the target")
                go, to = self.g[:, out].astype(np.float64), self.t[out].astype(np.float64)
                gg, sg, sgt, st, tt = self.sums
                sums = (gg - go @ go.T, sg - go.sum(axis=1), sgt - go @ to, st - to.sum(), tt - to @ to)
                hinv, gt, t_norm, lam_n = self._solve(*sums, n)
                i[out] = 0.0
                i = i - np.float32(i.sum(dtype=np.float64) / n)
                i[out] = 0.0
            i_norm = float(np.sqrt(np.dot(i, i)))
            ti = float(np.dot(self.t, i))  # = the valid part's centred template . i (i sums to 0 there)
            last, rho = rho, (ti / (t_norm * i_norm) if t_norm * i_norm > 0 else 0.0)
            gi = (self.g @ i).astype(np.float64)
            lam_d = ti - float(gi @ hinv @ gt)
            if not lam_d > 0:
                raise cv2.error("ECC: the correlation went negative")  # as findTransformECC stops
            dp = hinv @ ((lam_n / lam_d) * gi - gt)
            step = np.array([[1 + dp[0], dp[1], dp[2]], [dp[3], 1 + dp[4], dp[5]], [dp[6], dp[7], 1.0]])
            p = p @ to_px @ np.linalg.inv(step) @ self.norm  # inverse compositional: W(p) o W(dp)^-1
        p = p / p[2, 2]
        out = np.linalg.inv(p)
        return rho, (out / out[2, 2]).astype(np.float32)


def reference_side(ref_gray: np.ndarray, cache: dict | None = None) -> dict:
    """What the homography fit needs of the reference alone (ORB keypoints, the high-passed and plain
    pyramids, their ECC templates): made once and kept in ``cache`` (line mode: one reference, many
    targets)."""
    cache = {} if cache is None else cache
    if "features" not in cache:
        cache["features"] = orb_features(ref_gray)
        hp = _high_pass(ref_gray)
        cache["pyramid"] = {1: hp, 2: _half(hp)}
        cache["plain"] = {1: ref_gray, 2: _half(ref_gray)}
        # (pyramid name, level) -> EccTemplate: the high-passed ones are nearly always used, the plain ones
        # only when those fit poorly (made when first needed)
        levels = [f for f, _ in _levels(*ref_gray.shape[:2])]
        cache["ecc"] = {("pyramid", f): EccTemplate(cache["pyramid"][f]) for f in levels}
    return cache


def _levels(h: int, w: int) -> tuple[tuple[int, int], ...]:
    """The homography ECC's (downscale factor, iterations), coarse to fine; small images at full size only."""
    return ((2, HALF_STEPS), (1, FULL_STEPS)) if min(h, w) >= 64 else ((1, 40),)


def _template(prepared: dict, name: str, level: int) -> EccTemplate:
    key = (name, level)
    if key not in prepared["ecc"]:
        prepared["ecc"][key] = EccTemplate(prepared[name][level])
    return prepared["ecc"][key]


def _refine(
    start: np.ndarray,
    tgt: np.ndarray,
    prepared: dict,
    name: str,
    w: int,
    h: int,
    cfg: DiffConfig,
    give_up: float = 0.0,
) -> tuple[np.ndarray | None, float]:
    """ECC with a homography model from ``start``, half size then full size, against the reference's
    ``prepared[name]`` pyramid: (warp or None, correlation). The full-size step (the costly one) is left out
    when the half-size fit correlates below ``give_up``."""
    half = np.diag([0.5, 0.5, 1.0]).astype(np.float32)
    warp, cc = None, 0.0
    for f, iters in _levels(h, w):
        t = _half(tgt) if f > 1 else tgt
        m = half if f == 2 else np.eye(3, dtype=np.float32)
        inv = np.linalg.inv(m)
        guess = (m @ (start if warp is None else warp) @ inv).astype(np.float32)
        try:
            score, out = _template(prepared, name, f).fit(t, guess, iters, 1e-5)
        except (cv2.error, np.linalg.LinAlgError):
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
    warp, cc = (None, 0.0) if hopeless else _refine(start, tgt_hp, prepared, "pyramid", w, h, cfg, give_up)
    if fell_back and (hopeless or (warp is not None and cc < ECC_MIN)):
        warp, cc = _refine(start, tgt_gray, prepared, "plain", w, h, cfg, give_up)
        warp = warp if cc >= ECC_MIN else None
    refined = warp is not None
    start = warp if warp is not None else start
    if (refined or not fell_back) and _plausible(start, w, h, cfg):
        return start, euclid
    return None, euclid if fell_back else estimate_alignment(ref_gray, tgt_gray, cfg)
