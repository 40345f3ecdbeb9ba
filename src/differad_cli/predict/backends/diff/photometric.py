"""Photometric matching of the aligned reference to the target: illumination and noise."""

from __future__ import annotations

import functools

import cv2
import numpy as np


def _fit_gain(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y ~ a*x + b over corresponding pixels, robust to the defect (a minority of outlier pairs).

    Least squares, then refits on the pairs whose residual lies within 3 robust sigmas (MAD).
    """
    if x.var() < 1.0:  # a flat reference channel: the (median) offset is all there is
        return 1.0, float(np.median(y - x))
    keep = np.ones(x.shape, bool)
    a, b = 1.0, 0.0
    for _ in range(3):
        xs, ys = x[keep], y[keep]
        if xs.size < 16 or xs.var() < 1.0:
            break
        a = float(np.clip(np.cov(xs, ys, bias=True)[0, 1] / xs.var(), 0.5, 2.0))
        b = float(ys.mean() - a * xs.mean())
        res = y - (a * x + b)
        med = float(np.median(res))
        keep = np.abs(res - med) <= 3.0 * 1.4826 * float(np.median(np.abs(res - med))) + 2.0
    return a, b


def match_gain(ref: np.ndarray, tgt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-channel gain/offset of the aligned reference fitted to the target (illumination drift)."""
    out = np.empty_like(ref)
    sub = valid.copy()
    sub[1::2, :] = False  # a quarter of the pixels is plenty for two parameters
    sub[:, 1::2] = False
    for c in range(ref.shape[2]):
        x, y = ref[:, :, c][sub], tgt[:, :, c][sub]
        if x.size < 16:
            out[:, :, c] = ref[:, :, c]
            continue
        a, b = _fit_gain(x, y)
        out[:, :, c] = ref[:, :, c] * a + b
    return np.clip(out, 0.0, 255.0, out=out)  # the target saturates too: never flag clipped highlights


@functools.lru_cache(maxsize=8)
def _basis(h: int, w: int, step: int, order: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The spatial polynomial terms in x, y (-1..1) up to ``order`` (1: a plane, 2: quadratic), without the
    constant: (h, w, p) on the full grid and (n, p) on every ``step``-th pixel. Cached (read-only): line
    mode and batches see one size over and over."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx, yy = 2.0 * xx / max(w - 1, 1) - 1.0, 2.0 * yy / max(h - 1, 1) - 1.0
    terms = [xx, yy] + ([xx * xx, xx * yy, yy * yy] if order >= 2 else [])
    full = np.stack(terms, axis=-1)
    sub = np.ascontiguousarray(full[::step, ::step].reshape(-1, full.shape[-1]))
    full.flags.writeable = sub.flags.writeable = False
    return full, sub


ROUNDS = 4  # alternations of the global fit and the field fit (each also renews the inliers)


def _gain_offset(z: np.ndarray, y: np.ndarray, wt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (row), y ~ a*z + b by least squares over the columns weighted 1 in ``wt`` (a in 0.5-2);
    a flat channel (variance < 1, or under 16 pixels) gets the median offset only. Arrays (channels, n)."""
    n = wt.sum(axis=1, keepdims=True)
    safe = np.maximum(n, 1.0)
    mz, my = (wt * z).sum(axis=1, keepdims=True) / safe, (wt * y).sum(axis=1, keepdims=True) / safe
    dz = z - mz
    var = (wt * dz * dz).sum(axis=1, keepdims=True) / safe
    cov = (wt * dz * (y - my)).sum(axis=1, keepdims=True) / safe
    a = np.clip(cov / np.maximum(var, 1e-12), 0.5, 2.0)
    b = my - a * mz
    for ch in np.flatnonzero((n < 16) | (var < 1.0)):
        cols = wt[ch] > 0
        a[ch], b[ch] = 1.0, float(np.median(y[ch, cols] - z[ch, cols])) if cols.any() else 0.0
    return a, b


def match_gain_field(ref: np.ndarray, tgt: np.ndarray, valid: np.ndarray, order: int = 2) -> np.ndarray:
    """The aligned reference times a smooth gain field (a plane with ``order`` 1, quadratic with 2) plus a
    per-channel offset, fitted on the overlap: a lighting ramp or vignetting is a slowly varying multiplier,
    which one global gain misses.

    The spatial terms multiply the global gain and are fitted in turn with the global gain/offset, not
    jointly: fitting gain and offset together is ill-posed on a flat surface (gain x mean + offset is all
    the pixels tell), and clipping such a split gain broke the whole map. Robust: each round refits on the
    pixels within 3 robust sigmas, so a defect (a minority of the overlap) does not bend it.
    """
    h, w, c = ref.shape
    step = 4
    full, ph = _basis(h, w, step, order)  # the spatial terms; the constant is the global gain
    keep = valid[::step, ::step].reshape(-1).copy()
    if keep.sum() < 64:
        return match_gain(ref, tgt, valid)
    # (channels, pixels): every reduction below runs along contiguous rows
    x = np.ascontiguousarray(ref[::step, ::step].reshape(-1, c).T)
    y = np.ascontiguousarray(tgt[::step, ::step].reshape(-1, c).T)
    pht = np.ascontiguousarray(ph.T)
    rel = np.zeros((c, ph.shape[1]), np.float32)  # per channel: the spatial gain terms / the global gain
    wt = np.repeat(keep[None, :], c, axis=0).astype(np.float32)  # inliers per channel (1 / 0)
    ridge = 1e-6 * np.eye(ph.shape[1])
    for r in range(ROUNDS):
        # the global gain/offset given the field so far, then the field given them, then the inliers
        # (within 3 robust sigmas: a defect does not bend the fit); all channels at once. Fitted once each,
        # a ramp's share of the offset stayed in the offset and left an intensity-dependent residue
        a, b = _gain_offset(x * (1.0 + rel @ pht), y, wt)
        ax = a * x
        rest = y - (ax + b)
        w2 = wt * ax * ax
        normal = np.stack([(pht * w2[i]) @ ph for i in range(c)]) + ridge
        solved = np.linalg.solve(normal, ((wt * ax * rest) @ ph)[..., None])[..., 0]
        rel = np.where(wt.sum(axis=1, keepdims=True) >= 64, solved, rel).astype(np.float32)
        if r == ROUNDS - 1:
            break  # the last round's inliers would not be used
        res = rest - ax * (rel @ pht)
        kept = res[:, keep]
        med = np.median(kept, axis=1, keepdims=True)
        mad = np.median(np.abs(kept - med), axis=1, keepdims=True)
        wt = (keep[None, :] & (np.abs(res - med) <= 3.0 * 1.4826 * mad + 2.0)).astype(np.float32)
    gain = np.clip(a[:, 0] * (1.0 + full @ rel.T), 0.5, 2.0)
    out = ref * gain.astype(np.float32) + b[:, 0].astype(np.float32)
    return np.clip(out, 0.0, 255.0, out=out)


def match_local(ref: np.ndarray, tgt: np.ndarray, sigma: float = 12.0) -> np.ndarray:
    """The reference's local mean/contrast (Gaussian window ``sigma``) set to the target's: cancels any
    lighting smoother than the window, at the price of weakening defects as large as it."""
    mr, mt = cv2.GaussianBlur(ref, (0, 0), sigma), cv2.GaussianBlur(tgt, (0, 0), sigma)
    sr = np.sqrt(np.maximum(cv2.GaussianBlur(ref * ref, (0, 0), sigma) - mr * mr, 0.0)) + 2.0
    st = np.sqrt(np.maximum(cv2.GaussianBlur(tgt * tgt, (0, 0), sigma) - mt * mt, 0.0)) + 2.0
    out = mt + (ref - mr) * np.clip(st / sr, 0.5, 2.0)
    return np.clip(out, 0.0, 255.0, out=out)


def noise_sigma(ref: np.ndarray, tgt: np.ndarray, valid: np.ndarray) -> float:
    """Robust per-pair noise of the difference (0-255 units): 1.4826 * MAD of target minus matched
    reference over the overlap, max over channels. Noise and compression blocks widen it; a defect, being a
    minority of pixels, does not."""
    d = (tgt[::2, ::2] - ref[::2, ::2])[valid[::2, ::2]]  # a quarter of the pixels: the median is stable
    if d.size < 16:
        return 0.0
    med = np.median(d, axis=0)
    return float(1.4826 * np.median(np.abs(d - med), axis=0).max())
