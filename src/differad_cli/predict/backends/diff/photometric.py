"""Photometric matching of the aligned reference to the target: illumination and noise."""

from __future__ import annotations

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
